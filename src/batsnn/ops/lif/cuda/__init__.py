"""GPU backend of the LIF layer (Triton; optional): the backend contract of
:mod:`batsnn.ops.lif` over the kernels of this package.

- :mod:`.sort`: batsnn's own stable sort of float32 spike times (wide layer outputs);
- :mod:`.events`: the event lists (the per-event arrays, grid indices included);
- :mod:`.core`: the neuron core (integration helpers, exact root search and grid rule,
  reset, BATS error recursion), shared by every synapse;
- :mod:`.dense`: the forward and backward kernels, with the synapse as a compile-time switch;
- :mod:`.conv`: the convolutional synapse, as receptive-field rows on which the dense
  kernels run unchanged;
- :mod:`.pooling`: float32 spike pooling (:func:`batsnn.spike_pool2d` on the GPU).

The kernels follow model.md sections 1, 2 and 6 with the same arithmetic as the CPU kernels
(:mod:`batsnn.ops.lif.cpu`); float32 inputs are computed in float32, float64 inputs in
float64, the grid indices of ``dt > 0`` always in float64. Nothing here synchronises the
host, so a training step can be recorded as a CUDA graph
(:mod:`batsnn.experiments.graphs`).

Importing this package needs Triton; :func:`available` says whether the GPU path can run.
The module constants below may be changed at run time (the tests do).
"""

from __future__ import annotations

import math
import os

import torch
import triton

from batsnn.ops.lif.cuda import conv, dense
from batsnn.ops.lif.cuda import events as _events
from batsnn.ops.lif.cuda.sort import sort_times
from batsnn.ops.lif.events import SEGMENT
from batsnn.ops.lif.grid import last_index, stop_time
from batsnn.ops.lif.synapse import DENSE

__all__ = ["available", "backward", "forward", "pool", "sort_events"]

_MARGIN = 1e-6  # relative margin of the root-free pre-test (float32-safe)
_INTERP = os.environ.get("TRITON_INTERPRET", "0") == "1"

#: Neurons per program of the forward and backward kernels; 0 picks by layer width.
FWD_LANES = int(os.environ.get("BATSNN_CUDA_FWD_LANES", "0"))
BWD_LANES = int(os.environ.get("BATSNN_CUDA_BWD_LANES", "0"))
_PREP_BLOCK = 256
#: Layers up to this width add the input gradient lane by lane (no warp reduction per event).
LANE_ATOMICS_MAX = int(os.environ.get("BATSNN_CUDA_LANE_ATOMICS_MAX", "16"))
#: Keys per tile of the GPU sort, and the row width from which it replaces ``torch.sort``.
SORT_TILE = 2048
SORT_MIN_WIDTH = 4096
#: Warps that sort one tile.
SORT_WARPS = 4


def available() -> bool:
    """Whether the GPU path can run (a CUDA device is visible)."""
    return torch.cuda.is_available()


def _lanes(n_out: int, backward: bool) -> int:
    """Neurons per program (one warp): 32; 64 (two per thread) for a layer of 33-64 neurons
    (one program per row instead of two mostly idle ones: a convolution's channels) and for
    the backward of a wide layer, which halves its atomic traffic per event."""
    if backward:
        return BWD_LANES or (64 if n_out > 512 or 32 < n_out <= 64 else 32)
    return FWD_LANES or (64 if 32 < n_out <= 64 else 32)


def _sort_times(flat: torch.Tensor):
    """Stable sort of each row of ``flat (B, M)`` (times >= 0 or +inf): ``(times, indices)``.

    float32 rows wider than :data:`SORT_MIN_WIDTH` go through batsnn's own sort
    (:mod:`.sort`, tiles of :data:`SORT_TILE` keys), whose cost follows the number of finite
    times (a layer's output is mostly +inf padding); otherwise ``torch.sort``.
    """
    return sort_times(flat, tile=SORT_TILE, min_width=SORT_MIN_WIDTH, warps=SORT_WARPS)


_PARAM_CACHE: dict = {}


def _const(values: tuple, dtype, device) -> torch.Tensor:
    """A small device tensor of constants, made once (a fresh host-to-device copy per call
    would synchronise the host with the GPU, and is not allowed in CUDA-graph capture)."""
    key = (values, dtype, device)
    t = _PARAM_CACHE.get(key)
    if t is None:
        if len(_PARAM_CACHE) > 256:
            _PARAM_CACHE.clear()
        t = _PARAM_CACHE[key] = torch.tensor(values, dtype=dtype, device=device)
    return t


def _params(dtype, device, tau_s, theta, delta_theta, t_max, dt, seg=0.0):
    return _const((float(tau_s), float(theta), float(delta_theta), float(t_max), float(dt),
                   float(seg)), dtype, device)


def _grid(p, device) -> torch.Tensor:
    """float64 ``(dt, k_T)`` on the device (the grid's constants; ``k_T`` of ``t_max``,
    :func:`batsnn.ops.lif.grid.last_index`)."""
    k_tmax = last_index(p.t_max, p.dt)
    return _const((float(p.dt), float(k_tmax)), torch.float64, device)


#: The synapse kinds this backend runs: the dense kernels, and a convolution as
#: receptive-field rows over them (:mod:`.conv`).
SYNAPSES = ("dense", "conv2d")


def _synapse_kind(synapse) -> str:
    kind = getattr(synapse, "kind", None)
    if kind not in SYNAPSES:
        raise ValueError(f"synapse must be one of the GPU backend's kinds {SYNAPSES}, "
                         f"got {synapse!r}")
    return kind


def _dense_weight(weight: torch.Tensor) -> torch.Tensor:
    """The dense synapse's weight layout: ``wt (N_in, N_out)``, contiguous."""
    return weight.detach().t().contiguous()


def _event_params(p, dtype, device):
    """The device constants of the event-list kernel (:mod:`.events`)."""
    return _params(dtype, device, p.tau_s, 1.0, 1.0, p.t_max, 0.0, SEGMENT * p.tau_s)


def sort_events(input_times, p, synapse=DENSE):
    """Event lists on the GPU in the input's dtype, full width (no host synchronisation):
    a stable sort of each sample's spikes, for a convolution one row per sample and output
    position taken from it (:mod:`.conv`), then one kernel for the per-event arrays
    (:mod:`.events`)."""
    kind = _synapse_kind(synapse)
    n_batch, n_in, s_in = input_times.shape
    dev, dtype = input_times.device, input_times.dtype
    ts, perm = _sort_times(input_times.detach().reshape(n_batch, n_in * s_in).contiguous())
    if kind == "conv2d":
        ts, perm, pos = conv.sorted_rows(ts, perm, s_in, synapse)
    block = min(_PREP_BLOCK, triton.next_power_of_2(max(ts.shape[1], 16)))
    ev = _events.events_from_sorted(ts, perm, s_in, p, _event_params(p, dtype, dev),
                                    _grid(p, dev), block=block, interp=_INTERP)
    return ev if kind == "dense" else ev._replace(perm=pos)


def _forward(ev, weight, p, need_aux):
    """The dense forward kernel over ``ev``'s rows, weight ``(N_out, N_in)``."""
    max_spikes = p.max_spikes
    n_batch, m = ev.ts.shape
    n_out = weight.shape[0]
    dev = weight.device
    dtype = ev.es.dtype
    shape = (n_batch, n_out, max_spikes)
    out_t = torch.full(shape, math.inf, dtype=dtype, device=dev)
    aux_shape = shape if need_aux else (0, 0, 0)
    out_tc = torch.empty(aux_shape, dtype=dtype, device=dev)
    out_win = torch.empty(aux_shape, dtype=torch.int32, device=dev)
    out_x = torch.empty(aux_shape, dtype=dtype, device=dev)
    counts = torch.zeros((n_batch, n_out), dtype=torch.int64, device=dev)
    if n_batch == 0 or m == 0 or n_out == 0:
        return out_t, out_tc, out_win, out_x, counts
    wt = _dense_weight(weight)
    lanes = _lanes(n_out, backward=False)
    grid = (n_batch, triton.cdiv(n_out, lanes))
    # in the kernel's t_max slot: the time from which an input opens no window (t_max itself
    # in exact time; on the grid G(k_T) in the events' dtype, so that the stop is the
    # reference's index test)
    t_stop = stop_time(p.t_max, p.dt, dtype)
    dense.forward_kernel[grid](
        ev.ts, ev.nid, ev.nspk, ev.ref, ev.es, ev.ex, ev.xup, ev.kin, ev.kup, wt,
        _params(dtype, dev, p.tau_s, p.theta, p.delta_theta, t_stop, p.dt), _grid(p, dev),
        out_t, out_tc, out_win, out_x, counts, m, n_out, K=max_spikes, BLOCK=lanes,
        SYNAPSE="dense", ON_GRID=p.on_grid, RESET_ON_GRID=p.reset_on_grid, MARGIN=_MARGIN,
        INTERP=_INTERP,
        NEED_AUX=bool(need_aux), num_warps=1)
    return out_t, out_tc, out_win, out_x, counts


def forward(ev, weight, p, *, synapse, need_aux=True):
    """Forward of the backend contract (:mod:`batsnn.ops.lif`): ``(times, t_cont, window,
    x, counts)``, times ``(B, N_out, K)`` in the events' dtype. For a convolution the
    middle three stay in the rows' layout ``(B * P, C_out, K)`` (only the backward reads
    them)."""
    if _synapse_kind(synapse) == "dense":
        return _forward(ev, weight, p, need_aux)
    n_pos = synapse.positions
    out_t, out_tc, out_win, out_x, counts = _forward(ev, weight.reshape(weight.shape[0], -1),
                                                     p, need_aux)
    return (conv.from_rows(out_t, n_pos), out_tc, out_win, out_x,
            conv.from_rows(counts, n_pos))


def _backward(g_out, saved, ev, weight, p, need_input):
    """The dense backward kernel over ``ev``'s rows: ``(g_events (rows, M), g_weight
    (N_out, N_in))``."""
    out_tc, out_win, out_x, counts = saved
    n_batch, m = ev.ts.shape
    n_out, n_in = weight.shape
    dtype = ev.es.dtype
    dev = weight.device
    g_in = torch.zeros((n_batch, m), dtype=dtype, device=dev)
    g_wt = torch.zeros((n_in, n_out), dtype=dtype, device=dev)
    if n_batch == 0 or m == 0 or n_out == 0:
        return g_in, g_wt.t()
    k = out_tc.shape[2]
    wt = _dense_weight(weight)
    err = torch.empty_like(out_tc)
    g = g_out.detach().to(dtype).contiguous()
    lanes = _lanes(n_out, backward=True)
    grid = (n_batch, triton.cdiv(n_out, lanes))
    dense.backward_kernel[grid](
        g, out_tc, out_win, out_x, counts, ev.nid, ev.ref, ev.es, ev.ex, wt,
        _params(dtype, dev, p.tau_s, p.theta, p.delta_theta, p.t_max, p.dt), _grid(p, dev),
        err, g_in, g_wt, m, n_out, K=k, BLOCK=lanes, SYNAPSE="dense",
        NEED_INPUT=bool(need_input), RESET_ON_GRID=p.reset_on_grid,
        LANE_ATOMICS=n_out <= LANE_ATOMICS_MAX, INTERP=_INTERP, num_warps=1)
    return g_in, g_wt.t()


def backward(g_out, saved, ev, weight, p, *, synapse, need_input):
    """Backward of the backend contract (:mod:`batsnn.ops.lif`): ``(g_events (B, M),
    g_weight)`` in the weight's layout (for a convolution ``M = P * M_rf``, in the order of
    ``ev.perm``)."""
    if _synapse_kind(synapse) == "dense":
        return _backward(g_out, saved, ev, weight, p, need_input)
    n_pos = synapse.positions
    out_tc, out_win, out_x, counts = saved
    g_rows, g_w = _backward(conv.to_rows(g_out, n_pos),
                            (out_tc, out_win, out_x, conv.to_rows(counts, n_pos)), ev,
                            weight.reshape(weight.shape[0], -1), p, need_input)
    n_batch = g_out.shape[0]
    return g_rows.reshape(n_batch, n_pos * g_rows.shape[1]), g_w.reshape(weight.shape)


def pool(times: torch.Tensor, k: int):
    """Spike pooling of the backend contract (:mod:`batsnn.ops.lif`): float32 trains through
    :mod:`.pooling`'s kernel; ``None`` for float64 (the torch ops)."""
    if times.dtype != torch.float32:
        return None
    from batsnn.ops.lif.cuda.pooling import SpikePoolFunction

    return SpikePoolFunction.apply(times, k)
