"""Spike-train checks: what is scanned, what is refused, and the op's hard limits."""

import math

import numpy as np
import pytest
import torch

import batsnn
from batsnn.functional import check_memory

KW = dict(tau_s=0.05, theta=0.1, max_spikes=3)


def test_edits_behind_the_version_counter_are_caught_on_cpu():
    x = batsnn.ttfs_encode(torch.rand(2, 5) * 0.9 + 0.05, dtype=torch.float64)
    w = torch.ones(3, 5, dtype=torch.float64)
    batsnn.lif_linear(x, w, **KW)  # valid, and marked valid by the encoder
    x.data[0, 1, 0] = math.nan  # .data does not move x's version counter
    with pytest.raises(ValueError, match=r"input_times contains NaN.*\[0, 1, 0\]"):
        batsnn.lif_linear(x, w, **KW)
    x.data[0, 1, 0] = 0.01
    x.numpy()[1, 2, 0] = -1.0  # neither does a numpy view
    with pytest.raises(ValueError, match="negative"):
        batsnn.lif_linear(x, w, **KW)


def test_layer_output_fed_back_is_scanned_after_edit():
    x = batsnn.ttfs_encode(torch.full((1, 4), 0.9), dtype=torch.float64)
    out = batsnn.lif_linear(x, torch.full((2, 4), 5.0, dtype=torch.float64), **KW)
    assert int(out.counts[0, 0]) >= 2
    out.times.data[0, 0, 0] = math.inf  # +inf padding before a finite time
    with pytest.raises(ValueError, match="ascending"):
        batsnn.lif_linear(out.times, torch.ones(1, 2, dtype=torch.float64), **KW)


def test_double_backward_is_refused():
    x = torch.rand(2, 5, 1, dtype=torch.float64) * 0.1
    w = (torch.rand(3, 5, dtype=torch.float64) * 5).requires_grad_(True)
    out = batsnn.lif_linear(x, w, **KW)
    assert int(out.counts.sum()) > 0
    loss = out.times.masked_fill(torch.isinf(out.times), 0).sum()
    with pytest.raises(RuntimeError, match="create_graph=True"):
        torch.autograd.grad(loss, w, create_graph=True)
    # the plain backward still works on a fresh graph
    out = batsnn.lif_linear(x, w, **KW)
    (g,) = torch.autograd.grad(out.times.masked_fill(torch.isinf(out.times), 0).sum(), w)
    assert g.abs().sum() > 0


def test_buffers_that_cannot_fit_are_refused_up_front():
    x = torch.full((4, 10, 1), math.inf)
    p = batsnn.LIFParams(tau_s=0.1, theta=1.0, max_spikes=10**9)
    with pytest.raises(MemoryError, match=r"max_spikes=1000000000.*GiB"):
        check_memory(x, 10**6, p)
    with pytest.raises(MemoryError, match="max_spikes"):
        batsnn.lif_linear(x, torch.zeros(10**3, 10), tau_s=0.1, theta=1.0, max_spikes=10**9)
    check_memory(x, 10, batsnn.LIFParams(tau_s=0.1, theta=1.0, max_spikes=3))  # fits


def test_numpy_scalar_hyperparameters_alike():
    x = batsnn.ttfs_encode(torch.rand(2, 6), dtype=torch.float64, dt=1e-3)
    w = torch.rand(4, 6, dtype=torch.float64) * 3
    a = batsnn.lif_linear(x, w, tau_s=0.05, theta=0.1, max_spikes=3, dt=1e-3)
    b = batsnn.lif_linear(x, w, tau_s=np.float64(0.05), theta=np.float64(0.1),
                          max_spikes=np.int32(3), dt=np.float64(1e-3))
    assert torch.equal(a.times, b.times) and torch.equal(a.counts, b.counts)


def test_params_and_keywords_are_exclusive():
    x = torch.full((1, 2, 1), 0.01, dtype=torch.float64)
    w = torch.ones(1, 2, dtype=torch.float64)
    p = batsnn.LIFParams(**KW)
    assert torch.equal(batsnn.lif_linear(x, w, params=p).times,
                       batsnn.lif_linear(x, w, **KW).times)
    with pytest.raises(TypeError, match="theta"):
        batsnn.lif_linear(x, w, params=p, theta=0.2)
    with pytest.raises(TypeError, match="params must be a batsnn.LIFParams"):
        batsnn.lif_linear(x, w, params=dict(KW))
    with pytest.raises(TypeError, match="tau_s is required"):
        batsnn.lif_linear(x, w, theta=0.1, max_spikes=1)


def test_trains_of_any_rank_are_checked_naming_the_full_index():
    """(B, C, H, W, S) trains are checked as (B, -1, S); errors give the 5-D index."""
    from batsnn.spikes import check_spike_times

    t = torch.full((2, 3, 4, 5, 2), math.inf, dtype=torch.float64)
    t[..., 0] = 0.01
    check_spike_times("maps", t)  # valid
    check_spike_times("maps", t[:, 0, 0])  # (B, W, S)
    check_spike_times("maps", t[:, 0, 0, 0])  # (B, S): one train per sample
    bad = t.clone()
    bad[1, 2, 3, 4, 1] = math.nan
    with pytest.raises(ValueError, match=r"maps contains NaN \(first at maps\[1, 2, 3, 4, 1\]\)"):
        check_spike_times("maps", bad)
    bad = t.clone()
    bad[0, 1, 0, 2, 1] = 0.001
    with pytest.raises(ValueError, match=r"maps must be ascending.*maps\[0, 1, 0, 2\] = "
                                         r"\[0\.01, 0\.001\] is not \(at position 1\)"):
        check_spike_times("maps", bad)
    with pytest.raises(ValueError, match=r"maps must have shape \(batch, \*neurons, spikes\)"):
        check_spike_times("maps", torch.zeros(3, dtype=torch.float64))
