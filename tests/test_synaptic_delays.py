"""LIFLinear with learnable per-synapse delays (``delays=True``): the parameter, its bounds,
that it trains, and a temporal task that per-synapse delays solve and one delay per input
channel cannot."""

import math

import pytest
import torch

from batsnn.functional import lif_linear
from batsnn.nn import LIFLinear

F64 = torch.float64
INF = math.inf
KW = dict(tau_s=0.005, theta=0.3, max_spikes=4)


def _x(seed, batch=6, n_in=5):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, n_in, 1, generator=g, dtype=F64) * 0.01)


def test_default_delays_are_zero_and_give_the_plain_layer():
    torch.manual_seed(0)
    layer = LIFLinear(5, 3, **KW, init=(10.0, 80.0), delays=True, dtype=F64)
    assert layer.delay.shape == (3, 5) and bool((layer.delay == 0).all())
    assert list(layer.state_dict()) == ["weight", "delay"]
    assert "delays=True" in repr(layer) and "max_delay=inf" in repr(layer)
    x = _x(1)
    out = layer(x)
    plain = lif_linear(x, layer.weight, params=layer.params)
    assert int(plain.counts.sum()) > 0
    assert torch.equal(out.times, plain.times) and torch.equal(out.counts, plain.counts)


def test_without_delays_the_layer_has_no_delay_parameter():
    layer = LIFLinear(5, 3, **KW, dtype=F64)
    assert layer.delay is None and list(layer.state_dict()) == ["weight"]
    assert "delay" not in repr(layer)


def test_delays_drawn_from_delay_init_and_restored_from_a_state_dict():
    torch.manual_seed(0)
    a = LIFLinear(5, 3, **KW, delays=True, delay_init=(0.001, 0.004), max_delay=0.01,
                  dtype=F64)
    assert bool(((a.delay >= 0.001) & (a.delay <= 0.004)).all())
    assert a.delay.std() > 0
    b = LIFLinear(5, 3, **KW, delays=True, dtype=F64)
    b.load_state_dict(a.state_dict())
    x = _x(2)
    assert torch.equal(a(x).times, b(x).times)


def test_delays_are_used_clamped_to_their_bounds():
    torch.manual_seed(0)
    layer = LIFLinear(5, 3, **KW, init=(10.0, 80.0), delays=True, max_delay=0.002,
                      dtype=F64)
    with torch.no_grad():
        layer.delay.copy_(torch.tensor([-0.01, 0.0005, 0.5, 0.001, 0.0], dtype=F64).expand(3, 5))
    x = _x(3)
    out = layer(x)
    clamped = torch.tensor([0.0, 0.0005, 0.002, 0.001, 0.0], dtype=F64).expand(3, 5)
    want = lif_linear(x, layer.weight, params=layer.params, delay=clamped.contiguous())
    assert int(want.counts.sum()) > 0
    assert torch.equal(out.times, want.times)
    torch.where(torch.isfinite(out.times), out.times, 0.0).sum().backward()
    # outside the bounds no gradient; inside, some
    assert bool((layer.delay.grad[:, [0, 2]] == 0).all())
    assert bool((layer.delay.grad[:, [1, 3]] != 0).any())


def test_adam_steps_lower_a_spike_time_loss_and_move_the_delays():
    torch.manual_seed(0)
    layer = LIFLinear(5, 3, **KW, init=(40.0, 80.0), delays=True, delay_init=(0.0, 0.004),
                      dtype=F64)
    x = _x(4, batch=8)
    target = torch.full((8, 3), 0.012, dtype=F64)
    start = layer.delay.detach().clone()
    opt = torch.optim.Adam(layer.parameters(), lr=1e-3)

    def loss_fn():
        out = layer(x)
        first = out.times[..., 0]
        fired = torch.isfinite(first)
        assert bool(fired.all())  # every neuron fires: the loss sees each
        return ((first - target) ** 2).mean()

    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        assert layer.delay.grad is not None and bool((layer.delay.grad != 0).any())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert float((layer.delay.detach() - start).abs().max()) > 1e-4


def _order_task():
    """Two inputs 10 ms apart, in either order: class 0 is (input 0 first), class 1 the
    reverse."""
    x = torch.tensor([[[0.0], [0.01]], [[0.01], [0.0]]], dtype=F64)
    labels = torch.tensor([0, 1])
    return x, labels


def test_per_synapse_delays_solve_the_order_of_two_spikes():
    """Coincidence neurons (one input alone stays below threshold, tau_s = 1 ms). Neuron 0
    delays input 0 by 10 ms, neuron 1 delays input 1: each sees its two inputs
    coincide in its own class only and fires there alone. With one delay per input channel
    (shared by both neurons) both neurons see the same two arrival times, so they fire for
    the same class: no channel delay separates the two classes this way."""
    x, labels = _order_task()
    w = torch.full((2, 2), 600.0, dtype=F64)  # one input peaks at 0.3, two together at 0.6
    kw = dict(tau_s=0.001, theta=0.5, max_spikes=1)
    d = torch.tensor([[0.01, 0.0], [0.0, 0.01]], dtype=F64)
    out = lif_linear(x, w, **kw, delay=d)
    assert out.counts.tolist() == [[1, 0], [0, 1]]
    assert torch.equal(out.counts.argmax(1), labels)
    plain = lif_linear(x, w, **kw)
    assert plain.counts.sum() == 0  # 10 ms apart the inputs never add up to a spike
    for shift in (-0.01, -0.005, 0.0, 0.005, 0.01):  # one delay per input channel: the rows are equal
        shared = torch.tensor([max(0.0, -shift), max(0.0, shift)], dtype=F64).expand(2, 2)
        c = lif_linear(x, w, **kw, delay=shared.contiguous()).counts
        assert torch.equal(c[:, 0], c[:, 1])


def test_a_layer_learns_the_order_task_from_equal_delays():
    """Neurons that fire on one input (tau_s = 1 ms), delays drawn near 2.5 ms: a few Adam
    steps on the delays alone with a first-spike-time loss afterwards have each class fire
    its own neuron first."""
    x, labels = _order_task()
    torch.manual_seed(0)
    layer = LIFLinear(2, 2, tau_s=0.001, theta=0.5, max_spikes=1, init=(1100.0, 1100.0),
                      delays=True, delay_init=(0.0024, 0.0026), max_delay=0.01, dtype=F64)
    opt = torch.optim.Adam([layer.delay], lr=2e-4)
    assert not torch.equal(layer(x).times[..., 0].argmin(1), labels)  # not solved at the start
    for _ in range(40):
        opt.zero_grad()
        t = layer(x).times[..., 0]
        t = torch.where(torch.isfinite(t), t, torch.full_like(t, 0.03))
        # the labelled neuron early, the other late (cross-entropy on -t / 1 ms)
        loss = torch.nn.functional.cross_entropy(-t / 1e-3, labels)
        loss.backward()
        opt.step()
    t = layer(x).times[..., 0]
    assert torch.equal(t.argmin(1), labels), t
