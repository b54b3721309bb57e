"""The dense synapse on the CPU: every output neuron reads every input event.

A task is one sample and a block of ``LANES`` consecutive output neurons ``n0 .. n0+nl-1``:
the sample's event stream is shared by the block, and event ``j`` of input neuron
``i = nid[b, j]`` finds its weights in the row ``wt[i, n0:n0+nl]`` of the transposed
weight matrix, one contiguous run, so that the per-event update and the crossing pre-test
of :mod:`.core` run as plain loops over the lanes, which LLVM vectorises. Only lanes whose
pre-test passes run the scalar root search.

The backward walks each sample's events from the last window that holds a spike down to
the first; the weight gradient of event ``j`` goes to ``g_wt[i, n0:n0+nl]`` (one copy per
parallel part, summed afterwards), its time gradient to ``g_in[b, j]``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

from batsnn.ops.lif.cpu import cache  # noqa: F401  (the package's cache stamp)
from batsnn.ops.lif.cpu.core import (add_window_spikes, integrate, past_horizon, rescale,
                                     search_window, spike_errors, time_coef, weight_coef,
                                     window_x)
from batsnn.ops.lif.grid import last_index

#: Output neurons per task: one weight row segment per event, the width of the lane loops.
LANES = 64


@numba.njit(parallel=True, cache=True)
def forward_kernel(ts, nid, nspk, ref, es, ex, up, xup, kin, kup, wt, tau_s, theta,
                   delta_theta, t_max, dt, k_tmax, reset_on_grid, need_aux, out_t, out_tc,
                   out_win, out_x, counts):
    """Spikes of every (sample, output neuron): event arrays ``(B, M)`` of
    :class:`batsnn.ops.lif.events.Events`, ``wt`` ``(N_in, N_out)`` the transposed weight;
    writes ``out_t`` ``(B, N_out, K)`` (pre-filled with +inf), ``counts`` ``(B, N_out)`` and,
    with ``need_aux``, ``out_tc``/``out_win``/``out_x`` (continuous crossing, window, X).
    ``k_tmax``: ``k_T`` of ``t_max`` on the grid (:func:`batsnn.ops.lif.grid.last_index`)."""
    n_batch = ts.shape[0]
    n_out = wt.shape[1]
    k_max = out_t.shape[2]
    tau = 2.0 * tau_s
    c = theta / tau
    reset = delta_theta / tau
    on_grid = dt > 0.0
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
            if past_horizon(ts, kin, b, j, on_grid, t_max, k_tmax):
                break
            t_j = ts[b, j]
            r = ref[b, j]
            if r != r_prev:
                rescale(a_acc, b_acc, nl, r_prev - r, tau_s, tau)
                r_prev = r
            integrate(a_acc, b_acc, wt[nid[b, j], n0:n0 + nl], nl, es[b, j], ex[b, j])
            # the window after event j: (lo, hi] in time (dt == 0) or grid indices (dt > 0);
            # equal times (common on a grid) leave it empty
            lo = kin[b, j] if on_grid else t_j
            hi = kup[b, j] if on_grid else up[b, j]
            if hi <= lo:
                continue
            u = window_x(xup[b, j], up[b, j], hi, dt, on_grid, tau)
            search_window(a_acc, b_acc, cand, cnt, last, nl, r, lo, hi, u, es[b, j], ex[b, j],
                          tau, c, reset, dt, reset_on_grid, k_max, j, need_aux, b, n0, 1,
                          out_t, out_tc, out_win, out_x)
        for l in range(nl):
            counts[b, n0 + l] = cnt[l]


@numba.njit(parallel=True, cache=True)
def backward_kernel(g_out, out_tc, out_win, out_x, counts, nid, ref, es, ex, wt, tau_s,
                    delta_theta, dt, reset_on_grid, need_input, g_in, g_wt_parts):
    """BATS gradients from ``g_out`` ``(B, N_out, K)`` and the forward's aux arrays: adds
    ``dL/dt_j`` of each sorted event to ``g_in`` ``(B, M)`` (with ``need_input``) and the
    weight gradient to ``g_wt_parts`` ``(P, N_in, N_out)``, one slice per parallel part
    (samples ``p, p + P, ...``), to be summed by the caller."""
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
                j_top = -1
                for l in range(nl):
                    w_last = spike_errors(l, b, n0 + l, counts[b, n0 + l], g_out, out_tc,
                                          out_win, out_x, ref, reset, tau, dt, reset_on_grid,
                                          err, e1, e2, kk, next_win)
                    if w_last > j_top:
                        j_top = w_last
                if j_top < 0:
                    continue
                r_cur = ref[b, j_top]
                for j in range(j_top, -1, -1):
                    r_j = ref[b, j]
                    if r_j != r_cur:
                        rescale(e1, e2, nl, r_j - r_cur, tau_s, tau)
                        r_cur = r_j
                    hit = False
                    for l in range(nl):
                        hit |= next_win[l] == j
                    if hit:
                        for l in range(nl):
                            add_window_spikes(l, j, r_j, b, n0 + l, out_tc, out_win, out_x,
                                              tau, err, e1, e2, kk, next_win)
                    i = nid[b, j]
                    e_s = es[b, j]
                    e_x = ex[b, j]
                    g_row = g_wt[i, n0:n0 + nl]
                    for l in range(nl):
                        g_row[l] += weight_coef(e1[l], e2[l], e_s, e_x)
                    if need_input:
                        w_row = wt[i, n0:n0 + nl]
                        s = 0.0
                        for l in range(nl):
                            s += w_row[l] * time_coef(e1[l], e2[l], e_s, e_x, tau_s, tau)
                        g_in[b, j] += s


def forward(ev, weight, p, *, synapse=None, need_aux=True):
    """Forward of a dense layer: ``weight`` ``(N_out, N_in)``; returns ``(times, t_continuous,
    window, X, counts)`` as the backend contract (:mod:`batsnn.ops.lif`) says (``synapse``,
    the dense one, is not read)."""
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
    k_tmax = last_index(p.t_max, p.dt)
    forward_kernel(ev.ts.numpy(), ev.nid.numpy(), ev.nspk.numpy(), ev.ref.numpy(),
                   ev.es.numpy(), ev.ex.numpy(), ev.up.numpy(), ev.xup.numpy(),
                   ev.kin.numpy(), ev.kup.numpy(), wt.numpy(), p.tau_s, p.theta,
                   p.delta_theta, p.t_max, p.dt, k_tmax, p.reset_on_grid, bool(need_aux),
                   out_t.numpy(), out_tc.numpy(), out_win.numpy(), out_x.numpy(), counts.numpy())
    return out_t, out_tc, out_win, out_x, counts


def backward(g_out, saved, ev, weight, p, *, synapse=None, need_input):
    """Backward of a dense layer: ``(grad of the sorted events (B, M), grad_weight
    (N_out, N_in))``, float64."""
    out_tc, out_win, out_x, counts = saved
    n_batch, m = ev.ts.shape
    n_parts = max(1, min(n_batch, numba.get_num_threads()))
    wt = weight.detach().t().contiguous()
    g_in = torch.zeros((n_batch, m), dtype=torch.float64)
    g_wt_parts = torch.zeros((n_parts,) + tuple(wt.shape), dtype=torch.float64)
    g = g_out.detach().to(torch.float64).contiguous()
    backward_kernel(g.numpy(), out_tc.numpy(), out_win.numpy(), out_x.numpy(), counts.numpy(),
                    ev.nid.numpy(), ev.ref.numpy(), ev.es.numpy(), ev.ex.numpy(), wt.numpy(),
                    p.tau_s, p.delta_theta, p.dt, p.reset_on_grid, bool(need_input),
                    g_in.numpy(), g_wt_parts.numpy())
    return g_in, g_wt_parts.sum(0).t()
