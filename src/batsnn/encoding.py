"""Input encoding (model.md section 4) and the time grid of section 6."""

from __future__ import annotations

import math
import numbers

import torch

from batsnn.ops.lif.grid import grid_times

__all__ = ["discretize", "ttfs_encode"]


def discretize(times: torch.Tensor, dt: float | None) -> torch.Tensor:
    """Move spike times to the time grid of step ``dt`` (model.md section 6).

    ``grid(t) = (k + 1) * dt`` with ``k = floor_index(t)`` the cell of ``t``: the first grid
    point strictly after ``t`` (an exact multiple moves one whole step later). The index is
    exact (:mod:`batsnn.ops.lif.grid`), so every time of one cell maps to one value,
    ``(k + 1) * dt`` evaluated in float64 and rounded once to the dtype of ``times``.
    ``+inf`` stays ``+inf``. ``dt`` of ``None`` or ``0`` returns ``times`` unchanged.

    Args:
        times: float tensor of spike times in seconds (>= 0), any shape.
        dt: time step in seconds (>= 0; a Python or numpy number) or ``None``.

    Returns:
        The grid times, same shape and dtype as ``times``.
    """
    if dt is None:
        return times
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real):
        raise TypeError(f"dt must be a real number >= 0 or None, got {dt!r}")
    if not math.isfinite(dt) or dt < 0:
        raise ValueError(f"dt must be a finite number >= 0 or None, got {dt!r}")
    if dt == 0:
        return times
    if not isinstance(times, torch.Tensor) or not times.is_floating_point():
        got = times.dtype if isinstance(times, torch.Tensor) else type(times).__name__
        raise TypeError(f"times must be a floating-point tensor, got {got}")
    return grid_times(times, float(dt))


def ttfs_encode(x: torch.Tensor, *, t_window: float = 0.1, x_max: float = 1.0,
                dt: float | None = None, dtype: torch.dtype = torch.float32,
                validate: bool = True) -> torch.Tensor:
    """Time-to-first-spike encoding: one spike per non-zero input (model.md section 4).

    A value ``x`` in ``[0, x_max]`` spikes once at ``t = t_window * (1 - x / x_max)``; a zero
    does not spike. With ``dt`` the times are moved to the grid (:func:`discretize`).

    Args:
        x: ``(B, ...)`` non-negative values (pixels); flattened to ``(B, N)``.
        t_window: ``T_w`` in seconds (default 0.1 s, as BATS).
        x_max: value of the brightest input (1.0 for scaled images, 255 for raw bytes).
        dt: optional time step in seconds.
        dtype: float dtype of the result.
        validate: check that ``x`` lies in ``[0, x_max]`` (reads the values: one host
            synchronisation on a GPU). ``False`` skips the check for inputs known to be in
            range, such as uint8 images with ``x_max=255``.

    Returns:
        ``(B, N, 1)`` spike times, ``+inf`` for silent inputs.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1:
        raise ValueError(f"x must have a batch dimension, got shape {tuple(x.shape)}")
    if not (x_max > 0):
        raise ValueError(f"x_max must be > 0, got {x_max!r}")
    if not (t_window > 0):
        raise ValueError(f"t_window must be > 0, got {t_window!r}")
    v = x.reshape(x.shape[0], -1).to(dtype)
    if validate and v.numel() and (bool(torch.isnan(v).any()) or float(v.min()) < 0
                                   or float(v.max()) > x_max):
        raise ValueError(f"x must lie in [0, x_max={x_max}], got values in "
                         f"[{float(v.min())}, {float(v.max())}]")
    return _ttfs_times(v, t_window, x_max, dt)


def _ttfs_times(v: torch.Tensor, t_window: float, x_max: float, dt) -> torch.Tensor:
    """:func:`ttfs_encode` of ``(B, N)`` values already known to lie in ``[0, x_max]`` (no
    checks, hence no host synchronisation on a GPU)."""
    from batsnn.spikes import mark_valid

    t = t_window * (1.0 - v / x_max)
    t = torch.where(v > 0, t, torch.full_like(t, math.inf))
    return mark_valid(discretize(t, dt).unsqueeze(-1))
