import math

import numpy as np
import pytest
import torch

import batsnn
from batsnn.ops.lif.naive import grid


def test_discretize_is_first_grid_point_strictly_after():
    t = torch.tensor([0.0, 0.0004, 0.001, 0.0015, math.inf], dtype=torch.float64)
    d = batsnn.discretize(t, 1e-3)
    assert d[-1] == math.inf
    assert torch.all(d[:-1] > t[:-1])
    for a, b in zip(t.tolist(), d.tolist()):
        assert b == grid(a, 1e-3)  # the reference's scalar rule
    assert d[:-1].tolist() == [1e-3, 1e-3, 2e-3, 2e-3]  # an exact multiple moves a whole step
    assert batsnn.discretize(t, None) is t and batsnn.discretize(t, 0) is t


def _cell_bounds(ks, dt, dtype):
    """First and last value of ``dtype`` in each cell ``[G(k), G(k+1))``, ``G(k) = k * dt``
    in float64 (compared as real numbers)."""
    lo, hi = ks * dt, (ks + 1) * dt
    first = lo.to(dtype)
    up, down = torch.full_like(first, math.inf), torch.full_like(first, -math.inf)
    first = torch.where(first.double() < lo, torch.nextafter(first, up), first)
    last = hi.to(dtype)
    last = torch.where(last.double() >= hi, torch.nextafter(last, down), last)
    return first, last


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("dt", [1e-3, 4e-3, 0.1 / 3], ids=["1ms", "4ms", "third"])
def test_discretize_maps_each_cell_to_one_value(dt, dtype):
    """Every time of a cell, its first and last values and those an ulp inside included, maps
    to one grid value; the value an ulp before the cell maps to the previous one."""
    g = torch.Generator().manual_seed(0)
    ks = torch.cat([torch.arange(0.0, 40.0),
                    torch.randint(40, 5000, (300,), generator=g).double()])
    first, last = _cell_bounds(ks, dt, dtype)
    assert (first < last).all()
    up, down = torch.full_like(first, math.inf), torch.full_like(first, -math.inf)
    u = torch.rand(len(ks), 6, generator=g, dtype=torch.float64)
    inside = (first.double()[:, None] + u * (last - first).double()[:, None]).to(dtype)
    inside = torch.cat([first[:, None], torch.nextafter(first, up)[:, None], inside,
                        torch.nextafter(last, down)[:, None], last[:, None]], 1)
    expect = ((ks + 1) * dt).to(dtype)
    got = batsnn.discretize(inside, dt)
    assert got.dtype == dtype
    bad = (got != expect[:, None]).any(1)
    assert not bad.any(), f"cells {ks[bad][:5].tolist()} do not all map to G(k+1)"
    before = batsnn.discretize(torch.nextafter(first, down), dt)
    assert torch.equal(before, (ks * dt).to(dtype))


def test_discretize_takes_numpy_dt_and_names_bad_arguments():
    t = torch.tensor([0.0, 0.0025, math.inf])
    for dt in (np.float64(1e-3), np.float32(2e-3), 1e-3):
        assert torch.equal(batsnn.discretize(t, dt), batsnn.discretize(t, float(dt)))
    assert batsnn.discretize(t, np.float64(0.0)) is t
    for bad in (-1.0, math.inf, math.nan, np.float64(-1e-3)):
        with pytest.raises(ValueError, match="dt"):
            batsnn.discretize(t, bad)
    for bad in ("1e-3", True, torch.tensor(1e-3)):
        with pytest.raises(TypeError, match="dt"):
            batsnn.discretize(t, bad)
    with pytest.raises(TypeError, match="times.*int64"):
        batsnn.discretize(torch.zeros(2, dtype=torch.int64), 1e-3)
    with pytest.raises(TypeError, match="times.*list"):
        batsnn.discretize([0.1], 1e-3)


def test_ttfs_encode():
    x = torch.tensor([[0.0, 0.5, 1.0], [0.25, 0.0, 0.0]])
    t = batsnn.ttfs_encode(x)
    assert t.shape == (2, 3, 1) and t.dtype == torch.float32
    assert math.isinf(t[0, 0, 0]) and math.isinf(t[1, 2, 0])
    assert t[0, 1, 0].item() == pytest.approx(0.05)
    assert t[0, 2, 0].item() == 0.0
    assert t[1, 0, 0].item() == pytest.approx(0.075)
    raw = batsnn.ttfs_encode(torch.tensor([[0, 255, 51]]), x_max=255, dtype=torch.float64)
    assert raw[0, 1, 0] == 0.0 and raw[0, 2, 0].item() == pytest.approx(0.08)
    d = batsnn.ttfs_encode(x, dt=0.01)
    assert d[0, 2, 0].item() == pytest.approx(0.01) and math.isinf(d[0, 0, 0])
    with pytest.raises(ValueError, match=r"x must lie in \[0, x_max=1.0\]"):
        batsnn.ttfs_encode(torch.tensor([[2.0]]))
