"""Forward and backward kernels of a layer of LIF neurons over a synapse (Triton).

One program (one warp) handles one sample and a block of output neurons, one neuron a lane:
the sample's time-sorted event list is read in order (every lane reads the same event, a
broadcast; the next two events and their weights are already being loaded), and the exact
root search (:func:`.core.emit`) runs masked, lane by lane, only when some lane passes the
root-free pre-test. The backward walks the same list in reverse. Gradients are accumulated
with atomic adds across samples and neurons, so float32 gradients can differ between runs in
the last bits.

The synapse is a compile-time switch (``SYNAPSE``, the ``kind`` of a value of
:mod:`batsnn.ops.lif.synapse`): :func:`_weight` says how an event finds its weight for the
block's neurons and :func:`_add_grads` where the weight and input-time gradients of an event
go. ``"dense"``: every neuron reads every event; the weights come from the transposed
matrix ``wt[i, n]`` (``(N_in, N_out)``), so that a block reads one contiguous run per event
(coalesced). Another synapse is another branch of these two helpers; the neuron core
(:mod:`.core`) stays as it is.
"""

from __future__ import annotations

import triton
import triton.language as tl

from batsnn.ops.lif.cuda.core import (add_window_spikes, emit, integrate, may_cross, may_fire,
                                      rescale, spike_errors, time_coef, weight_coef)

#: The synapse kinds these kernels compile.
SYNAPSES = ("dense",)


@triton.jit
def _weight(wt_ptr, i, n, mask, N, SYNAPSE: tl.constexpr):
    """The weight from presynaptic neuron ``i`` (int64) to the block's neurons ``n``
    (0 where ``mask`` is false)."""
    if SYNAPSE == "dense":
        return tl.load(wt_ptr + i * N + n, mask=mask, other=0.0)
    else:
        tl.static_assert(False, "unknown synapse")


@triton.jit
def _add_grads(gwt_ptr, gin_ptr, i, j, row, n, nmask, N, g_w, g_t, w, SYNAPSE: tl.constexpr,
               NEED_INPUT: tl.constexpr, LANE_ATOMICS: tl.constexpr):
    """Add event ``j``'s gradients (presynaptic neuron ``i``, weights ``w`` to the lanes):
    ``g_w`` to the weights, ``w * g_t`` summed over the lanes to the event's time
    (``gin[row + j]``, only with ``NEED_INPUT``)."""
    if SYNAPSE == "dense":
        tl.atomic_add(gwt_ptr + i * N + n, g_w, mask=nmask & (g_w != 0.0), sem="relaxed")
        if NEED_INPUT:
            part = w * g_t
            if LANE_ATOMICS:  # a narrow layer: each lane adds its share, the warp never waits
                tl.atomic_add(gin_ptr + row + j + tl.zeros_like(n), part,
                              mask=nmask & (part != 0.0), sem="relaxed")
            else:
                contrib = tl.sum(tl.where(nmask, part, 0.0), axis=0)
                tl.atomic_add(gin_ptr + row + j, contrib, sem="relaxed")
    else:
        tl.static_assert(False, "unknown synapse")


@triton.jit
def _event(ts_ptr, ref_ptr, es_ptr, ex_ptr, xup_ptr, wt_ptr, row, j, i, ok, n, nmask, N,
           SYNAPSE: tl.constexpr):
    """Event ``j`` of a sample, presynaptic neuron ``i``: (time, reference, exponentials,
    window-end factor, weights); padding where ``ok`` is false."""
    return (tl.load(ts_ptr + row + j, mask=ok, other=float("inf")),
            tl.load(ref_ptr + row + j, mask=ok, other=0.0),
            tl.load(es_ptr + row + j, mask=ok, other=0.0),
            tl.load(ex_ptr + row + j, mask=ok, other=0.0),
            tl.load(xup_ptr + row + j, mask=ok, other=0.0),
            _weight(wt_ptr, i, n, tl.where(ok, nmask, False), N, SYNAPSE))


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
def forward_kernel(ts_ptr, nid_ptr, nspk_ptr, ref_ptr, es_ptr, ex_ptr, xup_ptr, kin_ptr,
                   kup_ptr, wt_ptr, prm_ptr, grid_ptr, out_t_ptr, out_tc_ptr, out_win_ptr,
                   out_x_ptr, cnt_ptr, M, N, K: tl.constexpr, BLOCK: tl.constexpr,
                   SYNAPSE: tl.constexpr, ON_GRID: tl.constexpr, RESET_ON_GRID: tl.constexpr,
                   MARGIN: tl.constexpr, INTERP: tl.constexpr, NEED_AUX: tl.constexpr):
    # One program: one sample and BLOCK output neurons, one neuron per lane, the events in
    # time order. The exact root search runs only when some lane passes the pre-test.
    b = tl.program_id(0)
    n = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    nmask = n < N
    tau_s = tl.load(prm_ptr + 0)
    theta = tl.load(prm_ptr + 1)
    delta_theta = tl.load(prm_ptr + 2)
    # from this time on no window holds a spike: t_max, or on the grid G(k_T) (the driver)
    t_stop = tl.load(prm_ptr + 3)
    dt = tl.load(grid_ptr)  # float64
    tau = 2.0 * tau_s
    c = theta / tau
    reset = delta_theta / tau
    m = tl.load(nspk_ptr + b)
    row = b.to(tl.int64) * M
    zero = tl.zeros([BLOCK], dtype=tau_s.dtype)
    a = zero
    bb = zero
    if ON_GRID:  # each lane's last emitted grid index (float64)
        last = tl.zeros([BLOCK], dtype=tl.float64) - float("inf")
    else:  # each lane's last emitted time
        last = zero - float("inf")
    cnt = tl.zeros([BLOCK], dtype=tl.int32)
    out_base = (b.to(tl.int64) * N + n) * K
    # software pipeline: events j+1 and j+2 are in flight (data and weights) while event j
    # is integrated, and the presynaptic neuron of event j+3 is being read
    i_1 = tl.load(nid_ptr + row, mask=m > 0, other=0).to(tl.int64)
    t_1, r_1, es_1, ex_1, u_1, w_1 = _event(ts_ptr, ref_ptr, es_ptr, ex_ptr, xup_ptr, wt_ptr,
                                            row, 0, i_1, m > 0, n, nmask, N, SYNAPSE)
    i_2 = tl.load(nid_ptr + row + 1, mask=m > 1, other=0).to(tl.int64)
    t_2, r_2, es_2, ex_2, u_2, w_2 = _event(ts_ptr, ref_ptr, es_ptr, ex_ptr, xup_ptr, wt_ptr,
                                            row, 1, i_2, m > 1, n, nmask, N, SYNAPSE)
    i_3 = tl.load(nid_ptr + row + 2, mask=m > 2, other=0).to(tl.int64)
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
                                                row, j + 2, i_3, j + 2 < m, n, nmask, N,
                                                SYNAPSE)
        i_3 = tl.load(nid_ptr + row + j + 3, mask=j + 3 < m, other=0).to(tl.int64)
        a, bb = integrate(a, bb, w, es_j, ex_j)
        if RESET_ON_GRID:  # also at or above threshold at t_j under A <= 0
            may = may_fire(a, bb, u_j, es_j, ex_j, c, MARGIN)
        else:
            may = may_cross(a, bb, u_j, c, MARGIN)
        cand = may & (cnt < K) & ((zero + t_j) < t_stop)
        if tl.max(cand.to(tl.int32), axis=0) > 0:
            # the window after event j: (start, end] in time, or in grid indices on a grid
            if ON_GRID:
                lower = tl.maximum(last, tl.load(kin_ptr + row + j))
                hi = tl.load(kup_ptr + row + j)
            else:
                hi = tl.minimum(t_1, t_stop)
                lower = tl.maximum(last, t_j)
            bb, cnt, lower = emit(a, bb, cnt, lower, hi, cand, r_j, j, c, tau, reset, dt,
                                  out_base, out_t_ptr, out_tc_ptr, out_win_ptr, out_x_ptr,
                                  K, ON_GRID, RESET_ON_GRID, NEED_AUX, INTERP)
            # max(last, start) for lanes without a spike changes no later window test
            last = tl.where(cand, lower, last)
        # The next event opens a new reference-time segment: move the sums to its units.
        # (Decided on the two events' references in hand: a loop variable holding "the
        # current reference" lost its updates between iterations when compiled by Triton
        # 3.6, though not in its interpreter.)
        if (r_1 != r_j) & (j + 1 < m):
            a, bb = rescale(a, bb, r_j - r_1, tau_s, tau, INTERP)
        j += 1
    tl.store(cnt_ptr + b.to(tl.int64) * N + n, cnt.to(tl.int64), mask=nmask)


@triton.jit
def backward_kernel(g_ptr, tc_ptr, win_ptr, x_ptr, cnt_ptr, nid_ptr, ref_ptr, es_ptr, ex_ptr,
                    wt_ptr, prm_ptr, grid_ptr, err_ptr, gin_ptr, gwt_ptr, M, N,
                    K: tl.constexpr, BLOCK: tl.constexpr, SYNAPSE: tl.constexpr,
                    NEED_INPUT: tl.constexpr, RESET_ON_GRID: tl.constexpr,
                    LANE_ATOMICS: tl.constexpr, INTERP: tl.constexpr):
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
    last_win = tl.load(win_ptr + base + cnt - 1, mask=cnt > 0, other=-1)
    zero = tl.zeros([BLOCK], dtype=tau_s.dtype)
    spike_errors(g_ptr, tc_ptr, win_ptr, x_ptr, ref_ptr, err_ptr, row, base, cnt, last_win,
                 reset, tau, tl.load(grid_ptr), zero, K, RESET_ON_GRID, INTERP)
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
    w_1 = zero
    if NEED_INPUT:
        w_1 = _weight(wt_ptr, i_1, n, nmask, N, SYNAPSE).to(tau_s.dtype)
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
            w_1 = _weight(wt_ptr, i_1, n, tl.where(j >= 1, nmask, False), N,
                          SYNAPSE).to(tau_s.dtype)
        r_2, es_2, ex_2, i_2 = _event_back(ref_ptr, es_ptr, ex_ptr, nid_ptr, row, j - 2)
        if j == j_hit:
            e1, e2, kk, next_win = add_window_spikes(e1, e2, kk, next_win, j, r_j, base,
                                                     err_ptr, tc_ptr, x_ptr, win_ptr, tau,
                                                     INTERP)
            j_hit = tl.max(next_win, axis=0)
        g_w = weight_coef(e1, e2, es_j, ex_j)
        g_t = time_coef(e1, e2, es_j, ex_j, inv_tau_s, inv_tau)
        _add_grads(gwt_ptr, gin_ptr, i_j, j, row, n, nmask, N, g_w, g_t, w, SYNAPSE,
                   NEED_INPUT, LANE_ATOMICS)
        if (r_1 != r_j) & (j >= 1):  # the previous event lies in another segment
            e1, e2 = rescale(e1, e2, r_1 - r_j, tau_s, tau, INTERP)
        j -= 1
