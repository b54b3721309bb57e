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
- ``last_index(t_max)``: ``k_T``, the last grid point at or before the horizon. ``t_max`` is
  a number a user writes (``0.3`` s on a grid of ``0.1`` s), not a time that was put on the
  grid, and ``G(3) = 3 * 0.1`` lies an ulp above ``0.3``: read as the decimals they print
  as, ``t_max / dt`` is exactly 3, and that index is kept. So ``k_T`` is the larger of
  ``floor_index(t_max)`` and ``floor(t_max / dt)`` in exact decimal arithmetic; the same
  integer for float32 and float64 layers (``t_max`` and ``dt`` are Python floats).
- ``stop_time(t_max, dt, dtype)``: the time from which an input opens no window any more:
  ``t_max`` in exact time; on the grid ``G(k_T)`` rounded to the input's dtype, at or after
  which an input's index is at least ``k_T`` (so a backend that stops reading inputs there
  decides on indices, as the reference does).

The kernels use the same rule on scalars (:func:`floor_index_scalar` is the plain version).
"""

from __future__ import annotations

import math
from fractions import Fraction

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


def last_index(t_max: float, dt: float) -> float:
    """``k_T``: the index of the last grid point at or before ``t_max`` (``dt > 0``), as an
    integer-valued float; ``inf`` for ``t_max = inf`` or a falsy ``dt`` (no grid). The
    larger of :func:`floor_index_scalar` and ``floor(t_max / dt)`` computed exactly on the
    shortest decimals that print as ``t_max`` and ``dt`` (``repr``): ``t_max = 0.3``,
    ``dt = 0.1`` gives 3, although ``3 * 0.1 > 0.3`` in floating point."""
    if not dt or math.isinf(t_max):
        return math.inf
    exact = Fraction(repr(float(t_max))) / Fraction(repr(float(dt)))
    return max(floor_index_scalar(t_max, dt), float(math.floor(exact)))


def stop_time(t_max: float, dt: float | None, dtype: torch.dtype = torch.float64) -> float:
    """The earliest input time after which no window can hold a spike: ``t_max`` when
    ``dt`` is falsy; on the grid ``G(k_T)`` (:func:`last_index`) rounded to ``dtype``, so
    that an input time ``t`` stored in ``dtype`` satisfies ``t >= stop_time`` iff its index
    (``floor_index(t, dt, dtype)``) is at least ``k_T``; ``inf`` for ``t_max = inf``."""
    if not dt:
        return t_max
    k_t = last_index(t_max, dt)
    if math.isinf(k_t):
        return k_t
    return float(torch.tensor(k_t * dt, dtype=torch.float64).to(dtype))


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
