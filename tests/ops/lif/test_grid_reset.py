"""The consistent discrete model (``reset_at="emitted"``): spikes and resets on the grid.

Checked against an independent discrete-time simulation (the neuron's ODE propagated exactly
from grid point to grid point, spiking where ``V >= theta``), its gradient against finite
differences of the network it describes (float64), and against the seed's scheme where the
two must agree. Backend parity (naive, cpu, Triton, cuda) is in :mod:`.test_parity`
(the ``*_grid`` and ``grid_forced`` cases).
"""

import math

import pytest
import torch

import batsnn
from batsnn.ops.lif.grid import floor_index_scalar, grid_times
from batsnn.ops.lif.naive import lif_linear_forward_naive
from batsnn.params import LIFParams
from tests.helpers import random_times
from tests.ops.lif.sim import _propagate

TAU_S = 0.05


def simulate_grid_neuron(events, weights, *, tau_s, theta, delta_theta, max_spikes, t_max, dt):
    """Spike times of one neuron of the consistent discrete model, as grid indices.

    ``events``: sorted ``(t, i)`` with every ``t`` on the grid. State ``(I, V)`` is carried
    from grid point to grid point by the exact propagator; at grid point ``k dt`` the neuron
    spikes iff ``V >= theta`` there (then ``V -= delta_theta``), and only then are the
    inputs of that grid point added to ``I``. No root formula, no windows."""
    k_end = (int(floor_index_scalar(t_max, dt)) if math.isfinite(t_max)
             else int(((events[-1][0] if events else 0.0) + 40 * tau_s) / dt))
    by_k = {}
    for t, i in events:
        by_k.setdefault(int(round(t / dt)), []).append(i)
    i_cur = v = 0.0
    spikes = []
    for k in range(0, k_end + 1):
        if k > 0:
            i_cur, v = _propagate(i_cur, v, dt, tau_s)
            if v >= theta and len(spikes) < max_spikes:
                spikes.append(k)
                v -= delta_theta
        for i in by_k.get(k, ()):
            i_cur += weights[i]
    return spikes


#: (dt, delta_theta, weight scale, weight shift, span of the inputs, t_max): mostly
#: excitatory layers; a small reset (forced spikes); balanced weights, where a reset often
#: leaves the potential above threshold under a net inhibitory current (A <= 0); inputs over
#: several reference-time segments (SEGMENT * tau_s = 0.8 s), with an unbounded horizon
GRID_CASES = {
    "dt8": (8e-3, None, 3.0, 0.25, 0.15, 0.2),
    "dt8-small-reset": (8e-3, 0.03, 1.5, 0.25, 0.15, 0.2),
    "dt4": (4e-3, 0.12, 2.5, 0.25, 0.15, 0.2),
    "dt1": (1e-3, 0.1, 3.0, 0.25, 0.15, 0.2),
    "dt20-balanced": (20e-3, 0.03, 40.0, 0.5, 0.2, 0.3),
    "dt8-balanced-segments": (8e-3, 0.1, 25.0, 0.4, 3.0, math.inf),
}


@pytest.mark.parametrize("case", list(GRID_CASES))
def test_emitted_reset_is_the_discrete_time_neuron(case, seed):
    """Every spike of every neuron, as a grid index, equals the discrete-time simulation's;
    the cases include neurons that the grid forces to fire at consecutive grid points, also
    under a net inhibitory current."""
    dt, delta, w_scale, w_shift, span, t_max = GRID_CASES[case]
    x = grid_times(random_times(4, 30, 2, gen=seed, t_max=span), dt)
    w = (torch.rand(12, 30, generator=seed, dtype=torch.float64) - w_shift) * w_scale
    kw = dict(tau_s=TAU_S, theta=0.3, delta_theta=delta, max_spikes=12, t_max=t_max)
    out = batsnn.lif_linear(x, w, dt=dt, reset_at="emitted", **kw)
    kw["delta_theta"] = 0.3 if delta is None else delta
    total = consecutive = 0
    for b in range(x.shape[0]):
        events = sorted((float(t), i) for i in range(x.shape[1]) for t in x[b, i]
                        if math.isfinite(t))
        for n in range(w.shape[0]):
            want = simulate_grid_neuron(events, w[n].tolist(), dt=dt, **kw)
            t = out.times[b, n]
            got = [int(round(float(v) / dt)) for v in t[torch.isfinite(t)]]
            assert got == want, (b, n, got, want)
            total += len(got)
            consecutive += sum(1 for a, c in zip(got, got[1:]) if c == a + 1)
    assert total > 60
    if "small-reset" in case:
        assert consecutive > 20  # forced spikes are exercised
    if case == "dt20-balanced":  # ... also under a net inhibitory current (A <= 0)
        _, _, rec = lif_linear_forward_naive(x, w, dt=dt, reset_at="emitted", **kw)
        assert sum(math.isinf(r[4]) and r[2] <= 0 for _, rb in rec for rn in rb for r in rn) > 10


def test_forced_spike_under_a_net_inhibitory_current():
    """A reset leaves the potential above threshold while an inhibitory input has made the
    synaptic current negative (A < 0): no crossing lies ahead, yet V(G(4)) = 0.387 >= theta,
    so the neuron fires at grid point 4, in every backend's reference too."""
    dt = 0.02
    x = torch.tensor([[[0.02], [0.06]]], dtype=torch.float64)
    w = torch.tensor([[45.0, -46.0]], dtype=torch.float64)
    kw = dict(tau_s=0.05, theta=0.3, delta_theta=0.03, max_spikes=10, t_max=0.2)
    want = simulate_grid_neuron([(0.02, 0), (0.06, 1)], w[0].tolist(), dt=dt, **kw)
    assert want == [2, 3, 4]
    for dtype in (torch.float64, torch.float32):
        out = batsnn.lif_linear(x.to(dtype), w.to(dtype), dt=dt, reset_at="emitted", **kw)
        t = out.times[0, 0]
        assert [round(float(v) / dt) for v in t[torch.isfinite(t)]] == want, dtype
    t, _, rec = lif_linear_forward_naive(x, w, dt=dt, reset_at="emitted", **kw)
    assert [round(float(v) / dt) for v in t[0, 0] if math.isfinite(v)] == want
    assert math.isinf(rec[0][1][0][2][4])  # forced: no gradient


def test_emitted_reset_differs_from_the_seeds_scheme_only_on_the_grid(seed):
    """In exact time the two resets are the same model; on a grid they differ."""
    x = random_times(3, 20, 2, gen=seed, t_max=0.1)
    w = torch.rand(8, 20, generator=seed, dtype=torch.float64) * 2 - 0.4
    kw = dict(tau_s=TAU_S, theta=0.3, delta_theta=0.05, max_spikes=6)
    a = batsnn.lif_linear(x, w, **kw)
    b = batsnn.lif_linear(x, w, reset_at="emitted", **kw)
    assert torch.equal(a.times, b.times) and int(a.counts.sum()) > 20
    xg = grid_times(x, 8e-3)
    a = batsnn.lif_linear(xg, w, dt=8e-3, **kw)
    b = batsnn.lif_linear(xg, w, dt=8e-3, reset_at="emitted", **kw)
    assert not torch.equal(a.counts, b.counts)


def _straight_through_network(x, w, frozen, *, tau_s, theta, delta_theta):
    """Emitted times of the network the backward differentiates, for one sample: the spike
    structure of ``frozen`` (per neuron, per spike: its window ``j``, its offset
    ``t_e - t_c`` and whether it is forced, with its time) held fixed while ``x`` and ``w``
    move; each crossing recomputed from the closed form, emitted and reset at ``t_c`` plus
    its offset; a forced spike stays where it is. Plain float64 Python."""
    tau = 2 * tau_s
    ev = sorted((x[i, s], i) for i in range(x.shape[0]) for s in range(x.shape[1])
                if math.isfinite(float(x[i, s])))
    out = []
    for n, spikes in enumerate(frozen):
        times = []
        resets = []
        for j, offset, forced, t_forced in spikes:
            if forced:
                t_e = torch.tensor(t_forced, dtype=torch.float64)
            else:
                a = sum(w[n, i] * torch.exp(t / tau_s) for t, i in ev[:j + 1])
                b = sum(w[n, i] * torch.exp(t / tau) for t, i in ev[:j + 1])
                b = b - delta_theta / tau * sum(torch.exp(r / tau) for r in resets)
                t_c = tau * torch.log(2 * a / (b + torch.sqrt(b * b - 4 * a * theta / tau)))
                t_e = t_c + offset
            times.append(t_e)
            resets.append(t_e)
        out.append(times)
    return out


@pytest.mark.parametrize("delta, w_scale", [(0.3, 6.0), (0.04, 2.5)])
def test_emitted_reset_gradient_is_that_of_the_network_it_describes(delta, w_scale, seed):
    """float64 central differences of sum(g * emitted times) over weights and input times,
    the spike structure (windows, grid offsets, forced spikes) held fixed, against the
    op's gradient: the reset coupling runs through the emitted times and forced spikes
    pass nothing."""
    dt = 8e-3
    kw = dict(tau_s=TAU_S, theta=0.3, delta_theta=delta)
    x = grid_times(random_times(1, 10, 2, gen=seed, t_max=0.1), dt)
    w = (torch.rand(4, 10, generator=seed, dtype=torch.float64) - 0.1) * w_scale
    _, counts, rec = lif_linear_forward_naive(x, w, max_spikes=6, t_max=0.2, dt=dt,
                                              reset_at="emitted", **kw)
    assert int(counts.sum()) >= 8 and int(counts.max()) >= 3  # the reset coupling at work
    frozen = [[(j, (math.floor(t_c / dt) + 1) * dt - t_c if math.isfinite(xk) else 0.0,
                not math.isfinite(xk), t_c) for t_c, j, _, _, xk, _ in rec_n]
              for rec_n in rec[0][1]]
    n_forced = sum(f for spikes in frozen for _, _, f, _ in spikes)
    if delta < 0.1:
        assert n_forced > 0
    g = torch.randn(1, 4, 6, generator=seed, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    wr = w.clone().requires_grad_(True)
    out = batsnn.lif_linear(xr, wr, max_spikes=6, t_max=0.2, dt=dt, reset_at="emitted", **kw)
    gx, gw = torch.autograd.grad(out.times, (xr, wr), g * torch.isfinite(out.times))

    def loss(xv, wv):
        times = _straight_through_network(xv[0], wv, frozen, **kw)
        return sum(g[0, n, k] * t for n, ts in enumerate(times) for k, t in enumerate(ts))

    # the structure-preserving model reproduces the op's emitted times
    ref = _straight_through_network(x[0], w, frozen, **kw)
    for n, ts in enumerate(ref):
        assert torch.allclose(torch.stack(ts) if ts else torch.zeros(0, dtype=torch.float64),
                              out.times[0, n, :len(ts)].detach(), atol=1e-12)
    h = 1e-7
    for idx in [(n, i) for n in range(4) for i in range(10)]:
        wp, wm = w.clone(), w.clone()
        wp[idx] += h
        wm[idx] -= h
        fd = (loss(x, wp) - loss(x, wm)) / (2 * h)
        assert float(gw[idx]) == pytest.approx(float(fd), rel=1e-5, abs=1e-8), idx
    for i in range(10):
        for s in range(2):
            if not math.isfinite(float(x[0, i, s])):
                continue
            xp, xm = x.clone(), x.clone()
            xp[0, i, s] += h
            xm[0, i, s] -= h
            fd = (loss(xp, w) - loss(xm, w)) / (2 * h)
            assert float(gx[0, i, s]) == pytest.approx(float(fd), rel=1e-5, abs=1e-8), (i, s)


def test_reset_at_is_checked_and_carried_by_the_layers():
    with pytest.raises(ValueError, match="reset_at must be one of 'crossing', 'emitted', got "
                                         "'grid'"):
        LIFParams(tau_s=0.1, theta=1.0, max_spikes=2, reset_at="grid")
    with pytest.raises(ValueError, match="reset_at must be one of .* got 3"):
        LIFParams(tau_s=0.1, theta=1.0, max_spikes=2, reset_at=3)
    p = LIFParams(tau_s=0.1, theta=1.0, max_spikes=2, dt=0.01, reset_at="emitted")
    assert p.reset_on_grid and not p.replace(dt=0.0).reset_on_grid
    assert not LIFParams(tau_s=0.1, theta=1.0, max_spikes=2, dt=0.01).reset_on_grid
    lin = batsnn.nn.LIFLinear(3, 2, tau_s=0.1, theta=1.0, max_spikes=2, dt=0.01,
                              reset_at="emitted")
    conv = batsnn.nn.LIFConv2d(1, 2, 3, tau_s=0.1, theta=1.0, max_spikes=2, dt=0.01,
                               reset_at="emitted")
    for layer in (lin, conv):
        assert layer.reset_at == "emitted" and "reset_at='emitted'" in repr(layer)
    assert "reset_at" not in repr(batsnn.nn.LIFLinear(3, 2, tau_s=0.1, theta=1.0,
                                                       max_spikes=2))
    x = torch.full((1, 3, 1), 0.01, dtype=torch.float64)
    w = torch.ones(2, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match="give either params or reset_at, not both"):
        batsnn.lif_linear(x, w, params=p, reset_at="emitted")
    with pytest.raises(ValueError, match="reset_at must be one of"):
        batsnn.lif_linear(x, w, tau_s=0.1, theta=1.0, max_spikes=2, reset_at="later")
