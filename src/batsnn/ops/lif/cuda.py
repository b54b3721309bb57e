"""GPU kernels of the LIF layer (Triton; optional).

One program handles one sample and a block of ``BLOCK`` output neurons, one neuron a lane:
the sample's sorted event list is read in order (every lane reads the same event, a
broadcast), the weights come from the transposed matrix ``wt[i, n]`` so that a block reads
one contiguous run per event (coalesced), and the crossing search runs masked, lane by lane,
only while some lane has a candidate (model.md sections 1, 2, 6; the same arithmetic as the
CPU kernels in :mod:`batsnn.ops.lif.cpu`). float32 inputs are computed in float32, float64
inputs in float64. The weight gradient is accumulated with atomic adds across samples, so
float32 gradients can differ between runs in the last bits.

Importing this module needs Triton; :func:`available` says whether the GPU path can run.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from batsnn.ops.lif.events import sort_events as _sort_events_torch

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
def _forward_kernel(ts_ptr, nid_ptr, nspk_ptr, ref_ptr, es_ptr, ex_ptr, up_ptr, xup_ptr,
                    wt_ptr, prm_ptr, dt_ptr, out_t_ptr, out_tc_ptr, out_win_ptr, out_x_ptr,
                    cnt_ptr, M, N, K: tl.constexpr, BLOCK: tl.constexpr, CH: tl.constexpr,
                    USE_DT: tl.constexpr, MARGIN: tl.constexpr, INTERP: tl.constexpr,
                    NEED_AUX: tl.constexpr):
    # Events are taken CH at a time (never across a reference-time segment): the sums A and B
    # after every event of the chunk come from one prefix sum over a (CH, BLOCK) tile, and the
    # pre-test runs on the whole tile. Lanes with a candidate window then resolve their
    # earliest one with the exact root search, the resets are applied to the later windows of
    # the chunk, and the tile is tested again, until no candidate is left.
    b = tl.program_id(0)
    blk = tl.program_id(1)
    n = blk * BLOCK + tl.arange(0, BLOCK)
    nmask = n < N
    rows = tl.arange(0, CH)
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
    a0 = zero
    b0 = zero
    last = zero - float("inf")
    cnt = tl.zeros([BLOCK], dtype=tl.int32)
    out_base = (b.to(tl.int64) * N + n) * K
    r_prev = tl.load(ref_ptr + row)
    j0 = 0
    while j0 < m:
        jj = j0 + rows
        r_c = tl.load(ref_ptr + row + j0)
        rv = tl.load(ref_ptr + row + jj, mask=jj < m, other=float("inf"))
        valid = (jj < m) & (rv == r_c)  # a prefix: references never decrease
        n_valid = tl.sum(valid.to(tl.int32), axis=0)
        a0 = a0 * _exp((r_prev - r_c) / tau_s, INTERP)
        b0 = b0 * _exp((r_prev - r_c) / tau, INTERP)
        r_prev = r_c
        t_v = tl.load(ts_ptr + row + jj, mask=valid, other=float("inf"))
        es_v = tl.load(es_ptr + row + jj, mask=valid, other=0.0)
        ex_v = tl.load(ex_ptr + row + jj, mask=valid, other=0.0)
        up_v = tl.load(up_ptr + row + jj, mask=valid, other=float("inf"))
        u_v = tl.load(xup_ptr + row + jj, mask=valid, other=0.0)
        i_v = tl.load(nid_ptr + row + jj, mask=valid, other=0).to(tl.int64)
        wmask = valid[:, None] & nmask[None, :]
        w = tl.load(wt_ptr + i_v[:, None] * N + n[None, :], mask=wmask, other=0.0)
        w = w.to(tau_s.dtype)
        A = a0[None, :] + tl.cumsum(w * es_v[:, None], axis=0)
        Bt = b0[None, :] + tl.cumsum(w * ex_v[:, None], axis=0)
        live = wmask & (t_v[:, None] < t_max)
        U = u_v[:, None]
        cand = _pretest(A, Bt, U, c, MARGIN) & live & (cnt[None, :] < K)
        while tl.max(tl.max(cand.to(tl.int32), axis=1), axis=0) > 0:
            first = tl.min(tl.where(cand, rows[:, None], CH), axis=0)
            active = first < CH
            sel = rows[:, None] == first[None, :]
            a = tl.sum(tl.where(sel, A, 0.0), axis=0)
            bb = tl.sum(tl.where(sel, Bt, 0.0), axis=0)
            t_j = tl.sum(tl.where(sel, t_v[:, None], 0.0), axis=0)
            upper = tl.max(tl.where(sel, up_v[:, None], -float("inf")), axis=0)
            lower = tl.maximum(last, t_j)
            b_before = bb
            go = active
            while tl.max(go.to(tl.int32), axis=0) > 0:
                # the exact tests of model.md sections 1 and 6, as in the CPU kernel
                disc = bb * bb - 4.0 * a * c
                x = _sqrt(tl.maximum(disc, 0.0), INTERP)
                den = bb + x
                ratio = 2.0 * a / tl.where(den == 0.0, 1.0, den)
                ok = go & (disc >= 0.0) & (den != 0.0) & (ratio > 0.0)
                t_c = r_c + tau * _log(tl.where(ok, ratio, 1.0), INTERP)
                t_e = _grid_time(t_c, dt, USE_DT, INTERP)
                ok = ok & (t_e > lower) & (t_e <= upper)
                slot = out_base + cnt
                tl.store(out_t_ptr + slot, t_e, mask=ok)
                if NEED_AUX:  # what the backward needs; skipped for inference
                    tl.store(out_tc_ptr + slot, t_c, mask=ok)
                    tl.store(out_x_ptr + slot, x, mask=ok)
                    tl.store(out_win_ptr + slot, (j0 + first).to(tl.int32), mask=ok)
                bb = tl.where(ok, bb - reset * ratio, bb)  # exp((t_c - r_c)/tau) = ratio
                cnt += ok.to(tl.int32)
                lower = tl.where(ok, t_e, lower)
                go = ok & (cnt < K)
            # max(last, t_j) for lanes without a spike changes no later window test
            last = tl.where(active, lower, last)
            # the window's resets hold for B from this window on (its own row feeds the carry)
            later = rows[:, None] >= first[None, :]
            Bt = Bt + tl.where(later, (bb - b_before)[None, :], 0.0)
            cand = (_pretest(A, Bt, U, c, MARGIN) & live & (cnt[None, :] < K)
                    & (rows[:, None] > tl.where(active, first, -1)[None, :]) & cand)
        top = rows[:, None] == (n_valid - 1)
        a0 = tl.sum(tl.where(top, A, 0.0), axis=0)
        b0 = tl.sum(tl.where(top, Bt, 0.0), axis=0)
        j0 += n_valid
    tl.store(cnt_ptr + b.to(tl.int64) * N + n, cnt.to(tl.int64), mask=nmask)


@triton.jit
def _backward_kernel(g_ptr, tc_ptr, win_ptr, x_ptr, cnt_ptr, nid_ptr, ref_ptr, es_ptr, ex_ptr,
                     wt_ptr, prm_ptr, err_ptr, gin_ptr, gwt_ptr, M, N, K: tl.constexpr,
                     BLOCK: tl.constexpr, CH: tl.constexpr, NEED_INPUT: tl.constexpr,
                     INTERP: tl.constexpr):
    b = tl.program_id(0)
    blk = tl.program_id(1)
    n = blk * BLOCK + tl.arange(0, BLOCK)
    nmask = n < N
    rows = tl.arange(0, CH)
    tau_s = tl.load(prm_ptr + 0)
    delta_theta = tl.load(prm_ptr + 2)
    tau = 2.0 * tau_s
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
    # Walk the inputs backwards CH at a time (within one segment). E1/E2 are the suffix sums
    # sum e_k f1_k exp(r/tau_s) and sum e_k f2_k exp(r/tau) over each lane's spikes whose
    # window is at or after the event: a reverse prefix sum of the chunk's spike terms.
    j_top = tl.max(last_win, axis=0)
    next_win = last_win
    kk = cnt - 1
    e1c = zero
    e2c = zero
    r_prev = tl.load(ref_ptr + row + tl.maximum(j_top, 0))
    j_hi = j_top
    while j_hi >= 0:
        jj = j_hi - (CH - 1) + rows
        r_c = tl.load(ref_ptr + row + j_hi)
        rv = tl.load(ref_ptr + row + jj, mask=jj >= 0, other=-float("inf"))
        valid = (jj >= 0) & (rv == r_c)  # a suffix: references never decrease
        n_valid = tl.sum(valid.to(tl.int32), axis=0)
        j_lo = j_hi - n_valid + 1
        e1c = e1c * _exp((r_c - r_prev) / tau_s, INTERP)
        e2c = e2c * _exp((r_c - r_prev) / tau, INTERP)
        r_prev = r_c
        s1 = tl.zeros([CH, BLOCK], dtype=tau_s.dtype)
        s2 = tl.zeros([CH, BLOCK], dtype=tau_s.dtype)
        hit = next_win >= j_lo
        while tl.max(hit.to(tl.int32), axis=0) > 0:
            slot = base + kk
            e_k = tl.load(err_ptr + slot, mask=hit, other=0.0)
            t_c = tl.load(tc_ptr + slot, mask=hit, other=0.0)
            x = tl.load(x_ptr + slot, mask=hit, other=1.0)
            f1 = tl.where(hit, e_k * tau / (x * _exp((t_c - r_c) / tau, INTERP)), 0.0)
            f2 = tl.where(hit, e_k * tau / x, 0.0)
            sel = (rows[:, None] == (next_win - (j_hi - (CH - 1)))[None, :]) & hit[None, :]
            s1 += tl.where(sel, f1[None, :], 0.0)
            s2 += tl.where(sel, f2[None, :], 0.0)
            kk = tl.where(hit, kk - 1, kk)
            more = hit & (kk >= 0)
            nw = tl.load(win_ptr + base + kk, mask=more, other=-1)
            next_win = tl.where(hit, nw, next_win)
            hit = next_win >= j_lo
        e1 = e1c[None, :] + tl.cumsum(s1, axis=0, reverse=True)
        e2 = e2c[None, :] + tl.cumsum(s2, axis=0, reverse=True)
        es_v = tl.load(es_ptr + row + jj, mask=valid, other=0.0)
        ex_v = tl.load(ex_ptr + row + jj, mask=valid, other=0.0)
        i_v = tl.load(nid_ptr + row + jj, mask=valid, other=0).to(tl.int64)
        c1 = e1 * es_v[:, None]
        c2 = e2 * ex_v[:, None]
        coef = c1 - c2
        tmask = valid[:, None] & nmask[None, :]
        tl.atomic_add(gwt_ptr + i_v[:, None] * N + n[None, :], coef, mask=tmask & (coef != 0.0))
        if NEED_INPUT:
            w = tl.load(wt_ptr + i_v[:, None] * N + n[None, :], mask=tmask, other=0.0)
            contrib = tl.where(tmask, w.to(tau_s.dtype) * (c1 / tau_s - c2 / tau), 0.0)
            tl.atomic_add(gin_ptr + row + jj, tl.sum(contrib, axis=1), mask=valid)
        first_row = rows[:, None] == (CH - n_valid)
        e1c = tl.sum(tl.where(first_row, e1, 0.0), axis=0)
        e2c = tl.sum(tl.where(first_row, e2, 0.0), axis=0)
        j_hi = j_lo - 1


def _block(n_out: int) -> tuple[int, int, int]:
    """(lanes per program, events per chunk, warps): tiles of 1024 to 2048 elements."""
    lanes = max(16, min(64, triton.next_power_of_2(n_out)))
    chunk = 2048 // lanes if lanes >= 32 else 64
    return lanes, chunk, 4 if lanes * chunk >= 2048 else 2


def sort_events(input_times, tau_s, t_max, seg):
    """Event lists on the GPU in the input's dtype, full width (no host synchronisation)."""
    n_batch, n_in, s_in = input_times.shape
    return _sort_events_torch(input_times, tau_s, t_max, m=n_in * s_in, dtype=input_times.dtype,
                              seg=seg)


_PARAM_CACHE: dict = {}


def _const(values: tuple, dtype, device) -> torch.Tensor:
    """A small device tensor of constants, made once (a fresh host-to-device copy per call
    would synchronise the host with the GPU)."""
    key = (values, dtype, device)
    t = _PARAM_CACHE.get(key)
    if t is None:
        if len(_PARAM_CACHE) > 256:
            _PARAM_CACHE.clear()
        t = _PARAM_CACHE[key] = torch.tensor(values, dtype=dtype, device=device)
    return t


def _params(ev, tau_s, theta, delta_theta, t_max, dt):
    return _const((float(tau_s), float(theta), float(delta_theta), float(t_max), float(dt)),
                  ev.es.dtype, ev.es.device)


def forward(ev, weight, *, tau_s, theta, delta_theta, max_spikes, t_max, dt, need_aux=True):
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
    block, chunk, warps = _block(n_out)
    grid = (n_batch, triton.cdiv(n_out, block))
    _forward_kernel[grid](ev.ts, ev.nid, ev.nspk, ev.ref, ev.es, ev.ex, ev.up, ev.xup, wt,
                          _params(ev, tau_s, theta, delta_theta, t_max, dt),
                          _const((float(dt),), torch.float64, dev), out_t, out_tc,
                          out_win, out_x, counts, m, n_out, K=max_spikes, BLOCK=block,
                          CH=chunk, USE_DT=bool(dt > 0), MARGIN=_MARGIN, INTERP=_INTERP,
                          NEED_AUX=bool(need_aux), num_warps=warps)
    return out_t, out_tc, out_win, out_x, counts


def backward(g_out, saved, ev, weight, *, tau_s, delta_theta, need_input, theta=1.0,
             t_max=math.inf, dt=0.0):
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
    block, chunk, warps = _block(n_out)
    grid = (n_batch, triton.cdiv(n_out, block))
    _backward_kernel[grid](g, out_tc, out_win, out_x, counts, ev.nid, ev.ref, ev.es, ev.ex, wt,
                           _params(ev, tau_s, theta, delta_theta, t_max, dt), err, g_in, g_wt,
                           m, n_out, K=k, BLOCK=block, CH=chunk, NEED_INPUT=bool(need_input),
                           INTERP=_INTERP, num_warps=warps)
    return g_in, g_wt.t()
