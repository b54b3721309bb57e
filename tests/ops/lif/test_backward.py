"""Gradients of lif_linear: gradcheck in float64, the plain reference, and edge cases."""

import math

import pytest
import torch

import batsnn
from batsnn.ops.lif.naive import lif_linear_backward_naive, lif_linear_forward_naive
from tests.helpers import assert_close, random_times


def _finite(times):
    return torch.where(torch.isfinite(times), times, torch.zeros_like(times))


def _gradcheck_case(gen, dt=None):
    x = random_times(2, 8, 2, gen=gen, p=0.9)
    if dt:
        x = batsnn.discretize(x, dt)
    w = torch.rand(3, 8, generator=gen, dtype=torch.float64) * 6.0 - 1.0
    return x, w


@pytest.mark.parametrize("delta", [None, 0.1], ids=["full_reset", "partial_reset"])
def test_gradcheck_weight_and_input_times(delta, seed):
    kw = dict(tau_s=0.05, theta=0.3, delta_theta=delta, max_spikes=6)
    x, w = _gradcheck_case(seed)
    out = batsnn.lif_linear(x, w, **kw)
    assert out.counts.max() >= 3, "the case must have several spikes per neuron"
    x.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: _finite(batsnn.lif_linear(a, b, **kw).times),
                                    (x, w), eps=1e-7, atol=1e-6, rtol=1e-5)


def test_gradcheck_with_dt_is_straight_through(seed):
    """For dt > 0 the gradient is that of the continuous crossing times (section 6)."""
    dt = 1e-3
    kw = dict(tau_s=0.05, theta=0.3, max_spikes=6)
    x, w = _gradcheck_case(seed, dt)
    x.requires_grad_(True)
    w.requires_grad_(True)
    g = torch.randn(2, 3, 6, dtype=torch.float64, generator=seed)
    out = batsnn.lif_linear(x, w, dt=dt, **kw)
    gx, gw = torch.autograd.grad(out.times, (x, w), torch.where(torch.isfinite(out.times), g, 0))
    # the same inputs in continuous time give the same spikes up to the grid: the
    # straight-through gradient is the continuous op's gradient of the same crossings
    _, _, rec = lif_linear_forward_naive(x.detach(), w.detach(), tau_s=0.05, theta=0.3,
                                         delta_theta=0.3, max_spikes=6, dt=dt)
    rx, rw = lif_linear_backward_naive(g, x.detach(), w.detach(), rec, tau_s=0.05,
                                       delta_theta=0.3)
    assert out.counts.max() >= 3
    assert_close("grad input_times", rx, gx, atol=1e-10, rtol=1e-9)
    assert_close("grad weight", rw, gw, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("delta", [None, 0.12], ids=["full_reset", "partial_reset"])
def test_backward_matches_reference(dtype, delta, seed):
    kw = dict(tau_s=0.05, theta=0.3, max_spikes=5)
    x = random_times(3, 10, 3, gen=seed)
    w = torch.rand(6, 10, generator=seed, dtype=torch.float64) * 4.0 - 0.8
    _, ref_c, rec = lif_linear_forward_naive(x, w, delta_theta=delta or 0.3, **kw)
    g = torch.randn(3, 6, 5, dtype=torch.float64, generator=seed)
    rx, rw = lif_linear_backward_naive(g, x, w, rec, tau_s=0.05, delta_theta=delta or 0.3)
    xd = x.to(dtype).requires_grad_(True)
    wd = w.to(dtype).requires_grad_(True)
    out = batsnn.lif_linear(xd, wd, delta_theta=delta, **kw)
    assert torch.equal(out.counts, ref_c)
    gx, gw = torch.autograd.grad(out.times, (xd, wd), g.to(dtype) * torch.isfinite(out.times))
    assert gx.dtype == dtype and gw.dtype == dtype
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    assert_close("grad input_times", rx, gx, atol=tol, rtol=tol)
    assert_close("grad weight", rw, gw, atol=tol, rtol=tol)
    assert ref_c.max() >= 3


def test_no_input_spikes_gives_zero_output_and_gradients():
    x = torch.full((3, 5, 2), math.inf, dtype=torch.float64, requires_grad=True)
    w = torch.rand(4, 5, dtype=torch.float64, requires_grad=True)
    out = batsnn.lif_linear(x, w, tau_s=0.05, theta=0.1, max_spikes=3)
    assert out.counts.sum() == 0 and torch.isinf(out.times).all()
    out.times.masked_fill(torch.isinf(out.times), 0).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert torch.equal(w.grad, torch.zeros_like(w))


def test_silent_layer_gives_zero_gradients(seed):
    x = random_times(2, 6, 1, gen=seed).requires_grad_(True)
    w = (torch.rand(3, 6, dtype=torch.float64, generator=seed) * 0.1).requires_grad_(True)
    out = batsnn.lif_linear(x, w, tau_s=0.05, theta=5.0, max_spikes=3)
    assert out.counts.sum() == 0
    out.times.masked_fill(torch.isinf(out.times), 0).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x)) and torch.equal(w.grad, torch.zeros_like(w))


def test_max_spikes_cap_and_gradient_flow(seed):
    x = random_times(2, 10, 2, gen=seed, p=1.0)
    w = torch.full((2, 10), 8.0, dtype=torch.float64)
    kw = dict(tau_s=0.05, theta=0.1)
    free = batsnn.lif_linear(x, w, max_spikes=50, **kw)
    capped = batsnn.lif_linear(x, w, max_spikes=3, **kw)
    assert (free.counts > 3).all() and (capped.counts == 3).all()
    assert torch.equal(capped.times, free.times[..., :3])
    wr = w.clone().requires_grad_(True)
    out = batsnn.lif_linear(x, wr, max_spikes=3, **kw)
    out.times.sum().backward()
    assert torch.isfinite(wr.grad).all() and wr.grad.abs().sum() > 0


def test_batch_over_1024(seed):
    """The original kernel stops at 1024 samples; batsnn takes any batch."""
    x = random_times(1100, 6, 1, gen=seed)
    w = torch.rand(3, 6, generator=seed, dtype=torch.float64) * 6
    kw = dict(tau_s=0.05, theta=0.2, max_spikes=3)
    out = batsnn.lif_linear(x, w, **kw)
    part = batsnn.lif_linear(x[1050:], w, **kw)
    assert out.counts.sum() > 1000
    assert torch.equal(out.times[1050:], part.times)
    ref_t, ref_c, _ = lif_linear_forward_naive(x[1090:], w, delta_theta=0.2, **kw)
    assert torch.equal(out.counts[1090:], ref_c)
    assert_close("times", ref_t, out.times[1090:], atol=1e-12)
