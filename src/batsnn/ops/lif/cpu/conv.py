"""The conv synapse on the CPU: each output neuron reads the events of its receptive field.

A task is one sample, a run of ``CHUNK`` output positions and a block of up to ``LANES``
output channels (the lanes), taken one position at a time: the position's receptive-field
list (:mod:`.rf`, time-ordered, with the window ends of that list) is the event stream the
block shares. The event of input ``(ci, iy, ix)`` reaches the position through kernel tap
``(ky, kx)``; its weights onto the block are the run ``wt[(ci * kH + ky) * kW + kx,
c0:c0+nl]`` of the transposed weight ``(C_in * kH * kW, C_out)``, contiguous, so that the
neuron core (:mod:`.core`, the same helpers as the dense driver) runs its lane loops over
plain arrays. Lane ``l`` is output neuron ``(c0 + l) * P + q`` (``P = H_out * W_out``,
``q`` the position).

The semantics are those of a dense layer whose weight is the unrolled convolution:
integrating only the receptive field is exact because an event of weight zero changes
neither ``A`` nor ``B``, and the windows between two receptive-field events, which the
dense layer splits at every zero-weight event, join into one window from the first to the
next receptive-field event (its grid index ``kup`` when ``dt > 0``) with the same spikes.
The window index kept for the backward is the event's index in the sample's global list,
so the core's backward helpers walk the receptive-field list unchanged.

The backward walks each position's list from its last window with a spike down to the
first; the gradient of each list entry goes to its global event ``g_in[b, j]`` (the
samples are split between parallel parts, so that no two parts write one sample) and to
the weight row of its kernel tap (one copy of the weight gradient per part, summed).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

from batsnn.ops.lif.cpu import cache  # noqa: F401  (the package's cache stamp)
from batsnn.ops.lif.cpu.core import (add_window_spikes, integrate, rescale, search_window,
                                     spike_errors, time_coef, weight_coef, window_x)

#: Output channels per task (the width of the lane loops).
LANES = 64
#: Output positions per forward task.
CHUNK = 16


@numba.njit(parallel=True, cache=True)
def forward_kernel(ts, ref, es, ex, kin, rf_off, rf_j, rf_w, rf_up, rf_xup, rf_kup, wt, n_pos,
                   tau_s, theta, delta_theta, dt, reset_on_grid, need_aux, out_t, out_tc,
                   out_win, out_x, counts):
    """Spikes of every (sample, output neuron) of a convolution: the sorted events ``(B, M)``
    and the receptive-field lists of :class:`.rf.ConvEvents`, ``wt`` the transposed weight
    ``(C_in * kH * kW, C_out)``, ``n_pos = H_out * W_out``; writes ``out_t``
    ``(B, C_out * n_pos, K)`` (pre-filled with +inf), ``counts`` and, with ``need_aux``,
    ``out_tc``/``out_win``/``out_x`` (continuous crossing, global window index, X)."""
    n_batch = ts.shape[0]
    c_out = wt.shape[1]
    k_max = out_t.shape[2]
    tau = 2.0 * tau_s
    c = theta / tau
    reset = delta_theta / tau
    on_grid = dt > 0.0
    n_blocks = (c_out + LANES - 1) // LANES
    n_chunks = (n_pos + CHUNK - 1) // CHUNK
    for task in numba.prange(n_batch * n_blocks * n_chunks):
        b = task // (n_blocks * n_chunks)
        rest = task - b * n_blocks * n_chunks
        blk = rest // n_chunks
        q0 = (rest - blk * n_chunks) * CHUNK
        c0 = blk * LANES
        nl = min(LANES, c_out - c0)
        a_acc = np.zeros(LANES)
        b_acc = np.zeros(LANES)
        cand = np.zeros(LANES, np.bool_)
        cnt = np.zeros(LANES, np.int64)
        last = np.full(LANES, -np.inf)
        for q in range(q0, min(q0 + CHUNK, n_pos)):
            start = rf_off[b * n_pos + q]
            end = rf_off[b * n_pos + q + 1]
            if start == end:
                continue
            for l in range(nl):
                a_acc[l] = 0.0
                b_acc[l] = 0.0
                cnt[l] = 0
                last[l] = -np.inf
            n0 = c0 * n_pos + q
            r_prev = ref[b, rf_j[start]]
            for e in range(start, end):  # every entry lies before t_max
                j = rf_j[e]
                r = ref[b, j]
                if r != r_prev:
                    rescale(a_acc, b_acc, nl, r_prev - r, tau_s, tau)
                    r_prev = r
                integrate(a_acc, b_acc, wt[rf_w[e], c0:c0 + nl], nl, es[b, j], ex[b, j])
                # the window after the entry, up to the list's next event
                lo = kin[b, j] if on_grid else ts[b, j]
                hi = rf_kup[e] if on_grid else rf_up[e]
                if hi <= lo:
                    continue
                u = window_x(rf_xup[e], rf_up[e], hi, dt, on_grid, tau)
                search_window(a_acc, b_acc, cand, cnt, last, nl, r, lo, hi, u, es[b, j],
                              ex[b, j], tau, c, reset, dt, reset_on_grid, k_max, j, need_aux,
                              b, n0, n_pos, out_t, out_tc, out_win, out_x)
            for l in range(nl):
                counts[b, n0 + l * n_pos] = cnt[l]


@numba.njit(parallel=True, cache=True)
def backward_kernel(g_out, out_tc, out_win, out_x, counts, ref, es, ex, rf_off, rf_j, rf_w,
                    wt, n_pos, tau_s, delta_theta, dt, reset_on_grid, need_input, g_in,
                    g_wt_parts):
    """BATS gradients of a convolution from ``g_out`` ``(B, C_out * n_pos, K)`` and the
    forward's aux arrays: adds ``dL/dt_j`` of each sorted event to ``g_in`` ``(B, M)`` (with
    ``need_input``) and the transposed weight's gradient to ``g_wt_parts``
    ``(P, C_in * kH * kW, C_out)``, one slice per parallel part (samples ``p, p + P, ...``),
    to be summed by the caller."""
    n_batch, n_out, k_max = g_out.shape
    c_out = wt.shape[1]
    n_parts = g_wt_parts.shape[0]
    tau = 2.0 * tau_s
    reset = delta_theta / tau
    n_blocks = (c_out + LANES - 1) // LANES
    for p in numba.prange(n_parts):
        g_wt = g_wt_parts[p]
        err = np.zeros((LANES, max(k_max, 1)))
        e1 = np.zeros(LANES)
        e2 = np.zeros(LANES)
        kk = np.zeros(LANES, np.int64)
        next_win = np.zeros(LANES, np.int64)
        for b in range(p, n_batch, n_parts):
            for blk in range(n_blocks):
                c0 = blk * LANES
                nl = min(LANES, c_out - c0)
                for q in range(n_pos):
                    n0 = c0 * n_pos + q
                    j_top = -1
                    for l in range(nl):
                        n = n0 + l * n_pos
                        w_last = spike_errors(l, b, n, counts[b, n], g_out, out_tc, out_win,
                                             out_x, ref, reset, tau, dt, reset_on_grid, err,
                                             e1, e2, kk, next_win)
                        if w_last > j_top:
                            j_top = w_last
                    if j_top < 0:
                        continue
                    start = rf_off[b * n_pos + q]
                    e_top = rf_off[b * n_pos + q + 1] - 1
                    while rf_j[e_top] > j_top:  # the entry of the last window with a spike
                        e_top -= 1
                    r_cur = ref[b, j_top]
                    for e in range(e_top, start - 1, -1):
                        j = rf_j[e]
                        r_j = ref[b, j]
                        if r_j != r_cur:
                            rescale(e1, e2, nl, r_j - r_cur, tau_s, tau)
                            r_cur = r_j
                        hit = False
                        for l in range(nl):
                            hit |= next_win[l] == j
                        if hit:
                            for l in range(nl):
                                add_window_spikes(l, j, r_j, b, n0 + l * n_pos, out_tc,
                                                  out_win, out_x, tau, err, e1, e2, kk,
                                                  next_win)
                        row = rf_w[e]
                        e_s = es[b, j]
                        e_x = ex[b, j]
                        g_row = g_wt[row, c0:c0 + nl]
                        for l in range(nl):
                            g_row[l] += weight_coef(e1[l], e2[l], e_s, e_x)
                        if need_input:
                            w_row = wt[row, c0:c0 + nl]
                            s = 0.0
                            for l in range(nl):
                                s += w_row[l] * time_coef(e1[l], e2[l], e_s, e_x, tau_s, tau)
                            g_in[b, j] += s


def _transposed(weight: torch.Tensor) -> torch.Tensor:
    """``(C_out, C_in, kH, kW)`` -> ``(C_in * kH * kW, C_out)``, contiguous."""
    return weight.detach().permute(1, 2, 3, 0).reshape(-1, weight.shape[0]).contiguous()


def forward(ev, weight, p, *, synapse, need_aux=True):
    """Forward of a convolution: ``ev`` a :class:`.rf.ConvEvents`, ``weight``
    ``(C_out, C_in, kH, kW)``; returns ``(times, t_continuous, window, X, counts)`` as the
    backend contract (:mod:`batsnn.ops.lif`) says, neurons ``(co, oy, ox)`` in C order."""
    n_batch = ev.ts.shape[0]
    n_pos = synapse.positions
    shape = (n_batch, weight.shape[0] * n_pos, p.max_spikes)
    out_t = torch.full(shape, math.inf, dtype=weight.dtype)
    aux_shape = shape if need_aux else (0, 0, 0)
    out_tc = torch.empty(aux_shape, dtype=torch.float64)
    out_win = torch.empty(aux_shape, dtype=torch.int32)
    out_x = torch.empty(aux_shape, dtype=torch.float64)
    counts = torch.zeros(shape[:2], dtype=torch.int64)
    forward_kernel(ev.ts.numpy(), ev.ref.numpy(), ev.es.numpy(), ev.ex.numpy(), ev.kin.numpy(),
                   ev.rf_off.numpy(), ev.rf_j.numpy(), ev.rf_w.numpy(), ev.rf_up.numpy(),
                   ev.rf_xup.numpy(), ev.rf_kup.numpy(), _transposed(weight).numpy(), n_pos,
                   p.tau_s, p.theta, p.delta_theta, p.dt, p.reset_on_grid, bool(need_aux),
                   out_t.numpy(), out_tc.numpy(), out_win.numpy(), out_x.numpy(), counts.numpy())
    return out_t, out_tc, out_win, out_x, counts


def backward(g_out, saved, ev, weight, p, *, synapse, need_input):
    """Backward of a convolution: ``(grad of the sorted events (B, M), grad_weight
    (C_out, C_in, kH, kW))``, float64."""
    out_tc, out_win, out_x, counts = saved
    n_batch, m = ev.ts.shape
    n_parts = max(1, min(n_batch, numba.get_num_threads()))
    wt = _transposed(weight)
    g_in = torch.zeros((n_batch, m), dtype=torch.float64)
    g_wt_parts = torch.zeros((n_parts,) + tuple(wt.shape), dtype=torch.float64)
    g = g_out.detach().to(torch.float64).contiguous()
    backward_kernel(g.numpy(), out_tc.numpy(), out_win.numpy(), out_x.numpy(), counts.numpy(),
                    ev.ref.numpy(), ev.es.numpy(), ev.ex.numpy(), ev.rf_off.numpy(),
                    ev.rf_j.numpy(), ev.rf_w.numpy(), wt.numpy(), synapse.positions, p.tau_s,
                    p.delta_theta, p.dt, p.reset_on_grid, bool(need_input), g_in.numpy(),
                    g_wt_parts.numpy())
    c_out, c_in, kh, kw = weight.shape
    return g_in, g_wt_parts.sum(0).reshape(c_in, kh, kw, c_out).permute(3, 0, 1, 2)
