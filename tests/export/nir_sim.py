"""A clock-driven simulator of NIR graphs, written from NIR's documented equations only.

It reads a ``nir.NIRGraph``, a chain from ``Input`` to ``Output`` whose CubaLIF nodes are each
fed by a chain of linear synapse nodes (``Linear``, ``Affine``, ``Conv2d``, ``SumPool2d``,
``Flatten``), and shares no code with batsnn. The synapse nodes act on the spike impulses,
by NIR's definitions: ``Linear`` ``W x``; ``Conv2d`` the 2-D cross-correlation of the input
maps with ``weight`` (stride, padding, dilation, groups as in its fields); ``SumPool2d`` the
sum over each window; ``Flatten`` a reshape of the axes ``start_dim..end_dim`` (no batch axis).
They are linear, so a spike of input ``i`` adds column ``i`` of the composed map to the
CubaLIF's input ``S``. NIR's CubaLIF (nir.ir.neuron.CubaLIF's docstring; spikes are
Dirac impulses, NIR's Threshold primitive being ``delta(v - v_threshold)``)::

    tau_syn dI/dt = -I + w_in S(t),   S = W @ (sum_k delta(t - t_k))   (+ b for Affine)
    tau_mem dv/dt = (v_leak - v) + r I
    v > v_threshold  ->  spike, v = v_reset

On a grid of step ``h`` (time ``t_k = k h`` in the graph's time unit) each step:
1. propagates every layer's (I, v) exactly over ``h`` with no input (the linear ODE's
   propagator, below);
2. delivers the input spikes that fell in ``(t_{k-1}, t_k]``: a Dirac of area 1 through weight
   ``W`` raises ``I`` by ``w_in W / tau_syn`` (v is continuous);
3. layer by layer, a neuron with ``v > v_threshold`` spikes at ``t_k`` and resets to
   ``v_reset``; its spike reaches the next layer in the same step (step 2 for that layer).

So every spike reaches its target at most ``h`` late per layer, and a crossing is detected at
most ``h`` late: errors are O(h). batsnn's own fields that NIR lacks (``max_spikes``: the
neuron stops after K spikes; ``t_max``: no spike after it) are read from each CubaLIF node's
metadata, in seconds, and converted with the graph's ``time_unit``.

A ``Linear`` node looping from a CubaLIF back to it (an edge each way: a recurrent layer)
adds the layer's own spikes of step ``k`` to its ``I`` at step ``k + 1`` (one step late, as
every other spike may be).

A ``Delay`` node (NIR: ``O(t) = I(t - tau)``, one ``tau`` per neuron) may stand first in a
layer's synapse chain: each spike of its source neuron ``j`` (an input or the previous
CubaLIF) then arrives ``tau_j`` later: input spikes are moved before they are binned; a
hidden spike emitted at step ``k`` is delivered at step ``k + round(tau_j / h)`` (exact when
the delays are multiples of ``h``).

Propagator over ``h`` without input (``a_s = exp(-h/tau_syn)``, ``a_m = exp(-h/tau_mem)``)::

    I(h) = a_s I
    v(h) = v_leak + (v - v_leak) a_m + r I tau_syn (a_m - a_s) / (tau_mem - tau_syn)
"""

from __future__ import annotations

import math

import nir
import numpy as np
import torch

UNITS_PER_SECOND = {"s": 1.0, "ms": 1e3}


def _synapse(nodes):
    """The function (B, *in_shape) impulses -> (B, *out_shape) of a chain of synapse nodes."""
    def apply(x):
        for node in nodes:
            if isinstance(node, (nir.Linear, nir.Affine)):
                x = x.reshape(x.shape[0], -1) @ torch.as_tensor(np.asarray(node.weight),
                                                                  dtype=x.dtype).t()
            elif isinstance(node, nir.Conv2d):
                pad = node.padding
                pad = str(pad) if isinstance(pad, str) else tuple(int(p) for p in pad)
                x = torch.nn.functional.conv2d(
                    x, torch.as_tensor(np.asarray(node.weight), dtype=x.dtype),
                    stride=tuple(int(v) for v in node.stride), padding=pad,
                    dilation=tuple(int(v) for v in node.dilation), groups=int(node.groups))
            elif isinstance(node, nir.SumPool2d):
                k = tuple(int(v) for v in np.broadcast_to(node.kernel_size, (2,)))
                x = torch.nn.functional.avg_pool2d(
                    x, k, stride=tuple(int(v) for v in np.broadcast_to(node.stride, (2,))),
                    padding=tuple(int(v) for v in np.broadcast_to(node.padding, (2,)))) \
                    * (k[0] * k[1])
            elif isinstance(node, nir.Flatten):  # NIR dims exclude the batch axis
                nd = x.dim() - 1
                start, end = int(node.start_dim) % nd, int(node.end_dim) % nd
                x = x.flatten(start + 1, end + 1)
            else:
                raise AssertionError(f"not a synapse node: {type(node).__name__}")
        return x
    return apply


def _layers(graph):
    """[(weight (out, in) or None, delays (in,) or None, CubaLIF node, synapse function,
    recurrent weight (N, N) or None)] along the chain: the dense matrix where the synapse
    is one Linear / Affine node, else None (the simulator then composes the matrix from the
    synapse function); the delays of a Delay node that opens the layer's synapse chain; the
    weight of a Linear node that loops from a CubaLIF back to it (edges both ways)."""
    edges = [tuple(e) for e in graph.edges]
    loops = {a: b for a, b in edges if (b, a) in edges
             and isinstance(graph.nodes[a], nir.CubaLIF)
             and isinstance(graph.nodes[b], (nir.Linear, nir.Affine))}
    looped = set(loops.values())
    succ = {a: b for a, b in edges if a not in looped and b not in looped}
    k = next(n for n, v in graph.nodes.items() if isinstance(v, nir.Input))
    chain, names = [], []
    while k in succ:
        k = succ[k]
        chain.append(graph.nodes[k])
        names.append(k)
    assert isinstance(chain[-1], nir.Output)
    out, syn = [], []
    for name, node in zip(names[:-1], chain[:-1]):
        if isinstance(node, nir.CubaLIF):
            delay = None
            if syn and isinstance(syn[0], nir.Delay):
                delay, syn = np.asarray(syn[0].delay, dtype=np.float64).reshape(-1), syn[1:]
            assert not any(isinstance(x, nir.Delay) for x in syn), "Delay must come first"
            assert syn, "a CubaLIF without synapse nodes before it"
            for s in syn:
                b = getattr(s, "bias", None)
                assert b is None or not np.any(np.asarray(b)), \
                    "the simulator handles zero bias only"
            dense = len(syn) == 1 and isinstance(syn[0], (nir.Linear, nir.Affine))
            rec = graph.nodes[loops[name]] if name in loops else None
            out.append((np.asarray(syn[0].weight) if dense else None, delay, node,
                        _synapse(syn), None if rec is None else np.asarray(rec.weight)))
            syn = []
        else:
            syn.append(node)
    assert not syn, "synapse nodes after the last CubaLIF"
    return out


def simulate(graph, input_times: torch.Tensor, *, h: float, t_end: float,
             dtype=torch.float64, record_v: bool = False):
    """Simulate ``graph`` on ``input_times`` (B, *in_shape, S) given in the graph's time unit
    (ascending, ``+inf`` padded) on the grid of step ``h`` up to ``t_end`` (same unit).

    Returns a list with one dict per CubaLIF layer (its neurons flattened, C order):
    ``counts`` (B, N) int64, ``times``
    (B, N, K) spike times (+inf padded) and, with ``record_v``, ``v`` (steps + 1, B, N): the
    potential at every grid point after the step's resets.
    """
    unit = graph.metadata.get("time_unit", "s")
    c = UNITS_PER_SECOND[unit.decode() if isinstance(unit, bytes) else unit]
    B = input_times.shape[0]
    in_shape = tuple(input_times.shape[1:-1])
    input_times = input_times.reshape(B, -1, input_times.shape[-1])
    layers = []
    prev_shape = in_shape
    for w, delay, lif, syn, rec in _layers(graph):
        f = {k: torch.as_tensor(np.asarray(getattr(lif, k), dtype=np.float64),
                                dtype=dtype).reshape(-1)
             for k in ("tau_syn", "tau_mem", "r", "w_in", "v_leak", "v_threshold", "v_reset")}
        a_s, a_m = torch.exp(-h / f["tau_syn"]), torch.exp(-h / f["tau_mem"])
        same = f["tau_mem"] == f["tau_syn"]
        gain = torch.where(same, (h / f["tau_syn"]) * a_s,
                           f["tau_syn"] * (a_m - a_s) / torch.where(same, 1.0,
                                                                    f["tau_mem"] - f["tau_syn"]))
        k_max = int(lif.metadata.get("max_spikes", 10**9)) if lif.metadata else 10**9
        t_max = float(lif.metadata.get("t_max", math.inf)) * c if lif.metadata else math.inf
        n = f["tau_syn"].numel()
        layers.append(dict(
            W=None if w is None else torch.as_tensor(w, dtype=dtype), syn=syn,
            R=None if rec is None else torch.as_tensor(rec, dtype=dtype), z_rec=None,
            delay_steps=None if delay is None else np.rint(delay / h).astype(np.int64),
            pending={},
            in_shape=prev_shape, a_s=a_s, a_m=a_m,
            jump=f["w_in"] / f["tau_syn"], **f, K=k_max, t_max=t_max,
            v_rest=f["v_leak"] * (1 - a_m), r_gain=f["r"] * gain,
            I=torch.zeros(B, n, dtype=dtype), v=f["v_leak"].expand(B, n).clone(),
            count=torch.zeros(B, n, dtype=torch.int64),
            times=torch.full((B, n, min(k_max, 4096)), math.inf, dtype=dtype),
            trace=[] if record_v else None))
        prev_shape = tuple(np.asarray(lif.tau_syn).shape)
    n_steps = int(round(t_end / h))
    # input events sorted by grid bin: a spike at t in (t_{k-1}, t_k] arrives at step k
    t = input_times.to(torch.float64)
    first_delay = _layers(graph)[0][1]
    if first_delay is not None:  # the first layer's delays move the input spikes
        t = t + torch.as_tensor(first_delay, dtype=torch.float64)[None, :, None]
    ok = torch.isfinite(t) & (t <= n_steps * h)
    b_idx, i_idx, _ = ok.nonzero(as_tuple=True)
    # (a time within 1e-9 h after a grid point counts as on it: k h / h may round above k)
    bins = torch.ceil(t[ok] / h - 1e-9).to(torch.int64).clamp_(min=0)
    order = torch.argsort(bins, stable=True)
    b_idx, i_idx, bins = b_idx[order], i_idx[order], bins[order]
    starts = torch.searchsorted(bins, torch.arange(n_steps + 2)).tolist()
    for L in layers:  # (N_in, N_out): row i is what a spike of input i adds to I
        if L["W"] is None:  # the composed synapse map, applied to each input's unit impulse
            n_in = int(np.prod(L["in_shape"]))
            eye = torch.eye(n_in, dtype=dtype).reshape(n_in, *L["in_shape"])
            L["W"] = L["syn"](eye).reshape(n_in, -1).t()
        L["jump_t"] = (L["W"] * L["jump"][:, None]).t().contiguous()
        if L["R"] is not None:  # (N, N): row m is what a spike of neuron m adds to I
            L["jump_r"] = (L["R"] * L["jump"][:, None]).t().contiguous()

    for k in range(n_steps + 1):
        tk = k * h
        if k > 0:
            for L in layers:  # v <- v_leak (1 - a_m) + a_m v + r gain I;  I <- a_s I
                L["v"].mul_(L["a_m"]).add_(L["v_rest"]).addcmul_(L["r_gain"], L["I"])
                L["I"].mul_(L["a_s"])
        z = None
        for li, L in enumerate(layers):
            if L["z_rec"] is not None:  # the layer's own spikes of the last step
                L["I"] += L["z_rec"].to(L["R"].dtype) @ L["jump_r"]
                L["z_rec"] = None
            if li == 0:
                lo, hi = starts[k], starts[k + 1]
                if hi > lo:
                    L["I"].index_put_((b_idx[lo:hi],), L["jump_t"][i_idx[lo:hi]],
                                      accumulate=True)
            else:
                if z is not None and L["delay_steps"] is not None:  # spikes to come
                    for m in np.unique(L["delay_steps"]):
                        part = z & torch.as_tensor(L["delay_steps"] == m)[None, :]
                        L["pending"][k + int(m)] = L["pending"].get(k + int(m), 0) | part
                    z = L["pending"].pop(k, None)
                elif L["delay_steps"] is not None:
                    z = L["pending"].pop(k, None)
                if z is not None:
                    L["I"] += z.to(L["W"].dtype) @ L["jump_t"]
            fire = L["v"] > L["v_threshold"]
            if tk <= L["t_max"] and bool(fire.any()):
                fire &= L["count"] < L["K"]
                bb, nn_ = fire.nonzero(as_tuple=True)
                slot = L["count"][bb, nn_]
                keep = slot < L["times"].shape[2]
                L["times"][bb[keep], nn_[keep], slot[keep]] = tk
                L["v"] = torch.where(fire, L["v_reset"].expand_as(L["v"]), L["v"])
                L["count"] += fire
                z = fire if bool(fire.any()) else None
                if L["R"] is not None:
                    L["z_rec"] = z
            else:
                z = None
            if L["trace"] is not None:
                L["trace"].append(L["v"].clone())
    return [dict(counts=L["count"], times=L["times"],
                 **({"v": torch.stack(L["trace"])} if record_v else {})) for L in layers]
