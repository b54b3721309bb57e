"""Axonal delays (batsnn.functional.spike_delay, batsnn.nn.SpikeDelay): the forward against a
plain loop, gradients against float64 central differences, the bounds, and bad input."""

import math

import pytest
import torch

import batsnn
from batsnn.functional import lif_linear, spike_delay
from batsnn.nn import LIFLinear, SpikeDelay, SpikingSequential

INF = math.inf


def _reference(times: torch.Tensor, delay: torch.Tensor) -> torch.Tensor:
    """Plain loop: every finite entry of channel c (axis 1) plus delay[c]."""
    out = times.clone()
    flat = out.reshape(-1)
    for i, idx in enumerate(torch.cartesian_prod(*[torch.arange(n) for n in times.shape])):
        v = flat[i].item()
        if math.isfinite(v):
            flat[i] = v + delay[int(idx[1])].item()
    return out


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 2, 2, 4)])
def test_forward_matches_a_plain_loop(shape):
    g = torch.Generator().manual_seed(1)
    t = torch.rand(shape, generator=g, dtype=torch.float64).sort(-1).values
    t[t > 0.6] = INF
    counts = torch.isfinite(t).sum(-1)
    delay = torch.rand(shape[1], generator=g, dtype=torch.float64) * 0.01
    out = spike_delay(t, counts, delay)
    assert torch.equal(out.times, _reference(t, delay))
    assert out.counts is counts
    assert bool((out.times[..., 1:] >= out.times[..., :-1]).all())  # still ascending


def _net_loss(delay, x, w, **kw):
    """Sum of the finite output spike times of a delay -> LIF layer (float64)."""
    d = spike_delay(x, torch.isfinite(x).sum(-1), delay)
    out = lif_linear(d.times, w, tau_s=0.01, theta=0.2, max_spikes=6, **kw)
    return torch.where(torch.isfinite(out.times), out.times, 0.0).sum()


@pytest.mark.parametrize("dt", [None, 1e-4])
def test_gradients_match_central_differences(dt):
    """dL/d delay through a LIF layer: the input times' gradient summed per channel, and in
    exact time float64 central differences (on a grid the times move in steps, so there
    differences are zero or jumps)."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 6, 1, generator=g, dtype=torch.float64) * 0.02
    w = torch.rand(3, 6, generator=g, dtype=torch.float64) * 40  # 2-4 spikes per neuron
    delay = (torch.rand(6, generator=g, dtype=torch.float64) * 0.005).requires_grad_()
    kw = {} if dt is None else {"dt": dt}
    loss = _net_loss(delay, x, w, **kw)
    assert loss.item() > 0  # the output layer spikes
    (grad,) = torch.autograd.grad(loss, delay)
    # the delays' gradient is the input times' gradient summed per channel (one spike each)
    xg = x.clone().requires_grad_()
    d = spike_delay(xg, torch.isfinite(xg).sum(-1), delay.detach())
    out = lif_linear(d.times, w, tau_s=0.01, theta=0.2, max_spikes=6, **kw)
    torch.where(torch.isfinite(out.times), out.times, 0.0).sum().backward()
    assert torch.allclose(xg.grad.sum((0, 2)), grad) and bool((grad != 0).any())
    if dt is not None:
        return
    h = 1e-7
    fd = torch.zeros(6, dtype=torch.float64)
    for c in range(6):
        e = torch.zeros(6, dtype=torch.float64)
        e[c] = h
        fd[c] = (_net_loss(delay.detach() + e, x, w) - _net_loss(delay.detach() - e, x, w)) / (
            2 * h)
    assert torch.allclose(grad, fd, rtol=1e-5, atol=1e-7), (grad, fd)


def test_silent_channels_and_padding_get_no_gradient():
    t = torch.tensor([[[0.001, INF], [INF, INF]]], dtype=torch.float64)
    delay = torch.tensor([0.002, 0.003], dtype=torch.float64, requires_grad=True)
    out = spike_delay(t, torch.isfinite(t).sum(-1), delay)
    # an upstream gradient of 1 at every entry, padding included: only spikes pass it on
    (grad,) = torch.autograd.grad(out.times, delay, torch.ones_like(out.times))
    assert grad.tolist() == [1.0, 0.0]
    assert out.times[0, 0].tolist() == [0.003, INF] and out.times[0, 1].tolist() == [INF, INF]


def test_delays_equal_shifted_inputs_in_a_network():
    """A SpikeDelay in front of a LIF layer gives what the layer gives on the shifted
    inputs; forward_all leaves the delay's trains out."""
    torch.manual_seed(0)
    layer = LIFLinear(5, 3, tau_s=0.01, theta=0.1, max_spikes=3, dtype=torch.float64)
    delay = SpikeDelay(5, init=(0.0, 0.004), dtype=torch.float64)
    net = SpikingSequential(delay, layer)
    x = batsnn.ttfs_encode(torch.rand(4, 5, dtype=torch.float64), t_window=0.01,
                           dtype=torch.float64)
    shifted = torch.where(torch.isfinite(x), x + delay.delay.detach()[None, :, None], x)
    want = layer(shifted)
    got = net(x)
    assert torch.equal(got.times, want.times) and torch.equal(got.counts, want.counts)
    assert len(net.forward_all(x)) == 1


def test_the_module_clamps_to_its_bounds():
    d = SpikeDelay(3, max_delay=0.002, dtype=torch.float64)
    assert d.delay.tolist() == [0.0, 0.0, 0.0]  # starts as the identity
    with torch.no_grad():
        d.delay.copy_(torch.tensor([-0.001, 0.001, 0.005]))
    t = torch.tensor([[[0.01], [0.01], [0.01]]], dtype=torch.float64)
    out = d(t)
    assert out.times.flatten().tolist() == pytest.approx([0.01, 0.011, 0.012])
    out.times.sum().backward()
    assert d.delay.grad.tolist() == [0.0, 1.0, 0.0]  # outside the bounds: no gradient


def test_bad_input_is_refused_naming_it():
    t = torch.tensor([[[0.001], [0.002]]])
    c = torch.isfinite(t).sum(-1)
    cases = [
        (lambda: spike_delay(t, c, torch.tensor([0.0, -1e-3])), ValueError,
         r"delay\[1\] = -0.001"),
        (lambda: spike_delay(t, c, torch.tensor([math.nan, 0.0])), ValueError, r"delay\[0\]"),
        (lambda: spike_delay(t, c, torch.tensor([0.0, INF])), ValueError, r"delay\[1\] = inf"),
        (lambda: spike_delay(t, c, torch.tensor([0.0])), ValueError, r"shape \(C,\) = \(2,\)"),
        (lambda: spike_delay(t, c, torch.tensor([0.0, 0.0], dtype=torch.float64)), TypeError,
         "delay dtype"),
        (lambda: spike_delay(t, c, [0.0, 0.0]), TypeError, "delay must be a torch.Tensor"),
        (lambda: spike_delay(t[0], c[0], torch.tensor([0.0])), ValueError, "at least 3 axes"),
        (lambda: spike_delay(torch.tensor([[[0.002], [0.001]]]).flip(-1).expand(1, 2, 2)
                             * torch.tensor([1.0, 0.5]), torch.full((1, 2), 2),
                             torch.tensor([0.0, 0.0])), ValueError, "must be ascending"),
        (lambda: spike_delay(t, torch.tensor([[1, 2]]), torch.tensor([0.0, 0.0])), ValueError,
         r"counts disagree with times: counts\[0, 1\] = 2"),
        (lambda: SpikeDelay(3)(t), ValueError, r"SpikeDelay\(3\) takes spike trains \(B, 3"),
        (lambda: SpikeDelay(0), ValueError, "channels"),
        (lambda: SpikeDelay(2, max_delay=0), ValueError, "max_delay"),
        (lambda: SpikeDelay(2, max_delay=math.nan), ValueError, "max_delay"),
        (lambda: SpikeDelay(2, init=(-0.1, 0.0)), ValueError, "init must lie in"),
        (lambda: SpikeDelay(2, init=(0.0, 2.0), max_delay=1.0), ValueError, "init must lie in"),
        (lambda: SpikeDelay(2, dtype=torch.float16), TypeError, "dtype"),
    ]
    for fn, exc, match in cases:
        with pytest.raises(exc, match=match):
            fn()


@pytest.mark.cuda
def test_cuda_equals_cpu():
    g = torch.Generator().manual_seed(2)
    t = torch.rand(3, 4, 6, generator=g).sort(-1).values
    t[t > 0.7] = INF
    delay = torch.rand(4, generator=g) * 0.01
    cpu = spike_delay(t, torch.isfinite(t).sum(-1), delay)
    tc = t.cuda()
    gpu = spike_delay(tc, torch.isfinite(tc).sum(-1), delay.cuda())
    assert torch.equal(gpu.times.cpu(), cpu.times)


def test_a_delay_layer_last_in_a_network_is_its_output():
    net = SpikingSequential(LIFLinear(3, 2, tau_s=0.01, theta=0.01, max_spikes=3,
                                      init=(2.0, 3.0)),
                            SpikeDelay(2, init=(0.01, 0.01)))
    x = torch.tensor([[[0.001], [0.002], [0.003]]])
    outs = net.forward_all(x)
    assert len(outs) == 2 and torch.equal(outs[-1].times, net(x).times)
    assert bool(torch.isfinite(outs[-1].times).any())
