"""The neuron core of the GPU kernels: ``@triton.jit`` helpers shared by every synapse.

These helpers know one neuron per lane and one event at a time; they never ask where a
weight comes from or where a gradient goes (that is the synapse's part, :mod:`.dense`).
Forward (model.md sections 1 and 6): the root-free pre-test, the rescaling of the sums at a
reference-time segment boundary, and the emission step (exact root, grid rule, reset).
Backward (section 2): the errors through the reset coupling, the f1/f2 factors of the
spikes of a window, and the per-event coefficients. Inside a segment the sums are held
relative to its reference time ``r`` (``A' = A exp(-r/tau_s)``, ``B' = B exp(-r/tau)``), as
in the CPU kernels (:mod:`batsnn.ops.lif.cpu`). Every helper computes in its inputs' dtype
(float32 in float32, float64 in float64) except the grid indices, which are float64.

``INTERP`` is true under Triton's CPU interpreter (``TRITON_INTERPRET=1``), which has no
libdevice: the wrappers below then use ``tl.exp``/``tl.log``/``tl.sqrt``.
"""

from __future__ import annotations

import triton
import triton.language as tl
from triton.language.extra import libdevice


@triton.jit
def exp(x, INTERP: tl.constexpr):
    if INTERP:  # Triton's CPU interpreter (tests) has no libdevice
        return tl.exp(x)
    else:
        return libdevice.exp(x)


@triton.jit
def log(x, INTERP: tl.constexpr):
    if INTERP:
        return tl.log(x)
    else:
        return libdevice.log(x)


@triton.jit
def sqrt(x, INTERP: tl.constexpr):
    if INTERP:
        return tl.sqrt(x)
    else:
        return libdevice.sqrt(x)


@triton.jit
def floor_index(t, dt):
    """:func:`batsnn.ops.lif.grid.floor_index` of ``t`` in its own dtype: the largest integer
    ``k`` (float64) with ``G(k) <= t``, ``G(k) = k * dt`` in float64 (``dt`` float64) rounded
    to ``t``'s dtype; ``+inf`` stays ``+inf``. For a float64 ``t`` this is
    :func:`~batsnn.ops.lif.grid.floor_index_scalar`."""
    t64 = t.to(tl.float64)
    fin = t64 < float("inf")
    safe = tl.where(fin, t64, 0.0)
    k = tl.floor(safe / dt)
    k = tl.where(((k + 1.0) * dt).to(t.dtype).to(tl.float64) <= safe, k + 1.0, k)
    k = tl.where((k * dt).to(t.dtype).to(tl.float64) > safe, k - 1.0, k)
    return tl.where(fin, k, t64)


@triton.jit
def may_cross(A, Bt, U, c, MARGIN: tl.constexpr):
    """Root-free pre-test that the earliest crossing lies before the window's end (the CPU
    kernels' :func:`batsnn.ops.lif.cpu.core.may_cross`): ``A > 0``, ``B > 0`` and either
    ``f(u) <= 0``, or ``D >= 0`` and ``u`` past the vertex ``B/(2A)``, with the relative
    margin ``MARGIN``. ``U = exp(-(end - r)/tau)`` for the window's end."""
    f_u = (A * U - Bt) * U + c
    return ((A > 0.0) & (Bt > 0.0)
            & ((f_u <= MARGIN * (A * U * U + Bt * U + c))
               | ((2.0 * A * U <= Bt * (1.0 + MARGIN))
                  & (Bt * Bt >= 4.0 * A * c * (1.0 - MARGIN)))))


@triton.jit
def above_at_start(A, Bt, es_j, ex_j, c, MARGIN: tl.constexpr):
    """Whether ``V >= theta`` at the window's start ``t_j`` (``x = 1/ex_j``,
    ``x^2 = 1/es_j``), with the pre-test's margin against rounding (the CPU kernels'
    :func:`batsnn.ops.lif.cpu.core.above_at_start`)."""
    lhs = Bt * es_j - A * ex_j
    rhs = c * es_j * ex_j
    return lhs >= rhs - MARGIN * (tl.abs(Bt * es_j) + tl.abs(A * ex_j) + rhs)


@triton.jit
def may_fire(A, Bt, U, es_j, ex_j, c, MARGIN: tl.constexpr):
    """:func:`may_cross`, or (``RESET_ON_GRID``) a potential at or above threshold at the
    window's start under a net inhibitory current (``A <= 0``): no crossing lies ahead, yet
    the grid may force a spike (:func:`emit`); under ``A <= 0`` ``V`` is at or above theta
    only while ``x >= x2``, so nowhere in the window unless at its start."""
    return may_cross(A, Bt, U, c, MARGIN) | ((A <= 0.0)
                                             & above_at_start(A, Bt, es_j, ex_j, c, MARGIN))


@triton.jit
def integrate(a, bb, w, es_j, ex_j):
    """One input event added to the lanes' sums: ``A' += w exp((t_j - r)/tau_s)``,
    ``B' += w exp((t_j - r)/tau)`` (``w`` the event's weight onto each lane)."""
    return a + w * es_j, bb + w * ex_j


@triton.jit
def rescale(s1, s2, shift, tau_s, tau, INTERP: tl.constexpr):
    """A pair of sums moved to another segment's units: ``s1 * exp(shift / tau_s)`` and
    ``s2 * exp(shift / tau)`` (forward: ``shift = r_old - r_new``; backward, whose sums carry
    ``exp(+r)``: ``shift = r_new - r_old``)."""
    return s1 * exp(shift / tau_s, INTERP), s2 * exp(shift / tau, INTERP)


@triton.jit
def emit(a, bb, cnt, lower, hi, go, r_j, j, c, tau, reset, dt, out_base, out_t_ptr,
         out_tc_ptr, out_win_ptr, out_x_ptr, K: tl.constexpr, ON_GRID: tl.constexpr,
         RESET_ON_GRID: tl.constexpr, NEED_AUX: tl.constexpr, INTERP: tl.constexpr):
    """The spikes of the lanes in ``go`` in the window after event ``j`` (model.md sections 1
    and 6): exact root of the threshold equation, window test, store, reset; repeated while
    some lane fired and may fire again. Returns the updated ``(bb, cnt, lower)``.

    ``a``, ``bb``: the sums in the units of ``r_j``; ``c = theta/tau``, ``reset =
    delta_theta/tau``. Continuous time (``ON_GRID`` false): a crossing ``t_c`` is emitted iff
    ``lower < t_c <= hi`` (``lower = max(t_j, last spike)``, ``hi`` the window's end,
    ``min(next input, t_max)``). On the grid: the emitted index ``k = floor_index(t_c) + 1``
    (float64) must satisfy ``lower < k <= hi`` with ``lower = max(kin_j, last index)``
    and ``hi = kup_j`` (float64 indices, :class:`batsnn.ops.lif.events.Events`); the
    emitted time is ``k * dt`` rounded to the dtype. ``lower`` comes back as the last
    emitted time (index) of the lanes that fired. Spike ``cnt`` of a lane goes to
    ``out_*[out_base + cnt]``; ``out_tc``/``out_x``/``out_win`` only with ``NEED_AUX``.

    ``RESET_ON_GRID`` (``reset_at="emitted"``): the index is the first ``k > lower`` from
    ``floor_index(t_c) + 1`` on (from ``lower + 1`` when there is no crossing ahead, as
    under a net inhibitory current, ``A <= 0``), emitted iff ``k <= hi`` and the
    potential is at or above theta there (``x(k dt) (B' + X) >= 2c``); the reset is applied
    at ``k dt``. A spike without a crossing after ``lower`` is forced by the grid and stored
    with ``t_c = k dt`` and ``X = +inf`` (no gradient), as in the CPU kernels
    (:func:`batsnn.ops.lif.cpu.core.emit`).
    """
    while tl.max(go.to(tl.int32), axis=0) > 0:
        disc = bb * bb - 4.0 * a * c
        x = sqrt(tl.maximum(disc, 0.0), INTERP)
        den = bb + x
        ratio = 2.0 * a / tl.where(den == 0.0, 1.0, den)
        crossing = (disc >= 0.0) & (den != 0.0) & (ratio > 0.0)
        ok = go & crossing
        t_c = r_j + tau * log(tl.where(ok, ratio, 1.0), INTERP)
        drop = reset * ratio  # exp((t_c - r_j)/tau) = ratio
        if ON_GRID:  # decided on integer grid indices (float64)
            k = floor_index(t_c.to(tl.float64), dt) + 1.0
            if RESET_ON_GRID:  # also without a crossing ahead (A <= 0): V >= theta before x2
                k = tl.where(crossing, k, float("-inf"))
                forced = k <= lower
                k = tl.where(forced, lower + 1.0, k)
                t_e = (k * dt).to(t_c.dtype)
                xe = exp((r_j - t_e) / tau, INTERP)
                ok = go & (disc >= 0.0) & (den > 0.0) & (k <= hi) & (xe * den >= 2.0 * c)
                drop = reset / tl.where(ok, xe, 1.0)
                t_c = tl.where(forced, t_e, t_c)
                x = tl.where(forced, float("inf"), x)
            else:
                ok = ok & (k > lower) & (k <= hi)
                t_e = (k * dt).to(t_c.dtype)
            mark = k
        else:
            t_e = t_c
            ok = ok & (t_e > lower) & (t_e <= hi)
            mark = t_e
        slot = out_base + cnt
        tl.store(out_t_ptr + slot, t_e, mask=ok)
        if NEED_AUX:  # what the backward needs; skipped for inference
            tl.store(out_tc_ptr + slot, t_c, mask=ok)
            # a tangent crossing (D = 0) has no finite derivative: X = +inf, no gradient
            tl.store(out_x_ptr + slot, tl.where(x > 0.0, x, float("inf")), mask=ok)
            tl.store(out_win_ptr + slot, tl.zeros_like(cnt) + j, mask=ok)
        bb = tl.where(ok, bb - drop, bb)
        cnt += ok.to(tl.int32)
        lower = tl.where(ok, mark, lower)
        go = ok & (cnt < K)
    return bb, cnt, lower


@triton.jit
def spike_errors(g_ptr, tc_ptr, win_ptr, x_ptr, ref_ptr, err_ptr, row, base, cnt, last_win,
                 reset, tau, dt, zero, K: tl.constexpr, RESET_ON_GRID: tl.constexpr,
                 INTERP: tl.constexpr):
    """Errors of each lane's spikes through the reset coupling (model.md section 2), last
    spike first, written to ``err[base + k]``: ``e_k = g_k + reset exp(t_k/tau) *
    sum_{m>k} e_m / X_m``, the sum held in the units of the current spike's segment.
    ``t_k`` is the spike's reset time: its crossing, or with ``RESET_ON_GRID`` its emitted grid
    time ``(floor_index(t_c) + 1) dt`` (``dt`` float64).
    ``row``: the sample's offset in the event arrays; ``zero``: lanes of the compute dtype."""
    acc = zero
    r_acc = tl.load(ref_ptr + row + tl.maximum(last_win, 0), mask=cnt > 0, other=0.0)
    for kk in range(0, K):
        k = K - 1 - kk
        valid = k < cnt
        win = tl.load(win_ptr + base + k, mask=valid, other=0)
        r_k = tl.load(ref_ptr + row + win, mask=valid, other=0.0)
        acc = tl.where(valid, acc * exp((r_k - r_acc) / tau, INTERP), acc)
        r_acc = tl.where(valid, r_k, r_acc)
        t_c = tl.load(tc_ptr + base + k, mask=valid, other=0.0)
        if RESET_ON_GRID:
            t_c = ((floor_index(t_c.to(tl.float64), dt) + 1.0) * dt).to(t_c.dtype)
        x = tl.load(x_ptr + base + k, mask=valid, other=1.0)
        g = tl.load(g_ptr + base + k, mask=valid, other=0.0).to(zero.dtype)
        e_k = tl.where(valid, g + reset * exp((t_c - r_k) / tau, INTERP) * acc, 0.0)
        tl.store(err_ptr + base + k, e_k, mask=valid)
        acc += e_k / x


@triton.jit
def add_window_spikes(e1, e2, kk, next_win, j, r_j, base, err_ptr, tc_ptr, x_ptr, win_ptr, tau,
                INTERP: tl.constexpr):
    """Add the spikes whose window is event ``j`` to the backward sums: ``e1 += e_k f1_k``,
    ``e2 += e_k f2_k`` with ``f1 = tau / (X exp((t_k - r_j)/tau))`` and ``f2 = tau / X`` (in
    the units of ``r_j``). ``kk`` is each lane's next spike to add (counting down) and
    ``next_win`` its window (-1 when none is left). Returns ``(e1, e2, kk, next_win)``."""
    hit = next_win == j
    while tl.max(hit.to(tl.int32), axis=0) > 0:
        slot = base + kk
        e_k = tl.load(err_ptr + slot, mask=hit, other=0.0)
        t_c = tl.load(tc_ptr + slot, mask=hit, other=0.0)
        x = tl.load(x_ptr + slot, mask=hit, other=1.0)
        e1 += tl.where(hit, e_k * tau / (x * exp((t_c - r_j) / tau, INTERP)), 0.0)
        e2 += tl.where(hit, e_k * tau / x, 0.0)
        kk = tl.where(hit, kk - 1, kk)
        nw = tl.load(win_ptr + base + kk, mask=hit & (kk >= 0), other=-1)
        next_win = tl.where(hit, nw, next_win)
        hit = next_win == j
    return e1, e2, kk, next_win


@triton.jit
def weight_coef(e1, e2, es_j, ex_j):
    """``dL/dw`` of one (lane, event) pair from the sums ``e1``, ``e2`` (``es_j``, ``ex_j``:
    the event's scaled exponentials)."""
    return e1 * es_j - e2 * ex_j


@triton.jit
def time_coef(e1, e2, es_j, ex_j, inv_tau_s, inv_tau):
    """``dL/dt_j`` of one (lane, event) pair per unit weight, from the same sums."""
    return e1 * es_j * inv_tau_s - e2 * ex_j * inv_tau
