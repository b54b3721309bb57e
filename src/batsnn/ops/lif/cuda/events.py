"""Event lists on the GPU (Triton): the per-event arrays of
:func:`batsnn.ops.lif.events.sort_events`, computed by one kernel from the sorted times.

Everything stays on the device and in the input's dtype (the grid indices in float64), at
full width ``M = N_in * S_in`` with no host synchronisation; entries past a sample's
``nspk`` are left unwritten (the kernels never read them).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from batsnn.ops.lif.cuda.core import exp, floor_index
from batsnn.ops.lif.events import Events


@triton.jit
def build_events(ts_ptr, perm_ptr, nid_ptr, nspk_ptr, ref_ptr, es_ptr, ex_ptr, xup_ptr,
                 kin_ptr, kup_ptr, prm_ptr, grid_ptr, M, S_IN, BLOCK: tl.constexpr,
                 ON_GRID: tl.constexpr, INTERP: tl.constexpr):
    # One program per sample: the per-event arrays of events.sort_events from the sorted
    # times, up to the first +inf (the padding is never read by the kernels). With a grid,
    # also the events' grid indices kin and window bounds kup (events.grid_bounds):
    # kup[j] = min(kin[j + 1], k_T) (grid.last_index), the next time being +inf past the end.
    b = tl.program_id(0)
    tau_s = tl.load(prm_ptr + 0)
    t_max = tl.load(prm_ptr + 3)
    seg = tl.load(prm_ptr + 5)
    if ON_GRID:
        dt = tl.load(grid_ptr + 0)  # float64
        k_tmax = tl.load(grid_ptr + 1)  # k_T = grid.last_index(t_max), float64
    tau = 2.0 * tau_s
    row = b.to(tl.int64) * M
    offs = tl.arange(0, BLOCK)
    total = 0
    full = True
    j0 = 0
    while (j0 < M) & full:
        jj = j0 + offs
        inb = jj < M
        t = tl.load(ts_ptr + row + jj, mask=inb, other=float("inf"))
        fin = t < float("inf")
        nxt = tl.load(ts_ptr + row + jj + 1, mask=(jj + 1) < M, other=float("inf"))
        p = tl.load(perm_ptr + row + jj, mask=fin, other=0)
        safe = tl.where(fin, t, 0.0)
        r = tl.floor(safe / seg) * seg
        up = tl.minimum(nxt, t_max)  # the window's end
        tl.store(nid_ptr + row + jj, (p // S_IN).to(tl.int32), mask=fin)
        tl.store(ref_ptr + row + jj, r, mask=fin)
        tl.store(es_ptr + row + jj, exp((safe - r) / tau_s, INTERP), mask=fin)
        tl.store(ex_ptr + row + jj, exp((safe - r) / tau, INTERP), mask=fin)
        xup = exp(-(up - r) / tau, INTERP)
        if ON_GRID:  # indices of times in the input's dtype, as events.grid_bounds
            tl.store(kin_ptr + row + jj, floor_index(t, dt), mask=fin)
            kup = tl.minimum(floor_index(nxt, dt), k_tmax)
            tl.store(kup_ptr + row + jj, kup, mask=fin)
            # A crossing at t is emitted in this window iff t < G(kup) = kup * dt, which can
            # lie past up (a float32 input stored below its grid point): the pre-test's x at
            # the window's end then shrinks to at most exp(-(G(kup) - r)/tau), taken as
            # xup * (1 - gap/tau) <= xup * exp(-gap/tau), as the CPU kernels do.
            up64 = tl.where(up < float("inf"), up, 0.0).to(tl.float64)
            gap = tl.where(kup < float("inf"), kup * dt - up64, 0.0)
            gap = tl.maximum(gap, 0.0)
            xup = (xup.to(tl.float64) * (1.0 - gap / tau.to(tl.float64))).to(xup.dtype)
        tl.store(xup_ptr + row + jj, xup, mask=fin)
        n_fin = tl.sum(fin.to(tl.int32), axis=0)
        total += n_fin
        full = n_fin == BLOCK
        j0 += BLOCK
    tl.store(nspk_ptr + b, total)


def events_from_sorted(ts: torch.Tensor, perm: torch.Tensor, s_in: int, p, prm: torch.Tensor,
                       grid: torch.Tensor, *, block: int, interp: bool) -> Events:
    """Event lists from rows already sorted (:func:`.sort.sort_times`): ``ts (B, M)``
    ascending (``+inf`` last, ties in input order) and ``perm (B, M)`` each entry's input
    column (neuron ``perm // s_in``); one kernel (``block`` events a step) for the per-event
    arrays.

    ``p``: the layer's :class:`~batsnn.params.LIFParams`; ``prm``: the device constants
    ``(tau_s, ., ., t_max, ., seg)`` in the rows' dtype; ``grid``: float64 ``(dt,
    k_T)`` (the grid only matters when ``p.dt > 0``; otherwise ``kin``/``kup``
    are empty ``(B, 0)``). ``interp``: Triton's CPU interpreter.
    """
    n_batch, m = ts.shape
    dev, dtype = ts.device, ts.dtype
    nid = torch.empty((n_batch, m), dtype=torch.int32, device=dev)
    nspk = torch.zeros((n_batch,), dtype=torch.int32, device=dev)
    ref, es, ex, xup = (torch.empty((n_batch, m), dtype=dtype, device=dev) for _ in range(4))
    on_grid = p.on_grid
    if on_grid:
        kin, kup = (torch.empty((n_batch, m), dtype=torch.float64, device=dev) for _ in range(2))
    else:  # one empty tensor for both, as events.grid_bounds
        kin = kup = torch.empty((n_batch, 0), dtype=torch.float64, device=dev)
    if n_batch and m:
        build_events[(n_batch,)](ts, perm, nid, nspk, ref, es, ex, xup, kin, kup, prm, grid, m,
                                 s_in, BLOCK=block, ON_GRID=on_grid, INTERP=interp,
                                 num_warps=1 if block <= 64 else 4)
    empty = torch.empty((0,), dtype=dtype, device=dev)
    return Events(ts, nid, perm, nspk, ref, es, ex, empty, xup, kin, kup)
