"""Independent check: the neuron's ODE integrated exactly between events (model.md section 1).

dI/dt = -I/tau_s, I += w at each input; dV/dt = -V/tau + I; V >= theta -> spike, V -= delta.
With tau = 2 tau_s the propagator over h is I' = I e^{-h/tau_s},
V' = V e^{-h/tau} + I tau (e^{-h/tau} - e^{-h/tau_s}). Crossings are found on a fine grid of
step h and refined by bisection, so this shares no root formula with batsnn.
"""

import math


def _propagate(i_cur, v, h, tau_s):
    tau = 2 * tau_s
    return (i_cur * math.exp(-h / tau_s),
            v * math.exp(-h / tau) + i_cur * tau * (math.exp(-h / tau) - math.exp(-h / tau_s)))


def simulate_neuron(events, weights, *, tau_s, theta, delta_theta, max_spikes, t_max,
                    steps_per_tau=4000):
    """Spike times of one neuron for sorted ``events`` [(t, i)] and ``weights[i]``."""
    h = tau_s / steps_per_tau
    spikes = []
    i_cur, v, t = 0.0, 0.0, 0.0
    bounds = [e[0] for e in events] + [t_max if math.isfinite(t_max) else
                                         (events[-1][0] if events else 0.0) + 40 * tau_s]
    j = 0
    while j < len(events) and events[j][0] <= t:
        i_cur += weights[events[j][1]]
        j += 1
    for end in bounds[j:]:
        while t < end and len(spikes) < max_spikes:
            step = min(h, end - t)
            i_new, v_new = _propagate(i_cur, v, step, tau_s)
            if v_new >= theta:
                lo, hi = 0.0, step
                for _ in range(80):
                    mid = 0.5 * (lo + hi)
                    if _propagate(i_cur, v, mid, tau_s)[1] >= theta:
                        hi = mid
                    else:
                        lo = mid
                i_cur, v = _propagate(i_cur, v, hi, tau_s)
                t += hi
                spikes.append(t)
                v -= delta_theta
                continue
            i_cur, v, t = i_new, v_new, t + step
        if len(spikes) >= max_spikes:
            break
        while j < len(events) and events[j][0] <= t:
            i_cur += weights[events[j][1]]
            j += 1
    return [s for s in spikes if s <= t_max]
