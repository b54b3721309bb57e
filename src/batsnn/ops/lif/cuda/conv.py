"""The convolutional synapse on the GPU: receptive-field event lists over the dense kernels.

A conv neuron at output position ``q`` reads only the spikes of its receptive field, through
the weights ``weight[:, ci, ky, kx]`` that every position shares. On the GPU each
(sample, position) pair gets a row of its own: the spike trains of its receptive field,
gathered in the order ``(ci, ky, kx, slot)`` (input neurons outside the map, i.e. in the
zero padding, are ``+inf``), then sorted and turned into event lists by the same kernels as
a dense layer's input (:func:`.events.sort_events`). On these rows the convolution *is* the
dense synapse with weight ``(C_out, C_in * kH * kW)``: the forward and backward kernels of
:mod:`.dense`, with the neuron core of :mod:`.core`, run unchanged, one program per row and
block of output channels, and the weight gradient sums over positions through the kernels'
atomic adds.

A row's stable sort keeps ties in the order ``(ci, ky, kx, slot)``, which is the order of
the input's flat index restricted to the field, so every neuron integrates its events in the
same order as on the CPU (:mod:`batsnn.ops.lif.cpu.rf`). Everything is tensor arithmetic on
the device with static shapes (no host synchronisation), so a convolutional training step
can be recorded as a CUDA graph.

The event lists of a convolution are an :class:`batsnn.ops.lif.events.Events` over the
``B * P`` rows (row ``b * P + q``: sample ``b``, output position ``q = oy * W_out + ox``;
``nid`` is the weight column ``(ci * kH + ky) * kW + kx``), except ``perm``: it is
``(B, P * M_rf)``, the position of each row event in ``input_times.reshape(B, -1)`` (row
``q`` of sample ``b`` at columns ``q * M_rf ..``), which is how the op layer routes the rows'
input gradients back to the input (:func:`global_perm`).
"""

from __future__ import annotations

import torch

_INDEX_CACHE: dict = {}


def rf_index(synapse, device) -> torch.Tensor:
    """``(P, C_in * kH * kW)`` int64: the input neuron (flat ``(ci * H + iy) * W + ix``) that
    field entry ``(ci, ky, kx)`` of output position ``q`` reads, ``-1`` in the padding.
    Made once per synapse and device."""
    key = (synapse, str(device))
    idx = _INDEX_CACHE.get(key)
    if idx is None:
        c, h, w = synapse.in_shape
        (kh, kw), (sy, sx), (py, px) = synapse.kernel, synapse.stride, synapse.padding
        h_out, w_out = synapse.out_hw
        oy = torch.arange(h_out).view(-1, 1, 1, 1, 1)
        ox = torch.arange(w_out).view(1, -1, 1, 1, 1)
        ci = torch.arange(c).view(1, 1, -1, 1, 1)
        iy = oy * sy - py + torch.arange(kh).view(1, 1, 1, -1, 1)
        ix = ox * sx - px + torch.arange(kw).view(1, 1, 1, 1, -1)
        inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
        flat = (ci * h + iy) * w + ix
        idx = torch.where(inside, flat, torch.full_like(flat, -1))
        idx = idx.reshape(h_out * w_out, c * kh * kw).to(device)
        if len(_INDEX_CACHE) > 64:
            _INDEX_CACHE.clear()
        _INDEX_CACHE[key] = idx
    return idx


def rf_rows(input_times: torch.Tensor, synapse) -> tuple[torch.Tensor, torch.Tensor]:
    """The receptive fields of ``input_times (B, N_in, S)`` as rows: ``(rows (B * P, F, S),
    gmap (P, F * S))`` with ``F = C_in * kH * kW``; ``gmap`` is each row slot's position in
    a sample's flattened input (padding entries point at slot 0 and hold ``+inf``)."""
    n_batch, _, s_in = input_times.shape
    idx = rf_index(synapse, input_times.device)
    n_pos, fan = idx.shape
    safe = idx.clamp(min=0)
    rows = input_times.detach()[:, safe.reshape(-1), :].reshape(n_batch, n_pos, fan, s_in)
    rows = rows.masked_fill((idx < 0).view(1, n_pos, fan, 1), float("inf"))
    slots = torch.arange(s_in, device=idx.device)
    gmap = (safe.unsqueeze(-1) * s_in + slots).reshape(n_pos, fan * s_in)
    return rows.reshape(n_batch * n_pos, fan, s_in), gmap


def global_perm(perm: torch.Tensor, gmap: torch.Tensor, n_batch: int) -> torch.Tensor:
    """The rows' sort permutations ``perm (B * P, F * S)`` (columns of a row) as positions
    in each sample's flattened input: ``(B, P * F * S)``."""
    n_pos, width = gmap.shape
    local = perm.reshape(n_batch, n_pos, width)
    return torch.gather(gmap.unsqueeze(0).expand(n_batch, n_pos, width), 2,
                        local).reshape(n_batch, n_pos * width)


def to_rows(t: torch.Tensor, n_pos: int) -> torch.Tensor:
    """``(B, C_out * P, ...)`` in the conv layer's neuron order (channel-major) as
    ``(B * P, C_out, ...)``, the rows' order."""
    n_batch, n_out = t.shape[:2]
    rest = t.shape[2:]
    c_out = n_out // n_pos
    return (t.reshape(n_batch, c_out, n_pos, *rest).transpose(1, 2)
            .reshape(n_batch * n_pos, c_out, *rest).contiguous())


def from_rows(t: torch.Tensor, n_pos: int) -> torch.Tensor:
    """The inverse of :func:`to_rows`: ``(B * P, C_out, ...)`` as ``(B, C_out * P, ...)``."""
    rows, c_out = t.shape[:2]
    rest = t.shape[2:]
    n_batch = rows // n_pos
    return (t.reshape(n_batch, n_pos, c_out, *rest).transpose(1, 2)
            .reshape(n_batch, c_out * n_pos, *rest).contiguous())
