"""Exact grid arithmetic for ``dt > 0`` (model.md section 6).

A grid point is an integer cell index ``k`` times ``dt``, evaluated as ``k * dt`` in float64
(``G(k)``) and rounded once to the tensor's dtype. Indices are held as integer-valued float64
(exact below 2**53; ``+inf`` for ``+inf``), so every time in a cell maps to the same grid
value and every test of the seed's rule compares integers:

- ``floor_index(t)``: the last grid point at or before ``t``, i.e. the largest ``k`` with
  ``G(k) <= t``, where ``G(k)`` is compared in ``t``'s own dtype when ``dtype`` is given. An
  input spike that was put on the grid (``G(k)`` rounded to float32, say) gets back exactly
  its ``k``, whatever the rounding.
- ``grid(t) = G(floor_index(t) + 1)``: the first grid point strictly after ``t``.

The kernels use the same rule on scalars (:func:`floor_index_scalar` is the plain version).
"""

from __future__ import annotations

import math

import torch


def floor_index_scalar(t: float, dt: float) -> float:
    """Largest integer ``k`` with ``k * dt <= t`` (float64 ``k * dt``); ``inf`` for ``inf``."""
    if math.isinf(t):
        return t
    k = math.floor(t / dt)
    if (k + 1) * dt <= t:
        k += 1
    elif k * dt > t:
        k -= 1
    return float(k)


def grid_scalar(t: float, dt: float | None) -> float:
    """First grid point strictly after ``t`` (``t`` itself when ``dt`` is falsy or ``t`` inf)."""
    if not dt or math.isinf(t):
        return t
    return (floor_index_scalar(t, dt) + 1.0) * dt


def floor_index(t: torch.Tensor, dt: float, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Elementwise :func:`floor_index_scalar` as float64; with ``dtype``, grid values are
    compared after rounding to ``dtype`` (the index of a time stored in that dtype)."""
    t64 = t.detach().to(torch.float64)
    fin = torch.isfinite(t64)
    safe = torch.where(fin, t64, torch.zeros_like(t64))
    k = torch.floor(safe / dt)

    def g(idx):
        v = idx * dt
        return v if dtype is None else v.to(dtype).to(torch.float64)

    k = torch.where(g(k + 1.0) <= safe, k + 1.0, k)
    k = torch.where(g(k) > safe, k - 1.0, k)
    return torch.where(fin, k, t64)


def grid_times(t: torch.Tensor, dt: float) -> torch.Tensor:
    """First grid point strictly after each time, in ``t``'s dtype (``inf`` stays ``inf``)."""
    k = floor_index(t, dt)
    return torch.where(torch.isfinite(k), (k + 1.0) * dt, k).to(t.dtype)
