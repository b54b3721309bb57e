"""Parity of a backend's kernels with the CPU kernels (``dt = 0``) or with the plain
reference :mod:`batsnn.ops.lif.naive` (``dt > 0``, the exact grid rule), on the cases of the
GPU tests.

``python tests/backend_parity.py`` (with ``TRITON_INTERPRET=1``) runs the Triton kernels in
Triton's CPU interpreter; the CUDA tests call :func:`check_public_op` on a GPU.
"""

import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from conftest import assert_close, random_times  # noqa: E402

from batsnn.ops.lif.grid import grid_times  # noqa: E402

CASES = {
    "plain": dict(theta=0.3, delta_theta=None, max_spikes=5, dt=0.0, t_max=math.inf),
    "partial_reset": dict(theta=0.3, delta_theta=0.12, max_spikes=5, dt=0.0, t_max=math.inf),
    "dt": dict(theta=0.3, delta_theta=None, max_spikes=5, dt=1e-3, t_max=math.inf),
    "dt4": dict(theta=0.3, delta_theta=0.12, max_spikes=5, dt=4e-3, t_max=0.096),
    "dt8": dict(theta=0.3, delta_theta=None, max_spikes=5, dt=8e-3, t_max=math.inf),
    "cap_tmax": dict(theta=0.1, delta_theta=None, max_spikes=2, dt=0.0, t_max=0.06),
    "silent": dict(theta=50.0, delta_theta=None, max_spikes=3, dt=0.0, t_max=math.inf),
}
#: The grid cases (dt = 1, 4, 8 ms) on a dense random layer: ``make_case(name, dtype, **LAYER)``.
GRID_CASES = ("dt", "dt4", "dt8")
LAYER = dict(batch=3, n_in=60, n_out=40, slots=2, span=0.2, w_scale=1.5)


def make_case(name, dtype, batch=3, n_in=10, n_out=6, slots=3, seed=0, empty=False,
              span=0.1, w_scale=4.0):
    g = torch.Generator().manual_seed(seed)
    kw = dict(CASES[name])
    x = random_times(batch, n_in, slots, gen=g, t_max=span)
    if empty:
        x = torch.full_like(x, math.inf)
    if kw["dt"]:
        x = grid_times(x, kw["dt"])
    w = (torch.rand(n_out, n_in, generator=g, dtype=torch.float64) - 0.2) * w_scale
    grad = torch.randn(batch, n_out, kw["max_spikes"], generator=g, dtype=torch.float64)
    return x.to(dtype), w.to(dtype), grad.to(dtype), kw


def check_events(ref, ev):
    """A backend's event lists against :func:`batsnn.ops.lif.events.sort_events` (torch ops):
    the same events in the same order, and the same per-event values (the GPU works in the
    input's dtype, the CPU in float64); the grid indices ``kin``/``kup`` exactly those of
    :func:`batsnn.ops.lif.events.grid_bounds` (empty when ``dt == 0``)."""
    n = ref.nspk.cpu()
    assert torch.equal(ev.nspk.cpu().long(), n.long()), (ev.nspk, n)
    grid = ref.kin.shape[1] > 0 or ref.kup.shape[1] > 0
    assert ev.kin.dtype == ev.kup.dtype == torch.float64
    assert (ev.kin.shape[1] > 0) == (ev.kup.shape[1] > 0) == grid
    for b in range(len(n)):
        k = int(n[b])
        assert torch.equal(ev.perm.cpu()[b, :k], ref.perm[b, :k])
        assert torch.equal(ev.nid.cpu()[b, :k].long(), ref.nid[b, :k].long())
        for f in ("ts", "ref", "es", "ex", "xup"):
            a, r = getattr(ev, f).cpu()[b, :k].double(), getattr(ref, f)[b, :k].double()
            tol = 1e-12 if ref.es.dtype == torch.float64 else 1e-5
            assert torch.allclose(a, r, rtol=tol, atol=tol), f
        if grid:
            for f in ("kin", "kup"):
                a, r = getattr(ev, f).cpu()[b, :k], getattr(ref, f)[b, :k]
                assert torch.equal(a, r), (f, a, r)


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


def check_grid_bounds(backend, device="cpu", n=400):
    """A backend's grid indices ``kin``/``kup`` on times at, just below and just above every
    grid point ``k * dt`` (k < n), in float64 and float32, against
    :func:`batsnn.ops.lif.events.grid_bounds`; the set needs both corrections of
    ``floor(t / dt)`` (model.md section 6, :mod:`batsnn.ops.lif.grid`)."""
    from batsnn.ops.lif.events import grid_bounds
    from batsnn.params import LIFParams

    corrections = set()
    for dt in (1e-3, 4e-3, 8e-3):
        for dtype in (torch.float64, torch.float32):
            g = (torch.arange(n, dtype=torch.float64) * dt).to(dtype)
            t = torch.cat([g, torch.nextafter(g, torch.full_like(g, -1.0)).clamp(min=0),
                           torch.nextafter(g, torch.full_like(g, 1.0))]).sort().values
            t[-5:] = math.inf  # padding
            p = LIFParams(tau_s=0.05, theta=1.0, max_spikes=1, dt=dt, t_max=float(g[n // 2]))
            ev = backend.sort_events(t.reshape(1, -1, 1).to(device), p)
            m = int(ev.nspk[0])
            assert m == len(t) - 5, m
            kin, kup = grid_bounds(t.reshape(1, -1)[:, :m], ev.nspk.cpu(), p, dtype)
            assert torch.equal(ev.kin.cpu()[:, :m], kin) and torch.equal(ev.kup.cpu()[:, :m], kup)
            q = torch.floor(t[:m].double() / dt)
            corrections |= {int(c) for c in torch.unique(kin[0] - q)}
    assert {-1, 0, 1} <= corrections, corrections


def _tols(dtype):
    return (1e-12, 1e-10) if dtype == torch.float64 else (2e-6, 2e-4)


def run_naive(x, w, grad, p):
    """The plain reference on CPU tensors: ``(times, counts, grad input_times (B, N_in * S_in),
    grad weight)`` for output-time gradients ``grad``, and the per-sample spike records."""
    from batsnn.ops.lif import naive

    t, c, rec = naive.lif_linear_forward_naive(
        x, w, tau_s=p.tau_s, theta=p.theta, delta_theta=p.delta_theta,
        max_spikes=p.max_spikes, t_max=p.t_max, dt=p.dt)
    g_in, g_w = naive.lif_linear_backward_naive(grad, x, w, rec, tau_s=p.tau_s,
                                                delta_theta=p.delta_theta)
    return (t, c, g_in.reshape(x.shape[0], -1), g_w), rec


def check_kernels(backend, name, dtype, **case_kw):
    """Compare ``backend``'s sort/forward/backward on CPU tensors with the CPU kernels, or
    with the plain reference when ``dt > 0`` (the grid rule on integer cell indices)."""
    from batsnn.ops.lif import cpu, events
    from batsnn.ops.lif.synapse import DENSE
    from batsnn.params import LIFParams

    x, w, grad, kw = make_case(name, dtype, **case_kw)
    p = LIFParams(tau_s=0.05, **kw)
    results = [run_naive(x, w, grad, p)[0]] if p.discrete else []
    ref_ev = events.sort_events(x, p, dtype=x.dtype)
    for mod in ((backend,) if p.discrete else (cpu, backend)):
        ev = mod.sort_events(x, p)
        check_events(ref_ev, ev)
        out = mod.forward(ev, w, p, synapse=DENSE, need_aux=True)
        g_sorted, g_w = mod.backward(grad, out[1:], ev, w, p, synapse=DENSE, need_input=True)
        g_in = torch.zeros(x.shape[0], x.shape[1] * x.shape[2], dtype=torch.float64)
        g_in.scatter_add_(1, ev.perm.cpu(), g_sorted.double().cpu())
        results.append((out[0].cpu(), out[4].cpu(), g_in, g_w.cpu()))
    return _compare(name, dtype, *results)


def grid_ties(x, w, p):
    """Spikes of the plain reference that land on the next input's grid point (the tie the
    window test must accept): ``(ties, spikes)``."""
    from batsnn.ops.lif.grid import floor_index, floor_index_scalar

    _, rec = run_naive(x, w, torch.zeros(x.shape[0], w.shape[0], p.max_spikes), p)
    ties = spikes = 0
    for events_b, rec_b in rec:
        k_in = floor_index(torch.tensor([t for t, _ in events_b], dtype=torch.float64), p.dt,
                           x.dtype).tolist()
        for rec_n in rec_b:
            for t_c, j, *_ in rec_n:
                spikes += 1
                ties += j + 1 < len(k_in) and floor_index_scalar(t_c, p.dt) + 1 == k_in[j + 1]
    return ties, spikes


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
    """``batsnn.lif_linear`` on ``device`` against the CPU (``dt > 0``: against the plain
    reference): outputs and both gradients."""
    import batsnn
    from batsnn.params import LIFParams

    x, w, grad, kw = make_case(name, dtype, **case_kw)
    outs = []
    if kw["dt"]:
        (t, c, g_in, g_w), _ = run_naive(x, w, grad, LIFParams(tau_s=0.05, **kw))
        outs.append([t, c, g_in.reshape(x.shape), g_w])
    for dev in ((device,) if kw["dt"] else ("cpu", device)):
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
    check_grid_bounds(triton_backend)
    # the whole layer with batsnn's own sort in place of torch.sort (float32 rows)
    check_sort(triton_backend)
    triton_backend.SORT_TILE, triton_backend.SORT_MIN_WIDTH = 16, 0
    total += check_kernels(triton_backend, "partial_reset", torch.float32, batch=2, n_in=90,
                           n_out=70, slots=2, w_scale=1.0)
    total += check_kernels(triton_backend, "dt", torch.float32)
    # the exact grid rule on a dense random layer: every count as the plain reference's, many
    # spikes on the next input's grid point (the tie the window test must accept)
    from batsnn.params import LIFParams

    for name in GRID_CASES:
        total += check_kernels(triton_backend, name, torch.float64, **LAYER)
        x, w, _, kw = make_case(name, torch.float64, **LAYER)
        ties, spikes = grid_ties(x, w, LIFParams(tau_s=0.05, **kw))
        assert spikes > 50 and ties > spikes // 5, (name, ties, spikes)
    assert total > 1000, total
    print(f"triton kernels match the CPU kernels and the plain reference ({total} spikes "
          "compared)")
