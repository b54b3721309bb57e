"""Per-synapse delays on the CPU: one row per (sample, output neuron), each with its own
time-ordered event stream.

Row ``r = b * N_out + n`` holds sample ``b``'s input as neuron ``n`` receives it (every
input ``i`` shifted by ``d[n, i]``, :class:`batsnn.ops.lif.synapse.DelayedDense`); its
sorted event list is built by the compiled sorter shared with the dense layer
(:func:`.events.sort_events`, the same ``ref``/``es``/``ex``/``up``/``xup``/``kin``/``kup``
per row). An event of input ``i`` in row ``r`` then carries the synapse index
``n * N_in + i`` in place of ``i``, so that the dense driver (:mod:`.dense`) with one output
neuron per row and the weight flattened to one column ``(N_out * N_in, 1)`` reads
``weight[n, i]``, sends the weight gradient to ``weight[n, i]`` and the time gradient to the
row's event (from there to the input time and to the delay). The neuron core is the dense
layer's, inlined in its compiled driver.
"""

from __future__ import annotations

import torch

from batsnn.ops.lif.cpu import dense
from batsnn.ops.lif.cpu.events import sort_events as sort_rows


def sort_events(rows: torch.Tensor, p, synapse):
    """The per-row event lists of valid delayed rows ``(B * N_out, N_in, S)``, with each
    event's presynaptic index replaced by its synapse ``n * N_in + i``."""
    ev = sort_rows(rows, p)
    n = torch.arange(rows.shape[0], dtype=torch.int32) % synapse.n_out
    return ev._replace(nid=(ev.nid + (n * synapse.n_in)[:, None]).contiguous())


def forward(ev, weight, p, *, synapse, need_aux=True):
    """Forward of the delayed rows: ``weight`` ``(N_out, N_in)``; times ``(B * N_out, 1, K)``
    and the rest as the backend contract (:mod:`batsnn.ops.lif`) says."""
    return dense.forward(ev, weight.reshape(1, -1), p, need_aux=need_aux)


def backward(g_out, saved, ev, weight, p, *, synapse, need_input):
    """Backward of the delayed rows: ``(grad of each row's sorted events (B * N_out, M),
    grad_weight (N_out, N_in))``, float64."""
    g_ev, g_w = dense.backward(g_out, saved, ev, weight.reshape(1, -1), p,
                               need_input=need_input)
    return g_ev, g_w.reshape(weight.shape)
