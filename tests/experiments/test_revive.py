"""batsnn.experiments.training.revive: silent neurons get their input weights raised after
each step where they were silent over the whole batch (the exact rule, which weights, by how
much, which layers), on the device without host synchronisation; a silenced label neuron
stays silent without it and comes back with it; the runner counts the bumps per epoch,
resumes exactly, and records them under a CUDA graph as in eager steps."""

import json
import math

import pytest
import torch

import batsnn
from batsnn import metrics as M
from batsnn.experiments import train as T
from batsnn.experiments.config import resolve_config
from batsnn.experiments.rundir import read_csv
from batsnn.experiments.training.callbacks import epoch_line
from batsnn.experiments.training.revive import (Reviver, bump_silent, covered_layers,
                                                silent_neurons, spike_totals)
from batsnn.losses import count_predict, spike_count_class_loss
from batsnn.nn import Flatten, LIFConv2d, LIFLinear, SpikePool2d, SpikingSequential
from tests.experiments.test_step import run_steps
from tests.experiments.test_train import TINY, resumed_equals_uninterrupted


def dense(n_out=3, seed=0):
    torch.manual_seed(seed)
    return SpikingSequential(LIFLinear(6, 5, tau_s=0.13, theta=0.1, max_spikes=4,
                                       init=(0.2, 1.0)),
                             LIFLinear(5, n_out, tau_s=0.13, theta=0.1, max_spikes=4,
                                       init=(0.2, 1.0)))


def early_inputs(n=4, silent_samples=()):
    """Six input neurons spiking early in every sample except ``silent_samples`` (none)."""
    t = torch.full((n, 6, 1), 0.01)
    for i in silent_samples:
        t[i] = math.inf
    return batsnn.spikes.mark_valid(t)


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


# ----------------------------------------------------------------------------- the rule

def test_silent_neurons_over_the_whole_batch_dense_and_per_channel():
    counts = torch.tensor([[0, 2, 0], [0, 0, 0], [0, 1, 0]])
    counts[2, 2] = 1  # neuron 2 spikes in one sample only: not silent
    assert silent_neurons(counts).tolist() == [True, False, False]
    assert spike_totals(counts).tolist() == [0, 3, 1]
    maps = torch.zeros(2, 3, 4, 4, dtype=torch.int64)
    maps[1, 0, 3, 3] = 1  # channel 0: one position of one sample
    maps[0, 2] = 2
    assert silent_neurons(maps).tolist() == [False, True, False]


def test_bump_moves_exactly_the_silent_rows_by_the_bump():
    w = torch.randn(4, 3, dtype=torch.float64)
    before = w.clone()
    bump_silent(w, torch.tensor([False, True, False, True]), 0.25)
    assert torch.equal(w[[0, 2]], before[[0, 2]])
    assert torch.equal(w[[1, 3]], before[[1, 3]] + 0.25)
    k = torch.randn(3, 2, 5, 5)
    kb = k.clone()
    bump_silent(k, torch.tensor([True, False, False]), 0.5)
    assert torch.equal(k[0], kb[0] + 0.5) and torch.equal(k[1:], kb[1:])


def test_a_silent_output_neuron_is_bumped_after_each_silent_step_only():
    model = dense()
    with torch.no_grad():
        model[1].weight[1] = -5.0  # output neuron 1 cannot spike
    rev = Reviver(model, "output", 0.25)
    assert rev.layers == [model[1]]
    x = early_inputs()
    out = model(x)
    assert out.counts[:, 1].sum() == 0 and (out.counts[:, [0, 2]] > 0).all()
    before = weights(model)
    rev.after_step()
    after = weights(model)
    assert torch.equal(after[0], before[0])  # the hidden layer is not covered
    assert torch.equal(after[1][[0, 2]], before[1][[0, 2]])
    assert torch.equal(after[1][1], before[1][1] + 0.25)  # every input weight, by the bump
    assert int(rev.revived) == 1
    # a step where it spikes for one sample of the batch: no bump
    with torch.no_grad():
        model[1].weight[1] = 2.0
    x = early_inputs(silent_samples=(0, 2, 3))
    assert model(x).counts[:, 1].tolist()[1] > 0 and model(x).counts[:, 1].sum() > 0
    before = weights(model)
    rev.after_step()
    assert all(torch.equal(a, b) for a, b in zip(weights(model), before))
    assert int(rev.revived) == 1
    # a batch where no sample has input: every covered neuron is silent, each bumped once
    model(early_inputs(silent_samples=range(4)))
    rev.after_step()
    assert torch.equal(model[1].weight, before[1] + 0.25) and int(rev.revived) == 4
    rev.reset_count()
    assert int(rev.revived) == 0


def test_all_covers_hidden_layers_and_conv_channels_output_only_the_last():
    torch.manual_seed(0)
    model = SpikingSequential(
        LIFConv2d(1, 3, 3, tau_s=0.13, theta=0.05, max_spikes=2, init=(0.2, 1.0)),
        SpikePool2d(2), Flatten(),
        LIFLinear(3 * 3 * 3, 4, tau_s=0.13, theta=0.3, max_spikes=3, init=(0.2, 1.0)),
        LIFLinear(4, 2, tau_s=0.13, theta=0.3, max_spikes=3, init=(0.2, 1.0)))
    with torch.no_grad():
        model[0].weight[2] = -3.0  # conv channel 2 is silent everywhere
    assert covered_layers(model, "output") == [model[4]]
    assert covered_layers(model, "all") == [model[0], model[3], model[4]]
    assert covered_layers(model, "none") == []
    with pytest.raises(ValueError, match="revive must be one of"):
        covered_layers(model, "hidden")
    rev = Reviver(model, "all", 0.125)
    x = batsnn.spikes.mark_valid(torch.full((2, 1, 8, 8, 1), 0.01))
    counts = model.forward_all(x)[0].counts
    assert counts[:, 2].sum() == 0 and (counts[:, :2].sum((0, 2, 3)) > 0).all()
    before = weights(model)
    rev.after_step()
    after = weights(model)
    assert torch.equal(after[0][2], before[0][2] + 0.125)  # the channel's every kernel weight
    assert torch.equal(after[0][:2], before[0][:2])
    assert int(rev.revived) == 1  # the spiking dense neurons are not bumped
    assert all(torch.equal(a, b) for a, b in zip(after[1:], before[1:]))


def test_only_training_passes_are_recorded_and_a_step_needs_one():
    model = dense()
    rev = Reviver(model, "output", 0.1)
    model.eval()
    model(early_inputs())
    with pytest.raises(RuntimeError, match="has not run a training forward pass"):
        rev.after_step()
    model.train()
    model(early_inputs())
    rev.after_step()
    with pytest.raises(RuntimeError, match="has not run a training forward pass"):
        rev.after_step()  # the counts are used once
    rev.remove()
    model(early_inputs())
    assert rev.counts == [None]  # no hooks left
    for bad in (0, -1.0, math.inf, math.nan, True, "0.1"):
        with pytest.raises(ValueError, match="revive_bump must be a finite number > 0"):
            Reviver(model, "output", bad)


def test_after_step_never_reads_a_value_on_the_host():
    """On ``meta`` tensors every data-dependent read (``.item()``, ``bool``, ``int``, python
    branching on a value) raises: the bump and its count are pure device arithmetic, as a
    CUDA graph needs; the sum over processes runs on the device too."""
    model = dense().to("meta")
    summed = []

    def all_sum(t):
        summed.append(t.device.type)
        return t * 2

    rev = Reviver(model, "all", 0.1, all_sum=all_sum)
    assert rev.revived.device.type == "meta"
    with pytest.raises(RuntimeError):
        bool(rev.revived)  # meta tensors have no values to read
    for i, layer in enumerate(rev.layers):
        rev.counts[i] = torch.zeros(4, layer.weight.shape[0], dtype=torch.int64,
                                    device="meta")
    rev.after_step(counted=False)
    assert summed == ["meta", "meta"]


# ----------------------------------------------------------------------------- training

def three_class_task(n=60, seed=3):
    """Twelve inputs; the class (0, 1, 2) decides which four spike (once, at random times in
    10-50 ms), the others stay silent."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    t = 0.01 + 0.04 * torch.rand(n, 12, generator=g)
    on = torch.arange(12).expand(n, 12) // 4 == y[:, None]
    return batsnn.spikes.mark_valid(torch.where(on, t, math.inf).unsqueeze(-1)), y


def train_with_a_silenced_label(revive, steps=60, lr=0.01, bump=0.1):
    x, y = three_class_task()
    torch.manual_seed(1)
    model = SpikingSequential(LIFLinear(12, 10, tau_s=0.13, theta=0.05, max_spikes=4,
                                        t_max=0.2, init=(0.0, 1.0)),
                              LIFLinear(10, 3, tau_s=0.13, theta=0.05, max_spikes=6,
                                        t_max=0.2, init=(-0.2, 1.0)))
    with torch.no_grad():
        model[1].weight[2] = -1.0  # label neuron 2 silent for every input
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rev = Reviver(model, revive, bump)
    for s in range(steps):
        idx = torch.arange(s * 6, s * 6 + 6) % len(y)
        opt.zero_grad()
        out = model(x[idx])
        spike_count_class_loss(out.times, out.counts, y[idx], target_true=4,
                               target_false=1).backward()
        opt.step()
        rev.after_step()
    model.eval()
    with torch.no_grad():
        counts = model(x).counts
    return counts, count_predict(counts), y, int(rev.revived)


def test_a_silenced_label_neuron_stays_silent_without_the_remedy_and_returns_with_it():
    counts, pred, y, revived = train_with_a_silenced_label("none")
    assert counts[:, 2].sum() == 0 and not (pred == 2).any() and revived == 0
    assert (pred == y).float().mean() <= 2 / 3  # class 2 is always wrong
    counts, pred, y, revived = train_with_a_silenced_label("output")
    assert counts[y == 2, 2].min() > 0  # spikes again, for every sample of its class
    assert (pred[y == 2] == 2).float().mean() > 0.9  # and its class is predicted again
    assert (pred == y).float().mean() > 0.9
    assert 0 < revived < 60  # bumped in some steps, not forever


def _graph_run(graphed, monkeypatch, revive="output"):
    """:func:`tests.experiments.test_step.run_steps`' tiny run (2 epochs) with a silenced
    label neuron."""
    cfg = resolve_config("mnist-count", hidden=[8], theta=[0.2, 0.05], max_spikes=[4, 6],
                         init=[-0.2, 1.0], batch_size=6, target_true=4, target_false=1,
                         revive=revive, revive_bump=0.05)

    def silence(model):
        with torch.no_grad():
            model[1].weight[0] = -2.0

    state, _ = run_steps(cfg, graphed, monkeypatch, 2, edit_model=silence,
                         evaluate=lambda step: step.epoch_metrics())
    return state


def test_the_graphed_step_revives_as_the_eager_one_and_keeps_its_warm_up_out(monkeypatch):
    eager = _graph_run(False, monkeypatch)
    graphed = _graph_run(True, monkeypatch)
    assert [r[M.REVIVED_NEURONS] for r in graphed.history] == \
        [r[M.REVIVED_NEURONS] for r in eager.history]
    assert eager.history[0][M.REVIVED_NEURONS] > 0
    for a, b in zip(graphed.model.parameters(), eager.model.parameters()):
        assert torch.equal(a, b)
    plain = _graph_run(False, monkeypatch, revive="none")
    assert M.REVIVED_NEURONS not in plain.history[0]
    assert not torch.equal(plain.model[1].weight, eager.model[1].weight)


def test_a_run_counts_and_logs_the_bumps_of_each_epoch(data_dir, tmp_path):
    lines = []
    cfg = resolve_config("mnist-count", **TINY, data_dir=str(data_dir), epochs=2,
                         init=[-1.0, -0.5], revive="all", revive_bump=0.02,
                         out=str(tmp_path / "run"))
    T.train(cfg, log=lines.append)
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    counts = [int(r[M.REVIVED_NEURONS]) for r in rows]
    assert counts[0] > 0  # weights all negative: everything starts silent
    epochs = [ln for ln in lines if ln.startswith("epoch ")]
    assert len(epochs) == 2  # one line per epoch, telling the bumps when there were any
    for ln, c in zip(epochs, counts):
        assert (f"; revived silent neurons: {c} bumps (" in ln) == (c > 0)
    row = {k: float(v) for k, v in rows[0].items()}
    assert "revived" not in epoch_line({**row, M.REVIVED_NEURONS: 0})
    assert "revived" not in epoch_line({k: v for k, v in row.items()
                                        if k != M.REVIVED_NEURONS})
    assert epoch_line({**row, M.REVIVED_NEURONS: 1}).endswith(
        "; revived silent neurons: 1 bump (a neuron without spikes for a whole batch, its "
        "input weights raised by revive_bump)")
    # without the remedy the column is not there
    plain = resolve_config("mnist-count", **TINY, data_dir=str(data_dir), epochs=1,
                           revive="none", out=str(tmp_path / "plain"))
    T.train(plain, quiet=True)
    assert M.REVIVED_NEURONS not in read_csv(tmp_path / "plain" / "metrics.csv")[0]


def test_a_reviving_run_resumes_exactly(data_dir, tmp_path):
    base = dict(**TINY, data_dir=str(data_dir), init=[-1.0, -0.3], revive="all",
                revive_bump=0.02)
    rows = resumed_equals_uninterrupted("mnist-count", base, tmp_path, 2)
    assert int(rows[0][M.REVIVED_NEURONS]) > 0


@pytest.mark.cuda
def test_revival_under_cuda_graphs_matches_eager(data_dir, tmp_path):
    """The bump inside a captured step: the same bumps and training as kernel by kernel."""
    base = dict(**{**TINY, "device": "cuda"}, data_dir=str(data_dir), epochs=2,
                init=[-1.0, -0.3], revive="all", revive_bump=0.02)
    runs = {}
    for name, graph in (("graph", True), ("eager", False)):
        cfg = resolve_config("mnist-count", **base, cuda_graph=graph, out=str(tmp_path / name))
        T.train(cfg, quiet=True)
        runs[name] = read_csv(tmp_path / name / "metrics.csv")
    assert int(runs["graph"][0][M.REVIVED_NEURONS]) > 0
    for a, b in zip(runs["graph"], runs["eager"]):
        assert abs(int(a[M.REVIVED_NEURONS]) - int(b[M.REVIVED_NEURONS])) <= \
            0.05 * int(b[M.REVIVED_NEURONS]) + 2
        assert float(a[M.TRAIN_LOSS]) == pytest.approx(float(b[M.TRAIN_LOSS]), rel=0.05)
        assert abs(float(a[M.TEST_ACCURACY]) - float(b[M.TEST_ACCURACY])) <= 0.1


# ----------------------------------------------------------------------------- settings

def test_settings_defaults_presets_and_the_command_line():
    from batsnn import cli
    from batsnn.experiments.config import PRESETS, TrainConfig

    assert (TrainConfig().revive, TrainConfig().revive_bump) == ("none", 0.001)
    on = {name for name in PRESETS if resolve_config(name).revive == "output"}
    assert on == {"mnist-count", "fmnist-count", "emnist-count", "mnist-conv", "fmnist-conv",
                  "nmnist-conv",  # the conv network on N-MNIST maps keeps it
                  "yinyang",  # one seed in five lost an output neuron without it
                  "shd", "ssc", "shd-delay", "shd-rec"}  # their output layers start low
    assert resolve_config("mnist-ttfs").revive == "none"
    assert all(resolve_config(n).revive_bump == TrainConfig().revive_bump for n in PRESETS)
    args = cli.build_parser().parse_args(["train", "--revive", "all", "--revive-bump", "0.02"])
    cfg = resolve_config("mnist-ttfs", **cli.config_overrides(args))
    assert (cfg.revive, cfg.revive_bump) == ("all", 0.02)
    args = cli.build_parser().parse_args(["train"])
    assert resolve_config("fmnist-count", **cli.config_overrides(args)).revive == "output"


def test_a_run_record_without_the_settings_keeps_them_off_whatever_its_preset(tmp_path):
    """A run's config.json written before ``revive`` existed names a preset that now turns it
    on: read back, it gives the settings the run had (off); a plain settings file naming
    the same preset gets the preset's."""
    from batsnn.experiments.config import read_config_file
    from batsnn.experiments.rundir import MARKER

    cfg = resolve_config("fmnist-count", train_samples=10)
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("revive", "revive_bump")}
    (tmp_path / "config.json").write_text(json.dumps({**old, MARKER: "train"}))
    assert read_config_file(tmp_path / "config.json")["revive"] == "none"
    again = resolve_config(file=tmp_path / "config.json")
    assert (again.revive, again.preset, again.train_samples) == ("none", "fmnist-count", 10)
    assert resolve_config("fmnist-count", file=tmp_path / "config.json").revive == "none"
    (tmp_path / "plain.json").write_text(json.dumps({"preset": "fmnist-count"}))
    assert resolve_config(file=tmp_path / "plain.json").revive == "output"
    # a record written now keeps what it ran with
    (tmp_path / "new.json").write_text(json.dumps({**cfg.to_dict(), MARKER: "train"}))
    assert resolve_config(file=tmp_path / "new.json").revive == "output"


def test_a_sweep_record_without_revive_reads_as_off(tmp_path):
    """The record of a sweep written before the revive settings existed: a base that turns
    reviving on is set back to the value its runs trained with (off), and says so; a record
    that holds the setting refuses another value."""
    from batsnn.experiments import sweep as S
    from batsnn.experiments.common import SettingsMismatch
    from batsnn.experiments.rundir import write_json

    off = resolve_config("mnist-count", **TINY, revive="none")
    record = S._sweep_record(tmp_path / "new", off, log=lambda line: None)
    assert record["settings"]["revive"] == "none"
    old = tmp_path / "old"
    old.mkdir()
    write_json(old / S.SWEEP_FILE, {**record, "settings": {
        k: v for k, v in record["settings"].items() if k not in ("revive", "revive_bump")}})
    on = resolve_config("mnist-count", **TINY)
    assert on.revive == "output"
    lines = []
    S._sweep_record(old, on, log=lines.append)
    assert on.revive == "none"
    assert any("continues with revive 'none'" in line for line in lines), lines
    recorded = tmp_path / "recorded"
    recorded.mkdir()
    write_json(recorded / S.SWEEP_FILE, record)
    with pytest.raises(SettingsMismatch, match="revive 'none' -> 'output'"):
        S._sweep_record(recorded, resolve_config("mnist-count", **TINY), log=lambda l: None)


@pytest.mark.slow  # four sweeps; test_a_sweep_record_without_revive_reads_as_off runs by default
def test_a_sweep_recorded_before_revive_continues_with_it_off(data_dir, tmp_path):
    from batsnn.experiments import sweep as S
    from batsnn.experiments.common import SettingsMismatch
    from batsnn.experiments.rundir import read_json

    out = tmp_path / "sweep"
    base = resolve_config("mnist-count", **TINY, data_dir=str(data_dir), epochs=1,
                          train_samples=20, test_samples=10, revive="none")
    S.run_sweep(base, [0], [1], out, jobs=1, log=lambda line: None)
    record = read_json(out / S.SWEEP_FILE)
    assert record["settings"]["revive"] == "none"
    for k in ("revive", "revive_bump"):
        del record["settings"][k]
    (out / S.SWEEP_FILE).write_text(json.dumps(record))
    lines = []
    S.run_sweep(base, [0], [1], out, jobs=1, log=lines.append)
    assert "1 finished already, 0 to train" in lines[0]
    # continued with its preset, which turns the remedy on now: it keeps it off, as its
    # runs trained, and says so (one more epoch trains the existing run on)
    on = resolve_config("mnist-count", **TINY, data_dir=str(data_dir), epochs=2,
                        train_samples=20, test_samples=10)
    assert on.revive == "output"
    lines = []
    S.run_sweep(on, [0], [1], out, jobs=1, log=lines.append)
    assert any("continues with revive 'none'" in line for line in lines), lines
    run = next((out / "runs").iterdir())
    assert read_json(run / "config.json")["revive"] == "none"
    # a sweep that recorded the setting is compared as before: another value is refused
    other = tmp_path / "other"
    S.run_sweep(base, [0], [1], other, jobs=1, log=lambda line: None)
    with pytest.raises(SettingsMismatch, match="revive 'none' -> 'output'"):
        S.run_sweep(on, [0], [1], other, jobs=1, log=lambda line: None)
