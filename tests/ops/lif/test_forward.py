"""Forward of lif_linear against the plain reference and an independent ODE simulation."""

import math

import numpy as np
import pytest
import torch

import batsnn
from batsnn.ops.lif.naive import _sorted_events, grid, lif_linear_forward_naive
from tests.helpers import assert_close, random_times
from tests.ops.lif.sim import simulate_neuron

BASE = dict(tau_s=0.05, theta=0.15, max_spikes=6)

CASES = {
    "plain": dict(),
    "partial_reset": dict(delta_theta=0.06),
    "t_max": dict(t_max=0.07),
    "cap": dict(max_spikes=2),
    "dt_1ms": dict(dt=1e-3),
    "dt_4ms_partial": dict(dt=4e-3, delta_theta=0.08),
}


def _inputs(gen, dt=None, ties=False):
    x = random_times(4, 12, 3, gen=gen)
    if ties:
        x[:, 1] = x[:, 0]  # neuron 1 repeats neuron 0: equal input times
    if dt:
        x = batsnn.discretize(x, dt)
    w = torch.rand(7, 12, generator=gen, dtype=torch.float64) * 2.5 - 0.5
    return x, w


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_forward_matches_reference(case, ties, seed):
    kw = {**BASE, **CASES[case]}
    x, w = _inputs(seed, kw.get("dt"), ties)
    delta = kw.pop("delta_theta", None)
    ref_t, ref_c, _ = lif_linear_forward_naive(x, w, delta_theta=delta or kw["theta"], **kw)
    out = batsnn.lif_linear(x, w, delta_theta=delta, **kw)
    assert torch.equal(out.counts, ref_c)
    assert_close("times", ref_t, out.times, atol=1e-12)
    assert ref_c.sum() > 10, "case should produce spikes"


def test_window_rules_by_hand():
    """One strong input: the neuron's spike falls before or after a second input."""
    tau_s, theta = 0.05, 0.5
    tau = 2 * tau_s
    w = torch.tensor([[30.0, 0.0]], dtype=torch.float64)
    # single input at 0: V = tau w (x - x^2), x = exp(-t/tau); root of A x^2 - B x + c
    a, b, c = 30.0, 30.0, theta / tau
    t_star = tau * math.log(2 * a / (b + math.sqrt(b * b - 4 * a * c)))
    for t2, expect_window in ((t_star * 0.5, 1), (t_star * 1.5, 0), (t_star, 0)):
        x = torch.tensor([[[0.0], [t2]]], dtype=torch.float64)
        out = batsnn.lif_linear(x, w, tau_s=tau_s, theta=theta, max_spikes=1)
        assert out.counts.item() == 1
        # the zero-weight second input does not move the spike, whichever window it is in
        assert abs(out.times[0, 0, 0].item() - t_star) < 1e-12
    # t_max before the crossing: silent; at the crossing: kept (<= t_max)
    x = torch.tensor([[[0.0], [math.inf]]], dtype=torch.float64)
    assert batsnn.lif_linear(x, w, tau_s=tau_s, theta=theta, max_spikes=1,
                             t_max=t_star * 0.99).counts.item() == 0
    assert batsnn.lif_linear(x, w, tau_s=tau_s, theta=theta, max_spikes=1,
                             t_max=t_star).counts.item() == 1
    # dt: emitted on the grid after t_star
    dt = 1e-3
    out = batsnn.lif_linear(x, w, tau_s=tau_s, theta=theta, max_spikes=1, dt=dt)
    assert out.times[0, 0, 0].item() == grid(t_star, dt)
    assert out.times[0, 0, 0].item() > t_star


def test_dt_spike_after_next_input_is_dropped_from_window():
    """With dt, a crossing whose grid time passes the next input ends that window (section 6)."""
    tau_s, theta = 0.05, 0.5
    tau = 2 * tau_s
    a, b, c = 30.0, 30.0, theta / tau
    t_star = tau * math.log(2 * a / (b + math.sqrt(b * b - 4 * a * c)))
    dt = 0.01
    g = grid(t_star, dt)
    t2 = 0.5 * (t_star + g)  # between the crossing and its grid time
    w = torch.tensor([[30.0, -500.0]], dtype=torch.float64)
    x = torch.tensor([[[0.0], [t2]]], dtype=torch.float64)
    # continuous: the spike is at t_star < t2; discrete: grid(t_star) > t2 and the strong
    # inhibition at t2 then prevents any later crossing
    assert batsnn.lif_linear(x, w, tau_s=tau_s, theta=theta, max_spikes=3).counts.item() == 1
    assert batsnn.lif_linear(x, w, tau_s=tau_s, theta=theta, max_spikes=3,
                             dt=dt).counts.item() == 0
    ref_t, ref_c, _ = lif_linear_forward_naive(x, w, tau_s=tau_s, theta=theta,
                                               delta_theta=theta, max_spikes=3, dt=dt)
    assert ref_c.item() == 0


@pytest.mark.parametrize("delta", [0.3, 0.12], ids=["full_reset", "partial_reset"])
def test_forward_matches_ode_simulation(delta, seed):
    tau_s, theta, k, t_max = 0.05, 0.3, 8, 0.25
    x = random_times(2, 10, 2, gen=seed)
    w = torch.rand(3, 10, generator=seed, dtype=torch.float64) * 6.0 - 1.0
    out = batsnn.lif_linear(x, w, tau_s=tau_s, theta=theta, delta_theta=delta, max_spikes=k,
                            t_max=t_max)
    n_checked = 0
    for b in range(2):
        events = _sorted_events(x[b])
        for n in range(3):
            sim = simulate_neuron(events, w[n].tolist(), tau_s=tau_s, theta=theta,
                                  delta_theta=delta, max_spikes=k, t_max=t_max)
            got = out.times[b, n, : out.counts[b, n]].tolist()
            assert len(sim) == len(got), (b, n, sim, got)
            for s, g in zip(sim, got):
                assert abs(s - g) < 1e-9, (b, n, s, g)
            n_checked += len(got)
    assert n_checked >= 6


def test_float32_matches_float64(seed):
    x, w = _inputs(seed)
    kw = dict(BASE)
    out64 = batsnn.lif_linear(x, w, **kw)
    out32 = batsnn.lif_linear(x.float(), w.float(), **kw)
    assert out32.times.dtype == torch.float32
    assert torch.equal(out32.counts, out64.counts)
    assert_close("times", out64.times, out32.times, atol=2e-6, rtol=1e-5)


def test_long_times_stay_finite_in_float32(seed):
    """Inputs up to 100 tau_s: exponentials are taken relative to a reference time."""
    tau_s = 0.01
    base = torch.rand(2, 20, 1, generator=seed, dtype=torch.float64) * 0.02
    w = torch.rand(4, 20, generator=seed, dtype=torch.float64) * 2.5
    kw = dict(tau_s=tau_s, theta=0.05, max_spikes=4)
    early = batsnn.lif_linear(base.float(), w.float(), **kw)
    shift = 100 * tau_s
    late = batsnn.lif_linear((base + shift).float(), w.float(), **kw)
    assert early.counts.sum() > 0
    assert torch.equal(early.counts, late.counts)
    finite = torch.isfinite(early.times)
    assert torch.isfinite(late.times[finite]).all()
    assert_close("shifted", early.times.double() + shift * finite, late.times.double(),
                 atol=1e-5, rtol=0)
    # and the plain reference agrees in float64
    ref_t, ref_c, _ = lif_linear_forward_naive(base + shift, w, delta_theta=0.05, **kw)
    assert torch.equal(ref_c, late.counts)


def test_nn_module_stacks(seed):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        batsnn.nn.LIFLinear(12, 9, tau_s=0.05, theta=0.3, max_spikes=4).double(),
        batsnn.nn.LIFLinear(9, 3, tau_s=0.05, theta=0.5, max_spikes=4).double(),
    )
    w0 = net[0].weight
    assert w0.min() >= -1 and w0.max() <= 1 and w0.std() > 0.3
    x = random_times(2, 12, 1, gen=seed)
    out = net(x)
    h = batsnn.lif_linear(x, net[0].weight, tau_s=0.05, theta=0.3, max_spikes=4)
    direct = batsnn.lif_linear(h.times, net[1].weight, tau_s=0.05, theta=0.5, max_spikes=4)
    assert torch.equal(out.times, direct.times)
    assert out.times.shape == (2, 3, 4)
    assert set(net.state_dict()) == {"0.weight", "1.weight"}
    assert "max_spikes=4" in repr(net)


def test_very_long_times_beyond_float64_exponent_range(seed):
    """At 800 tau_s, exp(t/tau_s) overflows even float64; results must not change."""
    tau_s = 0.01
    base = torch.rand(2, 20, 1, generator=seed, dtype=torch.float64) * 0.02
    w = torch.rand(4, 20, generator=seed, dtype=torch.float64) * 2.5
    kw = dict(tau_s=tau_s, theta=0.05, max_spikes=4)
    early = batsnn.lif_linear(base, w, **kw)
    shift = 800 * tau_s
    late = batsnn.lif_linear(base + shift, w, **kw)
    assert early.counts.sum() > 0
    assert torch.equal(early.counts, late.counts)
    finite = torch.isfinite(early.times)
    assert_close("shifted", early.times + shift * finite, late.times, atol=1e-9, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_dt_crossing_on_the_next_inputs_grid_point_is_emitted(dtype):
    """A crossing whose grid point is the next input's time is emitted in the current window
    (model.md section 6): the tie is decided on indices. Rejecting it would silence the neuron
    for good: here the next input is strongly inhibitory."""
    tau_s, theta, dt = 0.05, 0.5296, 1e-3
    tau = 2 * tau_s
    a = b = 30.0
    t_star = tau * math.log(2 * a / (b + math.sqrt(b * b - 4 * a * theta / tau)))
    k = math.floor(t_star / dt) + 1
    t_next = k * dt
    # the case is a real tie: on the grid index, not on a float formula that misses it
    assert math.fmod(t_star, dt) > 0 and t_star + dt - math.fmod(t_star, dt) != t_next
    x = torch.tensor([[[0.0], [t_next]]], dtype=dtype)
    w = torch.tensor([[a, -500.0]], dtype=dtype)
    kw = dict(tau_s=tau_s, theta=theta, max_spikes=3, dt=dt)
    ref_t, ref_c, _ = lif_linear_forward_naive(x, w, delta_theta=theta, **kw)
    out = batsnn.lif_linear(x, w, **kw)
    for name, t, c in (("naive", ref_t, ref_c), ("cpu", out.times, out.counts)):
        assert c.item() == 1, name
        assert t[0, 0, 0].to(dtype) == x[0, 1, 0], name  # emitted on the input's grid point
    # one cell earlier, the next input comes before the crossing's grid point: silent
    x_early = torch.tensor([[[0.0], [(k - 1) * dt]]], dtype=dtype)
    assert batsnn.lif_linear(x_early, w, **kw).counts.item() == 0
    assert lif_linear_forward_naive(x_early, w, delta_theta=theta, **kw)[1].item() == 0


def _ttfs_layer_case(dt, dtype, n_in=784, n_out=100, batch=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    pix = torch.rand(batch, n_in, generator=g)
    pix = torch.where(torch.rand(batch, n_in, generator=g) < 0.5, pix, torch.zeros_like(pix))
    x = batsnn.ttfs_encode(pix, dt=dt, dtype=dtype)
    w = (torch.rand(n_out, n_in, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)
    return x, w


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("dt", [1e-3, 4e-3, 8e-3], ids=["1ms", "4ms", "8ms"])
def test_dt_dense_layer_matches_reference_on_every_neuron(dt, dtype):
    """A 784-100 layer on TTFS inputs on the grid (many equal input times): the CPU kernels
    emit exactly the reference's spikes, neuron by neuron, time by time."""
    x, w = _ttfs_layer_case(dt, dtype)
    kw = dict(tau_s=0.13, theta=0.1, max_spikes=30, t_max=0.2, dt=dt)
    ref_t, ref_c, _ = lif_linear_forward_naive(x, w, delta_theta=0.1, **kw)
    out = batsnn.lif_linear(x, w, **kw)
    assert out.times.dtype == dtype
    assert torch.equal(out.counts, ref_c), f"{int((out.counts != ref_c).sum())} neurons differ"
    assert torch.equal(out.times, ref_t.to(dtype))
    assert ref_c.sum() > 2000 and (ref_c == 0).any() and (ref_c > 1).float().mean() > 0.3


def test_dt_float32_crossing_between_input_and_its_grid_point_is_emitted():
    """A float32 input on grid point k lies just below k * dt when the grid value rounds
    down. A crossing between the two has index k, a tie with that input: it is emitted in
    the window before it (the kernels' root-free pre-test must look up to k * dt, not only to
    the input's time)."""
    tau_s, dt, w = 0.05, 1e-3, 30.0
    tau = 2 * tau_s
    t0 = float(np.float32(400 * dt))
    k = max(range(420, 440), key=lambda i: i * dt - float(np.float32(i * dt)))
    g, t32 = k * dt, float(np.float32(k * dt))
    assert g - t32 > 1e-8  # the input is stored well below its grid point

    def delay(theta):  # crossing time after a single input of weight w
        return tau * math.log(2 / (1 + math.sqrt(1 - 4 * theta / (tau * w))))

    lo, hi = 1e-6, w * tau / 4  # theta placing the crossing halfway between t32 and g
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t0 + delay(mid) < 0.5 * (g + t32) else (lo, mid)
    theta = lo
    assert t32 < t0 + delay(theta) < g
    x = torch.tensor([[[t0], [t32]]], dtype=torch.float32)
    wt = torch.tensor([[w, -500.0]], dtype=torch.float32)
    kw = dict(tau_s=tau_s, theta=theta, max_spikes=3, dt=dt)
    ref_t, ref_c, _ = lif_linear_forward_naive(x, wt, delta_theta=theta, **kw)
    out = batsnn.lif_linear(x, wt, **kw)
    assert ref_c.item() == 1 and ref_t[0, 0, 0].float() == x[0, 1, 0]
    assert out.counts.item() == 1 and out.times[0, 0, 0] == x[0, 1, 0]
