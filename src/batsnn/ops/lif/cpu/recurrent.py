"""The recurrent LIF layer on the CPU: numba kernels, one sample per task.

Forward: a sample's input spikes in time order; after each one, the window up to the next
input spike (or ``t_max``) is searched layer-wide: every neuron with spikes left computes
its earliest crossing, the earliest over the layer is emitted by every neuron crossing at
that exact time, their spikes are then integrated into every neuron's sums (column
``recurrent_weight[:, m]``) and their resets into their own, and the search repeats. Each
neuron's ``A``/``B`` are held relative to a reference time ``r`` that moves to an item's
time when the item lies more than 16 ``tau_s`` past it (the exponentials never overflow).
Cost: O((input spikes + output spikes) x N) per sample.

Every integrated input spike or layer spike is an *item*; the forward records, per item,
its time, reference time and source, and per spike its neuron, slot, ``X = sqrt(D)``
(relative to its reference time) and ``seen`` (the number of items integrated before it
was found). The backward walks the items in reverse: per neuron it holds the sums
``E1 = sum_s e_s f1_s exp(rho/tau_s)`` and ``E2 = sum_s e_s f2_s exp(rho/tau)`` over the
neuron's spikes that integrated the current item (``rho`` the current reference time);
an item's weight gradient is ``E1 exp(t/tau_s) - E2 exp(t/tau)`` per neuron, and a layer
spike's total error is its loss gradient plus its coupling through every neuron's sums
(fan-out ``N``) and its own reset; it then joins its neuron's sums. Time linear in items x
``N``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

from batsnn.ops.lif.cpu import cache  # noqa: F401  (the package's cache stamp)
from batsnn.ops.lif.cpu.core import (floor_index, integrate, may_cross, pretest_constants,
                                     rescale)
from batsnn.ops.lif.grid import floor_index as floor_index_tensor
from batsnn.ops.lif.grid import last_index

#: Reference-time segment, in units of ``tau_s``: ``exp(16)`` never overflows.
SEG = 16.0


@numba.njit(inline="always")
def candidate(al, bl, r, lower, hi, c, tau, dt, on_grid, reset_on_grid):
    """The next spike of one neuron in its window (model.md sections 1 and 6, as
    :func:`batsnn.ops.lif.cpu.core.emit` decides it): ``(mark, t_c, X, emitted)``, ``mark``
    ``inf`` when there is none. ``mark`` is the time (``dt == 0``) or grid index compared
    with ``lower`` (the later of the window's start and the neuron's last spike) and ``hi``;
    sums relative to the reference time ``r``; a spike forced by the grid
    (``reset_on_grid``) has ``t_c`` its emitted time and ``X = inf``."""
    none = (np.inf, 0.0, 0.0, 0.0)
    disc = bl * bl - 4.0 * al * c
    if reset_on_grid:
        k_crossing = -np.inf
        x = np.inf
        t_c = 0.0
        if disc >= 0.0:
            x = math.sqrt(disc)
            den = bl + x
            if den != 0.0 and 2.0 * al / den > 0.0:
                t_c = r + tau * math.log(2.0 * al / den)
                k_crossing = floor_index(t_c, dt, False) + 1.0
        k = max(k_crossing, lower + 1.0)
        xe = math.exp(-(k * dt - r) / tau)
        if not (k <= hi and bl * xe - al * xe * xe >= c):
            return none
        if k > k_crossing:  # forced: its time does not move
            return (k, k * dt, np.inf, k * dt)
        return (k, t_c, x, k * dt)
    if disc < 0.0:
        return none
    x = math.sqrt(disc)
    den = bl + x
    if den == 0.0:
        return none
    ratio = 2.0 * al / den
    if ratio <= 0.0:
        return none
    t_c = r + tau * math.log(ratio)
    mark = floor_index(t_c, dt, False) + 1.0 if on_grid else t_c
    if not (mark > lower and mark <= hi):
        return none
    return (mark, t_c, x, mark * dt if on_grid else t_c)


@numba.njit(parallel=True, cache=True)
def forward_kernel(ts, kin, src, nev, s_in, wt, rt, tau_s, theta, delta_theta, t_max, dt,
                   k_tmax, reset_on_grid, out_t, counts, sp_t, sp_n, sp_slot, sp_x,
                   sp_seen, n_sp, it_t, it_tr, it_r, it_src, it_sp, n_it):
    """Spikes of every sample: ``ts``/``src`` ``(B, E)`` the time-sorted input spikes and
    their flat ``(neuron * s_in + slot)`` index (``nev[b]`` of them finite), ``kin`` their
    grid indices (``dt > 0``), ``wt`` ``(N_in, N)`` and ``rt`` ``(N, N)`` the transposed
    weights. Writes ``out_t`` ``(B, N, K)`` (pre-filled with +inf), ``counts`` and the item
    and spike records of the module docstring (item source ``>= 0`` an input's flat index,
    ``-(m + 1)`` a spike of neuron ``m``, whose spike id is ``it_sp`` and reset time
    ``it_tr``)."""
    n_batch = ts.shape[0]
    n = wt.shape[1]
    k_max = out_t.shape[2]
    tau = 2.0 * tau_s
    c = theta / tau
    reset = delta_theta / tau
    on_grid = dt > 0.0
    top = k_tmax if on_grid else t_max
    for b in numba.prange(n_batch):
        a_acc = np.zeros(n)
        b_acc = np.zeros(n)
        last = np.full(n, -np.inf)
        cand = np.full(n, np.inf)
        c_tc = np.zeros(n)
        c_x = np.zeros(n)
        c_em = np.zeros(n)
        r = 0.0
        q = 0
        ns = 0
        for j in range(nev[b]):
            tj = ts[b, j]
            lo = kin[b, j] if on_grid else tj
            if lo >= top:  # events are sorted: no window from here on holds a spike
                break
            if tj - r > SEG * tau_s:
                rescale(a_acc, b_acc, n, r - tj, tau_s, tau)
                r = tj
            integrate(a_acc, b_acc, wt[src[b, j] // s_in], n, math.exp((tj - r) / tau_s),
                      math.exp((tj - r) / tau))
            it_t[b, q] = tj
            it_r[b, q] = r
            it_src[b, q] = src[b, j]
            q += 1
            hi = np.inf
            if j + 1 < nev[b]:
                hi = kin[b, j + 1] if on_grid else ts[b, j + 1]
            if hi > top:
                hi = top
            while True:
                first = np.inf
                # the root-free pre-test rules out the neurons without a crossing before the
                # window's end (a crossing emitted at index <= hi lies before G(hi)); not
                # under resets on the grid, where a potential held above theta also fires
                t_hi = hi * dt if on_grid else hi
                pc = pretest_constants(math.exp(-(t_hi - r) / tau), c)
                for l in range(n):
                    cand[l] = np.inf
                    if counts[b, l] >= k_max:
                        continue
                    if not reset_on_grid and not may_cross(a_acc[l], b_acc[l], pc):
                        continue
                    mark, t_c, x, emitted = candidate(a_acc[l], b_acc[l], r, max(lo, last[l]),
                                                      hi, c, tau, dt, on_grid, reset_on_grid)
                    cand[l] = mark
                    c_tc[l] = t_c
                    c_x[l] = x
                    c_em[l] = emitted
                    if mark < first:
                        first = mark
                if first == np.inf:
                    break
                seen = q
                s0 = ns
                for l in range(n):  # every spike at `first`, then their effects
                    if cand[l] == first:
                        k = counts[b, l]
                        out_t[b, l, k] = c_em[l]
                        counts[b, l] = k + 1
                        last[l] = first
                        sp_t[b, ns] = c_tc[l]
                        sp_n[b, ns] = l
                        sp_slot[b, ns] = k
                        # a tangent crossing (D = 0) has no finite derivative: no gradient
                        sp_x[b, ns] = c_x[l] if c_x[l] > 0.0 else np.inf
                        sp_seen[b, ns] = seen
                        ns += 1
                for s in range(s0, ns):
                    m = sp_n[b, s]
                    t_e = c_em[m]
                    t_reset = t_e if reset_on_grid else sp_t[b, s]
                    if t_e - r > SEG * tau_s:
                        rescale(a_acc, b_acc, n, r - t_e, tau_s, tau)
                        r = t_e
                    integrate(a_acc, b_acc, rt[m], n, math.exp((t_e - r) / tau_s),
                              math.exp((t_e - r) / tau))
                    b_acc[m] -= reset * math.exp((t_reset - r) / tau)
                    it_t[b, q] = t_e
                    it_tr[b, q] = t_reset
                    it_r[b, q] = r
                    it_src[b, q] = -(m + 1)
                    it_sp[b, q] = s
                    q += 1
                lo = first
        n_sp[b] = ns
        n_it[b] = q


@numba.njit(parallel=True, cache=True)
def backward_kernel(g_out, w, rw, tau_s, delta_theta, s_in, sp_t, sp_n, sp_slot, sp_x,
                    sp_seen, n_sp, it_t, it_tr, it_r, it_src, it_sp, n_it, need_input, g_in,
                    g_w, g_r):
    """Gradients of every sample (module docstring): ``g_out`` ``(B, N, K)`` the loss
    gradient of the spike times, ``w`` ``(N, N_in)``, ``rw`` ``(N, N)``. Writes ``g_in``
    ``(B, N_in * s_in)`` (flat input slots, with ``need_input``) and adds into ``g_w``
    ``(P, N, N_in)``/``g_r`` ``(P, N, N)``, one copy per parallel part ``P``."""
    n_batch = g_out.shape[0]
    n = w.shape[0]
    n_parts = g_w.shape[0]
    tau = 2.0 * tau_s
    for part in numba.prange(n_parts):
        e1 = np.zeros(n)
        e2 = np.zeros(n)
        total = np.zeros(sp_t.shape[1])
        gw = g_w[part]
        gr = g_r[part]
        for b in range(part, n_batch, n_parts):
            e1[:] = 0.0
            e2[:] = 0.0
            ptr = n_sp[b] - 1
            rho = it_r[b, n_it[b] - 1] if n_it[b] > 0 else 0.0
            for q in range(n_it[b] - 1, -1, -1):
                r_q = it_r[b, q]
                if r_q != rho:
                    rescale(e1, e2, n, r_q - rho, tau_s, tau)
                    rho = r_q
                while ptr >= 0 and sp_seen[b, ptr] > q:  # the spikes that integrated item q
                    r_s = it_r[b, sp_seen[b, ptr] - 1]
                    f = total[ptr] * tau / sp_x[b, ptr]
                    l = sp_n[b, ptr]
                    e1[l] += f * math.exp((2.0 * rho - sp_t[b, ptr] - r_s) / tau)
                    e2[l] += f * math.exp((rho - r_s) / tau)
                    ptr -= 1
                t_q = it_t[b, q]
                e_s = math.exp((t_q - rho) / tau_s)
                e_x = math.exp((t_q - rho) / tau)
                code = it_src[b, q]
                if code >= 0:
                    i = code // s_in
                    acc = 0.0
                    for l in range(n):
                        gw[l, i] += e1[l] * e_s - e2[l] * e_x
                        acc += w[l, i] * (e1[l] * e_s / tau_s - e2[l] * e_x / tau)
                    if need_input:
                        g_in[b, code] = acc
                else:
                    m = -code - 1
                    s = it_sp[b, q]
                    e_r = math.exp((it_tr[b, q] - rho) / tau)  # at the reset's time
                    acc = g_out[b, m, sp_slot[b, s]] + delta_theta * e_r * e2[m] / (tau * tau)
                    for l in range(n):
                        gr[l, m] += e1[l] * e_s - e2[l] * e_x
                        acc += rw[l, m] * (e1[l] * e_s / tau_s - e2[l] * e_x / tau)
                    total[s] = acc


class Saved(tuple):
    """What the backward needs from a forward: the spike and item records."""


def forward(input_times: torch.Tensor, weight: torch.Tensor, recurrent_weight: torch.Tensor,
            p, need_aux: bool = True):
    """Run the forward kernel on CPU tensors. Returns ``(times float64 (B, N, K), counts
    int64 (B, N), saved)`` with ``saved`` the records for :func:`backward` (``None``
    without ``need_aux``)."""
    batch, n_in, s_in = input_times.shape
    n = weight.shape[0]
    k_max = p.max_spikes
    flat = input_times.detach().to(torch.float64).reshape(batch, n_in * s_in)
    order = torch.argsort(flat, dim=1, stable=True)
    ts = torch.gather(flat, 1, order).contiguous()
    nev = torch.isfinite(ts).sum(1)
    wt = weight.detach().to(torch.float64).t().contiguous()
    rt = recurrent_weight.detach().to(torch.float64).t().contiguous()
    n_spk = n * k_max
    n_items = n_in * s_in + n_spk
    out_t = torch.full((batch, n, k_max), math.inf, dtype=torch.float64)
    counts = torch.zeros((batch, n), dtype=torch.int64)
    sp_t = torch.zeros((batch, n_spk), dtype=torch.float64)
    sp_x = torch.zeros((batch, n_spk), dtype=torch.float64)
    sp_n, sp_slot, sp_seen = (torch.zeros((batch, n_spk), dtype=torch.int64) for _ in range(3))
    it_t = torch.zeros((batch, n_items), dtype=torch.float64)
    it_tr = torch.zeros((batch, n_items), dtype=torch.float64)
    it_r = torch.zeros((batch, n_items), dtype=torch.float64)
    it_src = torch.zeros((batch, n_items), dtype=torch.int64)
    it_sp = torch.zeros((batch, n_items), dtype=torch.int64)
    n_sp = torch.zeros(batch, dtype=torch.int64)
    n_it = torch.zeros(batch, dtype=torch.int64)
    # grid index of each input time, in the input's own dtype (model.md section 6)
    kin = floor_index_tensor(ts, p.dt, input_times.dtype) if p.dt > 0 else ts
    forward_kernel(ts.numpy(), kin.contiguous().numpy(), order.numpy(), nev.numpy(), s_in,
                   wt.numpy(), rt.numpy(), p.tau_s, p.theta, p.delta_theta, p.t_max, p.dt,
                   last_index(p.t_max, p.dt), p.reset_on_grid, out_t.numpy(),
                   counts.numpy(), sp_t.numpy(), sp_n.numpy(), sp_slot.numpy(),
                   sp_x.numpy(), sp_seen.numpy(), n_sp.numpy(), it_t.numpy(),
                   it_tr.numpy(), it_r.numpy(), it_src.numpy(), it_sp.numpy(), n_it.numpy())
    saved = (Saved((sp_t, sp_n, sp_slot, sp_x, sp_seen, n_sp, it_t, it_tr, it_r, it_src,
                    it_sp, n_it)) if need_aux else None)
    return out_t, counts, saved


def backward(grad_times: torch.Tensor, saved, input_shape, weight: torch.Tensor,
             recurrent_weight: torch.Tensor, p, need_input: bool = True):
    """Gradients from the records of :func:`forward`: ``(grad_input_times float64 of
    input_shape, grad_weight, grad_recurrent_weight)`` (float64)."""
    batch, n_in, s_in = input_shape
    n = weight.shape[0]
    g = grad_times.detach().to(torch.float64).contiguous()  # only spike slots are read
    parts = max(1, min(batch, numba.get_num_threads()))
    g_in = torch.zeros((batch, n_in * s_in), dtype=torch.float64)
    g_w = torch.zeros((parts, n, n_in), dtype=torch.float64)
    g_r = torch.zeros((parts, n, n), dtype=torch.float64)
    w = weight.detach().to(torch.float64).contiguous()
    rw = recurrent_weight.detach().to(torch.float64).contiguous()
    backward_kernel(g.numpy(), w.numpy(), rw.numpy(), p.tau_s, p.delta_theta, s_in,
                    *(t.numpy() for t in saved), need_input, g_in.numpy(), g_w.numpy(),
                    g_r.numpy())
    return g_in.reshape(input_shape), g_w.sum(0), g_r.sum(0)
