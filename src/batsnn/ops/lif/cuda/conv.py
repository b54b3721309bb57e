"""The convolutional synapse on the GPU: receptive-field event lists over the dense kernels.

A conv neuron at output position ``q`` reads only the spikes of its receptive field, through
the weights ``weight[:, ci, ky, kx]`` that every position shares. On the GPU each
(sample, position) pair gets a row of its own: the time-sorted spikes of its receptive
field, turned into event lists by the same kernel as a dense layer's input
(:func:`.events.events_from_sorted`). On these rows the convolution *is* the dense synapse
with weight ``(C_out, C_in * kH * kW)``: the forward and backward kernels of :mod:`.dense`,
with the neuron core of :mod:`.core`, run unchanged, one program per row and block of output
channels, and the weight gradient sums over positions through the kernels' atomic adds.

The rows come from one sort per sample (:func:`sorted_rows`): the sample's whole input is
sorted once (stable, as a dense layer's), and each row keeps, in that order, the spikes that
fall in its field (one program per row reading the sample's sorted spikes). A stable sort
orders equal times by the input's flat index, and restricted to a field that is the order
``(ci, ky, kx, slot)``, so every neuron integrates its events in the same order as on the
CPU (:mod:`batsnn.ops.lif.cpu.rf`). Everything is on the device with static shapes (no host
synchronisation), so a convolutional training step can be recorded as a CUDA graph.

The event lists of a convolution are an :class:`batsnn.ops.lif.events.Events` over the
``B * P`` rows (row ``b * P + q``: sample ``b``, output position ``q = oy * W_out + ox``;
row width ``C_in * kH * kW * S_in``; ``nid`` is the weight column ``(ci * kH + ky) * kW +
kx``), except ``perm``: it is ``(B, P * F * S_in)``, the position of each row event in
``input_times.reshape(B, -1)`` (row ``q`` of sample ``b`` at columns ``q * F * S_in ..``),
which is how the op layer routes the rows' input gradients back to the input.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

#: Sorted spikes of a sample read per step by a row's program.
SELECT_BLOCK = 256


@triton.jit
def _rf_select_kernel(ts_ptr, perm_ptr, out_ts_ptr, out_col_ptr, out_pos_ptr, M, W, P, W_OUT,
                      S_IN, H, WD, KH, KW, SY, SX, PY, PX, BLOCK: tl.constexpr):
    # Row b * P + q: walk sample b's sorted spikes (ts, perm: time and input position
    # ((ci * H + iy) * WD + ix) * S_IN + s) up to the first +inf, keep those whose neuron
    # lies in the field of output position q = (oy, ox), in order, with their row column
    # ((ci * KH + ky) * KW + kx) * S_IN + s; then pad the row with +inf (the columns past
    # the row's spikes are never read; as input positions the padding gets spread values,
    # so that the op's gradient scatter of its zeros meets little contention).
    row = tl.program_id(0)
    b = row // P
    q = row - b * P
    oy = q // W_OUT
    y0 = oy * SY - PY
    x0 = (q - oy * W_OUT) * SX - PX
    src = b.to(tl.int64) * M
    dst = row.to(tl.int64) * W
    offs = tl.arange(0, BLOCK)
    total = 0
    full = True
    j0 = 0
    while (j0 < M) & full:
        jj = j0 + offs
        t = tl.load(ts_ptr + src + jj, mask=jj < M, other=float("inf"))
        fin = t < float("inf")
        pos = tl.load(perm_ptr + src + jj, mask=fin, other=0).to(tl.int32)  # M < 2**31
        n = pos // S_IN
        ci = n // (H * WD)
        rem = n - ci * (H * WD)
        iy = rem // WD
        ky = iy - y0
        kx = rem - iy * WD - x0
        keep = fin & (ky >= 0) & (ky < KH) & (kx >= 0) & (kx < KW)
        col = ((ci * KH + ky) * KW + kx) * S_IN + (pos - n * S_IN)
        at = total + tl.cumsum(keep.to(tl.int32), axis=0) - 1
        tl.store(out_ts_ptr + dst + at, t, mask=keep)
        tl.store(out_col_ptr + dst + at, col, mask=keep)
        tl.store(out_pos_ptr + dst + at, pos, mask=keep)
        total += tl.sum(keep.to(tl.int32), axis=0)
        full = tl.sum(fin.to(tl.int32), axis=0) == BLOCK
        j0 += BLOCK
    j0 = total
    while j0 < W:
        jj = j0 + offs
        pad = jj < W
        tl.store(out_ts_ptr + dst + jj, tl.zeros([BLOCK], dtype=out_ts_ptr.dtype.element_ty)
                 + float("inf"), mask=pad)
        tl.store(out_pos_ptr + dst + jj, ((q * W + jj) % M).to(tl.int64), mask=pad)
        j0 += BLOCK


def sorted_rows(ts: torch.Tensor, perm: torch.Tensor, s_in: int, synapse):
    """The receptive-field rows of a batch whose samples are sorted: ``ts (B, N_in * S_in)``
    ascending (``+inf`` last, ties in input order) and ``perm`` each entry's input position.
    Returns ``(ts (B * P, W), col (B * P, W) int32, pos (B, P * W))`` with ``W = C_in * kH *
    kW * S_in``: each row's spikes in time order, their row columns (past the row's spikes:
    unset) and their input positions."""
    n_batch, m = ts.shape
    c, h, w = synapse.in_shape
    (kh, kw), (sy, sx), (py, px) = synapse.kernel, synapse.stride, synapse.padding
    n_pos, w_out = synapse.positions, synapse.out_hw[1]
    width = c * kh * kw * s_in
    if m >= 2**31 or n_pos * width >= 2**31:
        raise ValueError(f"a convolution's input ({m} slots per sample) and rows "
                         f"({n_pos} x {width}) must stay below 2**31 entries per sample")
    dev = ts.device
    out_ts = torch.empty((n_batch * n_pos, width), dtype=ts.dtype, device=dev)
    out_col = torch.empty((n_batch * n_pos, width), dtype=torch.int32, device=dev)
    out_pos = torch.empty((n_batch, n_pos * width), dtype=torch.int64, device=dev)
    if n_batch * n_pos and width:
        _rf_select_kernel[(n_batch * n_pos,)](
            ts, perm.contiguous(), out_ts, out_col, out_pos, m, width, n_pos, w_out, s_in, h, w,
            kh, kw, sy, sx, py, px, BLOCK=SELECT_BLOCK, num_warps=1 if m <= 2048 else 4)
    return out_ts, out_col, out_pos


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

