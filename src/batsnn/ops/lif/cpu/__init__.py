"""Compiled CPU kernels of the LIF layer (numba, parallel over samples and neuron blocks).

The backend contract of :mod:`batsnn.ops.lif`, dispatching on the synapse's ``kind``:

- :mod:`.events`: the per-sample sorted event lists (shared by every synapse); for a
  convolution :mod:`.rf` adds the receptive-field lists of its output positions;
- :mod:`.core`: the neuron core (integration, exact root search with the grid rule,
  reset, BATS error recursion) as inlined helpers;
- one driver per synapse type (:mod:`.dense`, :mod:`.conv`; per-synapse delays,
  :mod:`.delayed`, run the dense driver over one row per sample and output neuron): task
  decomposition, event iteration, the weight lookup and where the gradients go, compiled
  with the core inlined.

:mod:`.recurrent` holds the kernels of the recurrent layer (:mod:`batsnn.ops.recurrent`),
which take their own event order; they live here so that the package's cache stamp
(:mod:`.cache`) recompiles them when the shared core changes.

The kernels work on :class:`batsnn.ops.lif.events.Events` (:class:`.rf.ConvEvents` for a
convolution); all their arithmetic is float64.
"""

from __future__ import annotations

from batsnn.ops.lif.cpu import conv, delayed, dense, rf
from batsnn.ops.lif.cpu.events import sort_events as _sort_events
from batsnn.ops.lif.synapse import DENSE

__all__ = ["backward", "forward", "sort_events"]

_DRIVERS = {"dense": dense, "conv2d": conv, "delayed_dense": delayed}


def _driver(synapse):
    kind = getattr(synapse, "kind", None)
    if kind not in _DRIVERS:
        raise ValueError(f"the CPU backend has no kernels for synapse {synapse!r}")
    return _DRIVERS[kind]


def sort_events(input_times, p, synapse=DENSE):
    """The event lists of valid ``(B, N_in, S_in)`` trains for ``synapse``: the sorted
    events (:func:`.events.sort_events`), with a convolution's receptive-field lists
    (:func:`.rf.build_lists`, a :class:`.rf.ConvEvents`); per-synapse delays: one list per
    delayed row (:func:`.delayed.sort_events`)."""
    driver = _driver(synapse)
    if driver is delayed:
        return delayed.sort_events(input_times, p, synapse)
    ev = _sort_events(input_times, p)
    if driver is conv:
        return rf.build_lists(ev, p, synapse)
    return ev


def forward(ev, weight, p, *, synapse, need_aux=True):
    """Run the forward kernel of ``synapse``; returns ``(times, t_continuous, window, X,
    counts)``: times ``(B, N_out, K)`` in ``weight``'s dtype, counts ``(B, N_out)`` int64.

    With ``need_aux=False`` (no backward will follow) the middle three are empty.
    """
    return _driver(synapse).forward(ev, weight, p, synapse=synapse, need_aux=need_aux)


def backward(g_out, saved, ev, weight, p, *, synapse, need_input):
    """Run the backward kernel of ``synapse``; returns ``(grad of the sorted input events
    (B, M), grad_weight)`` in float64, the weight's gradient in its layout."""
    return _driver(synapse).backward(g_out, saved, ev, weight, p, synapse=synapse,
                                     need_input=need_input)
