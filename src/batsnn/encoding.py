"""Input encoding (model.md section 4) and the time grid of section 6."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from batsnn.ops.lif.grid import grid_times
from batsnn.params import DT_RANGE, GRID_INDEX_MAX, real_number

__all__ = ["discretize", "ttfs_encode"]


def _number(name: str, value, *, allow_zero: bool) -> float:
    """A finite real number (Python or numpy scalar) as a float; > 0, or >= 0 with
    ``allow_zero``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, "
                         f"got {value!r}")
    return v


def _step(dt) -> float:
    """``dt`` checked: a finite number >= 0, and unless 0 in :data:`DT_RANGE`."""
    dt = _number("dt", dt, allow_zero=True)
    return real_number("dt", dt, allow_zero=True, supported=DT_RANGE)


def discretize(times: torch.Tensor, dt: float | None) -> torch.Tensor:
    """Move spike times to the time grid of step ``dt`` (model.md section 6).

    ``grid(t) = (k + 1) * dt`` with ``k = floor_index(t)`` the cell of ``t``: the first grid
    point strictly after ``t`` (an exact multiple moves one whole step later). The index is
    exact (:mod:`batsnn.ops.lif.grid`), so every time of one cell maps to one value,
    ``(k + 1) * dt`` evaluated in float64 and rounded once to the dtype of ``times``.
    ``+inf`` stays ``+inf``. ``dt`` of ``None`` or ``0`` returns ``times`` unchanged.

    Args:
        times: float tensor of spike times in seconds (>= 0 or ``+inf``), any shape.
        dt: time step in seconds (numpy scalars included): ``None``, 0, or in ``[1e-18,
            4.5e12]`` (:data:`batsnn.params.DT_RANGE`).

    Returns:
        The grid times, same shape and dtype as ``times``.

    Raises:
        TypeError: ``times`` not a floating-point tensor, ``dt`` not a number.
        ValueError: ``dt`` negative, not finite or outside its range; ``times`` holding a
            finite time of ``2**53`` steps or more (its grid index would not be an exact
            integer: use a longer step); ``times`` holding NaN or a negative value
            whose grid point is negative (a time in ``[-dt, 0)``, e.g. a rounding error,
            lands on the grid point 0). CPU tensors only: on a GPU that check would
            synchronise the host; there such values come out NaN or below 0, and a layer
            refuses them unless they were marked valid.
    """
    if not isinstance(times, torch.Tensor) or not times.is_floating_point():
        got = times.dtype if isinstance(times, torch.Tensor) else type(times).__name__
        raise TypeError(f"times must be a floating-point tensor, got {got}")
    if dt is None:
        return times
    dt = _step(dt)
    if dt == 0:
        return times
    if times.numel() and times.device.type == "cpu":
        finite = times.detach()[torch.isfinite(times.detach())]
        top = float(finite.abs().max()) if finite.numel() else 0.0
        if top / dt >= GRID_INDEX_MAX:
            raise ValueError(f"times holds {top!r} s, 2**53 or more steps of dt={dt!r} s: its "
                             "grid index is not an exact integer (use a longer dt; "
                             "docs/model.md section 7)")
    out = grid_times(times, float(dt))
    if out.numel() and out.device.type == "cpu":
        bad = torch.isnan(out) | (out < 0)
        if bool(bad.any()):
            idx = tuple(torch.nonzero(bad)[0].tolist())
            raise ValueError(f"times must be spike times >= 0 (or +inf), got times"
                             f"{list(idx)} = {times[idx].item()!r}")
    return out


def ttfs_encode(x: torch.Tensor, *, t_window: float = 0.1, x_max: float = 1.0,
                dt: float | None = None, dtype: torch.dtype = torch.float32,
                validate: bool = True) -> torch.Tensor:
    """Time-to-first-spike encoding: one spike per non-zero input (model.md section 4).

    A value ``x`` in ``[0, x_max]`` spikes once at ``t = t_window * (1 - x / x_max)``; a zero
    does not spike. With ``dt`` the times are moved to the grid (:func:`discretize`).

    Args:
        x: ``(B, ...)`` non-negative values (pixels); flattened to ``(B, N)``. ``B`` may be 0.
        t_window: ``T_w`` in seconds, a finite number > 0 (default 0.1 s, as BATS).
        x_max: value of the brightest input, a finite number > 0 (1.0 for scaled images, 255
            for raw bytes).
        dt: optional time step in seconds: 0 or in ``[1e-18, 4.5e12]``, with ``t_window / dt
            < 2**53`` (the grid index of every time exact).
        dtype: float dtype of the result, ``torch.float32`` or ``torch.float64``.
        validate: a bool: check that ``x`` lies in ``[0, x_max]`` (reads the values: one host
            synchronisation on a GPU). ``False`` skips the check for inputs known to be in
            range, such as uint8 images with ``x_max=255``.

    Returns:
        ``(B, N, 1)`` spike times, ``+inf`` for silent inputs. They are marked as checked
        (so that a GPU layer does not scan them again) only when they are known valid: the
        values were checked (``validate=True``), or ``x``'s dtype keeps them in
        ``[0, x_max]`` (``uint8`` with ``x_max >= 255``, ``bool`` with ``x_max >= 1``).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1:
        raise ValueError(f"x must have a batch dimension, got shape {tuple(x.shape)}")
    if x.is_complex():
        raise TypeError(f"x must be real, got {x.dtype}")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    if not isinstance(validate, (bool, np.bool_)):
        raise TypeError(f"validate must be a bool, got {validate!r}")
    x_max = _number("x_max", x_max, allow_zero=False)
    t_window = _number("t_window", t_window, allow_zero=False)
    if dt is not None:
        dt = _step(dt)
        if dt and t_window / dt >= GRID_INDEX_MAX:
            raise ValueError(f"t_window={t_window!r} s is 2**53 or more steps of dt={dt!r} s: "
                             "grid indices would not be exact integers (use a longer dt; "
                             "docs/model.md section 7)")
    if validate and x.device.type == "meta":
        raise ValueError("x is on the meta device: it holds no values to validate "
                         "(pass validate=False)")
    v = x.reshape(x.shape[0], math.prod(x.shape[1:])).to(dtype)
    c = v.detach()
    if validate and c.numel() and (bool(torch.isnan(c).any()) or float(c.min()) < 0
                                   or float(c.max()) > x_max):
        raise ValueError(f"x must lie in [0, x_max={x_max}], got values in "
                         f"[{float(c.min())}, {float(c.max())}]")
    known = validate or (x.dtype == torch.uint8 and x_max >= 255) \
        or (x.dtype == torch.bool and x_max >= 1)
    return _ttfs_times(v, t_window, x_max, dt, mark=known)


def _ttfs_times(v: torch.Tensor, t_window: float, x_max: float, dt, mark: bool = True
                ) -> torch.Tensor:
    """:func:`ttfs_encode` of ``(B, N)`` values (no checks, hence no host synchronisation on
    a GPU); the result is marked valid only with ``mark``."""
    from batsnn.spikes import mark_valid

    t = t_window * (1.0 - v / x_max)
    t = torch.where(v > 0, t, torch.full_like(t, math.inf))
    if dt:
        t = grid_times(t, float(dt))
    t = t.unsqueeze(-1)
    return mark_valid(t) if mark else t
