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


def lif_recurrent_forward_naive(input_times, weight, recurrent_weight, *, tau_s, theta,
                                delta_theta, max_spikes, t_max=math.inf):
    """Reference forward in continuous time. Returns ``(times, counts, records)``.

    ``records[b]`` is ``(items, spikes)``: ``items`` the integrated items in order, each
    ``("in", t, i, slot)`` or ``("rec", t, m, spike_id)``; ``spikes`` per emitted spike
    ``(t, neuron, slot, X, seen)`` in emission order (``X = sqrt(D)`` in absolute units,
    ``seen`` the number of items integrated before it was found).

    In each window, from the last item to the next input spike (or ``t_max``), every
    neuron with spikes left computes its earliest crossing; the earliest over the layer is
    emitted by every neuron crossing at that exact time, then their spikes are integrated
    into every neuron (and their resets into their own), and the search repeats.
    """
    tau = 2.0 * tau_s
    batch = input_times.shape[0]
    n_out = weight.shape[0]
    w = weight.detach().double().tolist()
    rw = recurrent_weight.detach().double().tolist()
    times = torch.full((batch, n_out, max_spikes), math.inf, dtype=torch.float64)
    counts = torch.zeros(batch, n_out, dtype=torch.int64)
    records = []
    for b in range(batch):
        inputs = _sorted_inputs(input_times[b].detach().double())
        a_sum = [0.0] * n_out
        b_sum = [0.0] * n_out
        last = [-math.inf] * n_out
        items = []
        spikes = []
        for j, (tj, ij, sj) in enumerate(inputs):
            for n in range(n_out):
                a_sum[n] += w[n][ij] * math.exp(tj / tau_s)
                b_sum[n] += w[n][ij] * math.exp(tj / tau)
            items.append(("in", tj, ij, sj))
            hi = min(inputs[j + 1][0] if j + 1 < len(inputs) else math.inf, t_max)
            lo = tj
            while True:
                found = []
                for n in range(n_out):
                    if counts[b, n] >= max_spikes:
                        continue
                    root = _crossing(a_sum[n], b_sum[n], theta, tau)
                    if root is None:
                        continue
                    t_star, x = root
                    if t_star > max(lo, last[n]) and t_star <= hi:
                        found.append((t_star, n, x))
                if not found:
                    break
                t_first = min(f[0] for f in found)
                fired = [f for f in found if f[0] == t_first]
                seen = len(items)
                for t_star, n, x in fired:  # all crossings at t_first, then their effects
                    slot = int(counts[b, n])
                    times[b, n, slot] = t_star
                    counts[b, n] += 1
                    last[n] = t_star
                    spikes.append((t_star, n, slot, x, seen))
                for t_star, m, _ in fired:
                    for n in range(n_out):
                        a_sum[n] += rw[n][m] * math.exp(t_star / tau_s)
                        b_sum[n] += rw[n][m] * math.exp(t_star / tau)
                    b_sum[m] -= delta_theta / tau * math.exp(t_star / tau)
                    items.append(("rec", t_star, m, None))  # spike id set below
                lo = t_first
        # the spike id of each "rec" item: its index among the spikes
        fixed = []
        k = 0
        for it in items:
            if it[0] == "rec":
                fixed.append(("rec", it[1], it[2], k))
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
    input-time gradients are direct sums over (spike, item) pairs.
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
            return tau / (x_s * math.exp(t_s / tau)), tau / x_s

        def d_time(s, q):
            """dt_s / d(time of item q), ``q < seen_s``."""
            f1, f2 = f12(s)
            kind, t_q, src, _ = items[q]
            n_s = spikes[s][1]
            wt = float(w[n_s, src]) if kind == "in" else float(rw[n_s, src])
            d = wt * (f1 * math.exp(t_q / tau_s) / tau_s - f2 * math.exp(t_q / tau) / tau)
            if kind == "rec" and src == n_s:
                d += f2 * delta_theta * math.exp(t_q / tau) / (tau * tau)
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
                kind, t_q, src, slot = items[q]
                coef = f1 * math.exp(t_q / tau_s) - f2 * math.exp(t_q / tau)
                if kind == "in":
                    g_w[n_s, src] += total[s] * coef
                    g_in[b, src, slot] += total[s] * d_time(s, q)
                else:
                    g_r[n_s, src] += total[s] * coef
    return g_in, g_w, g_r
