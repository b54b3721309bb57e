"""lif_conv2d: gradients against finite differences, the dense layer it is defined as, the
receptive-field event lists, and its errors (the parity cases are in ``parity.py``)."""

import math

import pytest
import torch

import batsnn
from batsnn.ops.lif import cpu
from batsnn.ops.lif.naive import (fold_conv_weight_grad, lif_conv2d_forward_naive,
                                  unroll_conv_weight)
from batsnn.ops.lif.synapse import Conv2d
from tests.helpers import assert_close, random_times

KW = dict(tau_s=0.05, theta=0.3, max_spikes=6)


def _finite(times):
    return torch.where(torch.isfinite(times), times, torch.zeros_like(times))


def _maps(gen, batch=2, c=2, h=4, w=4, slots=2, p=0.8, dt=None):
    x = random_times(batch, c * h * w, slots, gen=gen, p=p).reshape(batch, c, h, w, slots)
    return batsnn.discretize(x, dt) if dt else x


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1)], ids=["s1p0", "s2p1"])
def test_gradcheck_weight_and_input_times(stride, padding, seed):
    """Finite differences in float64 on a tiny case away from spike appearance: several
    spikes per neuron."""
    x = _maps(seed, h=4, w=4)
    w = torch.rand(2, 2, 3, 3, generator=seed, dtype=torch.float64) * 5.0 - 0.5
    kw = dict(stride=stride, padding=padding, **KW)
    out = batsnn.lif_conv2d(x, w, **kw)
    assert out.counts.max() >= 3 and (out.counts >= 2).sum() >= 4, out.counts
    x.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: _finite(batsnn.lif_conv2d(a, b, **kw).times),
                                    (x, w), eps=1e-7, atol=1e-6, rtol=1e-5)


def test_gradcheck_with_dt_is_straight_through(seed):
    """With dt > 0 the gradient is that of the continuous crossings (model.md section 6):
    the same as the dense layer of the unrolled weight."""
    dt = 1e-3
    x = _maps(seed, dt=dt)
    w = torch.rand(3, 2, 3, 3, generator=seed, dtype=torch.float64) * 5.0 - 0.5
    syn = Conv2d((2, 4, 4), (3, 3))
    xr, wr = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    out = batsnn.lif_conv2d(xr, wr, dt=dt, **KW)
    g = torch.randn(out.times.shape, dtype=torch.float64, generator=seed)
    g = torch.where(torch.isfinite(out.times), g, 0)
    gx, gw = torch.autograd.grad(out.times, (xr, wr), g)
    xd = x.reshape(2, 32, 2).clone().requires_grad_(True)
    wd = unroll_conv_weight(w, syn).requires_grad_(True)
    ref = batsnn.lif_linear(xd, wd, dt=dt, **KW)
    assert torch.equal(ref.counts, out.counts.reshape(2, -1)) and out.counts.max() >= 3
    rx, rw = torch.autograd.grad(ref.times, (xd, wd), g.reshape(ref.times.shape))
    assert_close("grad input_times", rx, gx.reshape(rx.shape), atol=1e-10, rtol=1e-9)
    assert_close("grad weight", fold_conv_weight_grad(rw, syn, 3), gw, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("dt", [None, 2e-3], ids=["exact", "dt2ms"])
def test_whole_input_kernel_is_a_dense_layer(dt, dtype, seed):
    """A kernel as large as the input: one position per channel, every input in its field,
    in the dense layer's order: the same spikes and gradients as lif_linear with the
    reshaped weight."""
    x = _maps(seed, batch=3, c=3, h=4, w=5, dt=dt).to(dtype)
    w = (torch.rand(7, 3, 4, 5, generator=seed, dtype=torch.float64) * 2.0 - 0.4).to(dtype)
    xc, wc = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    conv = batsnn.lif_conv2d(xc, wc, dt=dt, **KW)
    xd = x.reshape(3, 60, 2).clone().requires_grad_(True)
    wd = w.reshape(7, 60).clone().requires_grad_(True)
    dense = batsnn.lif_linear(xd, wd, dt=dt, **KW)
    assert conv.times.shape == (3, 7, 1, 1, 6)
    assert torch.equal(conv.times.reshape(3, 7, 6), dense.times)
    assert torch.equal(conv.counts.reshape(3, 7), dense.counts) and dense.counts.sum() > 20
    g = torch.randn(3, 7, 6, generator=seed, dtype=torch.float64).to(dtype)
    g = g * torch.isfinite(dense.times)
    gx, gw = torch.autograd.grad(conv.times, (xc, wc), g.reshape(conv.times.shape))
    rx, rw = torch.autograd.grad(dense.times, (xd, wd), g)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert_close("grad input_times", rx, gx.reshape(rx.shape), atol=tol, rtol=tol)
    assert_close("grad weight", rw, gw.reshape(rw.shape), atol=tol, rtol=tol)


@pytest.mark.parametrize("dt", [0.0, 4e-3], ids=["exact", "dt4ms"])
@pytest.mark.parametrize("t_max", [math.inf, 0.05], ids=["inf", "t_max"])
def test_receptive_field_lists(dt, t_max, seed):
    """Each list holds exactly the position's field events before t_max, in time order, with
    the weight row of its tap, and window ends taken from the list itself."""
    syn = Conv2d((2, 5, 6), (3, 2), stride=(2, 1), padding=(1, 0))
    x = random_times(3, syn.n_in, 2, gen=seed, p=0.7)
    if dt:
        x = batsnn.discretize(x, dt)
    p = batsnn.LIFParams(tau_s=0.05, theta=1.0, max_spikes=1, dt=dt, t_max=t_max)
    ev = cpu.sort_events(x, p, synapse=syn)
    c, h, w = syn.in_shape
    (kh, kw), (sy, sx), (py, px) = syn.kernel, syn.stride, syn.padding
    h_out, w_out = syn.out_hw
    n_pos = h_out * w_out
    assert ev.rf_off.shape == (3 * n_pos + 1,) and int(ev.rf_off[-1]) == len(ev.rf_j)
    for b in range(3):
        for oy in range(h_out):
            for ox in range(w_out):
                q = oy * w_out + ox
                lo, hi = int(ev.rf_off[b * n_pos + q]), int(ev.rf_off[b * n_pos + q + 1])
                want = []
                for j in range(int(ev.nspk[b])):
                    if ev.ts[b, j] >= t_max:
                        break
                    i = int(ev.nid[b, j])
                    ci, iy, ix = i // (h * w), (i // w) % h, i % w
                    ky, kx = iy + py - oy * sy, ix + px - ox * sx
                    if 0 <= ky < kh and 0 <= kx < kw:
                        want.append((j, (ci * kh + ky) * kw + kx))
                got = list(zip(ev.rf_j[lo:hi].tolist(), ev.rf_w[lo:hi].tolist()))
                assert got == want, (b, oy, ox)
                js = [j for j, _ in want]
                nxt = [float(ev.ts[b, j]) for j in js[1:]] + [math.inf]
                up = torch.tensor([min(t, t_max) for t in nxt], dtype=torch.float64)
                assert torch.equal(ev.rf_up[lo:hi], up)
                xup = torch.exp(-(up - ev.ref[b, js]) / p.tau)
                assert torch.allclose(ev.rf_xup[lo:hi], xup, rtol=1e-13, atol=0)
                if dt:
                    k_nxt = torch.tensor([float(ev.kin[b, j]) for j in js[1:]] + [math.inf])
                    k_t = math.floor(t_max / dt) if math.isfinite(t_max) else math.inf
                    assert torch.equal(ev.rf_kup[lo:hi], k_nxt.double().clamp(max=k_t))
    assert len(ev.rf_j) > 3 * n_pos  # the lists are not vacuous
    assert (ev.rf_kup.numel() > 0) == (dt > 0)


def test_inference_mode_keeps_the_spikes(seed):
    """Without gradients (no backward buffers) the same spikes."""
    x = _maps(seed, c=3, h=6, w=6)
    w = torch.rand(5, 3, 3, 3, generator=seed, dtype=torch.float64) * 2.0 - 0.4
    with torch.no_grad():
        lean = batsnn.lif_conv2d(x, w, padding=1, **KW)
    full = batsnn.lif_conv2d(x, w.clone().requires_grad_(True), padding=1, **KW)
    assert torch.equal(lean.times, full.times.detach()) and lean.counts.sum() > 10


def test_naive_reference_agrees_on_shapes_and_counts(seed):
    """The unrolled reference (parity cases) and the public op name neurons alike."""
    syn = Conv2d((2, 5, 4), (2, 3), stride=1, padding=(0, 1))
    x = random_times(2, syn.n_in, 2, gen=seed)
    w = torch.rand(3, 2, 2, 3, generator=seed, dtype=torch.float64) * 3.0 - 0.5
    _, ref_c, _ = lif_conv2d_forward_naive(x, w, syn, delta_theta=0.3, **KW)
    out = batsnn.lif_conv2d(x.reshape(2, 2, 5, 4, 2), w, padding=(0, 1), **KW)
    assert out.counts.shape == (2, 3, *syn.out_hw) == (2, 3, 4, 4)
    assert torch.equal(out.counts.reshape(2, -1), ref_c) and ref_c.sum() > 10


def test_the_op_refuses_input_the_convolution_does_not_read():
    """Every backend is reached through one check of the input's neuron count."""
    from batsnn.ops.lif import lif_op
    from batsnn.params import LIFParams

    syn = Conv2d(in_shape=(2, 4, 4), kernel=(3, 3))
    x = torch.full((1, 2 * 4 * 5, 1), 0.01, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"input_times has 40 neurons per sample but the "
                                         r"convolution reads \(2, 4, 4\)"):
        lif_op(x, torch.ones(3, 2, 3, 3, dtype=torch.float64), LIFParams(**KW), syn)


def test_bad_arguments_are_named():
    x = torch.full((1, 2, 4, 4, 1), 0.01, dtype=torch.float64)
    w = torch.ones(3, 2, 3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"input_times must have shape \(batch, channels"):
        batsnn.lif_conv2d(x[0], w, **KW)
    with pytest.raises(ValueError, match=r"weight must have shape \(C_out, C_in=2, kH, kW\)"):
        batsnn.lif_conv2d(x, torch.ones(3, 1, 3, 3, dtype=torch.float64), **KW)
    with pytest.raises(TypeError, match="weight dtype torch.float32 does not match"):
        batsnn.lif_conv2d(x, w.float(), **KW)
    with pytest.raises(ValueError, match="stride must be >= 1, got 0"):
        batsnn.lif_conv2d(x, w, stride=0, **KW)
    with pytest.raises(ValueError, match="padding must be >= 0, got -1"):
        batsnn.lif_conv2d(x, w, padding=-1, **KW)
    with pytest.raises(TypeError, match=r"stride must be an int or a pair of ints, got 1\.5"):
        batsnn.lif_conv2d(x, w, stride=1.5, **KW)
    with pytest.raises(ValueError, match=r"kernel \(5, 5\) with padding \(0, 0\) does not fit "
                                         "the 4x4 input maps"):
        batsnn.lif_conv2d(x, torch.ones(3, 2, 5, 5, dtype=torch.float64), **KW)
    bad = x.clone()
    bad[0, 1, 2, 3, 0] = -1.0
    with pytest.raises(ValueError, match=r"input_times contains a negative time, "
                                         r"input_times\[0, 1, 2, 3, 0\] = -1\.0"):
        batsnn.lif_conv2d(bad, w, **KW)
    with pytest.raises(ValueError, match="weight contains NaN"):
        batsnn.lif_conv2d(x, torch.full_like(w, math.nan), **KW)
    with pytest.raises(TypeError, match="tau_s is required"):
        batsnn.lif_conv2d(x, w, theta=0.1, max_spikes=1)


def _seed_conv_net(dtype):
    """The seed's conv network (mnist-conv) with weights uniform in [-1, 1]."""
    g = torch.Generator().manual_seed(3)
    kw = dict(tau_s=0.13, t_max=0.2)
    net = batsnn.nn.SpikingSequential(
        batsnn.nn.LIFConv2d(1, 15, 5, theta=0.04, max_spikes=1, **kw),
        batsnn.nn.SpikePool2d(2),
        batsnn.nn.LIFConv2d(15, 40, 5, theta=0.8, max_spikes=3, **kw),
        batsnn.nn.SpikePool2d(2),
        batsnn.nn.Flatten(),
        batsnn.nn.LIFLinear(640, 300, theta=0.6, max_spikes=10, **kw),
        batsnn.nn.LIFLinear(300, 10, theta=0.3, max_spikes=30, **kw)).to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float64) * 2 - 1)
    return net


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_gpu_conv_network_matches_cpu(dtype):
    """The seed's conv network on 64 MNIST-like images, every layer on the GPU as on the CPU.

    float64: the whole network, every count equal, the times and the gradients of every
    weight. float32 (float32 arithmetic on the GPU, float64 on the CPU): layer by layer, each
    GPU layer given the CPU's input of that layer. Through the whole network a neuron whose
    membrane maximum lies within float32 rounding of its threshold gains or loses a spike,
    and every neuron of the next dense layer sees it (measured: 3 such neurons of 64 x 5,760
    in the second conv layer move 611 spike times of the 300-neuron layer by up to 7 ms),
    which says nothing about the kernels."""
    import copy

    g = torch.Generator().manual_seed(0)
    img = torch.rand(64, 28, 28, generator=g)
    img = torch.where(torch.rand(64, 28, 28, generator=g) < 0.3, img, torch.zeros_like(img))
    x = batsnn.ttfs_encode(img.reshape(64, -1), dtype=dtype).reshape(64, 1, 28, 28, 1)
    cpu_net = _seed_conv_net(dtype)
    gpu_net = copy.deepcopy(cpu_net).cuda()
    if dtype == torch.float32:
        lay_c = cpu_net.forward_all(x)
        assert int(lay_c[0].counts.sum()) > 64 * 100 and int(lay_c[-1].counts.sum()) > 50
        mods = [m for m in gpu_net if not getattr(m, "reshapes_only", False)]
        ins = [x] + [o.times.detach() for o in lay_c[:-1]]
        for mod, t_in, ref in zip(mods, ins, lay_c):
            if isinstance(mod, batsnn.nn.LIFLinear):
                t_in = t_in.reshape(t_in.shape[0], -1, t_in.shape[-1])
            with torch.no_grad():
                out = mod(t_in.cuda())
            cc, cg = ref.counts, out.counts.cpu()
            assert (cc != cg).float().mean() < 2e-3, type(mod).__name__
            same = (cc == cg).unsqueeze(-1).expand_as(ref.times)
            fin = torch.isfinite(ref.times) & same
            assert torch.equal(fin, torch.isfinite(out.times.cpu()) & same)
            err = (out.times.cpu()[fin].double() - ref.times.detach()[fin].double()).abs()
            assert err.max() < 1e-4, (type(mod).__name__, float(err.max()))
        return
    outs = []
    for net, xx in ((cpu_net, x), (gpu_net, x.cuda())):
        layers = net.forward_all(xx)
        loss = sum(_finite(o.times).sum() for o in layers[-2:])
        loss.backward()
        outs.append(([(o.times.detach().cpu(), o.counts.cpu()) for o in layers],
                     [p.grad.cpu() for p in net.parameters()]))
    (lay_c, grad_c), (lay_g, grad_g) = outs
    assert int(lay_c[0][1].sum()) > 64 * 100 and int(lay_c[-1][1].sum()) > 50
    for (tc, cc), (tg, cg) in zip(lay_c, lay_g):
        assert torch.equal(cc, cg)
        fin = torch.isfinite(tc)
        assert torch.equal(fin, torch.isfinite(tg))
        assert (tg[fin] - tc[fin]).abs().max() < 1e-10
    for a, b in zip(grad_c, grad_g):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-9)
