"""batsnn.metrics on hand-computed cases: decision times and their tie rules, label-spike
shares, per-layer statistics, the metric names and the discretization-error comparison."""

import math

import pytest
import torch

from batsnn import metrics as M
from batsnn.spikes import SpikeTrains

INF = math.inf


def trains(spikes, slots=3):
    """SpikeTrains from nested lists: ``spikes[b][n]`` is neuron n's spike times (s)."""
    t = torch.full((len(spikes), len(spikes[0]), slots), INF, dtype=torch.float64)
    for b, sample in enumerate(spikes):
        for n, times in enumerate(sample):
            t[b, n, :len(times)] = torch.tensor(sorted(times), dtype=torch.float64)
    return SpikeTrains(t, torch.isfinite(t).sum(-1))


# ----------------------------------------------------------------------------- decision time

DECISION_CASES = {
    # (spikes of neurons 0, 1, 2) -> decision time (s)
    # 1 leads, then 0 catches up (tie: lowest index wins) and leads: decided at 0's 1st spike
    "overtaken": ([[0.002, 0.003], [0.001], []], 0.002),
    # 0 first, 1 ties it later: the tie goes to 0, the prediction never changed
    "tie_keeps_lowest": ([[0.001], [0.002], []], 0.001),
    # 1 first, 0 ties it: the tie flips the prediction to 0 at 0's spike
    "tie_flips_to_lowest": ([[0.002], [0.001], []], 0.002),
    # 0 and 1 spike at the same time: they count together, the prediction (1) never changed
    "simultaneous": ([[0.002], [0.001, 0.002], []], 0.001),
    # 2 leads until 1 spikes twice at once
    "simultaneous_overtake": ([[], [0.004, 0.004], [0.001]], 0.004),
    "single_spike": ([[], [], [0.005]], 0.005),
    "silent": ([[], [], []], math.nan),
}


def test_decision_times_count_mode():
    cases = list(DECISION_CASES.values())
    out = trains([c[0] for c in cases])
    got = M.decision_times(out.times, out.counts, "count")
    assert got.dtype == torch.float64 and got.shape == (len(cases),)
    for name, (_, want), g in zip(DECISION_CASES, cases, got.tolist()):
        if math.isnan(want):
            assert math.isnan(g), name
        else:
            assert g == want, name


def test_decision_time_is_when_the_final_count_prediction_holds_for_good():
    """Against a plain replay: step through the distinct spike times, predicting after each."""
    g = torch.Generator().manual_seed(0)
    dt = 1e-3  # a coarse grid: many simultaneous spikes
    t = (torch.randint(1, 8, (200, 4, 3), generator=g) * dt).double()
    t = torch.where(torch.rand(200, 4, 3, generator=g) < 0.5, t, torch.full_like(t, INF))
    t = t.sort(-1).values
    counts = torch.isfinite(t).sum(-1)
    got = M.decision_times(t, counts, "count")
    for b in range(t.shape[0]):
        times = sorted(set(v for v in t[b].flatten().tolist() if v < INF))
        if not times:
            assert math.isnan(got[b])
            continue
        preds = [int((t[b] <= s).sum(-1).argmax()) for s in times]
        k = len(preds) - 1
        while k > 0 and preds[k - 1] == preds[-1]:
            k -= 1
        assert got[b].item() == times[k], b


def test_decision_times_ttfs_mode_is_the_first_output_spike():
    out = trains([[[0.004], [0.002], []], [[], [], []], [[0.003], [0.003], [0.001]]], slots=1)
    got = M.decision_times(out.times, out.counts, "ttfs")
    assert got[0] == 0.002 and math.isnan(got[1]) and got[2] == 0.001
    with pytest.raises(ValueError, match="mode must be"):
        M.decision_times(out.times, out.counts, "first")
    assert M.decision_times(out.times[:0], out.counts[:0], "count").shape == (0,)


# ----------------------------------------------------------------------------- label share

def test_label_spike_share():
    out = trains([[[0.010, 0.030, 0.060], []], [[0.001], [0.040]]])
    labels = torch.tensor([0, 1])
    share = lambda t: M.label_spike_share(out.times, labels, 2, t).tolist()  # noqa: E731
    assert share(0.005) == [0.0, 0.0]
    assert share(0.025) == [0.5, 0.0]
    assert share(0.030) == [1.0, 0.0]  # a spike exactly at t counts
    assert share(0.045) == [1.0, 0.5]
    assert share(0.100) == [1.0, 0.5]  # 3 spikes of a target of 2: capped at 1
    assert M.label_spike_share(out.times, labels, 1, 0.1).tolist() == [1.0, 1.0]


# ----------------------------------------------------------------------------- EvalStats

def test_eval_stats_by_hand():
    stats = M.EvalStats(None, "count", target=2)
    # batch 1: hidden layer of 3 neurons, output of 2; labels 0, 1
    hidden1 = trains([[[0.01], [], []], [[0.01, 0.02], [], []]])
    out1 = trains([[[0.010, 0.020], [0.005]], [[0.030], []]])
    stats.update([hidden1, out1], torch.tensor([0, 1]), loss=1.5, pred=torch.tensor([0, 0]))
    # batch 2: one sample, label 1
    hidden2 = trains([[[], [0.01, 0.02, 0.03], []]])
    out2 = trains([[[], [0.070]]])
    stats.update([hidden2, out2], torch.tensor([1]), loss=3.0, pred=torch.tensor([1]))
    r = stats.result()
    assert r[M.TEST_LOSS] == pytest.approx((1.5 * 2 + 3.0) / 3)
    assert r[M.TEST_ACCURACY] == pytest.approx(2 / 3)
    assert r[M.layer_key(M.SPIKES_PER_SAMPLE, 1)] == pytest.approx((1 + 2 + 3) / 3)
    assert r[M.layer_key(M.SPIKES_PER_SAMPLE, 2)] == pytest.approx((3 + 1 + 1) / 3)
    assert r[M.layer_key(M.SILENT_NEURONS_PCT, 1)] == pytest.approx(100 / 3)  # neuron 2
    assert r[M.layer_key(M.SILENT_NEURONS_PCT, 2)] == 0.0
    assert r[M.SILENT_LABELS_PCT] == pytest.approx(100 / 3)  # sample 2's label is silent
    # label shares (target 2): sample 1: 2 spikes by 20 ms; sample 2: none; sample 3: 1 at 70 ms
    assert r[M.label_share_key(25)] == pytest.approx((1.0 + 0 + 0) / 3)
    assert r[M.label_share_key(50)] == pytest.approx((1.0 + 0 + 0) / 3)
    assert r[M.label_share_key(100)] == pytest.approx((1.0 + 0 + 0.5) / 3)
    # decisions: sample 1: 1 leads at 5 ms, 0 ties at 10 ms and wins -> 10 ms; sample 2: 30 ms;
    # sample 3: 70 ms
    assert r[M.DECISION_TIME_MS] == pytest.approx((10 + 30 + 70) / 3)
    # read out at 50 ms: sample 1 has (2, 1) spikes -> 0, right; sample 2 (0 spikes first)
    # -> 0, wrong; sample 3 has no output spike yet -> wrong. From 100 ms on sample 3 is right.
    assert r[M.readout_accuracy_key(50)] == pytest.approx(1 / 3)
    for ms in (100, 150, 200):
        assert r[M.readout_accuracy_key(ms)] == pytest.approx(2 / 3)
    assert list(r) == [M.TEST_LOSS, M.TEST_ACCURACY, "spikes_per_sample_l1",
                       "spikes_per_sample_l2", "silent_neurons_pct_l1", "silent_neurons_pct_l2",
                       M.SILENT_LABELS_PCT, *M.LABEL_SHARE_KEYS, M.DECISION_TIME_MS,
                       *M.READOUT_KEYS]


def test_prediction_by_a_read_out_time():
    # neuron 1 spikes at 1 ms, neuron 0 at 2 and 3 ms, neuron 2 at 2 ms
    out = trains([[[0.002, 0.003], [0.001], [0.002]], [[], [], []]])
    for t, want in ((0.0005, None), (0.001, 1), (0.002, 0), (0.0025, 0), (0.004, 0)):
        pred, decided = M.prediction_by(out.times, t, "count")
        assert decided.tolist() == [want is not None, False], t
        if want is not None:
            assert int(pred[0]) == want, t
    # at 2 ms neurons 0, 1 and 2 all have one spike: the tie goes to the lowest index
    assert int(M.prediction_by(out.times, 0.002, "count")[0][0]) == 0
    # ttfs: the earliest first spike, once it has happened
    pred, decided = M.prediction_by(out.times, 0.0015, "ttfs")
    assert decided.tolist() == [True, False] and int(pred[0]) == 1
    assert not M.prediction_by(out.times, 0.0009, "ttfs")[1][0]
    with pytest.raises(ValueError, match="mode must be"):
        M.prediction_by(out.times, 0.1, "rate")


def test_eval_stats_all_silent_output_and_sizes():
    stats = M.EvalStats([3, 2], "ttfs", target=1)
    stats.update([trains([[[], [], []]]), trains([[[], []]])], torch.tensor([1]), 0.0,
                 torch.tensor([0]))
    r = stats.result("val_")
    assert r["val_accuracy"] == 0.0 and math.isnan(r[M.DECISION_TIME_MS])
    assert r[M.layer_key(M.SILENT_NEURONS_PCT, 1)] == 100.0 and r[M.SILENT_LABELS_PCT] == 100.0
    with pytest.raises(ValueError, match="expected 2 layers"):
        stats.update([trains([[[], []]])], torch.tensor([0]), 0.0, torch.tensor([0]))
    with pytest.raises(ValueError, match="mode must be"):
        M.EvalStats(None, "rate", 1)


def test_layer_activity_of_any_layer_shape():
    counts = torch.tensor([[[1, 0], [0, 0]], [[2, 0], [0, 1]]])  # (B=2, 2, 2), e.g. conv maps
    total, fired = M.layer_activity(counts)
    assert total == 4.0 and fired.tolist() == [True, False, False, True]


# ----------------------------------------------------------------------------- names

def test_metric_names():
    assert M.layer_key(M.SPIKES_PER_SAMPLE, 2) == "spikes_per_sample_l2"
    assert M.layer_of("silent_neurons_pct_l12") == 12
    keys = ["spikes_per_sample_l10", "x", "spikes_per_sample_l9", "silent_neurons_pct_l1",
            "spikes_per_sample_l1_mean"]
    assert M.layer_keys(keys, M.SPIKES_PER_SAMPLE) == ["spikes_per_sample_l9",
                                                       "spikes_per_sample_l10"]
    assert M.READOUT_KEYS == ("accuracy_by_50ms", "accuracy_by_100ms", "accuracy_by_150ms",
                              "accuracy_by_200ms")
    assert M.LABEL_SHARE_KEYS == ("label_spike_share_25ms", "label_spike_share_50ms",
                                  "label_spike_share_100ms", "label_spike_share_200ms")
    with pytest.raises(ValueError, match="layer must be an int >= 1"):
        M.layer_key(M.SPIKES_PER_SAMPLE, 0)
    with pytest.raises(ValueError, match="not a per-layer metric"):
        M.layer_of("test_accuracy")


# ----------------------------------------------------------------------------- dt error

def test_spike_train_error_by_hand():
    cont = trains([[[0.010, 0.020], [0.005]], [[], [0.030]]])
    disc = trains([[[0.011], [0.005]], [[], [0.032]]])
    e = M.spike_train_error(cont, disc)
    # matched slots: (0,0,0) 1 ms apart, (0,1,0) 0, (1,1,0) 2 ms
    assert e[M.MATCHED_SPIKES] == 3
    assert e[M.MSE_MS2] == pytest.approx((1 + 0 + 4) / 3)
    assert e[M.RMSE_MS] == pytest.approx(math.sqrt(5 / 3))
    assert e[M.COUNT_CHANGED_SHARE] == 0.25  # neuron 0 of sample 0 lost a spike
    assert e[M.SPIKES_CONTINUOUS] == 2.0 and e[M.SPIKES_DISCRETE] == 1.5
    silent = trains([[[], []]])
    assert math.isnan(M.spike_train_error(silent, silent)[M.RMSE_MS])
    with pytest.raises(ValueError, match="differ in shape"):
        M.spike_train_error(cont, silent)
