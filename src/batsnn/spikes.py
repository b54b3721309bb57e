"""The spike-train convention and its checks.

One convention everywhere in batsnn: spike times ``(B, *neurons, S)`` in seconds, ascending
along the last axis, padded with ``+inf`` after the last spike, with counts ``(B, *neurons)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
import torch

from batsnn.params import TIME_RATIO_MAX, WEIGHT_RATIO_MAX

__all__ = ["SpikeTrains", "check_counts", "check_spike_times", "check_tensor", "mark_valid",
           "marked_valid", "weight_abs_max"]

_FLOAT_DTYPES = (torch.float32, torch.float64)


class SpikeTrains(NamedTuple):
    """Spike trains of a layer: the library's one spike-train convention.

    Attributes:
        times: ``(B, *neurons, S)`` float spike times in seconds, ascending along the last
            axis and padded with ``+inf`` after the last spike of each neuron (``(B, N, S)``
            for dense layers, ``(B, C, H, W, S)`` for convolutional ones).
        counts: ``(B, *neurons)`` int64 number of finite entries of ``times`` per neuron.
    """

    times: torch.Tensor
    counts: torch.Tensor


@numba.njit(parallel=True, cache=True)
def scan_times(times, bad, max_time):
    """One pass over ``times (B, N, S)``: per sample the first defect into
    ``bad[b] = (kind, n, s)`` (kind 1 NaN, 2 negative, 3 not ascending / not padded with
    +inf, 4 finite but above ``max_time``; 0 none)."""
    n_batch, n_neurons, n_slots = times.shape
    for b in numba.prange(n_batch):
        for n in range(n_neurons):
            prev = 0.0
            for s in range(n_slots):
                v = times[b, n, s]
                # Valid (the common case): >= 0, ascending, at most max_time or +inf. NaN
                # and every defect fail this test.
                if v >= prev and (v <= max_time or v == np.inf):
                    prev = v
                    continue
                if bad[b, 0] == 0:
                    bad[b, 1] = n
                    bad[b, 2] = s
                    if math.isnan(v):
                        bad[b, 0] = 1
                    elif v < 0.0:
                        bad[b, 0] = 2
                    elif v < prev:
                        bad[b, 0] = 3
                    else:
                        bad[b, 0] = 4
                if v == v:
                    prev = v


@numba.njit(parallel=True, cache=True)
def _abs_max_rows(w, out):
    """``out[r]``: the largest ``|w[r, i]|`` of row ``r``, NaN if the row holds a NaN."""
    for r in numba.prange(w.shape[0]):
        m = abs(w[r, 0])  # of w's dtype: a float64 accumulator would not vectorise
        nan = False
        for i in range(w.shape[1]):
            # Branch-free, so that the loop vectorises; a NaN is flagged apart.
            v = abs(w[r, i])
            nan |= v != v
            m = max(m, v)
        out[r] = math.nan if nan else m


@numba.njit(parallel=True, cache=True)
def _count_mismatch(times, counts, first):
    """``first[b]``: the first neuron of sample ``b`` whose count in ``counts (B, N)``
    differs from its number of finite entries in ``times (B, N, S)``; -1 if none."""
    n_batch, n_neurons, n_slots = times.shape
    for b in numba.prange(n_batch):
        first[b] = -1
        for n in range(n_neurons):
            found = 0
            for s in range(n_slots):
                found += math.isfinite(times[b, n, s])
            if found != counts[b, n]:
                first[b] = n
                break


def weight_abs_max(w: torch.Tensor) -> float:
    """The largest magnitude in a CPU tensor (``0.0`` when empty, NaN if it holds a NaN,
    ``inf`` if it holds an infinity), in one compiled pass without temporaries."""
    if w.numel() == 0:
        return 0.0
    a = w.detach().reshape(w.shape[0], -1).contiguous().numpy()
    out = np.zeros(a.shape[0], np.float64)
    _abs_max_rows(a, out)
    return float(out.max()) if not np.isnan(out).any() else math.nan


def check_times(times: torch.Tensor, max_time: float = math.inf):
    """The data checks of :func:`check_spike_times` on a CPU tensor, in one compiled pass.

    Returns ``None`` when ``times`` is valid, else ``(kind, b, n, s)`` of the first defect.
    """
    t = times.detach().contiguous()
    bad = np.zeros((t.shape[0], 3), np.int64)
    scan_times(t.numpy(), bad, float(max_time))
    rows = np.nonzero(bad[:, 0])[0]
    if len(rows) == 0:
        return None
    b = int(rows[0])
    return int(bad[b, 0]), b, int(bad[b, 1]), int(bad[b, 2])


def check_tensor(name: str, times, ndim: int | None = 3) -> None:
    """Type, dtype, device (cpu or cuda: batsnn's kernels and checks run there) and rank of
    a spike-time tensor: exactly ``ndim`` dimensions, or (with ``ndim=None``) at least 2,
    ``(B, *neurons, S)``."""
    if not isinstance(times, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(times).__name__}")
    if times.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {times.dtype}")
    if times.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} must be on a cpu or cuda device, got {times.device}")
    if ndim is None:
        if times.dim() < 2:
            raise ValueError(f"{name} must have shape (batch, *neurons, spikes), got shape "
                             f"{tuple(times.shape)}")
    elif times.dim() != ndim:
        what = ("(batch, neurons, spikes)" if ndim == 3 else
                "(batch, channels, height, width, spikes)" if ndim == 5 else f"{ndim} axes")
        raise ValueError(f"{name} must have shape {what}, got shape {tuple(times.shape)}")


def mark_valid(times: torch.Tensor) -> torch.Tensor:
    """Record that ``times`` is a valid spike-time tensor made by batsnn.

    On a GPU, a later :func:`check_spike_times` of the same, unmodified tensor (same object,
    same version counter) skips the data checks, which there cost a host synchronisation.
    Writes that bypass the version counter (through ``.data`` or a shared numpy/DLPack view)
    are not seen on a GPU; on the CPU every tensor is scanned.
    """
    times._batsnn_valid_version = times._version
    return times


def marked_valid(times: torch.Tensor) -> bool:
    """Whether ``times`` carries the mark of :func:`mark_valid` and is unmodified since."""
    return getattr(times, "_batsnn_valid_version", None) == times._version


def check_spike_times(name: str, times: torch.Tensor, weight: torch.Tensor | None = None,
                      max_weight: float | None = None, max_time: float = math.inf) -> None:
    """Raise if ``times`` is not a valid ``(B, *neurons, S)`` spike-time tensor (any number of
    neuron axes, e.g. ``(B, N, S)`` or ``(B, C, H, W, S)``; checked as ``(B, -1, S)``); mark
    it valid if it is (see :func:`mark_valid`: the same unmodified tensor is not scanned
    again). Errors name ``name`` and the full index of the first defect.

    With ``weight``, also raise if it holds NaN or infinite values, or (with ``max_weight``)
    a magnitude above ``max_weight``; with ``max_time``, raise for a finite time above it
    (both CPU tensors only, in the same pass: on a GPU they would synchronise the host in
    every forward). On a GPU the data checks share one
    host synchronisation, and are skipped for tensors made by batsnn.
    """
    check_tensor(name, times, ndim=None)
    t = times.detach()
    shape = tuple(t.shape)
    if t.dim() != 3:
        t = t.reshape(shape[0], math.prod(shape[1:-1]), shape[-1])
    if t.device.type == "cpu":
        # On the CPU the scan is one cheap compiled pass, so every tensor is scanned, also one
        # batsnn made: edits through ``.data`` or a numpy view do not move the version
        # counter that the mark relies on.
        if weight is not None:
            _check_weight_values(weight, max_weight)
        if t.numel() == 0:
            return
        found = check_times(t, max_time)
        if found is not None:
            _raise_time_defect(name, t, shape, *found, max_time=max_time)
        mark_valid(times)
        return
    # On a GPU the weight values are not inspected (that would cost a host synchronisation
    # in every forward); spike-time data is checked once, unless batsnn made it.
    if t.numel() == 0 or marked_valid(times):
        return
    no = torch.zeros((), dtype=torch.bool, device=t.device)
    flags = torch.stack([
        torch.isnan(t).any(),
        (t < 0).any(),
        (t[..., 1:] < t[..., :-1]).any() if t.shape[-1] > 1 else no,
    ]).tolist()
    for kind, mask in ((1, torch.isnan(t)), (2, t < 0)):
        if flags[kind - 1]:
            _raise_time_defect(name, t, shape, kind, *torch.nonzero(mask)[0].tolist())
    if flags[2]:
        b, n, s = torch.nonzero(t[..., 1:] < t[..., :-1])[0].tolist()
        _raise_time_defect(name, t, shape, 3, b, n, s + 1)
    mark_valid(times)


def _check_weight_values(weight: torch.Tensor, max_weight: float | None) -> None:
    """Raise unless the CPU tensor ``weight`` is finite with magnitudes <= ``max_weight``."""
    top = weight_abs_max(weight)
    if not math.isfinite(top):
        raise ValueError("weight contains NaN or infinite values")
    if max_weight is not None and top > max_weight:
        raise ValueError(
            f"weight holds a magnitude {top:g}, beyond the |weight| <= {WEIGHT_RATIO_MAX:g} * "
            f"theta / tau_s = "
            f"{max_weight:g} that batsnn supports (docs/model.md section 7)")


def _raise_time_defect(name, t, shape, kind, b, n, s, max_time=math.inf):
    """``t`` is ``times`` viewed as ``(B, N, S)``; ``shape`` its own shape, whose neuron
    index of flat ``n`` the message gives."""
    flat_n, neuron = n, []
    for size in reversed(shape[1:-1]):
        neuron.append(n % size)
        n //= size
    idx = ", ".join(str(v) for v in [b, *reversed(neuron)])
    where = f"{name}[{idx}, {s}]"
    if kind == 1:
        raise ValueError(f"{name} contains NaN (first at {where})")
    if kind == 2:
        raise ValueError(f"{name} contains a negative time, {where} = "
                         f"{t[b, flat_n, s].item()!r}; spike times are seconds >= 0, padded "
                         "with +inf")
    if kind == 4:
        raise ValueError(f"{name} holds a time beyond the range batsnn supports, {where} = "
                         f"{t[b, flat_n, s].item()!r} > {TIME_RATIO_MAX:g} * tau_s = "
                         f"{max_time:g} s (docs/model.md section 7)")
    raise ValueError(
        f"{name} must be ascending along the last axis and padded with +inf after the last "
        f"spike; {name}[{idx}] = {t[b, flat_n].tolist()} is not (at position {s})")


def check_counts(counts, times: torch.Tensor, name: str = "counts", *,
                 values: bool = True) -> None:
    """Raise unless ``counts`` is an integer tensor of shape ``times.shape[:-1]`` on
    ``times``' device and (with ``values``) its values are the numbers of finite entries of
    ``times`` per neuron (compared on the CPU only: on a GPU that would synchronise the
    host)."""
    if not isinstance(counts, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(counts).__name__}")
    if counts.dtype.is_floating_point or counts.dtype.is_complex or counts.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {counts.dtype}")
    if counts.shape != times.shape[:-1]:
        raise ValueError(f"{name} must have shape {tuple(times.shape[:-1])} (times without its "
                         f"last axis), got {tuple(counts.shape)}")
    if counts.device != times.device:
        raise ValueError(f"{name} is on {counts.device} but times is on {times.device}")
    if values and counts.device.type == "cpu" and counts.numel():
        n_batch, n_slots = times.shape[0], times.shape[-1]
        t = times.detach().reshape(n_batch, math.prod(times.shape[1:-1]), n_slots)
        t = t.contiguous().numpy()
        first = np.empty(n_batch, np.int64)
        _count_mismatch(t, counts.detach().reshape(n_batch, -1).to(torch.int64).numpy(), first)
        if (first >= 0).any():
            b = int(np.argmax(first >= 0))
            idx = (b, *np.unravel_index(int(first[b]), tuple(counts.shape[1:])))
            idx = tuple(int(i) for i in idx)
            found = int(torch.isfinite(times.detach()[idx]).sum())
            raise ValueError(f"{name} disagree with times: {name}[{', '.join(map(str, idx))}] = "
                             f"{int(counts[idx])} but times{list(idx)} holds {found} "
                             "finite spike times")
