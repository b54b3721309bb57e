"""The neuron core of the CPU kernels, shared by every synapse (model.md sections 1, 2, 6).

Every helper here is ``numba.njit(inline="always")``: a driver (:mod:`.dense`,
:mod:`.conv`, one per synapse type) is compiled with the core spliced into its loops, so the
split costs nothing at run time. A driver owns the task decomposition, the order of the
events and where weights and gradients live; the core only sees a block of ``nl`` output
neurons ("lanes") of one sample, their state arrays and one event at a time. Lane ``l`` is
output neuron ``n0 + l * n_step`` (``n_step`` 1 for the dense driver, the number of output
positions for the conv driver, whose lanes are output channels):

- forward lane state: ``a_acc``/``b_acc`` the sums ``A`` and ``B`` held relative to the
  current reference time ``r`` (``A' = A exp(-r/tau_s)``, ``B' = B exp(-r/tau)``; the
  threshold equation keeps its form in these units), ``cnt`` the spikes emitted so far,
  ``last`` the last emitted time (``dt == 0``) or grid index (``dt > 0``), ``-inf`` before
  the first spike.
- backward lane state: ``err[l, k]`` the error of spike ``k`` after the reset coupling,
  ``e1``/``e2`` the sums ``sum_k e_k f1_k exp(r/tau_s)`` and ``sum_k e_k f2_k exp(r/tau)``
  over the lane's spikes whose window is at or after the current event, ``kk`` the lane's
  next spike to add and ``next_win`` its window (``-1``: none left).

Output neuron ``n`` of sample ``b`` writes ``out_*[b, n, k]``; all arithmetic is float64.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: Relative margin of the root-free pre-test: rounding never rejects a crossing that the
#: exact test accepts.
MARGIN = 1e-9

_inline = numba.njit(inline="always")


# ---------------------------------------------------------------- grid (model.md section 6)

@_inline
def floor_index(t, dt, f32):
    """Largest ``k`` with ``G(k) = k * dt <= t`` as integer-valued float64 (finite ``t``);
    with ``f32``, ``G(k)`` is rounded to float32 first (the index of a float32 time). The
    twin of :func:`batsnn.ops.lif.grid.floor_index`, same operations in the same order."""
    k = np.floor(t / dt)
    g = (k + 1.0) * dt
    if f32:
        g = np.float64(np.float32(g))
    if g <= t:
        k += 1.0
    g = k * dt
    if f32:
        g = np.float64(np.float32(g))
    if g > t:
        k -= 1.0
    return k


@_inline
def past_horizon(ts, kin, b, j, on_grid, t_max, k_tmax):
    """Whether event ``j`` of sample ``b`` lies at or past the horizon, so that no window
    from it on holds a spike: its time ``ts[b, j] >= t_max`` and, on the grid, also its
    index ``kin[b, j] >= k_T`` (``k_tmax``, :func:`batsnn.ops.lif.grid.last_index`; an
    input an ulp below ``G(k_T)`` may lie at or after a decimal ``t_max`` and still open the
    window of ``k_T``). Events are sorted, so the first such event ends a sample's stream."""
    if on_grid:
        return (ts[b, j] >= t_max) & (kin[b, j] >= k_tmax)
    return ts[b, j] >= t_max


# ------------------------------------------------------------------------------ forward

@_inline
def rescale(x1, x2, nl, d, tau_s, tau):
    """Move two lane sums to a new reference time: ``x1 *= exp(d/tau_s)``,
    ``x2 *= exp(d/tau)`` (``d = r_old - r_new`` for ``A'``/``B'``, ``r_new - r_old`` for the
    backward's ``e1``/``e2``)."""
    s1 = math.exp(d / tau_s)
    s2 = math.exp(d / tau)
    for l in range(nl):
        x1[l] *= s1
        x2[l] *= s2


@_inline
def integrate(a_acc, b_acc, row, nl, e_s, e_x):
    """Add one input event to the lanes: ``A' += w exp((t_j - r)/tau_s)``,
    ``B' += w exp((t_j - r)/tau)``, ``row[l]`` the event's weight onto lane ``l``."""
    # row[l] read twice, not through a local: that form vectorises as the hand-written loop
    # did (with a local, a 10-lane layer ran a third slower)
    for l in range(nl):
        a_acc[l] += row[l] * e_s
        b_acc[l] += row[l] * e_x


@_inline
def pretest_constants(u, c):
    """Per-window constants of :func:`may_cross` for ``u = x`` at the window's end (or any
    later time) and ``c = theta/tau``."""
    return (u * u * (1.0 - MARGIN), u * (1.0 + MARGIN), c * (1.0 - MARGIN),
            2.0 * u / (1.0 + MARGIN), 4.0 * c * (1.0 - MARGIN))


@_inline
def may_cross(al, bl, pc):
    """Root-free pre-test of a crossing before the window's end.

    With ``f(x) = A x^2 - B x + c``, the earliest root ``x1 = (B + sqrt(D)) / (2A)`` lies
    before the end (``x1 >= u``) iff ``A > 0``, ``B > 0`` and either ``f(u) <= 0``, or
    ``D >= 0`` and ``u <= B/(2A)`` (past the vertex). With the margin ``M``:
    ``f(u) <= M (A u^2 + B u + c)``, ``2 A u <= B (1 + M)`` and ``B^2 >= 4 A c (1 - M)``,
    i.e. ``A p - B q + r0 <= 0``, ``A s <= B`` and ``B^2 >= A k`` with
    ``(p, q, r0, s, k) = pc``. Written with ``&``/``|`` so that lane loops stay branch-free.
    """
    p, q, r0, s, k = pc
    return ((al > 0.0) & (bl > 0.0)
            & ((al * p - bl * q + r0 <= 0.0) | ((al * s <= bl) & (bl * bl >= al * k))))


@_inline
def above_at_start(al, bl, e_s, e_x, c):
    """Whether ``V >= theta`` at the window's start ``t_j`` (``V/tau = B' x - A' x^2`` with
    ``x = 1/e_x``, ``x^2 = 1/e_s``; times ``e_s e_x``), with the margin of
    :func:`may_cross` against rounding. Under a net inhibitory current (``A <= 0``) ``V``
    is at or above theta exactly while ``x >= x2``, so nowhere in the window unless here."""
    lhs = bl * e_s - al * e_x
    rhs = c * e_s * e_x
    return lhs >= rhs - MARGIN * (abs(bl * e_s) + abs(al * e_x) + rhs)


@_inline
def may_fire(al, bl, pc, e_s, e_x, c):
    """:func:`may_cross`, or a potential at or above threshold at the window's start under a
    net inhibitory current (``A <= 0``): no crossing lies ahead, yet with
    ``reset_at="emitted"`` the grid may force a spike (:func:`emit`). ``e_s``,
    ``e_x``: the window's event's scaled exponentials."""
    return may_cross(al, bl, pc) | ((al <= 0.0) & above_at_start(al, bl, e_s, e_x, c))


@_inline
def pretest_lanes(a_acc, b_acc, cnt, k_max, nl, pc, reset_on_grid, e_s, e_x, c, cand):
    """:func:`may_cross` (with ``reset_on_grid``, :func:`may_fire`) of every lane that has
    spikes left, into ``cand``; whether any. The two lane loops are written out so that the
    seed's and exact-time neurons keep their branch-free loop of :func:`may_cross` alone."""
    any_cand = False
    if reset_on_grid:
        for l in range(nl):
            cl = (cnt[l] < k_max) & may_fire(a_acc[l], b_acc[l], pc, e_s, e_x, c)
            cand[l] = cl
            any_cand |= cl
    else:
        for l in range(nl):
            cl = (cnt[l] < k_max) & may_cross(a_acc[l], b_acc[l], pc)
            cand[l] = cl
            any_cand |= cl
    return any_cand


@_inline
def emit(l, a_acc, b_acc, cnt, last, r, lo, hi, pc, e_s, e_x, tau, c, reset, dt, reset_on_grid,
         k_max, j, need_aux, b, n, out_t, out_tc, out_win, out_x):
    """Exact root search and emission of lane ``l`` (output neuron ``n`` of sample ``b``) in
    the window after event ``j`` (model.md sections 1 and 6).

    Each crossing ``t_c = r + tau log(2A'/(B' + X))`` (``X = sqrt(D)``) is tested on its
    mark: ``t_c`` itself when ``dt == 0``, its emitted grid index
    ``k = floor_index(t_c) + 1`` when ``dt > 0``. It is emitted (as ``t_c``, or ``k * dt``)
    iff ``mark > max(lo, last[l])`` and ``mark <= hi``: ``lo``/``hi`` are ``t_j`` and
    ``min(t_{j+1}, t_max)`` when ``dt == 0``, ``kin[j]`` and ``kup[j]`` when ``dt > 0``.
    Each spike lowers ``B'`` by ``(delta_theta/tau) exp((t_c - r)/tau)``, and the search
    repeats until a test fails or the lane has ``k_max`` spikes.

    ``reset_on_grid`` (``reset_at="emitted"``, ``dt > 0``): the neuron of spikes and resets
    on the grid. A spike is emitted at the first grid index ``k > max(lo, last[l])``, from
    ``floor_index(t_c) + 1`` on, at which the potential is at or above ``theta``, iff
    ``k <= hi``; its reset lowers ``B'`` by ``(delta_theta/tau) exp((k dt - r)/tau)``.
    ``V >= theta`` at ``x = x(k dt)`` iff ``x >= x2 = 2c / (B' + X)`` (and ``x <= x1``,
    which ``k`` after the crossing ensures): for ``A > 0`` ``x2`` is the later root, for
    ``A <= 0`` (a net inhibitory current: ``V`` only falls, no crossing ahead) the only
    positive one. A spike whose crossing lies at or before ``max(lo, last[l])``, or that
    has no crossing (``A <= 0``), is forced by the grid (the potential stayed at or above
    ``theta`` through the last reset): its time does not move with the inputs, and it is
    stored with ``X = +inf`` and ``t_c = k dt``, which makes its gradient zero.
    """
    al = a_acc[l]
    bl = b_acc[l]
    kk = cnt[l]
    lower = lo if lo > last[l] else last[l]
    while kk < k_max:
        disc = bl * bl - 4.0 * al * c
        if disc < 0.0:
            break
        x = math.sqrt(disc)
        den = bl + x
        if reset_on_grid:
            if den <= 0.0:  # V < theta at every time
                break
            ratio = 2.0 * al / den
            t_c = 0.0
            mark = -math.inf  # A <= 0: no crossing, V >= theta only before x2
            if ratio > 0.0:  # the earliest crossing, and its grid index
                t_c = r + tau * math.log(ratio)
                mark = floor_index(t_c, dt, False) + 1.0
            x_keep = x
            if mark <= lower:  # already at or above theta: the next grid point
                mark = lower + 1.0
                x_keep = math.inf
            t_e = mark * dt
            xe = math.exp(-(t_e - r) / tau)
            if not (mark <= hi and xe * den >= 2.0 * c):
                break
            drop = reset / xe  # exp((t_e - r)/tau)
            if x_keep == math.inf:
                t_c = t_e
        else:
            if den == 0.0:
                break
            ratio = 2.0 * al / den
            if ratio <= 0.0:
                break
            t_c = r + tau * math.log(ratio)
            x_keep = x
            drop = reset * ratio  # exp((t_c - r)/tau) = ratio by construction
            if dt > 0.0:
                mark = floor_index(t_c, dt, False) + 1.0
                t_e = mark * dt
            else:
                mark = t_c
                t_e = t_c
            if not (mark > lower and mark <= hi):
                break
        out_t[b, n, kk] = t_e  # rounded once to the caller's dtype
        if need_aux:  # what the backward needs; skipped for inference
            out_tc[b, n, kk] = t_c
            out_win[b, n, kk] = j
            # a tangent crossing (D = 0: V touches theta) has no finite derivative in
            # the inputs: stored as X = +inf, no gradient, as a spike at the edge of existing
            out_x[b, n, kk] = x_keep if x_keep > 0.0 else math.inf
        kk += 1
        lower = mark
        bl -= drop
        # after the reset, the root-free pre-test again before sqrt and log
        if not (may_fire(al, bl, pc, e_s, e_x, c) if reset_on_grid
                else may_cross(al, bl, pc)):
            break
    if kk > cnt[l]:
        last[l] = lower
        cnt[l] = kk
        b_acc[l] = bl


@_inline
def window_x(xup_j, up_j, hi, dt, on_grid, tau):
    """``u``, the ``x = exp(-t/tau)`` (relative to the event's reference time) up to which the
    pre-test of a window looks: ``xup_j``, the window's end ``up_j``. With ``dt > 0`` a
    crossing at ``t`` has index ``floor_index(t) + 1 <= hi`` iff ``t < G(hi) = hi * dt``,
    which can lie an ulp past ``up_j`` (a float32 input stored below its grid point): then a
    ``u`` at or below ``exp(-(G(hi) - r)/tau)`` keeps the pre-test conservative
    (``1 - z <= exp(-z)``)."""
    u = xup_j
    if on_grid and hi * dt > up_j:
        u *= 1.0 - (hi * dt - up_j) / tau
    return u


@_inline
def search_window(a_acc, b_acc, cand, cnt, last, nl, r, lo, hi, u, e_s, e_x, tau, c, reset,
                  dt, reset_on_grid, k_max, j, need_aux, b, n0, n_step, out_t, out_tc,
                  out_win, out_x):
    """The output spikes of the lanes in the window ``(lo, hi]`` after event ``j`` (bounds
    as :func:`emit` takes them, ``u`` from :func:`window_x`, ``e_s``/``e_x`` the
    event's scaled exponentials): the root-free pre-test of every lane, then the exact
    search of the lanes that pass it."""
    pc = pretest_constants(u, c)
    if pretest_lanes(a_acc, b_acc, cnt, k_max, nl, pc, reset_on_grid, e_s, e_x, c, cand):
        for l in range(nl):
            if cand[l]:
                emit(l, a_acc, b_acc, cnt, last, r, lo, hi, pc, e_s, e_x, tau, c, reset, dt,
                     reset_on_grid, k_max, j, need_aux, b, n0 + l * n_step, out_t, out_tc,
                     out_win, out_x)


# ----------------------------------------------------------------------------- backward

@_inline
def spike_errors(l, b, n, cnt, g_out, out_tc, out_win, out_x, ref, reset, tau, dt,
                 reset_on_grid, err, e1, e2, kk, next_win):
    """Errors of lane ``l``'s ``cnt`` spikes through the reset coupling, into ``err[l]``;
    resets the lane's backward state. Returns the window of its last spike, or ``-1`` when
    it has none or all its errors are zero (nothing to propagate).

    From the last spike backwards, ``e_k = g_k + (delta_theta/tau) exp(t_k/tau) *
    sum_{m>k} e_m / X_m``; the sum is held relative to the reference time of spike ``k``'s
    window. ``t_k`` is the time of spike ``k``'s reset: its crossing, or with
    ``reset_on_grid`` its emitted grid time ``(floor_index(t_c) + 1) dt`` (moving with the
    crossing; a forced spike, ``X = +inf``, passes nothing on whatever its ``t_k``).
    """
    kk[l] = cnt - 1
    e1[l] = 0.0
    e2[l] = 0.0
    next_win[l] = -1
    if cnt == 0:
        return -1
    acc = 0.0
    r_acc = ref[b, out_win[b, n, cnt - 1]]
    nonzero = False
    for k in range(cnt - 1, -1, -1):
        r_k = ref[b, out_win[b, n, k]]
        if r_k != r_acc:
            acc *= math.exp((r_k - r_acc) / tau)
            r_acc = r_k
        t_k = out_tc[b, n, k]
        if reset_on_grid:
            t_k = (floor_index(t_k, dt, False) + 1.0) * dt
        e_k = g_out[b, n, k] + reset * math.exp((t_k - r_k) / tau) * acc
        err[l, k] = e_k
        nonzero |= e_k != 0.0
        acc += e_k / out_x[b, n, k]
    if not nonzero:
        return -1
    next_win[l] = out_win[b, n, cnt - 1]
    return next_win[l]


@_inline
def add_window_spikes(l, j, r_j, b, n, out_tc, out_win, out_x, tau, err, e1, e2, kk,
                      next_win):
    """Add lane ``l``'s spikes whose window is ``j`` to its sums: ``e1 += e_k f1_k
    exp(r_j/tau_s)``, ``e2 += e_k f2_k exp(r_j/tau)`` with ``f1 = tau / (X exp(t/tau))``,
    ``f2 = tau / X`` (model.md section 2), relative to ``r_j``."""
    while next_win[l] == j:
        k = kk[l]
        x_k = out_x[b, n, k]
        e1[l] += err[l, k] * tau / (x_k * math.exp((out_tc[b, n, k] - r_j) / tau))
        e2[l] += err[l, k] * tau / x_k
        kk[l] = k - 1
        next_win[l] = out_win[b, n, k - 1] if k > 0 else -1


@_inline
def weight_coef(e1l, e2l, e_s, e_x):
    """``dL/dw`` of one (lane, event) pair: ``sum_k e_k (f1_k exp(t_j/tau_s) - f2_k
    exp(t_j/tau))`` over the lane's spikes after the event."""
    return e1l * e_s - e2l * e_x


@_inline
def time_coef(e1l, e2l, e_s, e_x, tau_s, tau):
    """``dL/dt_j`` of one (lane, event) pair per unit weight: ``sum_k e_k (f1_k
    exp(t_j/tau_s)/tau_s - f2_k exp(t_j/tau)/tau)``."""
    return e1l * e_s / tau_s - e2l * e_x / tau

