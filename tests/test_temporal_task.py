"""A task only timing can solve: two input channels A and B each fire once, 30 ms apart;
class 0 is "A then B", class 1 "B then A", at a random onset. With tau_s = 2 ms the two
responses of a feed-forward network are 15 tau_s apart and, as long as no spike buffer fills
up, add without interacting: the spike counts of "A then B" and "B then A" are the same, so
no feed-forward network of any weights can tell the classes by counts. Learnable axonal
delays (``SpikeDelay``) let a hidden neuron see one channel's spike together with the
other's, which only one of the two orders brings about."""

import torch

from batsnn.losses import count_predict, spike_count_class_loss
from batsnn.nn import LIFLinear, SpikeDelay, SpikingSequential

TAU_S = 0.002
GAP = 0.03
COPIES = 16  # each channel fed through 16 delay lines


def order_task(n: int, seed: int):
    """``(times (n, 2 * COPIES, 1), labels (n,))``: A and B once each, onset in [5, 15] ms."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    first = 0.005 + 0.01 * torch.rand(n, generator=g, dtype=torch.float64)
    t_a = torch.where(y == 0, first, first + GAP)
    t_b = torch.where(y == 0, first + GAP, first)
    return torch.stack([t_a, t_b], 1).repeat_interleave(COPIES, 1).unsqueeze(-1), y


def network(delays: bool, seed: int) -> SpikingSequential:
    """32 inputs -> 16 -> 2 (spike buffers of 64 and 8, never full on this task), with a
    SpikeDelay in front when ``delays``."""
    torch.manual_seed(seed)
    kw = dict(tau_s=TAU_S, t_max=0.1, dtype=torch.float64)
    layers = [LIFLinear(2 * COPIES, 16, theta=0.001, max_spikes=64, init=(-0.2, 0.6), **kw),
              LIFLinear(16, 2, theta=0.002, max_spikes=8, init=(0.0, 1.0), **kw)]
    if delays:
        layers.insert(0, SpikeDelay(2 * COPIES, init=(0.0, 0.04), max_delay=0.05,
                                    dtype=torch.float64))
    return SpikingSequential(*layers)


def train(net: SpikingSequential, x, y, epochs: int = 60):
    """Adam on the count loss (4 / 1 spikes); the delays (seconds) at a step of 0.5 ms."""
    delay_params = [p for n, p in net.named_parameters() if "delay" in n]
    other = [p for n, p in net.named_parameters() if "delay" not in n]
    opt = torch.optim.Adam([{"params": other}, {"params": delay_params, "lr": 5e-4}], lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 32):
            idx = perm[i:i + 32]
            out = net(x[idx])
            loss = spike_count_class_loss(out.times, out.counts, y[idx], target_true=4,
                                          target_false=1)
            opt.zero_grad()
            loss.backward()
            opt.step()


def _evaluate(net, x, y):
    with torch.no_grad():
        outs = net.forward_all(x)
    acc = (count_predict(outs[-1].counts) == y).double().mean().item()
    full = max((o.counts == o.times.shape[-1]).double().mean().item() for o in outs)
    return acc, outs, full


def test_a_feed_forward_network_cannot_tell_the_order():
    x, y = order_task(256, 0)
    xt, yt = order_task(256, 1)
    net = network(False, 0)
    train(net, x, y)
    acc, outs, full = _evaluate(net, xt, yt)
    assert full == 0.0  # no buffer filled: the responses add
    assert all(o.counts.double().mean() > 0.5 for o in outs)  # it spikes
    # the mirrored input (the same onsets, the other order) gives the very same counts
    swapped = torch.cat([xt[:, COPIES:], xt[:, :COPIES]], 1)
    with torch.no_grad():
        mirror = net.forward_all(swapped)
    for o, m in zip(outs, mirror):
        assert torch.equal(o.counts, m.counts)
    assert acc <= 0.6, acc


def test_learnable_delays_solve_it():
    x, y = order_task(256, 0)
    xt, yt = order_task(256, 1)
    for seed in (0, 1):
        net = network(True, seed)
        train(net, x, y)
        acc, outs, full = _evaluate(net, xt, yt)
        assert full == 0.0
        assert acc >= 0.95, (seed, acc)
