"""batsnn's own stable row sort of float32 spike times on the GPU (Triton).

A layer's output is mostly ``+inf`` padding, so the sort's cost should follow the number of
spikes rather than the row width: compact each row's finite times into 64-bit keys (the
time's bits over its flat index, so that equal times keep their input order), sort tiles of
keys, then place every key by its rank (its rank in its own tile plus, per other tile, the
number of smaller keys there). Nothing here synchronises the host.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _compact_kernel(t_ptr, key_ptr, cnt_ptr, M, KW, BLOCK: tl.constexpr):
    # Sort keys of a sample's finite spike times, in input order: the time's bits (a float32
    # >= 0 orders as its bit pattern) over the flat index, so that equal times keep input order.
    b = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    total = 0
    j0 = 0
    while j0 < M:
        jj = j0 + offs
        t = tl.load(t_ptr + b.to(tl.int64) * M + jj, mask=jj < M, other=float("inf"))
        fin = t < float("inf")
        t = tl.where(t == 0.0, 0.0, t)  # -0.0 sorts as 0.0
        key = (t.to(tl.int32, bitcast=True).to(tl.int64) << 32) | jj.to(tl.int64)
        pos = total + tl.cumsum(fin.to(tl.int32), axis=0) - 1
        tl.store(key_ptr + b.to(tl.int64) * KW + pos, key, mask=fin)
        total += tl.sum(fin.to(tl.int32), axis=0)
        j0 += BLOCK
    tl.store(cnt_ptr + b, total)


@triton.jit
def _tile_sort_kernel(key_ptr, cnt_ptr, KW, TILE: tl.constexpr):
    # Sort tile t of a sample's keys in place (keys past the count sort last).
    b = tl.program_id(0)
    t0 = tl.program_id(1) * TILE
    count = tl.load(cnt_ptr + b)
    if t0 < count:
        jj = t0 + tl.arange(0, TILE)
        ptr = key_ptr + b.to(tl.int64) * KW + jj
        k = tl.load(ptr, mask=jj < count, other=0x7FFFFFFFFFFFFFFF)
        tl.store(ptr, tl.sort(k), mask=jj < count)


@triton.jit
def _merge_kernel(key_ptr, cnt_ptr, ts_ptr, perm_ptr, M, KW, TILE: tl.constexpr,
                  LOG_TILE: tl.constexpr):
    # Each key's place in the sorted list: its rank in its own sorted tile plus, per other
    # tile, the number of smaller keys there (binary search; keys are distinct). The
    # positions of this tile's range past the count get the padding (+inf, and their own
    # position as index: distinct indices, so that the op's gradient scatter of the padding's
    # zeros meets no contention).
    b = tl.program_id(0)
    t = tl.program_id(1)
    t0 = t * TILE
    count = tl.load(cnt_ptr + b)
    row = b.to(tl.int64)
    i = tl.arange(0, TILE)
    jj = t0 + i
    valid = jj < count
    k = tl.load(key_ptr + row * KW + jj, mask=valid, other=0)
    pos = jj
    n_tiles = (count + TILE - 1) // TILE
    u = 0
    while u < n_tiles:
        if u != t:
            lo = tl.zeros([TILE], dtype=tl.int32)
            hi = lo + tl.minimum(count - u * TILE, TILE)
            for _ in tl.static_range(LOG_TILE + 1):
                open_ = lo < hi
                mid = (lo + hi) // 2
                v = tl.load(key_ptr + row * KW + u * TILE + mid, mask=valid & open_, other=0)
                less = v < k
                lo = tl.where(open_ & less, mid + 1, lo)
                hi = tl.where(open_ & (~less), mid, hi)
            pos = pos + tl.where(u < t, lo - TILE, lo)
        u += 1
    t_bits = (k >> 32).to(tl.int32)
    tl.store(ts_ptr + row * M + pos, t_bits.to(tl.float32, bitcast=True), mask=valid)
    tl.store(perm_ptr + row * M + pos, k & 0xFFFFFFFF, mask=valid)
    pad = (jj >= count) & (jj < M)
    tl.store(ts_ptr + row * M + jj, tl.zeros([TILE], dtype=tl.float32) + float("inf"),
             mask=pad)
    tl.store(perm_ptr + row * M + jj, jj.to(tl.int64), mask=pad)  # distinct: no hot spot


def sort_times(flat: torch.Tensor, *, tile: int, min_width: int, warps: int = 4):
    """Stable sort of each row of ``flat (B, M)`` (times >= 0 or +inf): ``(times, indices)``,
    ``(B, M)`` in ``flat``'s dtype and int64; the indices of the ``+inf`` padding are some
    valid column.

    float32 rows wider than ``min_width`` go through batsnn's own sort (tiles of ``tile``
    keys, a power of two, each sorted by ``warps`` warps); other rows through ``torch.sort``.
    """
    n_batch, m = flat.shape
    if flat.dtype != torch.float32 or m <= min_width or m >= 2**31 or n_batch == 0:
        return torch.sort(flat, dim=1, stable=True)
    n_tiles = triton.cdiv(m, tile)
    kw = n_tiles * tile
    keys = torch.empty((n_batch, kw), dtype=torch.int64, device=flat.device)
    count = torch.empty((n_batch,), dtype=torch.int32, device=flat.device)
    ts = torch.empty((n_batch, m), dtype=flat.dtype, device=flat.device)
    perm = torch.empty((n_batch, m), dtype=torch.int64, device=flat.device)
    _compact_kernel[(n_batch,)](flat, keys, count, m, kw, BLOCK=1024, num_warps=4)
    _tile_sort_kernel[(n_batch, n_tiles)](keys, count, kw, TILE=tile, num_warps=warps)
    _merge_kernel[(n_batch, n_tiles)](keys, count, ts, perm, m, kw, TILE=tile,
                                      LOG_TILE=tile.bit_length() - 1, num_warps=4)
    return ts, perm
