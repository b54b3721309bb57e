"""Compiled CPU kernels of the LIF layer (numba, parallel over samples and neuron blocks).

The kernels work on the per-sample event list of :class:`batsnn.ops.lif.events.Events`:
``ts[b, j]`` the j-th earliest input spike of sample ``b``, ``nid[b, j]`` its input neuron,
``ref[b, j]`` its reference time, ``es``/``ex`` the scaled exponentials
``exp((ts - ref)/tau_s)`` and ``exp((ts - ref)/tau)``, ``up``/``xup`` the end of the window
after the event and ``exp(-(up - ref)/tau)``. Inside a segment of equal reference time the
accumulators ``A`` and ``B`` are held relative to it (``A' = A exp(-ref/tau_s)``,
``B' = B exp(-ref/tau)``); the threshold equation keeps its form in these units, so crossing
a segment boundary only rescales the two sums. All arithmetic is float64.

A task is one sample and a block of ``LANES`` consecutive output neurons: the event stream
is shared by the block, the weights are read from the transposed matrix ``wt[i, n]`` so
that one event touches one contiguous run of ``LANES`` weights, and the per-event update
and the crossing pre-test run as plain loops over the lanes, which LLVM vectorises. Only
lanes whose pre-test passes run the scalar root search.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

LANES = 64
_MARGIN = 1e-9


@numba.njit(cache=True, inline="always")
def _grid(t, dt):
    # first grid point strictly after t: t + dt - fmod(t, dt) (model.md section 6);
    # fmod is signed, so negative candidates go through floor instead
    if dt <= 0.0:
        return t
    if t >= 0.0:
        return t + dt - np.fmod(t, dt)
    return dt * (math.floor(t / dt) + 1.0)


@numba.njit(cache=True, inline="always")
def _may_cross(al, bl, p, q, r0, s, k):
    # Root-free pre-test with the per-event constants of forward_kernel: A > 0, B > 0 and
    # either f(u) <= M (A u^2 + B u + c), or u past the vertex with D >= 0 (margin M).
    # Written with & and | so that the lane loop stays branch-free.
    return ((al > 0.0) & (bl > 0.0)
            & ((al * p - bl * q + r0 <= 0.0) | ((al * s <= bl) & (bl * bl >= al * k))))


@numba.njit(parallel=True, cache=True)
def count_spikes(times, nspk):
    """Spikes per sample of valid ``(B, N, S)`` trains: each row stops at its first +inf."""
    for b in numba.prange(times.shape[0]):
        c = 0
        for n in range(times.shape[1]):
            for s in range(times.shape[2]):
                if not math.isfinite(times[b, n, s]):
                    break
                c += 1
        nspk[b] = c


@numba.njit(cache=True)
def _radix_argsort(vals, keys, tmp, order, tmp_order, counts):
    """Stable argsort of non-negative float64 values: LSD radix sort on their bit patterns
    (which order like the numbers for values >= 0), one byte a pass; a pass whose byte is
    the same for every key is skipped."""
    m = vals.shape[0]
    for i in range(m):
        keys[i] = np.uint64(vals.view(np.uint64)[i])
        order[i] = i
    for shift in range(0, 64, 8):
        counts[:] = 0
        for i in range(m):
            counts[((keys[i] >> np.uint64(shift)) & np.uint64(255)) + 1] += 1
        if counts.max() == m:
            continue
        for d in range(256):
            counts[d + 1] += counts[d]
        for i in range(m):
            d = (keys[i] >> np.uint64(shift)) & np.uint64(255)
            pos = counts[d]
            counts[d] = pos + 1
            tmp[pos] = keys[i]
            tmp_order[pos] = order[i]
        keys, tmp = tmp, keys
        order, tmp_order = tmp_order, order
    return order


@numba.njit(parallel=True, cache=True)
def build_events(times, nspk, tau_s, seg, t_max, ts, nid, perm, ref, es, ex, up, xup):
    """Fill the event arrays of each sample from valid ``(B, N, S)`` trains (stable order
    for equal times: the order of ``times.reshape(B, -1)``)."""
    tau = 2.0 * tau_s
    m_all = ts.shape[1]
    s_in = times.shape[2]
    for b in numba.prange(times.shape[0]):
        m = nspk[b]
        vals = np.empty(m, np.float64)
        idx = np.empty(m, np.int64)
        keys = np.empty(m, np.uint64)
        tmp = np.empty(m, np.uint64)
        order_buf = np.empty(m, np.int64)
        tmp_order = np.empty(m, np.int64)
        counts_buf = np.empty(257, np.int64)
        c = 0
        for n in range(times.shape[1]):
            for s in range(s_in):
                v = times[b, n, s]
                if not math.isfinite(v):
                    break  # +inf padding: the rest of the row is padding too
                vals[c] = v + 0.0  # -0.0 -> +0.0, so that the bit patterns order as numbers
                idx[c] = n * s_in + s
                c += 1
        order = _radix_argsort(vals, keys, tmp, order_buf, tmp_order, counts_buf) if m else idx[:0]
        for j in range(m):
            t = vals[order[j]]
            ts[b, j] = t
            perm[b, j] = idx[order[j]]
            nid[b, j] = idx[order[j]] // s_in
            r = math.floor(t / seg) * seg
            ref[b, j] = r
            e = math.exp((t - r) / tau_s)
            es[b, j] = e
            ex[b, j] = math.sqrt(e)  # exp((t - r)/tau) with tau = 2 tau_s
        for j in range(m):
            u = ts[b, j + 1] if j + 1 < m else np.inf
            if u > t_max:
                u = t_max
            up[b, j] = u
            if j + 1 < m and u == ts[b, j + 1] and ref[b, j + 1] == ref[b, j]:
                xup[b, j] = 1.0 / ex[b, j + 1]
            else:
                xup[b, j] = math.exp(-(u - ref[b, j]) / tau)
        for j in range(m, m_all):
            ts[b, j] = np.inf
            up[b, j] = np.inf


@numba.njit(parallel=True, cache=True)
def forward_kernel(ts, nid, nspk, ref, es, ex, up, xup, wt, tau_s, theta, delta_theta, t_max,
                   dt, out32, need_aux, out_t, out_tc, out_win, out_x, counts):
    # out32: the caller's dtype is float32. The window tests then compare float32-rounded
    # emitted times and bounds, i.e. the values the caller sees (ties with the next input on
    # a dt grid are decided the same way by every backend).
    n_batch = ts.shape[0]
    n_out = wt.shape[1]
    k_max = out_t.shape[2]
    tau = 2.0 * tau_s
    c = theta / tau
    reset = delta_theta / tau
    n_blocks = (n_out + LANES - 1) // LANES
    for task in numba.prange(n_batch * n_blocks):
        # block-major order: a block's weight columns stay in cache while samples go by
        blk = task // n_batch
        b = task - blk * n_batch
        n0 = blk * LANES
        nl = min(LANES, n_out - n0)
        a_acc = np.zeros(LANES)
        b_acc = np.zeros(LANES)
        cand = np.zeros(LANES, np.bool_)
        cnt = np.zeros(LANES, np.int64)
        last = np.full(LANES, -np.inf)
        m = nspk[b]
        r_prev = ref[b, 0] if m > 0 else 0.0
        for j in range(m):
            t_j = ts[b, j]
            if t_j >= t_max:
                break
            r = ref[b, j]
            if r != r_prev:
                sa = math.exp(-(r - r_prev) / tau_s)
                sb = math.exp(-(r - r_prev) / tau)
                for l in range(nl):
                    a_acc[l] *= sa
                    b_acc[l] *= sb
                r_prev = r
            row = wt[nid[b, j], n0:n0 + nl]
            e_s = es[b, j]
            e_x = ex[b, j]
            for l in range(nl):
                a_acc[l] += row[l] * e_s
                b_acc[l] += row[l] * e_x
            # Pre-test: with f(x) = A x^2 - B x + c and u = x at the window's end, the earliest
            # root x1 = (B + X)/(2A) lies before the end (x1 >= u) iff A > 0, B > 0 and
            # either f(u) <= 0, or D >= 0 and u <= B/(2A) (u past the vertex); A <= 0 or
            # B <= 0 gives no root at all. The relative margins keep rounding from rejecting
            # a crossing that the exact test accepts.
            u = xup[b, j]
            # per-event constants: f(u) <= M (A u^2 + B u + c)  <=>  A p - B q + r0 <= 0;
            # 2 A u <= B (1 + M)  <=>  A s <= B;  B^2 >= 4 A c (1 - M)  <=>  B^2 >= A k
            p = u * u * (1.0 - _MARGIN)
            q = u * (1.0 + _MARGIN)
            r0 = c * (1.0 - _MARGIN)
            s = 2.0 * u / (1.0 + _MARGIN)
            k = 4.0 * c * (1.0 - _MARGIN)
            any_cand = False
            for l in range(nl):
                al = a_acc[l]
                bl = b_acc[l]
                cl = (cnt[l] < k_max) & _may_cross(al, bl, p, q, r0, s, k)
                cand[l] = cl
                any_cand |= cl
            if not any_cand:
                continue
            upper = up[b, j]
            if out32:
                upper = np.float32(upper)
            for l in range(nl):
                if not cand[l]:
                    continue
                n = n0 + l
                al = a_acc[l]
                bl = b_acc[l]
                kk = cnt[l]
                lower = t_j if t_j > last[l] else last[l]
                while kk < k_max:
                    # exact tests of model.md sections 1 and 6
                    disc = bl * bl - 4.0 * al * c
                    if disc < 0.0:
                        break
                    x = math.sqrt(disc)
                    den = bl + x
                    if den == 0.0:
                        break
                    ratio = 2.0 * al / den
                    if ratio <= 0.0:
                        break
                    t_c = r + tau * math.log(ratio)
                    t_e = _grid(t_c, dt)
                    if out32:
                        t_e = np.float32(t_e)
                    if not (t_e > lower and t_e <= upper):
                        break
                    out_t[b, n, kk] = t_e
                    if need_aux:  # what the backward needs; skipped for inference
                        out_tc[b, n, kk] = t_c
                        out_win[b, n, kk] = j
                        out_x[b, n, kk] = x
                    kk += 1
                    lower = t_e
                    bl -= reset * ratio  # exp((t_c - r)/tau) = ratio by construction
                    # after the reset, the root-free pre-test again before sqrt and log
                    if not _may_cross(al, bl, p, q, r0, s, k):
                        break
                if kk > cnt[l]:
                    last[l] = lower
                    cnt[l] = kk
                    b_acc[l] = bl
        for l in range(nl):
            counts[b, n0 + l] = cnt[l]


@numba.njit(parallel=True, cache=True)
def backward_kernel(g_out, out_tc, out_win, out_x, counts, nid, ref, es, ex, wt, tau_s,
                    delta_theta, need_input, g_in, g_wt_parts):
    n_batch, n_out, k_max = g_out.shape
    n_parts = g_wt_parts.shape[0]
    tau = 2.0 * tau_s
    reset = delta_theta / tau
    n_blocks = (n_out + LANES - 1) // LANES
    for p in numba.prange(n_parts):
        g_wt = g_wt_parts[p]
        err = np.zeros((LANES, max(k_max, 1)))
        e1 = np.zeros(LANES)
        e2 = np.zeros(LANES)
        kk = np.zeros(LANES, np.int64)
        next_win = np.zeros(LANES, np.int64)
        for b in range(p, n_batch, n_parts):
            for blk in range(n_blocks):
                n0 = blk * LANES
                nl = min(LANES, n_out - n0)
                # Errors through the reset coupling, from each lane's last spike backwards.
                # acc = sum_{m>k} e_m exp((r - r_m)/tau) / X'_m, held relative to r.
                j_top = -1
                for l in range(nl):
                    n = n0 + l
                    cnt = counts[b, n]
                    kk[l] = cnt - 1
                    e1[l] = 0.0
                    e2[l] = 0.0
                    next_win[l] = -1
                    if cnt == 0:
                        continue
                    acc = 0.0
                    r_acc = ref[b, out_win[b, n, cnt - 1]]
                    nonzero = False
                    for k in range(cnt - 1, -1, -1):
                        r_k = ref[b, out_win[b, n, k]]
                        if r_k != r_acc:
                            acc *= math.exp((r_k - r_acc) / tau)
                            r_acc = r_k
                        e_k = g_out[b, n, k] + reset * math.exp((out_tc[b, n, k] - r_k) / tau) * acc
                        err[l, k] = e_k
                        nonzero |= e_k != 0.0
                        acc += e_k / out_x[b, n, k]
                    if not nonzero:
                        continue
                    next_win[l] = out_win[b, n, cnt - 1]
                    if out_win[b, n, cnt - 1] > j_top:
                        j_top = out_win[b, n, cnt - 1]
                if j_top < 0:
                    continue
                # Walk the inputs backwards; e1/e2 hold sum_k e_k f1_k exp(r/tau_s) and
                # sum_k e_k f2_k exp(r/tau) over each lane's spikes whose window is >= j.
                r_cur = ref[b, j_top]
                for j in range(j_top, -1, -1):
                    r_j = ref[b, j]
                    if r_j != r_cur:
                        s1 = math.exp((r_j - r_cur) / tau_s)
                        s2 = math.exp((r_j - r_cur) / tau)
                        for l in range(nl):
                            e1[l] *= s1
                            e2[l] *= s2
                        r_cur = r_j
                    # next_win[l]: window of lane l's latest spike not yet added (-1: none)
                    hit = False
                    for l in range(nl):
                        hit |= next_win[l] == j
                    if hit:
                        for l in range(nl):
                            n = n0 + l
                            while next_win[l] == j:
                                k = kk[l]
                                x_k = out_x[b, n, k]
                                e1[l] += err[l, k] * tau / (x_k * math.exp((out_tc[b, n, k] - r_j) / tau))
                                e2[l] += err[l, k] * tau / x_k
                                kk[l] = k - 1
                                next_win[l] = out_win[b, n, k - 1] if k > 0 else -1
                    i = nid[b, j]
                    e_s = es[b, j]
                    e_x = ex[b, j]
                    g_row = g_wt[i, n0:n0 + nl]
                    for l in range(nl):
                        g_row[l] += e1[l] * e_s - e2[l] * e_x
                    if need_input:
                        w_row = wt[i, n0:n0 + nl]
                        s = 0.0
                        for l in range(nl):
                            s += w_row[l] * (e1[l] * e_s / tau_s - e2[l] * e_x / tau)
                        g_in[b, j] += s


def sort_events(input_times: torch.Tensor, p):
    """Event lists of a CPU batch (see :func:`batsnn.ops.lif.events.sort_events`).

    ``input_times`` must be valid (ascending rows padded with +inf, as
    :func:`batsnn.functional.check_spike_times` ensures): a row is read up to its first +inf.
    """
    from batsnn.ops.lif.events import SEGMENT, Events, grid_bounds

    tau_s, t_max, seg = p.tau_s, p.t_max, SEGMENT * p.tau_s
    n_batch, _, s_in = input_times.shape
    times = input_times.detach().contiguous()
    nspk = np.zeros(n_batch, np.int32)
    times_np = times.numpy()
    count_spikes(times_np, nspk)
    m = int(nspk.max()) if n_batch else 0
    f64 = dict(dtype=torch.float64)
    ts, ref, es, ex, up, xup = (torch.zeros((n_batch, m), **f64) for _ in range(6))
    nid = torch.zeros((n_batch, m), dtype=torch.int32)
    perm = torch.zeros((n_batch, m), dtype=torch.int64)
    build_events(times_np, nspk, float(tau_s), float(seg), float(t_max), ts.numpy(),
                 nid.numpy(), perm.numpy(), ref.numpy(), es.numpy(), ex.numpy(), up.numpy(),
                 xup.numpy())
    nspk = torch.from_numpy(nspk)
    return Events(ts, nid, perm, nspk, ref, es, ex, up, xup,
                  *grid_bounds(ts, nspk, p, input_times.dtype))


def forward(ev, weight, p, *, synapse, need_aux=True):
    """Run the forward kernel; returns ``(times, t_continuous, window, X, counts)``.

    With ``need_aux=False`` (no backward will follow) the last three are left empty.
    """
    tau_s, theta, delta_theta, t_max, dt = p.tau_s, p.theta, p.delta_theta, p.t_max, p.dt
    n_batch = ev.ts.shape[0]
    n_out = weight.shape[0]
    shape = (n_batch, n_out, p.max_spikes)
    out_t = torch.full(shape, math.inf, dtype=weight.dtype)  # the caller's dtype
    # read only below counts: no initialisation needed
    aux_shape = shape if need_aux else (0, 0, 0)
    out_tc = torch.empty(aux_shape, dtype=torch.float64)
    out_win = torch.empty(aux_shape, dtype=torch.int32)
    out_x = torch.empty(aux_shape, dtype=torch.float64)
    counts = torch.zeros((n_batch, n_out), dtype=torch.int64)
    # float32 weights stay float32 (half the memory traffic); products are taken in float64
    wt = weight.detach().t().contiguous()
    forward_kernel(ev.ts.numpy(), ev.nid.numpy(), ev.nspk.numpy(), ev.ref.numpy(), ev.es.numpy(),
                   ev.ex.numpy(), ev.up.numpy(), ev.xup.numpy(), wt.numpy(), float(tau_s),
                   float(theta), float(delta_theta), float(t_max), float(dt),
                   weight.dtype == torch.float32, bool(need_aux), out_t.numpy(),
                   out_tc.numpy(), out_win.numpy(), out_x.numpy(), counts.numpy())
    return out_t, out_tc, out_win, out_x, counts


def backward(g_out, saved, ev, weight, p, *, synapse, need_input):
    """Run the backward kernel; returns ``(grad of sorted input events (B, M), grad_weight)``."""
    out_tc, out_win, out_x, counts = saved
    n_batch, m = ev.ts.shape
    n_parts = max(1, min(n_batch, numba.get_num_threads()))
    wt = weight.detach().t().contiguous()
    g_in = torch.zeros((n_batch, m), dtype=torch.float64)
    g_wt_parts = torch.zeros((n_parts,) + tuple(wt.shape), dtype=torch.float64)
    g = g_out.detach().to(torch.float64).contiguous()
    backward_kernel(g.numpy(), out_tc.numpy(), out_win.numpy(), out_x.numpy(), counts.numpy(),
                    ev.nid.numpy(), ev.ref.numpy(), ev.es.numpy(), ev.ex.numpy(), wt.numpy(),
                    p.tau_s, p.delta_theta, bool(need_input), g_in.numpy(),
                    g_wt_parts.numpy())
    return g_in, g_wt_parts.sum(0).t()
