"""The supported value ranges (docs/model.md section 7): values at the edge of each range
give the spikes of the plain float64 reference; values beyond it are refused by name."""

import math

import pytest
import torch

from batsnn import LIFParams
from batsnn.functional import lif_linear
from batsnn.ops.lif.naive import lif_linear_forward_naive
from batsnn.params import MAX_SPIKES_MAX, TAU_S_RANGE, THETA_RANGE, WEIGHT_RATIO_MAX

K = 6


def _data(seed=0):
    """Input times in [0, 0.1) s (one spike per input) and weights in [0, 0.3): with
    ``tau_s = 0.05`` and ``theta = 0.01`` every neuron spikes several times."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 12, 1, generator=g, dtype=torch.float64) * 0.1
    w = torch.rand(4, 12, generator=g, dtype=torch.float64) * 0.3
    return x, w


def _same_spikes(x, w, **kw):
    """The CPU layer's spikes equal the reference's: counts exactly, times to a few ulps
    of ``tau`` (the closed form's absolute precision); returns the total spike count."""
    out = lif_linear(x, w, max_spikes=K, **kw)
    ref, cnt, _ = lif_linear_forward_naive(x, w, max_spikes=K,
                                           delta_theta=kw.get("delta_theta") or kw["theta"],
                                           **{k: v for k, v in kw.items()
                                              if k != "delta_theta"})
    assert torch.equal(out.counts, cnt)
    fin = torch.isfinite(ref)
    assert torch.equal(torch.isfinite(out.times), fin)
    tol = 1e-12 * 2 * kw["tau_s"] + 1e-12 * float(x[torch.isfinite(x)].max())
    assert (out.times[fin] - ref[fin]).abs().max() <= tol
    return int(cnt.sum())


@pytest.mark.parametrize("scale", [TAU_S_RANGE[0] / 0.05, 1.0, TAU_S_RANGE[1] / 0.05],
                         ids=["tau_s=1e-9", "tau_s=0.05", "tau_s=1e6"])
def test_tau_s_at_the_edges_of_its_range_gives_the_reference_spikes(scale):
    """The whole neuron scaled in time (times, tau_s, and theta, since V grows with tau)
    keeps its spikes, at both ends of the supported tau_s."""
    x, w = _data()
    n = _same_spikes(x * scale, w, tau_s=0.05 * scale, theta=0.01 * scale)
    assert n > 3 * 4  # the neurons do spike, several times each on average


def test_large_tau_s_with_ordinary_times_gives_the_reference_spikes():
    """tau_s = 1e6 s with inputs within 0.1 s: a leak-free integrator, still resolved."""
    x, w = _data(1)
    assert _same_spikes(x, w, tau_s=TAU_S_RANGE[1], theta=0.01) > 0


@pytest.mark.parametrize("theta", THETA_RANGE, ids=["theta=1e-12", "theta=1e12"])
def test_theta_at_the_edges_of_its_range_gives_the_reference_spikes(theta):
    """theta and the weights scaled together keep the spikes of theta = 0.01."""
    x, w = _data()
    assert _same_spikes(x, w * (theta / 0.01), tau_s=0.05, theta=theta) > 3 * 4


def test_the_largest_supported_weight_gives_the_reference_spikes():
    """|w| = 1e9 * theta / tau_s exactly: each input fires bursts of spikes 1e-9 tau_s
    apart, all found."""
    x, w = _data()
    p = LIFParams(tau_s=0.05, theta=0.01, max_spikes=K)
    w = w * (p.max_weight / float(w.abs().max()))
    assert float(w.abs().max()) <= p.max_weight
    assert _same_spikes(x, w, tau_s=0.05, theta=0.01) == x.shape[0] * w.shape[0] * K


@pytest.mark.parametrize("factor", [1.0001, 10.0, 1e7])
def test_weights_beyond_the_supported_magnitude_are_refused(factor):
    x, w = _data()
    p = LIFParams(tau_s=0.05, theta=0.01, max_spikes=K)
    w = w * (factor * p.max_weight / float(w.abs().max()))
    with pytest.raises(ValueError, match=r"weight holds a magnitude .* batsnn supports"):
        lif_linear(x, w, params=p)
    with pytest.raises(ValueError, match="weight holds a magnitude"):
        lif_linear(x, -w, params=p)  # the magnitude, whatever the sign


def test_the_weight_bound_follows_theta_and_tau_s():
    p = LIFParams(tau_s=0.1, theta=2.0, max_spikes=1)
    assert p.max_weight == pytest.approx(WEIGHT_RATIO_MAX * 2.0 / 0.1, rel=1e-15)
    x = torch.zeros(1, 1, 1, dtype=torch.float64)
    lif_linear(x, torch.full((1, 1), 1e10, dtype=torch.float64), params=p)  # 1e10 < 2e10
    with pytest.raises(ValueError, match="2e\\+10"):
        lif_linear(x, torch.full((1, 1), 3e10, dtype=torch.float64), params=p)


@pytest.mark.parametrize("field,value", [
    ("tau_s", 1e16), ("tau_s", 1e308), ("tau_s", 9.9e-10), ("tau_s", 1.0000001e6),
    ("theta", 1e-100), ("theta", 1e-13), ("theta", 1.1e12), ("delta_theta", 1e-13),
    ("delta_theta", 1e13)])
def test_parameters_beyond_the_supported_ranges_are_refused(field, value):
    kw = dict(tau_s=0.1, theta=0.5, max_spikes=3)
    kw[field] = value
    with pytest.raises(ValueError, match=rf"{field}=.*outside the range batsnn supports"):
        LIFParams(**kw)
    x, w = _data()
    with pytest.raises(ValueError, match=field):
        lif_linear(x, w, **kw)


def test_parameters_at_the_edges_are_accepted():
    for tau_s in TAU_S_RANGE:
        for theta in THETA_RANGE:
            p = LIFParams(tau_s=tau_s, theta=theta, delta_theta=0.0, max_spikes=MAX_SPIKES_MAX)
            assert (p.tau_s, p.theta, p.delta_theta) == (tau_s, theta, 0.0)
    assert LIFParams(tau_s=1.0, theta=1.0, delta_theta=THETA_RANGE[1], max_spikes=1)
    with pytest.raises(ValueError, match="2147483648 is more than batsnn supports"):
        LIFParams(tau_s=1.0, theta=1.0, max_spikes=MAX_SPIKES_MAX + 1)
    with pytest.raises(ValueError, match="max_spikes"):
        LIFParams(tau_s=1.0, theta=1.0, max_spikes=2**63)


def test_the_weight_check_runs_on_the_convolution_too():
    from batsnn.functional import lif_conv2d

    x = torch.zeros(1, 1, 3, 3, 1, dtype=torch.float64)
    w = torch.full((1, 1, 2, 2), 1e16, dtype=torch.float64)
    with pytest.raises(ValueError, match="weight holds a magnitude 1e\\+16"):
        lif_conv2d(x, w, tau_s=0.05, theta=0.2, max_spikes=2)
    out = lif_conv2d(x, w * 1e-10, tau_s=0.05, theta=0.2, max_spikes=2)
    assert out.counts.shape == (1, 1, 2, 2) and math.isfinite(float(out.counts.sum()))
