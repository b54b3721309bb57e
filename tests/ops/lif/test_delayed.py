"""Per-synapse delays (``lif_linear(..., delay=)``) on the CPU: the numba rows against the
plain per-neuron reference (:func:`batsnn.ops.lif.naive.lif_linear_delayed_forward_naive`),
zero delays against the plain layer, channel-wide delays against ``spike_delay``, and the
gradients against float64 central differences."""

import math

import pytest
import torch

from batsnn.functional import lif_linear, spike_delay
from batsnn.ops.lif.naive import (lif_linear_delayed_backward_naive,
                                  lif_linear_delayed_forward_naive)
from tests.helpers import random_times

F64 = torch.float64
KW = dict(tau_s=0.01, theta=0.3, max_spikes=5)


def _layer(seed, batch=3, n_in=6, n_out=4, slots=3, d_max=0.01, w_scale=20.0):
    g = torch.Generator().manual_seed(seed)
    x = random_times(batch, n_in, slots, t_max=0.03, gen=g)
    w = torch.rand(n_out, n_in, generator=g, dtype=F64) * w_scale - 0.2 * w_scale
    d = torch.rand(n_out, n_in, generator=g, dtype=F64) * d_max
    return x, w, d


def _loss(out, c):
    """sum_k c_k t_k over the emitted spikes."""
    return torch.where(torch.isfinite(out.times), out.times * c, 0.0).sum()


def _grads(x, w, d, c, **kw):
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    args = {} if d is None else {"delay": d.clone().requires_grad_()}
    out = lif_linear(x, w, **kw, **args)
    _loss(out, c).backward()
    return out, x.grad, w.grad, (args["delay"].grad if args else None)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("dt", [None, 2e-3])
def test_zero_delays_equal_the_plain_layer(seed, dt):
    x, w, _ = _layer(seed)
    c = torch.rand(3, 4, KW["max_spikes"], dtype=F64)
    kw = dict(KW, dt=dt)
    plain, gx, gw, _ = _grads(x, w, None, c, **kw)
    out, dx, dw, dd = _grads(x, w, torch.zeros(4, 6, dtype=F64), c, **kw)
    assert int(plain.counts.sum()) > 0
    assert torch.equal(out.times, plain.times) and torch.equal(out.counts, plain.counts)
    # the weight gradient's parallel parts are summed in another order with several threads
    torch.testing.assert_close(dw, gw, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(dx, gx, rtol=1e-13, atol=1e-13)
    # the delay's gradient is that of the input times, per synapse
    torch.testing.assert_close(dd.sum(0), gx.sum((0, 2)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 3])
def test_a_delay_per_input_channel_equals_spike_delay(seed):
    x, w, d = _layer(seed)
    per_channel = d[0]
    shifted = spike_delay(x, torch.isfinite(x).sum(-1), per_channel)
    want = lif_linear(shifted.times, w, **KW)
    got = lif_linear(x, w, **KW, delay=per_channel.expand(4, 6).contiguous())
    assert int(want.counts.sum()) > 0
    assert torch.equal(got.times, want.times) and torch.equal(got.counts, want.counts)


CASES = [(None, "crossing"), (2e-3, "crossing"), (2e-3, "emitted"), (5e-4, "emitted")]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dt,reset_at", CASES)
def test_rows_match_the_reference_spike_for_spike(seed, dt, reset_at):
    x, w, d = _layer(seed, batch=2, n_in=5, n_out=3)
    kw = dict(KW, dt=dt, reset_at=reset_at, delta_theta=0.2)
    c = torch.rand(2, 3, KW["max_spikes"], generator=torch.Generator().manual_seed(seed),
                   dtype=F64)
    out, gx, gw, gd = _grads(x, w, d, c, **kw)
    want_t, want_c, rec = lif_linear_delayed_forward_naive(x, w, d, t_max=math.inf, **kw)
    assert int(want_c.sum()) > 0
    assert torch.equal(out.counts, want_c)
    torch.testing.assert_close(out.times, want_t, rtol=0, atol=1e-12)
    grad_t = torch.where(torch.isfinite(out.times), c, 0.0)
    rx, rw, rd = lif_linear_delayed_backward_naive(grad_t, x, w, d, rec, tau_s=KW["tau_s"],
                                                   delta_theta=0.2)
    torch.testing.assert_close(gx, rx, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(gw, rw, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(gd, rd, rtol=1e-8, atol=1e-9)
    assert bool((gd != 0).any())


def test_gradients_match_central_differences():
    """Exact time, float64: dL/d delay, weight and input times against central differences
    on a layer where no spike is near appearing or vanishing (the counts stay fixed)."""
    x, w, d = _layer(5, batch=2, n_in=5, n_out=3, slots=2, w_scale=40.0)
    c = torch.rand(2, 3, KW["max_spikes"], generator=torch.Generator().manual_seed(9),
                   dtype=F64)
    out, gx, gw, gd = _grads(x, w, d, c, **KW)
    assert int(out.counts.sum()) > 2

    def loss(xv, wv, dv):
        o = lif_linear(xv, wv, **KW, delay=dv)
        assert torch.equal(o.counts, out.counts)  # no spike appeared or vanished
        return _loss(o, c).item()

    h = 1e-7
    for name, base, grad in (("delay", d, gd), ("weight", w, gw), ("input", x, gx)):
        fd = torch.zeros_like(base)
        flat, fdf = base.reshape(-1), fd.reshape(-1)
        for k in range(flat.numel()):
            if not math.isfinite(flat[k].item()):
                continue
            args = {"delay": d, "weight": w, "input": x}
            plus, minus = flat.clone(), flat.clone()
            plus[k] += h
            minus[k] -= h
            args[name] = plus.reshape(base.shape)
            lp = loss(args["input"], args["weight"], args["delay"])
            args[name] = minus.reshape(base.shape)
            lm = loss(args["input"], args["weight"], args["delay"])
            fdf[k] = (lp - lm) / (2 * h)
        torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-7, msg=name)
        assert bool((grad != 0).any()), name


def test_float32_rows_match_float64_counts():
    x, w, d = _layer(7)
    out64 = lif_linear(x, w, **KW, delay=d)
    out32 = lif_linear(x.float(), w.float(), **KW, delay=d.float())
    assert out32.times.dtype == torch.float32
    assert torch.equal(out32.counts, out64.counts)
    torch.testing.assert_close(out32.times.double(), out64.times, rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", [(0, 3, 2), (2, 3, 2), (2, 0, 2)])
def test_empty_batch_silent_input_and_no_inputs(shape):
    """No samples, inputs that never spike, no input neurons: what the plain layer gives."""
    x = torch.full(shape, math.inf, dtype=F64)
    w = torch.ones(4, shape[1], dtype=F64)
    out = lif_linear(x, w, **KW, delay=torch.full((4, shape[1]), 1e-3, dtype=F64))
    plain = lif_linear(x, w, **KW)
    assert torch.equal(out.times, plain.times) and torch.equal(out.counts, plain.counts)
    assert out.times.shape == (shape[0], 4, KW["max_spikes"])


def test_t_max_cuts_delayed_spikes():
    """A horizon between the undelayed and the delayed spikes: the delays move spikes past
    it, as the reference says."""
    x, w, d = _layer(2)
    kw = dict(KW, t_max=0.03, delta_theta=0.3)
    out = lif_linear(x, w, **kw, delay=d)
    want_t, want_c, _ = lif_linear_delayed_forward_naive(x, w, d, **kw)
    assert torch.equal(out.counts, want_c)
    torch.testing.assert_close(out.times, want_t, rtol=0, atol=1e-12)
    n_all = int(lif_linear(x, w, **KW, delay=d).counts.sum())
    assert 0 < int(out.counts.sum()) < n_all, (int(out.counts.sum()), n_all)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_tensors_with_delays_are_refused():
    x, w, d = (v.cuda() for v in _layer(0))
    with pytest.raises(ValueError, match="per-synapse delays run on the CPU only"):
        lif_linear(x, w, **KW, delay=d)
