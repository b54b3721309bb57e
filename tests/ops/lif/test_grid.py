"""The exact grid rule (model.md section 6) against exact rational arithmetic."""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from batsnn.ops.lif.cpu.core import floor_index as cpu_floor_index
from batsnn.ops.lif.grid import floor_index, floor_index_scalar, grid_times

DTS = [1e-3, 4e-3, 8e-3, 0.1 / 3, 0.13]


def _g(k: int, dt: float, dtype) -> Fraction:
    """``G(k)``: the exact product ``k * dt`` rounded once to float64, then to ``dtype``."""
    v = float(Fraction(k) * Fraction(dt))  # correctly rounded, independent of k * dt
    return Fraction(float(np.float32(v))) if dtype == torch.float32 else Fraction(v)


def _exact_floor_index(t: float, dt: float, dtype=None) -> int:
    """Largest integer ``k`` with ``G(k) <= t``, by exact rational comparisons."""
    ft = Fraction(t)
    k = math.floor(ft / Fraction(dt))  # exact floor of the real quotient
    while _g(k + 1, dt, dtype) <= ft:
        k += 1
    while _g(k, dt, dtype) > ft:
        k -= 1
    return k


def _times(dt, dtype, n=400, seed=0):
    """Random times, exact grid values, and their neighbours an ulp away, in ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    rand = torch.rand(n, generator=g, dtype=torch.float64) * 3.0
    ks = torch.randint(0, int(3.0 / dt), (n,), generator=g).double()
    on = (ks * dt).to(dtype)
    up, down = torch.full_like(on, math.inf), torch.full_like(on, -math.inf)
    return torch.cat([rand.to(dtype), on, torch.nextafter(on, up), torch.nextafter(on, down),
                      torch.tensor([0.0], dtype=dtype)]).clamp(min=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("dt", DTS)
def test_floor_index_is_exact(dt, dtype):
    t = _times(dt, dtype)
    want = [_exact_floor_index(v, dt) for v in t.tolist()]
    got = floor_index(t, dt).tolist()
    assert got == want
    # in the time's own dtype: a time put on the grid gets back its index
    want_own = [_exact_floor_index(v, dt, dtype) for v in t.tolist()]
    assert floor_index(t, dt, dtype).tolist() == want_own
    assert [floor_index_scalar(v, dt) for v in t.tolist()] == want
    # the CPU kernels' twin, same answers in float64 and (rounded grid) float32
    f32 = dtype == torch.float32
    assert [cpu_floor_index(v, dt, f32) for v in t.tolist()] == (want_own if f32 else want)
    # bounds: G(k) <= t < G(k + 1)
    for v, k in zip(t.tolist(), want):
        assert _g(k, dt, None) <= Fraction(v) < _g(k + 1, dt, None)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("dt", DTS)
def test_grid_times_is_the_next_grid_point(dt, dtype):
    t = _times(dt, dtype)
    got = grid_times(t, dt)
    assert got.dtype == dtype
    for v, e in zip(t.tolist(), got.tolist()):
        k = _exact_floor_index(v, dt)
        assert Fraction(e) == _g(k + 1, dt, dtype), (v, e)
        # strictly after in float64; float32 may round the grid point down onto t
        assert Fraction(e) > Fraction(v) if dtype == torch.float64 else Fraction(e) >= Fraction(v)
    inf = torch.tensor([math.inf], dtype=dtype)
    assert grid_times(inf, dt).item() == math.inf and floor_index(inf, dt).item() == math.inf
