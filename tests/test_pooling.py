"""spike_pool2d and the spike-train modules (LIFConv2d, SpikePool2d, Flatten) in a network."""

import math

import pytest
import torch

import batsnn
from batsnn.nn import Flatten, LIFConv2d, LIFLinear, SpikePool2d, SpikingSequential
from batsnn.ops.lif.naive import spike_pool2d_naive
from tests.helpers import random_times


def _trains(gen, shape, slots=3, dtype=torch.float64, ties=False):
    b, c, h, w = shape
    t = random_times(b, c * h * w, slots, gen=gen, p=0.6).reshape(b, c, h, w, slots)
    if ties:
        t = torch.round(t * 50) / 50  # many equal times
    return t.to(dtype), torch.isfinite(t).sum(-1)


@pytest.mark.parametrize("shape, k", [((2, 3, 4, 6), 2), ((2, 2, 5, 7), 2), ((1, 2, 7, 6), 3),
                                      ((2, 1, 3, 3), 1)],
                         ids=["even", "odd", "k3", "k1"])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_pool_is_the_time_ordered_union(shape, k, ties, seed):
    t, c = _trains(seed, shape, ties=ties)
    out = batsnn.spike_pool2d(t, c, k)
    ref_t, ref_c, _ = spike_pool2d_naive(t, k)
    b, ch, h, w = shape
    assert out.times.shape == (b, ch, h // k, w // k, k * k * 3)
    assert torch.equal(out.times, ref_t) and torch.equal(out.counts, ref_c)
    # nothing dropped inside the windows: the count is the sum of the window's counts
    kept = c[:, :, :h // k * k, :w // k * k]
    assert int(out.counts.sum()) == int(kept.sum()) > 0
    assert torch.equal(torch.isfinite(out.times).sum(-1), out.counts)


def test_odd_maps_drop_the_last_row_and_column(seed):
    t, c = _trains(seed, (1, 1, 5, 5), slots=1)
    t[0, 0, 4, :, 0] = 0.01  # the last row and column spike; they are not pooled
    t[0, 0, :, 4, 0] = 0.01
    c = torch.isfinite(t).sum(-1)
    out = batsnn.spike_pool2d(t, c, 2)
    assert out.times.shape == (1, 1, 2, 2, 4)
    assert int(out.counts.sum()) == int(c[0, 0, :4, :4].sum())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_each_pooled_spike_sends_its_gradient_to_its_source(dtype, seed):
    t, c = _trains(seed, (2, 2, 5, 4), dtype=dtype, ties=True)
    x = t.clone().requires_grad_(True)
    out = batsnn.spike_pool2d(x, c, 2)
    g = torch.randn(out.times.shape, generator=seed, dtype=torch.float64).to(dtype)
    (gx,) = torch.autograd.grad(out.times, x, g * torch.isfinite(out.times))
    _, _, src = spike_pool2d_naive(t, 2)
    want = torch.zeros(t.numel(), dtype=dtype)
    fin = src >= 0
    want[src[fin]] = g[fin]
    assert torch.equal(gx.reshape(-1), want)
    assert int(fin.sum()) > 10 and (gx[:, :, 4] == 0).all()  # the dropped row gets nothing


def test_bad_pool_arguments():
    t = torch.full((1, 1, 4, 4, 2), math.inf)
    c = torch.zeros(1, 1, 4, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"kernel_size must be an int in \[1, min\(H, W\) = 4\]"):
        batsnn.spike_pool2d(t, c, 5)
    with pytest.raises(ValueError, match=r"counts must have shape \(1, 1, 4, 4\)"):
        batsnn.spike_pool2d(t, c[0], 2)
    with pytest.raises(TypeError, match="counts must be an integer tensor"):
        batsnn.spike_pool2d(t, c.double(), 2)
    with pytest.raises(ValueError, match=r"times must have shape \(batch, channels"):
        batsnn.spike_pool2d(t[0], c[0], 2)
    bad = t.clone()
    bad[0, 0, 1, 2, 0] = math.nan
    with pytest.raises(ValueError, match=r"times contains NaN \(first at times\[0, 0, 1, 2, 0\]"):
        batsnn.spike_pool2d(bad, c, 2)


def _conv_net(dtype=torch.float64):
    torch.manual_seed(0)
    return SpikingSequential(
        LIFConv2d(1, 4, 3, tau_s=0.05, theta=0.02, max_spikes=2, dtype=dtype),
        SpikePool2d(2),
        LIFConv2d(4, 5, 2, padding=1, tau_s=0.05, theta=0.05, max_spikes=3, dtype=dtype),
        SpikePool2d(2),
        Flatten(),
        LIFLinear(5 * 2 * 2, 3, tau_s=0.05, theta=0.05, max_spikes=4, dtype=dtype))


def test_modules_compose_and_train(seed):
    net = _conv_net()
    x = batsnn.ttfs_encode(torch.rand(4, 100, generator=seed), dtype=torch.float64)
    x = x.reshape(4, 1, 10, 10, 1)
    outs = net.forward_all(x)
    shapes = [tuple(o.times.shape) for o in outs]
    # Flatten only reshapes: forward_all leaves it out
    assert shapes == [(4, 4, 8, 8, 2), (4, 4, 4, 4, 8), (4, 5, 5, 5, 3), (4, 5, 2, 2, 12),
                      (4, 3, 4)]
    assert all(int(o.counts.sum()) > 0 for o in outs)
    out = net(x)
    assert torch.equal(out.times, outs[-1].times)
    loss = batsnn.losses.spike_count_class_loss(out.times, out.counts, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    conv = net[0]
    assert conv.params == batsnn.LIFParams(tau_s=0.05, theta=0.02, max_spikes=2)
    w = conv.weight.detach()
    assert w.shape == (4, 1, 3, 3) and -1 <= float(w.min()) and float(w.max()) <= 1
    assert conv.init == (-1.0, 1.0)
    assert "kernel_size=(3, 3)" in repr(conv) and "kernel_size=2" in repr(net[1])


def test_flatten_keeps_the_trains(seed):
    t, c = _trains(seed, (2, 3, 2, 2))
    out = Flatten()(batsnn.SpikeTrains(t, c))
    assert out.times.shape == (2, 12, 3) and out.counts.shape == (2, 12)
    assert torch.equal(out.times, t.reshape(2, 12, 3)) and torch.equal(out.counts, c.reshape(2, 12))
    # a bare tensor gets its counts from its finite entries
    assert torch.equal(Flatten()(t).counts, c.reshape(2, 12))


def test_module_arguments_are_checked():
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        LIFConv2d(0, 3, 3, tau_s=0.1, theta=1.0, max_spikes=1)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        LIFConv2d(1, 3, 0, tau_s=0.1, theta=1.0, max_spikes=1)
    with pytest.raises(ValueError, match="theta"):
        LIFConv2d(1, 3, 3, tau_s=0.1, theta=-1.0, max_spikes=1)
    with pytest.raises(ValueError, match="kernel_size must be an int >= 1"):
        SpikePool2d(0)
    with pytest.raises(TypeError, match="expected spike times"):
        Flatten()([1.0])


def test_the_backend_chooses_its_pooling_kernel(monkeypatch, seed):
    """spike_pool2d asks the device's backend for its own kernel (``pool``) and runs the
    torch ops where the backend has none, returns None, or cannot load (no Triton)."""
    import types

    from batsnn.ops import lif

    t, c = _trains(seed, (2, 2, 4, 4))
    expect = batsnn.spike_pool2d(t, c, 2)
    seen = []

    def own_pool(times, k):
        seen.append(k)
        return torch.zeros(2, 2, 2, 2, 4 * 3, dtype=times.dtype)

    monkeypatch.setattr(lif, "backend_for", lambda dev: types.SimpleNamespace(pool=own_pool))
    assert batsnn.spike_pool2d(t, c, 2).times.abs().sum() == 0 and seen == [2]
    monkeypatch.setattr(lif, "backend_for",
                        lambda dev: types.SimpleNamespace(pool=lambda times, k: None))
    assert torch.equal(batsnn.spike_pool2d(t, c, 2).times, expect.times)
    monkeypatch.setattr(lif, "backend_for", lambda dev: types.SimpleNamespace())
    assert torch.equal(batsnn.spike_pool2d(t, c, 2).times, expect.times)

    def no_triton(dev):
        raise RuntimeError("batsnn's GPU kernels need Triton")

    monkeypatch.setattr(lif, "backend_for", no_triton)
    assert torch.equal(batsnn.spike_pool2d(t, c, 2).times, expect.times)


def test_pool_counts_must_match_the_times(seed):
    t, c = _trains(seed, (1, 2, 4, 4))
    c2 = c.clone()
    c2[0, 1, 2, 3] += 1
    with pytest.raises(ValueError, match=r"counts disagree with times: counts\[0, 1, 2, 3\]"):
        batsnn.spike_pool2d(t, c2, 2)
    assert torch.equal(batsnn.spike_pool2d(t, c.int(), 2).counts,
                       batsnn.spike_pool2d(t, c, 2).counts)  # any integer dtype


def test_the_gpu_backend_pools_float32_only():
    """The GPU backend's pool entry leaves float64 trains to the torch ops (its kernel is
    float32); importing it needs Triton, not a GPU."""
    pytest.importorskip("triton")
    from batsnn.ops.lif import cuda

    assert cuda.pool(torch.full((1, 1, 2, 2, 1), math.inf, dtype=torch.float64), 2) is None


def test_the_gpu_backends_pool_entry_survives_its_kernel_module_import():
    """Importing the pooling kernel's module must not replace the backend's ``pool`` entry
    (a submodule of the same name would become the package's attribute ``pool``)."""
    pytest.importorskip("triton")
    import importlib

    from batsnn.ops.lif import cuda

    importlib.import_module("batsnn.ops.lif.cuda.pooling")
    assert callable(cuda.pool) and not isinstance(cuda.pool, type(cuda))
    assert cuda.pool(torch.full((1, 1, 2, 2, 1), math.inf, dtype=torch.float64), 2) is None
