"""Receptive-field event lists of a convolution on the CPU, compiled.

A conv neuron reads only the events of its receptive field. For each sample the global,
time-sorted event list (:mod:`.events`) is walked once and each event is appended to the
lists of the output positions whose receptive field holds it (CSR: counts per position,
prefix sums, fill), so every list is in time order and no neuron scans the whole input.
Each list entry carries what the window after it needs, for THAT list: the window's end
``up = min(time of the list's next event, t_max)``, ``xup = exp(-(up - ref_j)/tau)`` and,
with ``dt > 0``, the grid bound ``kup = min(kin of the list's next event, k_T)``
(:func:`batsnn.ops.lif.grid.last_index`), exactly as :func:`.events.build_events` makes them
for the whole input. Events at or past the horizon (:func:`.core.past_horizon`) are left
out: a neuron stops integrating there.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
import torch

from batsnn.ops.lif.cpu import cache  # noqa: F401  (the package's cache stamp)
from batsnn.ops.lif.cpu.core import past_horizon
from batsnn.ops.lif.events import Events
from batsnn.ops.lif.grid import last_index


#: the receptive-field lists' own fields, after those of
#: :class:`~batsnn.ops.lif.events.Events` (which are not repeated here)
RF_FIELDS = ("rf_off", "rf_j", "rf_w", "rf_up", "rf_xup", "rf_kup")

ConvEvents = NamedTuple("ConvEvents", [(f, torch.Tensor) for f in (*Events._fields, *RF_FIELDS)])
ConvEvents.__doc__ = """The sorted events of a batch (the fields of
    :class:`batsnn.ops.lif.events.Events`) and the receptive-field lists of a convolution's
    ``P = H_out * W_out`` output positions.

    List ``(b, q)`` (sample ``b``, position ``q = oy * W_out + ox``) is the entries
    ``rf_off[b * P + q] .. rf_off[b * P + q + 1] - 1``; entry ``e``:

    Attributes:
        rf_off: ``(B * P + 1,)`` int64 start of each list.
        rf_j: ``(E,)`` int32 the event's index in the sample's sorted list (``ts[b, j]``).
        rf_w: ``(E,)`` int32 row of the transposed weight ``(C_in * kH * kW, C_out)`` that
            carries the event to this position: ``(ci * kH + ky) * kW + kx``.
        rf_up: ``(E,)`` float64 end of the window after the entry: the time of the list's
            next entry or ``t_max``, whichever is first.
        rf_xup: ``(E,)`` float64 ``exp(-(rf_up - ref[b, j]) / tau)``.
        rf_kup: ``(E,)`` float64 grid-index bound of the window (``dt > 0``), ``(0,)``
            otherwise.
    """


@numba.njit(inline="always")
def _span(i, k, s, pad, n_out):
    """The output rows (or columns) ``lo .. hi`` whose window holds input row ``i``:
    ``0 <= i + pad - o * s < k``, i.e. ``ceil((i + pad - k + 1) / s) <= o <= (i + pad) // s``
    (integer floor division rounds towards -inf)."""
    lo = -((k - 1 - i - pad) // s)
    hi = (i + pad) // s
    if lo < 0:
        lo = 0
    if hi > n_out - 1:
        hi = n_out - 1
    return lo, hi


@numba.njit(parallel=True, cache=True)
def count_entries(ts, nid, nspk, kin, t_max, dt, k_tmax, c_in, h, w, kh, kw, sy, sx, py, px,
                  h_out, w_out, counts):
    """``counts[b, q]``: events of sample ``b`` before the horizon (:func:`.core.past_horizon`)
    in the receptive field of position ``q``."""
    hw = h * w
    on_grid = dt > 0.0
    for b in numba.prange(ts.shape[0]):
        for j in range(nspk[b]):
            if past_horizon(ts, kin, b, j, on_grid, t_max, k_tmax):
                break
            i = nid[b, j]
            rem = i % hw
            iy = rem // w
            ix = rem - iy * w
            oy0, oy1 = _span(iy, kh, sy, py, h_out)
            ox0, ox1 = _span(ix, kw, sx, px, w_out)
            for oy in range(oy0, oy1 + 1):
                for ox in range(ox0, ox1 + 1):
                    counts[b, oy * w_out + ox] += 1


@numba.njit(parallel=True, cache=True)
def fill_entries(ts, nid, nspk, ref, ex, kin, t_max, dt, k_tmax, tau_s, c_in, h, w, kh, kw, sy,
                 sx, py, px, h_out, w_out, off, rf_j, rf_w, rf_up, rf_xup, rf_kup):
    """Fill the lists (see :class:`ConvEvents`); ``off`` from :func:`count_entries`."""
    tau = 2.0 * tau_s
    hw = h * w
    n_pos = h_out * w_out
    on_grid = dt > 0.0
    for b in numba.prange(ts.shape[0]):
        base = b * n_pos
        cursor = off[base:base + n_pos].copy()
        for j in range(nspk[b]):
            if past_horizon(ts, kin, b, j, on_grid, t_max, k_tmax):
                break
            i = nid[b, j]
            ci = i // hw
            rem = i - ci * hw
            iy = rem // w
            ix = rem - iy * w
            oy0, oy1 = _span(iy, kh, sy, py, h_out)
            ox0, ox1 = _span(ix, kw, sx, px, w_out)
            for oy in range(oy0, oy1 + 1):
                ky = iy + py - oy * sy
                for ox in range(ox0, ox1 + 1):
                    kx = ix + px - ox * sx
                    q = oy * w_out + ox
                    e = cursor[q]
                    rf_j[e] = j
                    rf_w[e] = (ci * kh + ky) * kw + kx
                    cursor[q] = e + 1
        # each list's window ends, from the list's own next event
        for q in range(n_pos):
            end = off[base + q + 1]
            for e in range(off[base + q], end):
                j = rf_j[e]
                nxt = rf_j[e + 1] if e + 1 < end else -1
                u = ts[b, nxt] if nxt >= 0 else np.inf
                if u > t_max:
                    u = t_max
                rf_up[e] = u
                if nxt >= 0 and u == ts[b, nxt] and ref[b, nxt] == ref[b, j]:
                    rf_xup[e] = 1.0 / ex[b, nxt]
                else:
                    rf_xup[e] = math.exp(-(u - ref[b, j]) / tau)
                if on_grid:
                    k = kin[b, nxt] if nxt >= 0 else np.inf
                    rf_kup[e] = k if k < k_tmax else k_tmax


def build_lists(ev: Events, p, synapse) -> ConvEvents:
    """The receptive-field lists of ``synapse`` (a :class:`batsnn.ops.lif.synapse.Conv2d`)
    over the sorted events ``ev`` of a CPU batch; ``p`` the layer's
    :class:`batsnn.params.LIFParams`."""
    n_batch = ev.ts.shape[0]
    c_in, h, w = synapse.in_shape
    (kh, kw), (sy, sx), (py, px) = synapse.kernel, synapse.stride, synapse.padding
    h_out, w_out = synapse.out_hw
    n_pos = h_out * w_out
    geom = (c_in, h, w, kh, kw, sy, sx, py, px, h_out, w_out)
    ts, nid, nspk, kin = ev.ts.numpy(), ev.nid.numpy(), ev.nspk.numpy(), ev.kin.numpy()
    k_tmax = last_index(p.t_max, p.dt)
    counts = np.zeros((n_batch, n_pos), np.int64)
    count_entries(ts, nid, nspk, kin, p.t_max, p.dt, k_tmax, *geom, counts)
    off = np.zeros(n_batch * n_pos + 1, np.int64)
    np.cumsum(counts.reshape(-1), out=off[1:])
    n_entries = int(off[-1])
    rf_j = np.empty(n_entries, np.int32)
    rf_w = np.empty(n_entries, np.int32)
    rf_up = np.empty(n_entries, np.float64)
    rf_xup = np.empty(n_entries, np.float64)
    rf_kup = np.empty(n_entries if p.on_grid else 0, np.float64)
    fill_entries(ts, nid, nspk, ev.ref.numpy(), ev.ex.numpy(), kin, p.t_max, p.dt, k_tmax,
                 p.tau_s, *geom, off, rf_j, rf_w, rf_up, rf_xup, rf_kup)
    lists = (torch.from_numpy(a) for a in (off, rf_j, rf_w, rf_up, rf_xup, rf_kup))
    return ConvEvents(*ev, *lists)
