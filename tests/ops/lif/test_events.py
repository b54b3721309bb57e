"""The CPU backend's compiled event lists against the torch reference
(:func:`batsnn.ops.lif.events.sort_events`), grid indices included."""

import math

import pytest
import torch

from batsnn.ops.lif import cpu
from batsnn.ops.lif.events import grid_bounds, sort_events
from batsnn.ops.lif.grid import floor_index_scalar, grid_times
from batsnn.params import LIFParams
from tests.helpers import random_times


def _inputs(dtype, dt, on_grid, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = random_times(4, 30, 3, gen=g, t_max=0.12, p=0.6)
    x[1] = math.inf  # a sample without spikes: all of its row is padding
    x[2, :, 1:] = math.inf  # fewer events than the others: padding past nspk
    if on_grid:
        x = grid_times(x, dt)  # many equal times
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("t_max", [math.inf, 0.06, 0.1], ids=["inf", "off_grid", "on_grid"])
@pytest.mark.parametrize("dt, on_grid", [(0.0, False), (1e-3, True), (4e-3, True),
                                         (4e-3, False)], ids=["exact", "1ms", "4ms", "4ms_off"])
def test_cpu_events_match_torch_reference(dt, on_grid, t_max, dtype):
    x = _inputs(dtype, dt, on_grid)
    p = LIFParams(tau_s=0.05, theta=1.0, max_spikes=2, dt=dt, t_max=t_max)
    ref = sort_events(x, p)
    ev = cpu.sort_events(x, p)
    assert torch.equal(ev.nspk, ref.nspk) and ev.ts.shape == ref.ts.shape
    for f in ("ts", "kin", "kup"):  # exact, padding included
        assert torch.equal(getattr(ev, f), getattr(ref, f)), f
    fin = torch.isfinite(ref.ts)
    for f in ("nid", "perm", "up"):  # exact (undefined in the padding)
        assert torch.equal(getattr(ev, f)[fin], getattr(ref, f)[fin]), f
    for f in ("ref", "es", "ex", "xup"):
        a, r = getattr(ev, f), getattr(ref, f)
        assert torch.allclose(a[fin], r[fin], rtol=1e-13, atol=0), f
    # the grid bounds from the sorted times alone, as the GPU backend computes them
    kin, kup = grid_bounds(ev.ts, ev.nspk, p, x.dtype)
    assert torch.equal(ev.kin, kin) and torch.equal(ev.kup, kup)
    if dt:
        assert ev.kin.shape == ev.ts.shape and ev.nspk.min() == 0
        fin = torch.isfinite(ev.ts)
        # on the grid, each time's index gives it back; ties share an index
        if on_grid:
            assert torch.equal((ev.kin[fin] * dt).to(dtype).double(), ev.ts[fin])
            assert (ev.kin[:, 1:] == ev.kin[:, :-1])[fin[:, 1:]].any()
        assert (ev.kup <= floor_index_scalar(t_max, dt)).all()
    else:
        assert ev.kin.shape == (4, 0) and ev.kup.shape == (4, 0)
