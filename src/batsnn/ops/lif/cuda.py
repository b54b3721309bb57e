"""GPU kernels of the LIF layer (Triton; optional).

One program (one warp) handles one sample and a block of output neurons, one neuron a lane:
the sample's time-sorted event list is read in order (every lane reads the same event, a
broadcast; the next two events and their weight rows are already being loaded), the weights
come from the transposed matrix ``wt[i, n]`` so that a block reads one contiguous run per
event (coalesced), and the exact root search runs masked, lane by lane, only when some lane
passes the root-free pre-test (model.md sections 1, 2, 6; the same arithmetic as the CPU
kernels in :mod:`batsnn.ops.lif.cpu`). The backward walks the same list in reverse. float32
inputs are computed in float32, float64 inputs in float64. Gradients are accumulated with
atomic adds across samples and neurons, so float32 gradients can differ between runs in the
last bits.

Event lists of float32 layer outputs come from batsnn's own stable sort (compact the finite
times, sort tiles of keys, merge the tiles by rank), whose cost follows the number of spikes;
``torch.sort`` sorts the rest. Nothing here synchronises the host, so a training step can be
recorded as a CUDA graph (:mod:`batsnn.experiments.graphs`).

Importing this module needs Triton; :func:`available` says whether the GPU path can run.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from batsnn.ops.lif.events import SEGMENT, Events, grid_bounds

_MARGIN = 1e-6  # relative margin of the root-free pre-test (float32-safe)
_INTERP = os.environ.get("TRITON_INTERPRET", "0") == "1"


def available() -> bool:
    return torch.cuda.is_available()


@triton.jit
def _exp(x, INTERP: tl.constexpr):
    if INTERP:  # Triton's CPU interpreter (tests) has no libdevice
        return tl.exp(x)
    else:
        return libdevice.exp(x)


@triton.jit
def _log(x, INTERP: tl.constexpr):
    if INTERP:
        return tl.log(x)
    else:
        return libdevice.log(x)


@triton.jit
def _sqrt(x, INTERP: tl.constexpr):
    if INTERP:
        return tl.sqrt(x)
    else:
        return libdevice.sqrt(x)


@triton.jit
def _grid_time(t, dt, USE_DT: tl.constexpr, INTERP: tl.constexpr):
    # first grid point strictly after t: t + dt - fmod(t, dt) (fmod exact, as in C and torch),
    # taken in float64 with the float64 step like the CPU kernels, then rounded to t's dtype
    if USE_DT:
        t64 = t.to(tl.float64)
        if INTERP:
            pos = t64 + dt - t64 % dt
            neg = dt * (tl.floor(t64 / dt) + 1.0)
        else:
            pos = t64 + dt - libdevice.fmod(t64, dt)
            neg = dt * (libdevice.floor(t64 / dt) + 1.0)
        return tl.where(t64 >= 0.0, pos, neg).to(t.dtype)
    else:
        return t


@triton.jit
def _pretest(A, Bt, U, c, MARGIN: tl.constexpr):
    # Root-free test that the earliest crossing lies before the window's end (see the CPU
    # kernel): A > 0, B > 0 and either f(u) <= 0, or D >= 0 and u past the vertex B/(2A).
    f_u = (A * U - Bt) * U + c
    return ((A > 0.0) & (Bt > 0.0)
            & ((f_u <= MARGIN * (A * U * U + Bt * U + c))
               | ((2.0 * A * U <= Bt * (1.0 + MARGIN)) & (Bt * Bt >= 4.0 * A * c * (1.0 - MARGIN)))))


@triton.jit
def _compact_kernel(t_ptr, key_ptr, cnt_ptr, M, KW, BLOCK: tl.constexpr):
    # Sort keys of a sample's finite spike times, in input order: the time's bits (a float32
    # >= 0 orders as its bit pattern) over the flat index, so that equal times keep input order.
    b = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    total = 0
    j0 = 0
    while j0 < M:
        jj = j0 + offs
        t = tl.load(t_ptr + b.to(tl.int64) * M + jj, mask=jj < M, other=float("inf"))
        fin = t < float("inf")
        t = tl.where(t == 0.0, 0.0, t)  # -0.0 sorts as 0.0
        key = (t.to(tl.int32, bitcast=True).to(tl.int64) << 32) | jj.to(tl.int64)
        pos = total + tl.cumsum(fin.to(tl.int32), axis=0) - 1
        tl.store(key_ptr + b.to(tl.int64) * KW + pos, key, mask=fin)
        total += tl.sum(fin.to(tl.int32), axis=0)
        j0 += BLOCK
    tl.store(cnt_ptr + b, total)


@triton.jit
def _tile_sort_kernel(key_ptr, cnt_ptr, KW, TILE: tl.constexpr):
    # Sort tile t of a sample's keys in place (keys past the count sort last).
    b = tl.program_id(0)
    t0 = tl.program_id(1) * TILE
    count = tl.load(cnt_ptr + b)
    if t0 < count:
        jj = t0 + tl.arange(0, TILE)
        ptr = key_ptr + b.to(tl.int64) * KW + jj
        k = tl.load(ptr, mask=jj < count, other=0x7FFFFFFFFFFFFFFF)
        tl.store(ptr, tl.sort(k), mask=jj < count)


@triton.jit
def _merge_kernel(key_ptr, cnt_ptr, ts_ptr, perm_ptr, M, KW, TILE: tl.constexpr,
                  LOG_TILE: tl.constexpr):
    # Each key's place in the sorted list: its rank in its own sorted tile plus, per other
    # tile, the number of smaller keys there (binary search; keys are distinct). The
    # positions of this tile's range past the count get the padding (+inf, index 0).
    b = tl.program_id(0)
    t = tl.program_id(1)
    t0 = t * TILE
    count = tl.load(cnt_ptr + b)
    row = b.to(tl.int64)
    i = tl.arange(0, TILE)
    jj = t0 + i
    valid = jj < count
    k = tl.load(key_ptr + row * KW + jj, mask=valid, other=0)
    pos = jj
    n_tiles = (count + TILE - 1) // TILE
    u = 0
    while u < n_tiles:
        if u != t:
            lo = tl.zeros([TILE], dtype=tl.int32)
            hi = lo + tl.minimum(count - u * TILE, TILE)
            for _ in tl.static_range(LOG_TILE + 1):
                open_ = lo < hi
                mid = (lo + hi) // 2
                v = tl.load(key_ptr + row * KW + u * TILE + mid, mask=valid & open_, other=0)
                less = v < k
                lo = tl.where(open_ & less, mid + 1, lo)
                hi = tl.where(open_ & (~less), mid, hi)
            pos = pos + tl.where(u < t, lo - TILE, lo)
        u += 1
    t_bits = (k >> 32).to(tl.int32)
    tl.store(ts_ptr + row * M + pos, t_bits.to(tl.float32, bitcast=True), mask=valid)
    tl.store(perm_ptr + row * M + pos, k & 0xFFFFFFFF, mask=valid)
    pad = (jj >= count) & (jj < M)
    tl.store(ts_ptr + row * M + jj, tl.zeros([TILE], dtype=tl.float32) + float("inf"),
             mask=pad)
    tl.store(perm_ptr + row * M + jj, tl.zeros([TILE], dtype=tl.int64), mask=pad)


@triton.jit
def _prep_kernel(ts_ptr, perm_ptr, nid_ptr, nspk_ptr, ref_ptr, es_ptr, ex_ptr, xup_ptr, prm_ptr,
                 M, S_IN, BLOCK: tl.constexpr, INTERP: tl.constexpr):
    # One program per sample: the per-event arrays of events.sort_events from the sorted
    # times, up to the first +inf (the padding is never read by the kernels).
    b = tl.program_id(0)
    tau_s = tl.load(prm_ptr + 0)
    t_max = tl.load(prm_ptr + 3)
    seg = tl.load(prm_ptr + 5)
    tau = 2.0 * tau_s
    row = b.to(tl.int64) * M
    offs = tl.arange(0, BLOCK)
    total = 0
    full = True
    j0 = 0
    while (j0 < M) & full:
        jj = j0 + offs
        inb = jj < M
        t = tl.load(ts_ptr + row + jj, mask=inb, other=float("inf"))
        fin = t < float("inf")
        nxt = tl.load(ts_ptr + row + jj + 1, mask=(jj + 1) < M, other=float("inf"))
        p = tl.load(perm_ptr + row + jj, mask=fin, other=0)
        safe = tl.where(fin, t, 0.0)
        r = tl.floor(safe / seg) * seg
        up = tl.minimum(nxt, t_max)  # the window's end
        tl.store(nid_ptr + row + jj, (p // S_IN).to(tl.int32), mask=fin)
        tl.store(ref_ptr + row + jj, r, mask=fin)
        tl.store(es_ptr + row + jj, _exp((safe - r) / tau_s, INTERP), mask=fin)
        tl.store(ex_ptr + row + jj, _exp((safe - r) / tau, INTERP), mask=fin)
        tl.store(xup_ptr + row + jj, _exp(-(up - r) / tau, INTERP), mask=fin)
        n_fin = tl.sum(fin.to(tl.int32), axis=0)
        total += n_fin
        full = n_fin == BLOCK
        j0 += BLOCK
    tl.store(nspk_ptr + b, total)


@triton.jit
def _event(ts_ptr, ref_ptr, es_ptr, ex_ptr, xup_ptr, wt_ptr, row, j, i, ok, n, nmask, N):
    """Event ``j`` of a sample, presynaptic neuron ``i``: (time, reference, exponentials,
    window-end factor, weight row); padding where ``ok`` is false."""
    return (tl.load(ts_ptr + row + j, mask=ok, other=float("inf")),
            tl.load(ref_ptr + row + j, mask=ok, other=0.0),
            tl.load(es_ptr + row + j, mask=ok, other=0.0),
            tl.load(ex_ptr + row + j, mask=ok, other=0.0),
            tl.load(xup_ptr + row + j, mask=ok, other=0.0),
            tl.load(wt_ptr + i * N + n, mask=tl.where(ok, nmask, False), other=0.0))


@triton.jit
def _event_back(ref_ptr, es_ptr, ex_ptr, nid_ptr, row, j):
    """What the backward reads of event ``j``: (reference, exponentials, presynaptic
    neuron); padding for ``j < 0``."""
    ok = j >= 0
    return (tl.load(ref_ptr + row + j, mask=ok, other=0.0),
            tl.load(es_ptr + row + j, mask=ok, other=0.0),
            tl.load(ex_ptr + row + j, mask=ok, other=0.0),
            tl.load(nid_ptr + row + j, mask=ok, other=0).to(tl.int64))


@triton.jit
def _forward_kernel(ts_ptr, nid_ptr, nspk_ptr, ref_ptr, es_ptr, ex_ptr, xup_ptr, wt_ptr,
                    prm_ptr, dt_ptr, out_t_ptr, out_tc_ptr, out_win_ptr, out_x_ptr, cnt_ptr,
                    M, N, K: tl.constexpr, BLOCK: tl.constexpr, USE_DT: tl.constexpr,
                    MARGIN: tl.constexpr, INTERP: tl.constexpr, NEED_AUX: tl.constexpr):
    # One program: one sample and BLOCK output neurons, one neuron per lane, the events in
    # time order. The exact root search runs only when some lane passes the pre-test.
    b = tl.program_id(0)
    n = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    nmask = n < N
    tau_s = tl.load(prm_ptr + 0)
    theta = tl.load(prm_ptr + 1)
    delta_theta = tl.load(prm_ptr + 2)
    t_max = tl.load(prm_ptr + 3)
    dt = tl.load(dt_ptr)  # float64
    tau = 2.0 * tau_s
    c = theta / tau
    reset = delta_theta / tau
    m = tl.load(nspk_ptr + b)
    row = b.to(tl.int64) * M
    zero = tl.zeros([BLOCK], dtype=tau_s.dtype)
    a = zero
    bb = zero
    last = zero - float("inf")
    cnt = tl.zeros([BLOCK], dtype=tl.int32)
    out_base = (b.to(tl.int64) * N + n) * K
    # software pipeline: events j+1 and j+2 are in flight (data and weight row) while event j
    # is integrated, and the presynaptic neuron of event j+3 is being read
    i_1 = tl.load(nid_ptr + row, mask=m > 0, other=0).to(tl.int64)
    t_1, r_1, es_1, ex_1, u_1, w_1 = _event(ts_ptr, ref_ptr, es_ptr, ex_ptr, xup_ptr, wt_ptr,
                                            row, 0, i_1, m > 0, n, nmask, N)
    i_2 = tl.load(nid_ptr + row + 1, mask=m > 1, other=0).to(tl.int64)
    t_2, r_2, es_2, ex_2, u_2, w_2 = _event(ts_ptr, ref_ptr, es_ptr, ex_ptr, xup_ptr, wt_ptr,
                                            row, 1, i_2, m > 1, n, nmask, N)
    i_3 = tl.load(nid_ptr + row + 2, mask=m > 2, other=0).to(tl.int64)
    r_cur = r_1
    j = 0
    while j < m:
        t_j = t_1
        r_j = r_1
        es_j = es_1
        ex_j = ex_1
        u_j = u_1
        w = w_1.to(tau_s.dtype)
        t_1 = t_2
        r_1 = r_2
        es_1 = es_2
        ex_1 = ex_2
        u_1 = u_2
        w_1 = w_2
        t_2, r_2, es_2, ex_2, u_2, w_2 = _event(ts_ptr, ref_ptr, es_ptr, ex_ptr, xup_ptr, wt_ptr,
                                                row, j + 2, i_3, j + 2 < m, n, nmask, N)
        i_3 = tl.load(nid_ptr + row + j + 3, mask=j + 3 < m, other=0).to(tl.int64)
        if r_j != r_cur:  # a new reference-time segment: rescale the sums
            a = a * _exp((r_cur - r_j) / tau_s, INTERP)
            bb = bb * _exp((r_cur - r_j) / tau, INTERP)
            r_cur = r_j
        a += w * es_j
        bb += w * ex_j
        cand = _pretest(a, bb, u_j, c, MARGIN) & (cnt < K) & ((zero + t_j) < t_max)
        if tl.max(cand.to(tl.int32), axis=0) > 0:
            # the exact tests of model.md sections 1 and 6, as in the CPU kernel; the window
            # ends at the next input or t_max
            upper = tl.minimum(t_1, t_max)
            lower = tl.maximum(last, t_j)
            go = cand
            while tl.max(go.to(tl.int32), axis=0) > 0:
                disc = bb * bb - 4.0 * a * c
                x = _sqrt(tl.maximum(disc, 0.0), INTERP)
                den = bb + x
                ratio = 2.0 * a / tl.where(den == 0.0, 1.0, den)
                ok = go & (disc >= 0.0) & (den != 0.0) & (ratio > 0.0)
                t_c = r_j + tau * _log(tl.where(ok, ratio, 1.0), INTERP)
                t_e = _grid_time(t_c, dt, USE_DT, INTERP)
                ok = ok & (t_e > lower) & (t_e <= upper)
                slot = out_base + cnt
                tl.store(out_t_ptr + slot, t_e, mask=ok)
                if NEED_AUX:  # what the backward needs; skipped for inference
                    tl.store(out_tc_ptr + slot, t_c, mask=ok)
                    tl.store(out_x_ptr + slot, x, mask=ok)
                    tl.store(out_win_ptr + slot, tl.zeros_like(cnt) + j, mask=ok)
                bb = tl.where(ok, bb - reset * ratio, bb)  # exp((t_c - r_j)/tau) = ratio
                cnt += ok.to(tl.int32)
                lower = tl.where(ok, t_e, lower)
                go = ok & (cnt < K)
            # max(last, t_j) for lanes without a spike changes no later window test
            last = tl.where(cand, lower, last)
        j += 1
    tl.store(cnt_ptr + b.to(tl.int64) * N + n, cnt.to(tl.int64), mask=nmask)


@triton.jit
def _backward_kernel(g_ptr, tc_ptr, win_ptr, x_ptr, cnt_ptr, nid_ptr, ref_ptr, es_ptr, ex_ptr,
                     wt_ptr, prm_ptr, err_ptr, gin_ptr, gwt_ptr, M, N, K: tl.constexpr,
                     BLOCK: tl.constexpr, NEED_INPUT: tl.constexpr, LANE_ATOMICS: tl.constexpr,
                     INTERP: tl.constexpr):
    b = tl.program_id(0)
    n = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    nmask = n < N
    tau_s = tl.load(prm_ptr + 0)
    delta_theta = tl.load(prm_ptr + 2)
    tau = 2.0 * tau_s
    inv_tau_s = 1.0 / tau_s
    inv_tau = 1.0 / tau
    reset = delta_theta / tau
    row = b.to(tl.int64) * M
    base = (b.to(tl.int64) * N + n) * K
    cnt = tl.load(cnt_ptr + b.to(tl.int64) * N + n, mask=nmask, other=0).to(tl.int32)
    has = cnt > 0
    last_win = tl.load(win_ptr + base + cnt - 1, mask=has, other=-1)
    zero = tl.zeros([BLOCK], dtype=tau_s.dtype)
    # errors through the reset coupling, last spike first: acc = sum_{m>k} e_m / X_m in
    # the units of the current spike's segment
    acc = zero
    r_acc = tl.load(ref_ptr + row + tl.maximum(last_win, 0), mask=has, other=0.0)
    for kk in range(0, K):
        k = K - 1 - kk
        valid = k < cnt
        win = tl.load(win_ptr + base + k, mask=valid, other=0)
        r_k = tl.load(ref_ptr + row + win, mask=valid, other=0.0)
        acc = tl.where(valid, acc * _exp((r_k - r_acc) / tau, INTERP), acc)
        r_acc = tl.where(valid, r_k, r_acc)
        t_c = tl.load(tc_ptr + base + k, mask=valid, other=0.0)
        x = tl.load(x_ptr + base + k, mask=valid, other=1.0)
        g = tl.load(g_ptr + base + k, mask=valid, other=0.0).to(tau_s.dtype)
        e_k = tl.where(valid, g + reset * _exp((t_c - r_k) / tau, INTERP) * acc, 0.0)
        tl.store(err_ptr + base + k, e_k, mask=valid)
        acc += e_k / x
    tl.debug_barrier()
    # Walk the inputs backwards. E1/E2 are the sums sum e_k f1_k exp(r/tau_s) and
    # sum e_k f2_k exp(r/tau) over each lane's spikes whose window is at or after the event;
    # j_hit, the latest window not yet added in any lane, saves the test at other events.
    j_top = tl.max(last_win, axis=0)
    next_win = last_win
    kk = cnt - 1
    e1 = zero
    e2 = zero
    j_hit = j_top
    # software pipeline as in the forward: events j-1 and j-2 are being read during event j
    r_1, es_1, ex_1, i_1 = _event_back(ref_ptr, es_ptr, ex_ptr, nid_ptr, row, j_top)
    r_2, es_2, ex_2, i_2 = _event_back(ref_ptr, es_ptr, ex_ptr, nid_ptr, row, j_top - 1)
    r_cur = r_1
    w_1 = zero
    if NEED_INPUT:
        w_1 = tl.load(wt_ptr + i_1 * N + n, mask=nmask, other=0.0).to(tau_s.dtype)
    j = j_top
    while j >= 0:
        r_j = r_1
        es_j = es_1
        ex_j = ex_1
        i_j = i_1
        w = w_1
        r_1 = r_2
        es_1 = es_2
        ex_1 = ex_2
        i_1 = i_2
        if NEED_INPUT:
            w_1 = tl.load(wt_ptr + i_1 * N + n, mask=tl.where(j >= 1, nmask, False),
                          other=0.0).to(tau_s.dtype)
        r_2, es_2, ex_2, i_2 = _event_back(ref_ptr, es_ptr, ex_ptr, nid_ptr, row, j - 2)
        if r_j != r_cur:
            e1 = e1 * _exp((r_j - r_cur) / tau_s, INTERP)
            e2 = e2 * _exp((r_j - r_cur) / tau, INTERP)
            r_cur = r_j
        if j == j_hit:
            hit = next_win == j
            while tl.max(hit.to(tl.int32), axis=0) > 0:
                slot = base + kk
                e_k = tl.load(err_ptr + slot, mask=hit, other=0.0)
                t_c = tl.load(tc_ptr + slot, mask=hit, other=0.0)
                x = tl.load(x_ptr + slot, mask=hit, other=1.0)
                e1 += tl.where(hit, e_k * tau / (x * _exp((t_c - r_j) / tau, INTERP)), 0.0)
                e2 += tl.where(hit, e_k * tau / x, 0.0)
                kk = tl.where(hit, kk - 1, kk)
                nw = tl.load(win_ptr + base + kk, mask=hit & (kk >= 0), other=-1)
                next_win = tl.where(hit, nw, next_win)
                hit = next_win == j
            j_hit = tl.max(next_win, axis=0)
        c1 = e1 * es_j
        c2 = e2 * ex_j
        coef = c1 - c2
        tl.atomic_add(gwt_ptr + i_j * N + n, coef, mask=nmask & (coef != 0.0), sem="relaxed")
        if NEED_INPUT:
            part = w * (c1 * inv_tau_s - c2 * inv_tau)
            if LANE_ATOMICS:  # a narrow layer: each lane adds its share, the warp never waits
                tl.atomic_add(gin_ptr + row + j + tl.zeros_like(n), part,
                              mask=nmask & (part != 0.0), sem="relaxed")
            else:
                contrib = tl.sum(tl.where(nmask, part, 0.0), axis=0)
                tl.atomic_add(gin_ptr + row + j, contrib, sem="relaxed")
        j -= 1


def _lanes(n_out: int, backward: bool) -> int:
    """Neurons per program (one warp): 32; the backward of a wide layer takes 64 (two per
    thread), which halves its atomic traffic per event."""
    if backward:
        return BWD_LANES or (64 if n_out > 512 else 32)
    return FWD_LANES or 32


#: Neurons per program of the forward and backward kernels; 0 picks by layer width.
FWD_LANES = int(os.environ.get("BATSNN_CUDA_FWD_LANES", "0"))
BWD_LANES = int(os.environ.get("BATSNN_CUDA_BWD_LANES", "0"))
_PREP_BLOCK = 256
#: Layers up to this width add the input gradient lane by lane (no warp reduction per event).
LANE_ATOMICS_MAX = int(os.environ.get("BATSNN_CUDA_LANE_ATOMICS_MAX", "16"))
#: Keys per tile of the GPU sort, and the row width from which it replaces ``torch.sort``.
SORT_TILE = 2048
SORT_MIN_WIDTH = 4096


def _sort_times(flat: torch.Tensor):
    """Stable sort of each row of ``flat (B, M)`` (times >= 0 or +inf): ``(times, indices)``.

    float32 rows wider than :data:`SORT_MIN_WIDTH` go through batsnn's own sort, whose cost
    follows the number of finite times (a layer's output is mostly +inf padding): compact the
    finite times, sort tiles of :data:`SORT_TILE` keys, merge the tiles by rank. Otherwise
    ``torch.sort``.
    """
    n_batch, m = flat.shape
    if flat.dtype != torch.float32 or m <= SORT_MIN_WIDTH or m >= 2**31 or n_batch == 0:
        return torch.sort(flat, dim=1, stable=True)
    tile = SORT_TILE
    n_tiles = triton.cdiv(m, tile)
    kw = n_tiles * tile
    keys = torch.empty((n_batch, kw), dtype=torch.int64, device=flat.device)
    count = torch.empty((n_batch,), dtype=torch.int32, device=flat.device)
    ts = torch.empty((n_batch, m), dtype=flat.dtype, device=flat.device)
    perm = torch.empty((n_batch, m), dtype=torch.int64, device=flat.device)
    _compact_kernel[(n_batch,)](flat, keys, count, m, kw, BLOCK=1024, num_warps=4)
    _tile_sort_kernel[(n_batch, n_tiles)](keys, count, kw, TILE=tile, num_warps=4)
    _merge_kernel[(n_batch, n_tiles)](keys, count, ts, perm, m, kw, TILE=tile,
                                      LOG_TILE=tile.bit_length() - 1, num_warps=4)
    return ts, perm


def sort_events(input_times, p):
    """Event lists on the GPU in the input's dtype, full width (no host synchronisation):
    a stable sort, then one kernel for the per-event arrays."""
    tau_s, t_max, seg = p.tau_s, p.t_max, SEGMENT * p.tau_s
    n_batch, n_in, s_in = input_times.shape
    m = n_in * s_in
    flat = input_times.detach().reshape(n_batch, m).contiguous()
    ts, perm = _sort_times(flat)
    dev, dtype = flat.device, flat.dtype
    nid = torch.empty((n_batch, m), dtype=torch.int32, device=dev)
    nspk = torch.zeros((n_batch,), dtype=torch.int32, device=dev)
    ref, es, ex, xup = (torch.empty((n_batch, m), dtype=dtype, device=dev) for _ in range(4))
    if n_batch and m:
        prm = _params(dtype, dev, tau_s, 1.0, 1.0, t_max, 0.0, seg)
        _prep_kernel[(n_batch,)](ts, perm, nid, nspk, ref, es, ex, xup, prm, m, s_in,
                                 BLOCK=_PREP_BLOCK, INTERP=_INTERP, num_warps=4)
    empty = torch.empty((0,), dtype=dtype, device=dev)
    return Events(ts, nid, perm, nspk, ref, es, ex, empty, xup,
                  *grid_bounds(ts, nspk, p, input_times.dtype))


_PARAM_CACHE: dict = {}


def _const(values: tuple, dtype, device) -> torch.Tensor:
    """A small device tensor of constants, made once (a fresh host-to-device copy per call
    would synchronise the host with the GPU, and is not allowed in CUDA-graph capture)."""
    key = (values, dtype, device)
    t = _PARAM_CACHE.get(key)
    if t is None:
        if len(_PARAM_CACHE) > 256:
            _PARAM_CACHE.clear()
        t = _PARAM_CACHE[key] = torch.tensor(values, dtype=dtype, device=device)
    return t


def _params(dtype, device, tau_s, theta, delta_theta, t_max, dt, seg=0.0):
    return _const((float(tau_s), float(theta), float(delta_theta), float(t_max), float(dt),
                   float(seg)), dtype, device)


def forward(ev, weight, p, *, synapse, need_aux=True):
    tau_s, theta, delta_theta, t_max, dt = p.tau_s, p.theta, p.delta_theta, p.t_max, p.dt
    max_spikes = p.max_spikes
    n_batch, m = ev.ts.shape
    n_out = weight.shape[0]
    dev = weight.device
    dtype = ev.es.dtype
    shape = (n_batch, n_out, max_spikes)
    out_t = torch.full(shape, math.inf, dtype=dtype, device=dev)
    aux_shape = shape if need_aux else (0, 0, 0)
    out_tc = torch.empty(aux_shape, dtype=dtype, device=dev)
    out_win = torch.empty(aux_shape, dtype=torch.int32, device=dev)
    out_x = torch.empty(aux_shape, dtype=dtype, device=dev)
    counts = torch.zeros((n_batch, n_out), dtype=torch.int64, device=dev)
    if n_batch == 0 or m == 0 or n_out == 0:
        return out_t, out_tc, out_win, out_x, counts
    wt = weight.detach().t().contiguous()
    lanes = _lanes(n_out, backward=False)
    grid = (n_batch, triton.cdiv(n_out, lanes))
    _forward_kernel[grid](ev.ts, ev.nid, ev.nspk, ev.ref, ev.es, ev.ex, ev.xup, wt,
                          _params(dtype, dev, tau_s, theta, delta_theta, t_max, dt),
                          _const((float(dt),), torch.float64, dev), out_t, out_tc,
                          out_win, out_x, counts, m, n_out, K=max_spikes, BLOCK=lanes,
                          USE_DT=bool(dt > 0), MARGIN=_MARGIN, INTERP=_INTERP,
                          NEED_AUX=bool(need_aux), num_warps=1)
    return out_t, out_tc, out_win, out_x, counts


def backward(g_out, saved, ev, weight, p, *, synapse, need_input):
    tau_s, theta, delta_theta, t_max, dt = p.tau_s, p.theta, p.delta_theta, p.t_max, p.dt
    out_tc, out_win, out_x, counts = saved
    n_batch, m = ev.ts.shape
    n_out, n_in = weight.shape
    dtype = ev.es.dtype
    dev = weight.device
    g_in = torch.zeros((n_batch, m), dtype=dtype, device=dev)
    g_wt = torch.zeros((n_in, n_out), dtype=dtype, device=dev)
    if n_batch == 0 or m == 0 or n_out == 0:
        return g_in, g_wt.t()
    k = out_tc.shape[2]
    wt = weight.detach().t().contiguous()
    err = torch.empty_like(out_tc)
    g = g_out.detach().to(dtype).contiguous()
    lanes = _lanes(n_out, backward=True)
    grid = (n_batch, triton.cdiv(n_out, lanes))
    _backward_kernel[grid](g, out_tc, out_win, out_x, counts, ev.nid, ev.ref, ev.es, ev.ex, wt,
                           _params(dtype, dev, tau_s, theta, delta_theta, t_max, dt), err, g_in,
                           g_wt, m, n_out, K=k, BLOCK=lanes, NEED_INPUT=bool(need_input),
                           LANE_ATOMICS=n_out <= LANE_ATOMICS_MAX, INTERP=_INTERP, num_warps=1)
    return g_in, g_wt.t()
