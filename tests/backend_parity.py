"""Parity of a backend's kernels with the CPU kernels, on the cases of the GPU tests.

``python tests/backend_parity.py`` (with ``TRITON_INTERPRET=1``) runs the Triton kernels in
Triton's CPU interpreter; the CUDA tests call :func:`check_public_op` on a GPU.
"""

import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from conftest import assert_close, random_times  # noqa: E402

CASES = {
    "plain": dict(theta=0.3, delta_theta=None, max_spikes=5, dt=0.0, t_max=math.inf),
    "partial_reset": dict(theta=0.3, delta_theta=0.12, max_spikes=5, dt=0.0, t_max=math.inf),
    "dt": dict(theta=0.3, delta_theta=None, max_spikes=5, dt=1e-3, t_max=math.inf),
    "cap_tmax": dict(theta=0.1, delta_theta=None, max_spikes=2, dt=0.0, t_max=0.06),
    "silent": dict(theta=50.0, delta_theta=None, max_spikes=3, dt=0.0, t_max=math.inf),
}


def make_case(name, dtype, batch=3, n_in=10, n_out=6, slots=3, seed=0, empty=False,
              span=0.1, w_scale=4.0):
    g = torch.Generator().manual_seed(seed)
    kw = dict(CASES[name])
    x = random_times(batch, n_in, slots, gen=g, t_max=span)
    if empty:
        x = torch.full_like(x, math.inf)
    if kw["dt"]:
        x = torch.where(torch.isfinite(x), x + kw["dt"] - torch.fmod(x, kw["dt"]), x)
    w = (torch.rand(n_out, n_in, generator=g, dtype=torch.float64) - 0.2) * w_scale
    grad = torch.randn(batch, n_out, kw["max_spikes"], generator=g, dtype=torch.float64)
    return x.to(dtype), w.to(dtype), grad.to(dtype), kw


def check_events(ref, ev):
    """A backend's event lists against :func:`batsnn.ops.lif.events.sort_events` (torch ops):
    the same events in the same order, and the same per-event values (the GPU works in the
    input's dtype, the CPU in float64)."""
    n = ref.nspk.cpu()
    assert torch.equal(ev.nspk.cpu().long(), n.long()), (ev.nspk, n)
    for b in range(len(n)):
        k = int(n[b])
        assert torch.equal(ev.perm.cpu()[b, :k], ref.perm[b, :k])
        assert torch.equal(ev.nid.cpu()[b, :k].long(), ref.nid[b, :k].long())
        for f in ("ts", "ref", "es", "ex", "xup"):
            a, r = getattr(ev, f).cpu()[b, :k].double(), getattr(ref, f)[b, :k].double()
            tol = 1e-12 if ref.es.dtype == torch.float64 else 1e-5
            assert torch.allclose(a, r, rtol=tol, atol=tol), f


def check_sort(backend, device="cpu", tile=16, seed=0):
    """The GPU backend's own stable sort against ``torch.sort`` (ties, -0.0, +inf padding,
    rows of one or several tiles, all +inf, all finite)."""
    g = torch.Generator().manual_seed(seed)
    old = backend.SORT_TILE, backend.SORT_MIN_WIDTH
    backend.SORT_TILE, backend.SORT_MIN_WIDTH = tile, 0
    try:
        for m, p_fin in ((7 * tile - 3, 0.5), (5 * tile, 1.0), (3 * tile, 0.0), (tile // 2, 0.7)):
            x = torch.round(torch.rand(6, m, generator=g) * 20) / 20  # many ties
            x[torch.rand(6, m, generator=g) > p_fin] = math.inf
            x[0, :3] = 0.0
            x[0, min(5, m - 1)] = -0.0
            ts, perm = backend._sort_times(x.to(device))
            rt, rp = torch.sort(x, dim=1, stable=True)
            fin = torch.isfinite(rt)
            assert torch.equal(ts.cpu(), rt), (m, p_fin)
            assert torch.equal(perm.cpu()[fin], rp[fin]), (m, p_fin)
            assert ((perm.cpu()[~fin] >= 0) & (perm.cpu()[~fin] < m)).all()
    finally:
        backend.SORT_TILE, backend.SORT_MIN_WIDTH = old


def _tols(dtype):
    return (1e-12, 1e-10) if dtype == torch.float64 else (2e-6, 2e-4)


def check_kernels(backend, name, dtype, **case_kw):
    """Compare ``backend``'s sort/forward/backward with the CPU kernels on CPU tensors."""
    from batsnn.ops.lif import cpu, events
    from batsnn.ops.lif.synapse import DENSE
    from batsnn.params import LIFParams

    x, w, grad, kw = make_case(name, dtype, **case_kw)
    p = LIFParams(tau_s=0.05, **kw)
    results = []
    ref_ev = events.sort_events(x, p, dtype=x.dtype)
    for mod in (cpu, backend):
        ev = mod.sort_events(x, p)
        check_events(ref_ev, ev)
        out = mod.forward(ev, w, p, synapse=DENSE, need_aux=True)
        g_sorted, g_w = mod.backward(grad, out[1:], ev, w, p, synapse=DENSE, need_input=True)
        g_in = torch.zeros(x.shape[0], x.shape[1] * x.shape[2], dtype=torch.float64)
        g_in.scatter_add_(1, ev.perm.cpu(), g_sorted.double().cpu())
        results.append((out[0].cpu(), out[4].cpu(), g_in, g_w.cpu()))
    return _compare(name, dtype, *results)


def _compare(name, dtype, ref, out):
    """Counts equal, times and both gradients close; returns the number of spikes."""
    (t0, c0, gi0, gw0), (t1, c1, gi1, gw1) = ref, out
    atol, rtol = _tols(dtype)
    assert torch.equal(c0, c1), f"{name}: counts differ ({int((c0 != c1).sum())} neurons)"
    assert_close(f"{name} times", t0, t1, atol=atol, rtol=rtol)
    assert_close(f"{name} grad input_times", gi0, gi1, atol=atol * 10, rtol=rtol * 10)
    assert_close(f"{name} grad weight", gw0, gw1, atol=atol * 10, rtol=rtol * 10)
    return int(c0.sum())


def check_public_op(name, dtype, device, **case_kw):
    """``batsnn.lif_linear`` on ``device`` against the CPU: outputs and both gradients."""
    import batsnn

    x, w, grad, kw = make_case(name, dtype, **case_kw)
    outs = []
    for dev in ("cpu", device):
        xd = x.to(dev).requires_grad_(True)
        wd = w.to(dev).requires_grad_(True)
        out = batsnn.lif_linear(xd, wd, tau_s=0.05, **kw)
        g = grad.to(dev) * torch.isfinite(out.times)
        gx, gw = torch.autograd.grad(out.times, (xd, wd), g)
        outs.append([v.detach().cpu() for v in (out.times, out.counts, gx, gw)])
    return _compare(name, dtype, *outs)


if __name__ == "__main__":
    from batsnn.ops.lif import cuda as triton_backend

    total = 0
    for dtype in (torch.float64, torch.float32):
        for name in CASES:
            total += check_kernels(triton_backend, name, dtype)
        check_kernels(triton_backend, "plain", dtype, empty=True)
    # several chunks and neuron blocks, and (span 40 tau_s) several reference-time segments
    for dtype in (torch.float64, torch.float32):
        total += check_kernels(triton_backend, "partial_reset", dtype, batch=2, n_in=90,
                               n_out=70, slots=2, w_scale=1.0)
        total += check_kernels(triton_backend, "dt", dtype, batch=2, n_in=90, n_out=20,
                               slots=2, span=2.0, w_scale=3.0)
    # inference mode: no backward buffers, same spikes
    from batsnn.ops.lif.synapse import DENSE
    from batsnn.params import LIFParams

    x, w, _, kw = make_case("plain", torch.float32)
    p = LIFParams(tau_s=0.05, **kw)
    ev = triton_backend.sort_events(x, p)
    full = triton_backend.forward(ev, w, p, synapse=DENSE, need_aux=True)
    lean = triton_backend.forward(ev, w, p, synapse=DENSE, need_aux=False)
    assert torch.equal(full[0], lean[0]) and torch.equal(full[4], lean[4])
    assert lean[1].numel() == 0
    # the whole layer with batsnn's own sort in place of torch.sort (float32 rows)
    check_sort(triton_backend)
    triton_backend.SORT_TILE, triton_backend.SORT_MIN_WIDTH = 16, 0
    total += check_kernels(triton_backend, "partial_reset", torch.float32, batch=2, n_in=90,
                           n_out=70, slots=2, w_scale=1.0)
    total += check_kernels(triton_backend, "dt", torch.float32)
    assert total > 1000, total
    print(f"triton kernels match the CPU kernels ({total} spikes compared)")
