"""Per-sample event lists: every input spike of a sample, sorted by time.

All backends integrate the same list, so that they agree to the last bit on which
inputs a neuron has seen when it fires.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from batsnn.ops.lif.grid import floor_index, last_index
from batsnn.params import LIFParams

#: Length of a reference-time segment, in units of ``tau_s``. Inside one segment the scaled
#: exponentials stay below ``exp(SEGMENT / 1)``; the threshold discriminant grows like
#: ``exp((t - ref) / tau_s)``, so float32 stays far from overflow for any simulation length.
SEGMENT = 16.0


class Events(NamedTuple):
    """Sorted input events of a batch. ``M`` is the largest number of spikes in a sample.

    Attributes:
        ts: ``(B, M)`` float64 spike times, ascending, ``+inf`` past ``nspk[b]``.
        nid: ``(B, M)`` int32 presynaptic neuron of each event.
        perm: ``(B, M)`` int64 position of each event in ``input_times.reshape(B, -1)``.
        nspk: ``(B,)`` int32 number of finite events per sample.
        ref: ``(B, M)`` float64 reference time of each event's segment.
        es: ``(B, M)`` float64 ``exp((ts - ref) / tau_s)``.
        ex: ``(B, M)`` float64 ``exp((ts - ref) / tau)``.
        up: ``(B, M)`` float64 end of the window after event ``j``: ``min(ts[j+1], t_max)``.
        xup: ``(B, M)`` float64 ``exp(-(up - ref) / tau)``: ``x = exp(-t/tau)`` at the window's
            end in the segment's units, for the kernels' root-free test of a crossing.
        kin: ``(B, M)`` float64 (integer-valued) grid index of each event's time
            (:func:`batsnn.ops.lif.grid.floor_index` in the input's dtype); ``(B, 0)`` when
            ``dt == 0``.
        kup: ``(B, M)`` float64 index bound of the window after event ``j``: a crossing on
            grid index ``k`` is emitted in it only if ``k <= kup[j]``, i.e.
            ``min(kin[j+1], k_T)`` with ``k_T = last_index(t_max)``
            (:func:`batsnn.ops.lif.grid.last_index`); ``(B, 0)`` when ``dt == 0``.
    """

    ts: torch.Tensor
    nid: torch.Tensor
    perm: torch.Tensor
    nspk: torch.Tensor
    ref: torch.Tensor
    es: torch.Tensor
    ex: torch.Tensor
    up: torch.Tensor
    xup: torch.Tensor
    kin: torch.Tensor
    kup: torch.Tensor


def grid_bounds(ts: torch.Tensor, nspk: torch.Tensor, p: LIFParams,
                in_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kin, kup)`` of sorted event times ``ts (B, M)`` (see :class:`Events`); empty
    ``(B, 0)`` tensors when ``p.dt == 0``."""
    if not p.on_grid:
        empty = torch.empty((ts.shape[0], 0), dtype=torch.float64, device=ts.device)
        return empty, empty
    kin = floor_index(ts, p.dt, in_dtype)
    k_t = last_index(p.t_max, p.dt)
    nxt = torch.cat([kin[:, 1:], torch.full_like(kin[:, :1], math.inf)], 1)
    pos = torch.arange(ts.shape[1], device=ts.device)
    nxt = torch.where(pos[None, :] + 1 < nspk[:, None].to(pos.dtype), nxt, math.inf)
    return kin, nxt.clamp(max=k_t)


def sort_events(input_times: torch.Tensor, p: LIFParams, m: int | None = None,
                dtype: torch.dtype = torch.float64, seg: float | None = None) -> Events:
    """Flatten ``input_times (B, N_in, S_in)`` into time-sorted per-sample event lists.

    Ties keep the order of ``input_times.reshape(B, -1)`` (stable sort). ``m`` truncates the
    lists; by default it is the largest number of finite spikes in a sample (one host sync).
    The float arrays are computed in ``dtype``; ``seg`` is the segment length in seconds
    (default ``SEGMENT * tau_s``); ``p`` supplies ``tau_s``, ``t_max`` and ``dt``. This is
    the plain version in torch ops, the reference the
    tests hold the backends' event lists to; the CPU backend has a compiled twin that skips the
    padding (:func:`batsnn.ops.lif.cpu.sort_events`), the GPU backend its own kernels
    (:func:`batsnn.ops.lif.cuda.sort_events`).
    """
    tau_s, t_max = p.tau_s, p.t_max
    n_batch, _, s_in = input_times.shape
    flat = input_times.detach().reshape(n_batch, -1).to(dtype)
    ts, perm = torch.sort(flat, dim=1, stable=True)
    finite = torch.isfinite(ts)
    nspk = finite.sum(1, dtype=torch.int32)
    if m is None:
        m = int(nspk.max()) if n_batch > 0 and flat.shape[1] > 0 else 0
    ts = ts[:, :m].contiguous()
    perm = perm[:, :m].contiguous()
    finite = finite[:, :m]
    nid = torch.div(perm, s_in, rounding_mode="floor").to(torch.int32)
    seg = SEGMENT * tau_s if seg is None else seg
    safe = torch.where(finite, ts, torch.zeros_like(ts))
    ref = torch.floor(safe / seg) * seg
    es = torch.where(finite, torch.exp((safe - ref) / tau_s), torch.zeros_like(ts))
    ex = torch.where(finite, torch.exp((safe - ref) / p.tau), torch.zeros_like(ts))
    up = torch.cat([ts[:, 1:], torch.full_like(ts[:, :1], math.inf)], 1).clamp(max=t_max)
    xup = torch.exp(-(up - ref) / p.tau)
    kin, kup = grid_bounds(ts, nspk, p, input_times.dtype)
    return Events(ts, nid, perm, nspk, ref.contiguous(), es.contiguous(), ex.contiguous(),
                  up.contiguous(), xup.contiguous(), kin.contiguous(), kup.contiguous())
