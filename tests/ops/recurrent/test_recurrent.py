"""The recurrent LIF layer: reference, CPU kernels, ODE simulation, gradients, nn module."""

import math

import pytest
import torch

from batsnn.functional import lif_linear, lif_recurrent
from batsnn.nn import LIFRecurrent
from batsnn.ops.lif.cpu import recurrent as cpu
from batsnn.ops.lif.grid import grid_times
from batsnn.ops.lif.naive import lif_linear_forward_naive
from batsnn.ops.recurrent.naive import (lif_recurrent_backward_naive,
                                        lif_recurrent_forward_naive)
from batsnn.params import LIFParams

TAU_S, THETA = 0.1, 0.5
KW = dict(tau_s=TAU_S, theta=THETA, delta_theta=THETA)


def make(seed, batch=3, n_in=6, n=5, s_in=3, span=0.3, w_hi=3.0, r_scale=1.0):
    """Sorted random input times (one slot padded with +inf), input and recurrent weights."""
    g = torch.Generator().manual_seed(seed)
    tin = torch.sort(torch.rand(batch, n_in, s_in, generator=g, dtype=torch.float64) * span,
                     -1)[0]
    tin[0, 0, -1] = math.inf
    w = torch.rand(n, n_in, generator=g, dtype=torch.float64) * w_hi
    r = (torch.rand(n, n, generator=g, dtype=torch.float64) - 0.5) * 2 * r_scale
    return tin, w, r


def finite_or_zero(t):
    return torch.where(torch.isfinite(t), t, torch.zeros_like(t))


# ------------------------------------------------------------------ (1) no recurrence

@pytest.mark.parametrize("seed", range(3))
def test_zero_recurrent_weight_is_the_dense_layer(seed):
    tin, w, _ = make(seed)
    zero = torch.zeros(w.shape[0], w.shape[0], dtype=torch.float64)
    t_rec, c_rec, _ = lif_recurrent_forward_naive(tin, w, zero, max_spikes=4, **KW)
    t_lin, c_lin, _ = lif_linear_forward_naive(tin, w, max_spikes=4, **KW)
    assert torch.equal(c_rec, c_lin) and c_lin.sum() > 5
    assert torch.equal(t_rec, t_lin)
    out = lif_recurrent(tin, w, zero, max_spikes=4, **KW)
    ref = lif_linear(tin, w, max_spikes=4, **KW)
    assert torch.equal(out.counts, ref.counts)
    torch.testing.assert_close(finite_or_zero(out.times), finite_or_zero(ref.times),
                               rtol=0, atol=1e-12)
    assert torch.equal(torch.isinf(out.times), torch.isinf(ref.times))


# ------------------------------------------------------------ (2) kernel vs reference

@pytest.mark.parametrize("seed", range(5))
def test_cpu_kernel_matches_reference(seed):
    tin, w, r = make(seed)
    p = LIFParams(max_spikes=5, **KW)
    t1, c1, saved = cpu.forward(tin, w, r, p)
    t2, c2, rec = lif_recurrent_forward_naive(tin, w, r, max_spikes=5, **KW)
    assert torch.equal(c1, c2) and c1.sum() > 10
    assert torch.equal(torch.isinf(t1), torch.isinf(t2))
    torch.testing.assert_close(finite_or_zero(t1), finite_or_zero(t2), rtol=0, atol=1e-12)
    coef = torch.randn(t1.shape, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)
    g = torch.where(torch.isfinite(t1), coef, torch.zeros_like(coef))
    got = cpu.backward(g, saved, tuple(tin.shape), w, r, p)
    want = lif_recurrent_backward_naive(g, tin, w, r, rec, tau_s=TAU_S, delta_theta=THETA)
    for a, b in zip(got, want):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_simultaneous_crossings_all_spike():
    """Two identical neurons cross at the same time; strong mutual inhibition acts only
    after both have spiked, so both spike (the ties rule)."""
    tin = torch.tensor([[[0.01]]], dtype=torch.float64)
    w = torch.tensor([[20.0], [20.0]], dtype=torch.float64)
    r = torch.tensor([[0.0, -50.0], [-50.0, 0.0]], dtype=torch.float64)
    for out in (lif_recurrent(tin, w, r, max_spikes=3, **KW),
                lif_recurrent_forward_naive(tin, w, r, max_spikes=3, **KW)[:2]):
        times, counts = out
        assert counts.tolist() == [[1, 1]]
        assert times[0, 0, 0] == times[0, 1, 0]
    # without the tie the inhibition silences the later neuron
    w2 = torch.tensor([[20.0], [19.0]], dtype=torch.float64)
    counts = lif_recurrent(tin, w2, r, max_spikes=3, **KW).counts
    assert counts[0, 0] >= 1 and counts[0, 1] == 0


def test_long_times_shift_invariant():
    """Shifting every input by 3000 tau_s shifts every spike by the same amount (the
    kernel's reference times keep the exponentials finite)."""
    tin, w, r = make(7, batch=1)
    shift = 3000 * TAU_S
    a = lif_recurrent(tin, w, r, max_spikes=5, **KW)
    b = lif_recurrent(tin + shift, w, r, max_spikes=5, **KW)
    assert torch.equal(a.counts, b.counts) and a.counts.sum() > 5
    torch.testing.assert_close(finite_or_zero(b.times - shift), finite_or_zero(a.times),
                               rtol=0, atol=1e-9)


def test_long_times_gradients_shift_invariant():
    """The gradients of ``sum c_k t_k`` do not change when every input moves by 3000 tau_s
    (the backward's reference times)."""
    tin, w, r = make(8, batch=2)
    coef = torch.randn(2, 5, 5, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    grads = []
    for shift in (0.0, 3000 * TAU_S):
        xs = [x.clone().requires_grad_(True) for x in (tin + shift, w, r)]
        out = lif_recurrent(*xs, max_spikes=5, **KW)
        (finite_or_zero(out.times) * coef).sum().backward()
        grads.append([x.grad for x in xs])
    assert grads[0][2].abs().max() > 1e-3
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------- (3) clock-driven simulation

def simulate_network(tin, w, r, *, tau_s, theta, delta_theta, max_spikes, t_end, h):
    """The layer's ODE for one sample, stepped with step ``h`` (the exact propagator of
    ``dI/dt = -I/tau_s``, ``dV/dt = -V/tau + I`` over a step); a threshold crossing inside
    a step is located by bisection, the earliest neuron spikes, ``V -= delta_theta`` and
    every neuron's current jumps by its recurrent weight. Shares no formula with batsnn."""
    tau = 2 * tau_s
    n = w.shape[0]
    events = sorted((float(t), i) for i in range(tin.shape[0]) for t in tin[i].tolist()
                    if math.isfinite(t))
    cur = [0.0] * n
    v = [0.0] * n
    out = [[] for _ in range(n)]

    def prop(c, x, s):
        return (c * math.exp(-s / tau_s),
                x * math.exp(-s / tau) + c * tau * (math.exp(-s / tau) - math.exp(-s / tau_s)))

    t = 0.0
    j = 0
    while t < t_end:
        while j < len(events) and events[j][0] <= t:
            for k in range(n):
                cur[k] += float(w[k, events[j][1]])
            j += 1
        step = min(h, t_end - t, (events[j][0] - t) if j < len(events) else h)
        new = [prop(cur[k], v[k], step) for k in range(n)]
        over = [k for k in range(n) if new[k][1] >= theta and len(out[k]) < max_spikes]
        if not over:
            for k in range(n):
                cur[k], v[k] = new[k]
            t += step
            continue
        first, who = step, None
        for k in over:
            lo, hi = 0.0, step
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                if prop(cur[k], v[k], mid)[1] >= theta:
                    hi = mid
                else:
                    lo = mid
            if hi < first:
                first, who = hi, k
        for k in range(n):
            cur[k], v[k] = prop(cur[k], v[k], first)
        t += first
        out[who].append(t)
        v[who] -= delta_theta
        for k in range(n):
            cur[k] += float(r[k, who])
    return out


def test_clock_driven_simulation_agrees():
    tin, w, _ = make(11, batch=1, n_in=4, n=3, s_in=2)
    r = torch.tensor([[0.0, 1.5, -2.0], [-1.0, 0.3, 2.0], [2.5, -1.5, 0.0]],
                     dtype=torch.float64)
    got = lif_recurrent(tin, w, r, max_spikes=6, **KW)
    sim = simulate_network(tin[0], w, r, max_spikes=6, t_end=1.5, h=TAU_S / 200, **KW)
    assert got.counts[0].tolist() == [len(s) for s in sim]
    for k, spikes in enumerate(sim):
        for s, t in enumerate(spikes):
            assert abs(float(got.times[0, k, s]) - t) < 1e-8
    # the recurrence matters here: the dense layer's spikes are different
    lin = lif_linear(tin, w, max_spikes=6, **KW)
    assert not torch.equal(lin.counts, got.counts) or \
        (finite_or_zero(lin.times) - finite_or_zero(got.times)).abs().max() > 1e-3


# ---------------------------------------------------------- (4) finite differences

def central_differences(loss, tensors, h=1e-6):
    grads = []
    for x in tensors:
        g = torch.zeros_like(x)
        flat = x.view(-1)
        for idx in range(flat.numel()):
            if not math.isfinite(float(flat[idx])):
                continue
            keep = float(flat[idx])
            flat[idx] = keep + h
            up = loss()
            flat[idx] = keep - h
            down = loss()
            flat[idx] = keep
            g.view(-1)[idx] = (up - down) / (2 * h)
        grads.append(g)
    return grads


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_gradients_match_finite_differences(seed):
    tin, w, r = make(seed, batch=2, n_in=4, n=4, s_in=2, w_hi=6.0)
    base = lif_recurrent(tin, w, r, max_spikes=4, **KW)
    coef = torch.randn(base.times.shape, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)

    def loss_of(times):
        return (finite_or_zero(times) * coef).sum()

    def loss():
        out = lif_recurrent(tin, w, r, max_spikes=4, **KW)
        # no spike appears or disappears under the perturbation
        assert torch.equal(out.counts, base.counts)
        return float(loss_of(out.times))

    fd = central_differences(loss, [tin, w, r])
    xs = [x.clone().requires_grad_(True) for x in (tin, w, r)]
    loss_of(lif_recurrent(*xs, max_spikes=4, **KW).times).backward()
    _, _, rec = lif_recurrent_forward_naive(tin, w, r, max_spikes=4, **KW)
    g = torch.where(torch.isfinite(base.times), coef, torch.zeros_like(coef))
    naive = lif_recurrent_backward_naive(g, tin, w, r, rec, tau_s=TAU_S, delta_theta=THETA)
    assert float(fd[2].abs().max()) > 1e-3  # the recurrent weights matter to the loss
    for x, want, ref in zip(xs, fd, naive):
        torch.testing.assert_close(x.grad, want, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(ref, want, rtol=1e-5, atol=1e-7)


def test_float32_runs_and_matches_float64():
    tin, w, r = make(4)
    a = lif_recurrent(tin, w, r, max_spikes=4, **KW)
    b = lif_recurrent(tin.float(), w.float(), r.float(), max_spikes=4, **KW)
    assert b.times.dtype == torch.float32
    assert torch.equal(a.counts, b.counts)
    torch.testing.assert_close(finite_or_zero(b.times).double(), finite_or_zero(a.times),
                               rtol=0, atol=1e-5)


# ---------------------------------------------------------------------- (6) module

def test_module_trains_and_keeps_the_diagonal_zero():
    torch.manual_seed(0)
    layer = LIFRecurrent(6, 4, tau_s=TAU_S, theta=THETA, max_spikes=6, init=(0.0, 2.0),
                         self_connections=False, dtype=torch.float64)
    assert torch.equal(torch.diagonal(layer.recurrent_weight), torch.zeros(4,
                                                                          dtype=torch.float64))
    tin, _, _ = make(5, batch=4, n_in=6, n=4)
    target = torch.tensor([4.0, 1.0, 3.0, 0.0], dtype=torch.float64)
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    losses = []
    for _ in range(12):
        out = layer(tin)
        err = target - out.counts.double()
        losses.append(float(0.5 * (err ** 2).sum()))
        # the BATS count loss: dL/dt = (target - count) for every emitted spike
        g = torch.where(torch.isfinite(out.times), err[..., None].expand_as(out.times),
                        torch.zeros_like(out.times))
        opt.zero_grad()
        out.times.backward(g)
        assert torch.equal(torch.diagonal(layer.recurrent_weight.grad),
                           torch.zeros(4, dtype=torch.float64))
        opt.step()
    assert min(losses[-3:]) < losses[0]
    assert torch.equal(torch.diagonal(layer.recurrent_weight), torch.zeros(4,
                                                                          dtype=torch.float64))
    assert layer.recurrent_weight.abs().sum() > 0


def test_module_default_ranges_and_repr():
    layer = LIFRecurrent(3, 5, tau_s=TAU_S, theta=THETA, max_spikes=2)
    assert layer.recurrent_weight.shape == (5, 5) and layer.weight.shape == (5, 3)
    assert float(layer.recurrent_weight.detach().abs().max()) <= 0.5
    assert "self_connections=True" in repr(layer)
    assert layer.mask is None


# ------------------------------------------------------------------ dt > 0 (section 6)

DT = 0.01


def make_grid(seed, **kw):
    """:func:`make` with the input times put on the grid of ``DT``."""
    tin, w, r = make(seed, **kw)
    return grid_times(tin, DT), w, r


@pytest.mark.parametrize("reset_at", ["crossing", "emitted"])
@pytest.mark.parametrize("delta_theta", [THETA, 0.1 * THETA])
def test_grid_zero_recurrent_weight_is_the_dense_layer(reset_at, delta_theta):
    kw = dict(tau_s=TAU_S, theta=THETA, delta_theta=delta_theta, max_spikes=6, dt=DT,
              reset_at=reset_at, t_max=0.5)
    for seed in range(3):
        tin, w, _ = make_grid(seed, w_hi=4.0)
        zero = torch.zeros(w.shape[0], w.shape[0], dtype=torch.float64)
        t_rec, c_rec, _ = lif_recurrent_forward_naive(tin, w, zero, **kw)
        t_lin, c_lin, _ = lif_linear_forward_naive(tin, w, **kw)
        assert torch.equal(c_rec, c_lin) and c_lin.sum() > 10
        assert torch.equal(t_rec, t_lin)
        # the kernels, forward and backward, against the dense layer's
        coef = torch.randn(t_lin.shape, generator=torch.Generator().manual_seed(seed),
                           dtype=torch.float64)
        xs = [x.clone().requires_grad_(True) for x in (tin, w, zero)]
        out = lif_recurrent(*xs, **kw)
        (finite_or_zero(out.times) * coef).sum().backward()
        ys = [x.clone().requires_grad_(True) for x in (tin, w)]
        ref = lif_linear(*ys, **kw)
        (finite_or_zero(ref.times) * coef).sum().backward()
        assert torch.equal(out.counts, ref.counts)
        torch.testing.assert_close(out.times.detach(), ref.times.detach(), rtol=0, atol=0)
        torch.testing.assert_close(xs[0].grad, ys[0].grad, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(xs[1].grad, ys[1].grad, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("reset_at", ["crossing", "emitted"])
@pytest.mark.parametrize("delta_theta", [THETA, 0.1 * THETA])
def test_grid_cpu_kernel_matches_reference(reset_at, delta_theta):
    kw = dict(tau_s=TAU_S, theta=THETA, delta_theta=delta_theta, max_spikes=6, dt=DT,
              reset_at=reset_at, t_max=0.5)
    p = LIFParams(**kw)
    forced = 0
    for seed in range(4):
        tin, w, r = make_grid(seed, w_hi=4.0, r_scale=2.0)
        t1, c1, saved = cpu.forward(tin, w, r, p)
        t2, c2, rec = lif_recurrent_forward_naive(tin, w, r, **kw)
        forced += sum(1 for _, spikes in rec for s in spikes if s[3] == math.inf)
        assert torch.equal(c1, c2) and c1.sum() > 10
        assert torch.equal(t1, t2)  # grid times: exactly the same values
        # the spikes are on the grid
        fin = t1[torch.isfinite(t1)]
        assert torch.equal(fin, torch.round(fin / DT) * DT)
        g = torch.where(torch.isfinite(t1), torch.randn(t1.shape, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(seed)), torch.zeros_like(t1))
        got = cpu.backward(g, saved, tuple(tin.shape), w, r, p)
        want = lif_recurrent_backward_naive(g, tin, w, r, rec, tau_s=TAU_S,
                                            delta_theta=delta_theta)
        for a, b in zip(got, want):
            assert b.abs().max() > 0
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    if reset_at == "emitted" and delta_theta < THETA:
        assert forced > 0  # the grid forces spikes here: that path is exercised


def test_grid_recurrent_spike_acts_from_its_emitted_time():
    """Neuron 0 crosses inside a cell and is emitted at the cell's end G(k); neuron 1 has
    no input and only integrates neuron 0's spike, so its spike follows from a kernel that
    starts at G(k), not at the crossing."""
    tin = torch.tensor([[[0.0]]], dtype=torch.float64)
    w = torch.tensor([[20.0], [0.0]], dtype=torch.float64)
    r = torch.tensor([[0.0, 0.0], [40.0, 0.0]], dtype=torch.float64)
    kw = dict(tau_s=TAU_S, theta=THETA, delta_theta=THETA, max_spikes=1)
    cont = lif_recurrent(tin, w, r, **kw)
    grid = lif_recurrent(tin, w, r, dt=DT, **kw)
    t0 = float(cont.times[0, 0, 0])
    k0 = math.floor(t0 / DT) + 1
    assert float(grid.times[0, 0, 0]) == pytest.approx(k0 * DT, abs=1e-15)
    # neuron 1 in continuous time, from t0, and on the grid, from G(k0): shifted by the gap
    delay = float(cont.times[0, 1, 0]) - t0
    assert delay > 0
    t1_grid = k0 * DT + delay
    assert float(grid.times[0, 1, 0]) == pytest.approx((math.floor(t1_grid / DT) + 1) * DT,
                                                       abs=1e-15)


@pytest.mark.parametrize("dt", [None, 0.25])
def test_a_tangent_crossing_passes_no_gradient(dt):
    """One input at 0 of weight ``4 theta / tau`` (``tau = 1``): neuron 0's potential
    touches theta (``D = 0`` exactly) and spikes at ``ln 2`` (emitted at ``G(3)`` on the
    grid) with no gradient, neuron 1 (weight 1.5) crosses with a finite one; the kernel and
    the reference alike, never inf or NaN."""
    x = torch.zeros(1, 1, 1, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([[1.0], [1.5]], dtype=torch.float64, requires_grad=True)
    r = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    out = lif_recurrent(x, w, r, tau_s=0.5, theta=0.25, max_spikes=1, dt=dt)
    assert out.counts.tolist() == [[1, 1]]
    out.times[out.times.isfinite()].sum().backward()
    assert torch.isfinite(w.grad).all() and torch.isfinite(x.grad).all()
    assert float(w.grad[0, 0]) == 0.0 and float(w.grad[1, 0]) < 0.0
    times, counts, rec = lif_recurrent_forward_naive(
        x.detach(), w.detach(), r.detach(), tau_s=0.5, theta=0.25, delta_theta=0.25,
        max_spikes=1, dt=dt)
    _, g_w, _ = lif_recurrent_backward_naive(torch.ones(1, 2, 1, dtype=torch.float64),
                                             x.detach(), w.detach(), r.detach(), rec,
                                             tau_s=0.5, delta_theta=0.25)
    assert torch.equal(times, out.times.detach()) and torch.isfinite(g_w).all()
    assert float(g_w[0, 0]) == 0.0
    torch.testing.assert_close(g_w, w.grad)
