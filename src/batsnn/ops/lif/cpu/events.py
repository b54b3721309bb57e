"""Event lists of a CPU batch, compiled: the twin of :func:`batsnn.ops.lif.events.sort_events`.

Per sample: count the finite spikes, sort them with a stable radix sort, and fill the arrays
of :class:`batsnn.ops.lif.events.Events` (reference times, scaled exponentials, window ends
and, for ``dt > 0``, the grid indices ``kin``/``kup``). Rows are read up to their first
``+inf``, so the ``+inf`` padding costs nothing. Parallel over samples.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

from batsnn.ops.lif.cpu import cache  # noqa: F401  (the package's cache stamp)
from batsnn.ops.lif.cpu.core import floor_index
from batsnn.ops.lif.events import SEGMENT, Events
from batsnn.ops.lif.grid import last_index


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
def build_events(times, nspk, tau_s, seg, t_max, dt, k_tmax, in_f32, ts, nid, perm, ref, es,
                 ex, up, xup, kin, kup):
    """Fill the event arrays of each sample from valid ``(B, N, S)`` trains (stable order
    for equal times: the order of ``times.reshape(B, -1)``). With ``dt > 0`` also the grid
    indices: ``kin[b, j] = floor_index(ts[b, j])`` with grid values rounded to float32 when
    the input is float32 (``in_f32``), ``kup[b, j] = min(kin[b, j+1], k_tmax)``
    (``+inf`` past the last event; ``k_tmax`` from :func:`batsnn.ops.lif.grid.last_index`),
    as :func:`batsnn.ops.lif.events.grid_bounds`."""
    tau = 2.0 * tau_s
    m_all = ts.shape[1]
    s_in = times.shape[2]
    on_grid = dt > 0.0
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
            if on_grid:
                kin[b, j] = floor_index(t, dt, in_f32)
        for j in range(m):
            u = ts[b, j + 1] if j + 1 < m else np.inf
            if u > t_max:
                u = t_max
            up[b, j] = u
            if j + 1 < m and u == ts[b, j + 1] and ref[b, j + 1] == ref[b, j]:
                xup[b, j] = 1.0 / ex[b, j + 1]
            else:
                xup[b, j] = math.exp(-(u - ref[b, j]) / tau)
            if on_grid:
                k = kin[b, j + 1] if j + 1 < m else np.inf
                kup[b, j] = k if k < k_tmax else k_tmax
        for j in range(m, m_all):
            ts[b, j] = np.inf
            up[b, j] = np.inf
            if on_grid:
                kin[b, j] = np.inf
                kup[b, j] = k_tmax


def sort_events(input_times: torch.Tensor, p) -> Events:
    """Event lists of a CPU batch (see :func:`batsnn.ops.lif.events.sort_events`).

    ``input_times`` ``(B, N_in, S_in)`` must be valid (ascending rows padded with +inf, as
    :func:`batsnn.functional.check_spike_times` ensures): a row is read up to its first +inf.
    ``p`` is the layer's :class:`batsnn.params.LIFParams`. Returns float64 arrays of width
    ``M`` (the most spikes in a sample); ``kin``/``kup`` are ``(B, 0)`` when ``p.dt == 0``.
    """
    n_batch = input_times.shape[0]
    times = input_times.detach().contiguous()
    nspk = np.zeros(n_batch, np.int32)
    times_np = times.numpy()
    count_spikes(times_np, nspk)
    m = int(nspk.max()) if n_batch else 0
    f64 = dict(dtype=torch.float64)
    ts, ref, es, ex, up, xup = (torch.zeros((n_batch, m), **f64) for _ in range(6))
    kin, kup = (torch.zeros((n_batch, m if p.on_grid else 0), **f64) for _ in range(2))
    nid = torch.zeros((n_batch, m), dtype=torch.int32)
    perm = torch.zeros((n_batch, m), dtype=torch.int64)
    k_tmax = last_index(p.t_max, p.dt)
    build_events(times_np, nspk, p.tau_s, SEGMENT * p.tau_s, p.t_max, p.dt, k_tmax,
                 input_times.dtype == torch.float32, ts.numpy(), nid.numpy(), perm.numpy(),
                 ref.numpy(), es.numpy(), ex.numpy(), up.numpy(), xup.numpy(), kin.numpy(),
                 kup.numpy())
    return Events(ts, nid, perm, torch.from_numpy(nspk), ref, es, ex, up, xup, kin, kup)
