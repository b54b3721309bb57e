"""Plain reference of the recurrent LIF layer (docs/model.md, "Recurrent layers").

Python loops over samples, events and neurons, absolute exponentials, float64: slow and
obvious on purpose, the ground truth the tests hold the CPU kernels to.

Every quantity that enters a neuron's sums ``A``/``B`` is an *item*, in the order it is
integrated: an input spike ``(t_j, i)`` (weight ``weight[n, i]``) or a spike of the layer
itself ``(t_k, neuron m)`` (weight ``recurrent_weight[n, m]``, and for ``n == m`` also the
reset ``-delta_theta``). A spike depends on exactly the items integrated before it was
found (``seen``), which is all the backward needs.
"""

from __future__ import annotations

import math

import torch

from batsnn.ops.lif.grid import floor_index, floor_index_scalar, last_index


def _sorted_inputs(times_row: torch.Tensor) -> list[tuple[float, int, int]]:
    """All finite input spikes of one sample as ``(time, input index, slot)``, time-sorted
    (stable)."""
    events = []
    n_in, s_in = times_row.shape
    for i in range(n_in):
        for s in range(s_in):
            t = float(times_row[i, s])
            if math.isfinite(t):
                events.append((t, i, s))
    events.sort(key=lambda e: e[0])
    return events


def _crossing(a, b, theta, tau):
    """The earliest root ``t*`` of ``A x^2 - B x + theta/tau = 0`` (``x = exp(-t/tau)``)
    and ``X = sqrt(D)``, or ``None`` (model.md section 1, in the dense reference's order of
    operations)."""
    disc = b * b - 4.0 * a * theta / tau
    if disc < 0:
        return None
    x = math.sqrt(disc)
    if b + x == 0:
        return None
    ratio = 2.0 * a / (b + x)
    if ratio <= 0:
        return None
    return tau * math.log(ratio), x


def _candidate(a, b, theta, tau, lower, hi, dt, reset_on_grid):
    """The next spike of one neuron in its window, or ``None``: ``(mark, t_c, X, emitted)``
    with ``mark`` the time (``dt == 0``) or grid index compared with ``lower`` (the window's
    start or the neuron's last spike, whichever is later) and ``hi`` (the window's end).
    Follows the dense reference (:func:`batsnn.ops.lif.naive.lif_linear_forward_naive`);
    a spike forced by the grid (``reset_on_grid``) has ``t_c`` its emitted time and
    ``X = inf``."""
    if reset_on_grid:
        k_crossing = -math.inf
        x = math.inf
        disc = b * b - 4.0 * a * theta / tau
        if disc >= 0:
            x = math.sqrt(disc)
            if b + x != 0 and 2.0 * a / (b + x) > 0:
                t_c = tau * math.log(2.0 * a / (b + x))
                k_crossing = floor_index_scalar(t_c, dt) + 1.0
        k = max(k_crossing, lower + 1.0)
        xe = math.exp(-k * dt / tau)
        if not (k <= hi and b * xe - a * xe * xe >= theta / tau):
            return None
        if k > k_crossing:  # forced: its time does not move
            return k, k * dt, math.inf, k * dt
        return k, t_c, x, k * dt
    root = _crossing(a, b, theta, tau)
    if root is None:
        return None
    t_c, x = root
    mark = floor_index_scalar(t_c, dt) + 1.0 if dt else t_c
    if not (mark > lower and mark <= hi):
        return None
    return mark, t_c, x, (mark * dt if dt else t_c)


def lif_recurrent_forward_naive(input_times, weight, recurrent_weight, *, tau_s, theta,
                                delta_theta, max_spikes, t_max=math.inf, dt=None,
                                reset_at="crossing"):
    """Reference forward. Returns ``(times, counts, records)``.

    ``records[b]`` is ``(items, spikes)``: ``items`` the integrated items in order, each
    ``("in", t, i, slot, None)`` or ``("rec", t, m, spike_id, t_reset)`` (``t`` the time
    the spike acts on the layer from, ``t_reset`` the time of its neuron's reset);
    ``spikes`` per emitted spike ``(t_c, neuron, slot, X, seen)`` in emission order
    (``t_c`` its continuous crossing, ``X = sqrt(D)`` in absolute units, ``seen`` the
    number of items integrated before it was found).

    In each window, from the last item to the next input spike (or ``t_max``), every
    neuron with spikes left computes its next spike (section 1, with ``dt`` section 6 on
    grid indices); the earliest time (index) over the layer is emitted by every neuron
    whose spike falls on it, then their spikes are integrated into every neuron from their
    emitted times and their resets into their own neurons (at ``t_c``, or with
    ``reset_at="emitted"`` at the emitted grid time), and the search repeats.
    """
    on_grid = bool(dt)
    reset_on_grid = on_grid and reset_at == "emitted"
    tau = 2.0 * tau_s
    batch = input_times.shape[0]
    n_out = weight.shape[0]
    w = weight.detach().double().tolist()
    rw = recurrent_weight.detach().double().tolist()
    times = torch.full((batch, n_out, max_spikes), math.inf, dtype=torch.float64)
    counts = torch.zeros(batch, n_out, dtype=torch.int64)
    records = []
    k_tmax = last_index(t_max, dt)
    for b in range(batch):
        inputs = _sorted_inputs(input_times[b].detach().double())
        # the mark (time, or grid index in the input's own dtype) of each input
        marks = ([t for t, _, _ in inputs] if not on_grid else floor_index(
            torch.tensor([t for t, _, _ in inputs], dtype=torch.float64), dt,
            input_times.dtype).tolist())
        top = k_tmax if on_grid else t_max
        a_sum = [0.0] * n_out
        b_sum = [0.0] * n_out
        last = [-math.inf] * n_out
        items = []
        spikes = []
        for j, (tj, ij, sj) in enumerate(inputs):
            for n in range(n_out):
                a_sum[n] += w[n][ij] * math.exp(tj / tau_s)
                b_sum[n] += w[n][ij] * math.exp(tj / tau)
            items.append(("in", tj, ij, sj, None))
            hi = min(marks[j + 1] if j + 1 < len(inputs) else math.inf, top)
            lo = marks[j]
            while True:
                found = []
                for n in range(n_out):
                    if counts[b, n] >= max_spikes:
                        continue
                    cand = _candidate(a_sum[n], b_sum[n], theta, tau, max(lo, last[n]), hi,
                                      dt, reset_on_grid)
                    if cand is not None:
                        found.append((cand, n))
                if not found:
                    break
                first = min(f[0][0] for f in found)
                fired = [f for f in found if f[0][0] == first]
                seen = len(items)
                for (mark, t_c, x, emitted), n in fired:  # every spike at `first`, then
                    slot = int(counts[b, n])              # their effects
                    times[b, n, slot] = emitted
                    counts[b, n] += 1
                    last[n] = mark
                    spikes.append((t_c, n, slot, x, seen))
                for (mark, t_c, x, emitted), m in fired:
                    t_reset = emitted if reset_on_grid else t_c
                    for n in range(n_out):
                        a_sum[n] += rw[n][m] * math.exp(emitted / tau_s)
                        b_sum[n] += rw[n][m] * math.exp(emitted / tau)
                    b_sum[m] -= delta_theta / tau * math.exp(t_reset / tau)
                    items.append(("rec", emitted, m, None, t_reset))  # spike id set below
                lo = first
        # the spike id of each "rec" item: its index among the spikes
        fixed = []
        k = 0
        for it in items:
            if it[0] == "rec":
                fixed.append(("rec", it[1], it[2], k, it[4]))
                k += 1
            else:
                fixed.append(it)
        records.append((fixed, spikes))
    return times, counts, records


def lif_recurrent_backward_naive(grad_times, input_times, weight, recurrent_weight, records,
                                 *, tau_s, delta_theta):
    """Reference backward (model.md section 2 with the layer's own spikes among the
    inputs). Returns ``(grad_input_times, grad_weight, grad_recurrent_weight)``.

    Pairwise: the total error of each spike, in reverse emission order, is its loss
    gradient plus ``total_s * dt_s/dt_k`` over every later spike ``s`` that integrated it
    (through ``recurrent_weight[n_s, m]``, and the reset when ``n_s == m``); the weight and
    input-time gradients are direct sums over (spike, item) pairs. With ``dt`` the
    emitted times pass the gradient straight through to the crossings (model.md section 6);
    a spike forced by the grid (``X = inf``) depends on nothing.
    """
    tau = 2.0 * tau_s
    batch, n_in, s_in = input_times.shape
    n_out = weight.shape[0]
    w = weight.detach().double()
    rw = recurrent_weight.detach().double()
    g_w = torch.zeros(n_out, n_in, dtype=torch.float64)
    g_r = torch.zeros(n_out, n_out, dtype=torch.float64)
    g_in = torch.zeros(batch, n_in, s_in, dtype=torch.float64)
    for b in range(batch):
        items, spikes = records[b]
        item_of = {it[3]: q for q, it in enumerate(items) if it[0] == "rec"}

        def f12(s):
            t_s, _, _, x_s, _ = spikes[s]
            if x_s == math.inf or x_s == 0.0:  # forced by the grid, or a tangent crossing
                return 0.0, 0.0  # (D = 0: no finite derivative): no gradient
            return tau / (x_s * math.exp(t_s / tau)), tau / x_s

        def d_time(s, q):
            """dt_s / d(time of item q), ``q < seen_s``."""
            f1, f2 = f12(s)
            kind, t_q, src, _, t_reset = items[q]
            n_s = spikes[s][1]
            wt = float(w[n_s, src]) if kind == "in" else float(rw[n_s, src])
            d = wt * (f1 * math.exp(t_q / tau_s) / tau_s - f2 * math.exp(t_q / tau) / tau)
            if kind == "rec" and src == n_s:
                d += f2 * delta_theta * math.exp(t_reset / tau) / (tau * tau)
            return d

        total = [0.0] * len(spikes)
        for s in reversed(range(len(spikes))):
            t_s, n_s, slot, _, _ = spikes[s]
            acc = float(grad_times[b, n_s, slot])
            q = item_of[s]
            for s2 in range(s + 1, len(spikes)):
                if spikes[s2][4] > q:
                    acc += total[s2] * d_time(s2, q)
            total[s] = acc
        for s, (t_s, n_s, _, _, seen) in enumerate(spikes):
            f1, f2 = f12(s)
            for q in range(seen):
                kind, t_q, src, slot, _ = items[q]
                coef = f1 * math.exp(t_q / tau_s) - f2 * math.exp(t_q / tau)
                if kind == "in":
                    g_w[n_s, src] += total[s] * coef
                    g_in[b, src, slot] += total[s] * d_time(s, q)
                else:
                    g_r[n_s, src] += total[s] * coef
    return g_in, g_w, g_r
