"""Plain reference of the LIF layer: Python loops over samples and neurons.

Slow and obvious on purpose. It follows model.md sections 1, 2 and 6 line by line (with
``dt > 0``, the window tests compare integer grid indices, :mod:`batsnn.ops.lif.grid`),
with absolute exponentials (no reference time), in float64 Python arithmetic, and is
used by the tests as the ground truth for the fast backends.
"""

from __future__ import annotations

import math

import torch

from batsnn.ops.lif.grid import floor_index, floor_index_scalar, last_index
from batsnn.ops.lif.grid import grid_scalar as grid  # noqa: F401  (the plain grid(t, dt))


def _sorted_events(times_row: torch.Tensor) -> list[tuple[float, int]]:
    """All finite spikes of one sample as ``(time, input index)``, sorted by time (stable)."""
    events = []
    n_in, s_in = times_row.shape
    for i in range(n_in):
        for s in range(s_in):
            t = float(times_row[i, s])
            if math.isfinite(t):
                events.append((t, i))
    events.sort(key=lambda e: e[0])
    return events


def _x_kept(x: float) -> float:
    """The ``X`` recorded for the backward: ``+inf`` (no gradient) at a tangent crossing."""
    return x if x > 0.0 else math.inf


def lif_linear_forward_naive(input_times, weight, *, tau_s, theta, delta_theta, max_spikes,
                             t_max=math.inf, dt=None, reset_at="crossing"):
    """Reference forward. Returns ``(times, counts, records)``.

    ``records[b][n]`` is a list of ``(t_continuous, window_index, A, B, X, t_reset)`` per
    spike with ``window_index`` counting into the sorted event list of sample ``b`` and
    ``t_reset`` the time its reset is applied (``t_continuous``, or with ``dt`` and
    ``reset_at="emitted"`` the emitted grid time); the backward reference uses them. With
    ``dt`` no spike is emitted past grid index ``k_T``
    (:func:`batsnn.ops.lif.grid.last_index` of ``t_max``).

    ``reset_at="emitted"`` (with ``dt``): a neuron spikes at the first grid point after its
    last spike (and after the window's input) that lies after the crossing, if any, and at
    which ``V >= theta``, evaluated from the closed form; a spike forced by the grid (the
    potential stayed at or above ``theta`` through its previous reset: no crossing after
    the last grid point, or none at all under a net inhibitory current) is recorded with
    ``t_continuous`` its emitted time and ``X = +inf``. So is a tangent crossing (``D = 0``:
    ``V`` touches ``theta``), whose time has no finite derivative in the inputs.
    """
    on_grid = bool(dt)
    reset_on_grid = on_grid and reset_at == "emitted"
    tau = 2.0 * tau_s
    batch, n_in, _ = input_times.shape
    n_out = weight.shape[0]
    w = weight.detach().double().tolist()
    times = torch.full((batch, n_out, max_spikes), math.inf, dtype=torch.float64)
    counts = torch.zeros(batch, n_out, dtype=torch.int64)
    records = []
    k_tmax = last_index(t_max, dt)
    for b in range(batch):
        events = _sorted_events(input_times[b].detach().double())
        # grid index of each input time, in the input's own dtype (model.md section 6)
        kin = (floor_index(torch.tensor([t for t, _ in events], dtype=torch.float64), dt,
                           input_times.dtype).tolist() if on_grid else [])
        rec_b = []
        for n in range(n_out):
            a_sum = 0.0
            b_sum = 0.0
            rec = []
            last = -math.inf
            k_last = -math.inf
            for j, (tj, ij) in enumerate(events):
                if len(rec) >= max_spikes:
                    break
                a_sum += w[n][ij] * math.exp(tj / tau_s)
                b_sum += w[n][ij] * math.exp(tj / tau)
                t_next = events[j + 1][0] if j + 1 < len(events) else math.inf
                while len(rec) < max_spikes:
                    disc = b_sum * b_sum - 4.0 * a_sum * theta / tau
                    if reset_on_grid:  # the first grid point where V >= theta, see above
                        k_crossing = -math.inf  # none ahead (V never reaches theta, or A <= 0)
                        if disc >= 0:
                            x = math.sqrt(disc)
                            if b_sum + x != 0 and 2.0 * a_sum / (b_sum + x) > 0:
                                t_star = tau * math.log(2.0 * a_sum / (b_sum + x))
                                k_crossing = floor_index_scalar(t_star, dt) + 1.0
                        k_next = kin[j + 1] if j + 1 < len(events) else math.inf
                        k = max(k_crossing, max(kin[j], k_last) + 1.0)
                        xe = math.exp(-k * dt / tau)
                        if not (k <= min(k_next, k_tmax)
                                and b_sum * xe - a_sum * xe * xe >= theta / tau):
                            break
                        emitted = k * dt
                        k_last = k
                        if k > k_crossing:  # forced: its time does not move, no gradient
                            t_star, x = emitted, math.inf
                        rec.append((t_star, j, a_sum, b_sum, _x_kept(x), emitted))
                        times[b, n, len(rec) - 1] = emitted
                        b_sum -= delta_theta / tau * math.exp(emitted / tau)
                        continue
                    if disc < 0:
                        break
                    x = math.sqrt(disc)
                    if b_sum + x == 0:
                        break
                    ratio = 2.0 * a_sum / (b_sum + x)
                    if ratio <= 0:
                        break
                    t_star = tau * math.log(ratio)
                    if on_grid:  # decided on integer grid indices
                        k = floor_index_scalar(t_star, dt) + 1.0
                        k_next = kin[j + 1] if j + 1 < len(events) else math.inf
                        if not (k > max(kin[j], k_last) and k <= min(k_next, k_tmax)):
                            break
                        emitted = k * dt
                        k_last = k
                    else:
                        emitted = t_star
                        if not (emitted > max(tj, last) and emitted <= t_next
                                and emitted <= t_max):
                            break
                    rec.append((t_star, j, a_sum, b_sum, _x_kept(x), t_star))
                    times[b, n, len(rec) - 1] = emitted
                    last = emitted
                    b_sum -= delta_theta / tau * math.exp(t_star / tau)
            counts[b, n] = len(rec)
            rec_b.append(rec)
        records.append((events, rec_b))
    return times, counts, records


def lif_linear_backward_naive(grad_times, input_times, weight, records, *, tau_s, delta_theta):
    """Reference backward of model.md section 2: returns ``(grad_input_times, grad_weight)``.

    Uses the pairwise O(K^2) reset coupling and a direct sum over (spike, input) pairs,
    so it shares no accumulation scheme with the fast kernels. The coupling of spike ``m``
    into later ones goes through its reset time (the records' last entry), taken to move
    with its crossing (the grid is passed straight through).
    """
    tau = 2.0 * tau_s
    batch, n_in, s_in = input_times.shape
    n_out = weight.shape[0]
    w = weight.detach().double()
    g_w = torch.zeros(n_out, n_in, dtype=torch.float64)
    g_in = torch.zeros(batch, n_in, s_in, dtype=torch.float64)
    for b in range(batch):
        events, rec_b = records[b]
        # slot of each event inside its input neuron's row
        slot = []
        seen = {}
        for (_, i) in events:
            slot.append(seen.get(i, 0))
            seen[i] = seen.get(i, 0) + 1
        for n in range(n_out):
            rec = rec_b[n]
            k_n = len(rec)
            if k_n == 0:
                continue
            err = [float(grad_times[b, n, k]) for k in range(k_n)]
            # reset coupling, pairwise: e_m += sum_{k>m} e_k * dt_k/dt_m
            total = [0.0] * k_n
            for m in reversed(range(k_n)):
                acc = err[m]
                for k in range(m + 1, k_n):
                    x_k = rec[k][4]
                    acc += total[k] * delta_theta * math.exp(rec[m][5] / tau) / (tau * x_k)
                total[m] = acc
            for k in range(k_n):
                t_k, win, _, _, x_k, _ = rec[k]
                f1 = tau / (x_k * math.exp(t_k / tau))
                f2 = tau / x_k
                for j in range(win + 1):
                    tj, ij = events[j]
                    es = math.exp(tj / tau_s)
                    e = math.exp(tj / tau)
                    g_w[n, ij] += total[k] * (f1 * es - f2 * e)
                    g_in[b, ij, slot[j]] += total[k] * float(w[n, ij]) * (f1 * es / tau_s - f2 * e / tau)
    return g_in, g_w


# ------------------------------------------------------------------------- convolution

def unroll_conv_weight(weight, synapse) -> torch.Tensor:
    """The dense weight matrix of a convolution: ``(C_out * H_out * W_out, C_in * H * W)``,
    row ``(co * H_out + oy) * W_out + ox``, column ``(ci * H + iy) * W + ix``, holding
    ``weight[co, ci, ky, kx]`` where ``(iy, ix) = (oy * sy - py + ky, ox * sx - px + kx)``
    and zero outside the receptive field. ``weight`` ``(C_out, C_in, kH, kW)``, ``synapse``
    a :class:`batsnn.ops.lif.synapse.Conv2d`. Plain loops, float64."""
    c_out = weight.shape[0]
    c_in, h, w = synapse.in_shape
    h_out, w_out = synapse.out_hw
    wd = weight.detach().double()
    dense = torch.zeros(c_out * h_out * w_out, c_in * h * w, dtype=torch.float64)
    for widx, row, col in _conv_pairs(synapse, c_out):
        dense[row, col] = wd[widx]
    return dense


def fold_conv_weight_grad(g_dense, synapse, c_out: int) -> torch.Tensor:
    """The gradient of a conv weight ``(C_out, C_in, kH, kW)`` from that of its unrolled
    matrix (:func:`unroll_conv_weight`): each shared weight's entries summed over the output
    positions."""
    c_in = synapse.in_shape[0]
    g = torch.zeros(c_out, c_in, *synapse.kernel, dtype=torch.float64)
    for widx, row, col in _conv_pairs(synapse, c_out):
        g[widx] += float(g_dense[row, col])
    return g


def _conv_pairs(synapse, c_out: int):
    """Every (shared weight, output neuron, input neuron) of a convolution, in plain loops:
    ``((co, ci, ky, kx), row, col)`` with ``row = (co * H_out + oy) * W_out + ox`` and
    ``col = (ci * H + iy) * W + ix`` for ``(iy, ix) = (oy * sy - py + ky, ox * sx - px + kx)``
    inside the input (padding contributes nothing)."""
    c_in, h, w = synapse.in_shape
    (kh, kw), (sy, sx), (py, px) = synapse.kernel, synapse.stride, synapse.padding
    h_out, w_out = synapse.out_hw
    for co in range(c_out):
        for oy in range(h_out):
            for ox in range(w_out):
                row = (co * h_out + oy) * w_out + ox
                for ci in range(c_in):
                    for ky in range(kh):
                        for kx in range(kw):
                            iy, ix = oy * sy - py + ky, ox * sx - px + kx
                            if 0 <= iy < h and 0 <= ix < w:
                                yield (co, ci, ky, kx), row, (ci * h + iy) * w + ix


def lif_conv2d_forward_naive(input_times, weight, synapse, **kw):
    """Reference forward of a convolution: the dense reference
    (:func:`lif_linear_forward_naive`, same keywords) with the unrolled weight matrix;
    ``input_times`` ``(B, C_in * H * W, S)``. Returns ``(times, counts, records)`` with
    neurons ``(co, oy, ox)`` flattened in C order."""
    return lif_linear_forward_naive(input_times, unroll_conv_weight(weight, synapse), **kw)


def lif_conv2d_backward_naive(grad_times, input_times, weight, synapse, records, *, tau_s,
                              delta_theta):
    """Reference backward of a convolution: :func:`lif_linear_backward_naive` with the
    unrolled weight matrix, the weight gradient folded back to ``(C_out, C_in, kH, kW)``."""
    dense = unroll_conv_weight(weight, synapse)
    g_in, g_dense = lif_linear_backward_naive(grad_times, input_times, dense, records,
                                              tau_s=tau_s, delta_theta=delta_theta)
    return g_in, fold_conv_weight_grad(g_dense, synapse, weight.shape[0])


def spike_pool2d_naive(times, kernel_size=2):
    """Reference spike pooling with Python loops: output ``(b, c, oy, ox)`` holds every
    spike of the input neurons ``(b, c, oy * k + dy, ox * k + dx)`` (``0 <= dy, dx < k``),
    sorted by time (stable in window order), padded with ``+inf`` to ``k * k * S`` slots;
    the last rows / columns that do not fill a window are dropped. Also returns, per output
    slot, the flat index into ``times`` of its source spike (``-1`` for padding).

    Returns:
        ``(times (B, C, H // k, W // k, k * k * S), counts (B, C, H // k, W // k),
        source (same shape as times, int64))``.
    """
    k = kernel_size
    n_batch, c, h, w, s = times.shape
    ho, wo = h // k, w // k
    out = torch.full((n_batch, c, ho, wo, k * k * s), math.inf, dtype=times.dtype)
    src = torch.full(out.shape, -1, dtype=torch.int64)
    cnt = torch.zeros((n_batch, c, ho, wo), dtype=torch.int64)
    flat = times.detach().reshape(-1).tolist()
    for b in range(n_batch):
        for ch in range(c):
            for oy in range(ho):
                for ox in range(wo):
                    spikes = []
                    for dy in range(k):
                        for dx in range(k):
                            for slot in range(s):
                                idx = (((b * c + ch) * h + oy * k + dy) * w + ox * k + dx) * s \
                                    + slot
                                if math.isfinite(flat[idx]):
                                    spikes.append((flat[idx], idx))
                    spikes.sort(key=lambda e: e[0])
                    for i, (t, idx) in enumerate(spikes):
                        out[b, ch, oy, ox, i] = t
                        src[b, ch, oy, ox, i] = idx
                    cnt[b, ch, oy, ox] = len(spikes)
    return out, cnt, src


def delayed_rows_naive(input_times, delay):
    """The input as each output neuron ``n`` receives it: ``(N_out, B, N_in, S)``, input
    ``i`` shifted by ``delay[n, i]`` (+inf padding stays +inf)."""
    return torch.stack([input_times + delay[n][None, :, None] for n in range(delay.shape[0])])


def lif_linear_delayed_forward_naive(input_times, weight, delay, **kw):
    """Reference forward with per-synapse delays (model.md section 7): for each output
    neuron ``n``, :func:`lif_linear_forward_naive` of that neuron alone on the inputs
    shifted by ``delay[n, :]``. Returns ``(times, counts, records)`` with ``records[n]``
    that neuron's records."""
    rows = delayed_rows_naive(input_times.detach(), delay.detach())
    outs = [lif_linear_forward_naive(rows[n], weight[n:n + 1], **kw)
            for n in range(weight.shape[0])]
    times = torch.cat([o[0] for o in outs], 1)
    counts = torch.cat([o[1] for o in outs], 1)
    return times, counts, [o[2] for o in outs]


def lif_linear_delayed_backward_naive(grad_times, input_times, weight, delay, records, *,
                                      tau_s, delta_theta):
    """Reference backward with per-synapse delays: ``(grad_input_times, grad_weight,
    grad_delay)``; each neuron's input-time gradient of :func:`lif_linear_backward_naive`
    goes to the input times and, summed over samples and spikes, to ``delay[n, :]``."""
    rows = delayed_rows_naive(input_times.detach(), delay.detach())
    g_in = torch.zeros(input_times.shape, dtype=torch.float64)
    g_w = torch.zeros(weight.shape, dtype=torch.float64)
    g_d = torch.zeros(delay.shape, dtype=torch.float64)
    for n in range(weight.shape[0]):
        gi, gw = lif_linear_backward_naive(grad_times[:, n:n + 1], rows[n], weight[n:n + 1],
                                           records[n], tau_s=tau_s, delta_theta=delta_theta)
        gi = torch.where(torch.isfinite(rows[n]), gi.double(), 0.0)
        g_in += gi
        g_w[n] = gw[0]
        g_d[n] = gi.sum((0, 2))
    return g_in, g_w, g_d
