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


def _first_defect_reference(t: torch.Tensor, max_time: float):
    """Plain-Python twin of the compiled scan: per sample the first (kind, n, s)."""
    found = []
    for b in range(t.shape[0]):
        hit = None
        for n in range(t.shape[1]):
            prev = -math.inf
            for s in range(t.shape[2]):
                v = float(t[b, n, s])
                kind = (1 if math.isnan(v) else 2 if v < 0 else 3 if v < prev
                        else 4 if max_time < v < math.inf else 0)
                if kind and hit is None:
                    hit = (kind, n, s)
                if not math.isnan(v):
                    prev = v
        found.append(hit)
    return found


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_scans_agree_with_plain_references(dtype):
    """The compiled time scan, the weight magnitude and the count comparison against plain
    loops / torch on random trains with planted defects of every kind."""
    from batsnn.spikes import _count_mismatch, scan_times, weight_abs_max
    g = torch.Generator().manual_seed(3)
    for trial in range(40):
        t = torch.rand(4, 5, 6, generator=g, dtype=dtype).sort(-1).values * 2
        t[t > 1.5] = math.inf
        for _ in range(trial % 4):
            b, n, s = (int(torch.randint(k, (1,), generator=g)) for k in t.shape)
            t[b, n, s] = (math.nan, -0.5, 0.0, 1.8, -0.0)[trial % 5]
        bad = np.zeros((4, 3), np.int64)
        scan_times(t.numpy(), bad, 1.6)
        got = [tuple(int(x) for x in row) if row[0] else None for row in bad]
        assert got == _first_defect_reference(t, 1.6), trial
        counts = torch.isfinite(t).sum(-1)
        if trial % 3:
            counts[trial % 4, trial % 5] += 1
        first = np.empty(4, np.int64)
        _count_mismatch(t.numpy(), counts.numpy(), first)
        want = [int(torch.nonzero(torch.isfinite(t[b]).sum(-1) != counts[b])[0])
                if (torch.isfinite(t[b]).sum(-1) != counts[b]).any() else -1 for b in range(4)]
        assert first.tolist() == want
        w = torch.randn(3, 7, generator=g, dtype=dtype)
        if trial % 4 == 1:
            w[trial % 3, trial % 7] = (math.nan, -math.inf)[(trial // 4) % 2]
        ref = w.abs().max().item()
        got_w = weight_abs_max(w)
        assert (math.isnan(got_w) and math.isnan(ref)) or got_w == ref


def test_trains_without_slots_pass_the_count_checks():
    """S = 0 (no spike slots): counts of zeros agree, others are named."""
    from batsnn.losses import spike_count_class_loss, spike_count_loss

    t = torch.zeros(2, 3, 0)
    zero = torch.zeros(2, 3, dtype=torch.int64)
    assert spike_count_loss(t, zero, torch.zeros(2, 3)).item() == 0.0
    assert spike_count_class_loss(t, zero, torch.tensor([0, 1])).item() > 0
    bad = torch.tensor([[0, 1, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match=r"counts must lie in \[0, S=0\]"):
        spike_count_loss(t, bad, torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"counts\[0, 1\] = 1 but times\[0, 1\] holds 0"):
        batsnn.spikes.check_counts(bad, t)
