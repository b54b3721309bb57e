"""The ``batsnn`` command end to end on tiny files written by the tests (the entry points it
calls are tested in tests/experiments/)."""

import csv
import json
import subprocess
import sys

import pytest
import torch

import batsnn
from batsnn import cli
from batsnn.experiments import train as train_mod
from batsnn.experiments.config import resolve_config
from tests.experiments.test_rundir_lock import Holder, env_with_src

TINY = ["--preset", "mnist-count", "--dataset", "fashion-mnist", "--hidden", "24",
        "--max-spikes", "8,8", "--batch-size", "10", "--eval-batch-size", "16", "--quiet",
        "--device", "cpu"]
TIMING = {"train_seconds", "epoch_seconds"}


def _rows(path):
    with open(path) as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def test_train_end_to_end(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["train", *TINY, "--data-dir", str(data_dir), "--epochs", "2",
                   "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "spikes per sample per layer" in printed
    assert str(out) in printed
    for name in ("config.json", "metrics.csv", "summary.json", "last.pt", "best.pt",
                 "learning_curves.png", "spikes_per_layer.png", "raster.png"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["seed"] == 1 and cfg["batsnn_version"] and cfg["layers"] == [784, 24, 10]
    assert cfg["lr"] == 0.003 and cfg["theta"] == [0.2, 1.3]
    rows = _rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for col in ("train_loss", "train_accuracy", "test_loss", "test_accuracy",
                "spikes_per_sample_l1", "spikes_per_sample_l2", "silent_neurons_pct_l1",
                "silent_labels_pct", "label_spike_share_25ms", "label_spike_share_200ms",
                "decision_time_ms"):
        assert col in rows[0], col
    summary = json.loads((out / "summary.json").read_text())
    assert 0 <= summary["test_accuracy"] <= 1
    assert summary["best_test_accuracy"] >= summary["test_accuracy"]
    assert summary["test_accuracy"] == float(rows[-1]["test_accuracy"])
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["epoch"] == 2 and set(ck) >= {"model", "optimizer", "rng", "history"}


@pytest.mark.slow
def test_same_seed_same_result(data_dir, tmp_path):
    for name in ("a", "b"):
        assert cli.main(["train", *TINY, "--data-dir", str(data_dir), "--epochs", "1",
                         "--out", str(tmp_path / name)]) == 0
    assert _rows(tmp_path / "a" / "metrics.csv") == _rows(tmp_path / "b" / "metrics.csv")
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # three trainings; resumes are exact in tests/experiments/test_train.py
def test_resume_after_interruption_equals_uninterrupted(data_dir, tmp_path, monkeypatch):
    full = tmp_path / "full"
    assert cli.main(["train", *TINY, "--data-dir", str(data_dir), "--epochs", "3",
                     "--out", str(full)]) == 0

    part = tmp_path / "part"
    real_evaluate = train_mod.evaluate  # the runner looks it up at each epoch
    calls = {"n": 0}

    def failing_evaluate(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # during epoch 2, after its training pass
            raise KeyboardInterrupt
        return real_evaluate(*a, **k)

    monkeypatch.setattr(train_mod, "evaluate", failing_evaluate)
    rc = cli.main(["train", *TINY, "--data-dir", str(data_dir), "--epochs", "3",
                   "--out", str(part)])
    assert rc == 130
    assert [r["epoch"] for r in _rows(part / "metrics.csv")] == ["1"]
    assert torch.load(part / "last.pt", weights_only=False)["epoch"] == 1
    monkeypatch.setattr(train_mod, "evaluate", real_evaluate)

    # without --resume the directory is protected
    assert cli.main(["train", *TINY, "--data-dir", str(data_dir), "--epochs", "3",
                     "--out", str(part)]) == 2
    assert cli.main(["train", *TINY, "--data-dir", str(data_dir), "--epochs", "3",
                     "--out", str(part), "--resume"]) == 0
    assert _rows(part / "metrics.csv") == _rows(full / "metrics.csv")
    a = torch.load(full / "last.pt", weights_only=False)["model"]
    b = torch.load(part / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_config_file_and_overrides(data_dir, tmp_path):
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"lr": 0.001, "epochs": 1, "hidden": [16]}))
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--config", str(conf), "--hidden", "12",
                     "--data-dir", str(data_dir), "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["lr"] == 0.001 and cfg["hidden"] == [12] and cfg["epochs"] == 1


# each case is a real command (2-3 s importing torch): one by default, the rest under -m slow
@pytest.mark.parametrize("args, words", [
    pytest.param(["--preset", "nope"], "invalid choice", marks=pytest.mark.slow),
    pytest.param(["--dataset", "cifar"], "unknown dataset 'cifar'", marks=pytest.mark.slow),
    pytest.param(["--dt", "-1"], "dt must be >= 0", marks=pytest.mark.slow),
    pytest.param(["--epochs", "0"], "epochs must be >= 1", marks=pytest.mark.slow),
    pytest.param(["--data-dir", "/nonexistent/dir"], "does not exist", marks=pytest.mark.slow),
    (["--theta", "0.2"], "theta needs one value per layer"),
])
def test_bad_arguments_exit_nonzero_with_one_line(args, words, tmp_path):
    base = ["--preset", "mnist-count", "--dataset", "fashion-mnist", "--out",
            str(tmp_path / "r"), "--quiet"]
    res = subprocess.run([sys.executable, "-m", "batsnn.cli", "train", *base, *args],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert words in res.stderr
    assert "Traceback" not in res.stderr
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) <= 2


def test_no_cuda_graph_flag_reaches_config():
    p = cli.build_parser()
    args = p.parse_args(["train", "--no-cuda-graph"])
    assert cli.config_overrides(args)["cuda_graph"] is False
    args = p.parse_args(["train"])
    assert cli.config_overrides(args)["cuda_graph"] is None  # the default (True) stays
    assert resolve_config("mnist-count").cuda_graph is True


def test_every_config_option_sets_its_field():
    args = cli.build_parser().parse_args(
        ["train", "--dataset", "fmnist", "--data-dir", "/d", "--epochs", "3", "--batch-size",
         "7", "--eval-batch-size", "9", "--lr", "0.01", "--dt", "0.002", "--seed", "4",
         "--device", "cpu", "--train-samples", "20", "--test-samples", "10", "--hidden",
         "30,20", "--theta", "0.1,0.2,0.3", "--max-spikes", "2,3,4", "--tau-s", "0.1",
         "--t-max", "0.3", "--out", "/o", "--no-cuda-graph", "--augment", "elastic",
         "--dt-mode", "anneal", "--dt-warmup-epochs", "2", "--dt-fine", "0.001"])
    cfg = resolve_config("mnist-count", **cli.config_overrides(args))
    assert (cfg.dataset, cfg.data_dir, cfg.epochs, cfg.batch_size, cfg.eval_batch_size,
            cfg.lr, cfg.dt, cfg.seed, cfg.device, cfg.train_samples, cfg.test_samples,
            cfg.tau_s, cfg.t_max, cfg.out, cfg.cuda_graph, cfg.augment, cfg.dt_mode,
            cfg.dt_warmup_epochs, cfg.dt_fine) == (
        "fashion-mnist", "/d", 3, 7, 9, 0.01, 0.002, 4, "cpu", 20, 10, 0.1, 0.3, "/o", False,
        "elastic", "anneal", 2, 0.001)
    assert [(s.get("features"), s["theta"], s["max_spikes"]) for s in cfg.network] == [
        (30, 0.1, 2), (20, 0.2, 3), (None, 0.3, 4)]


@pytest.mark.slow  # a training as a real command
def test_a_runs_config_json_reproduces_the_run(data_dir, tmp_path):
    """``batsnn train --config RUN/config.json --out OTHER`` (through ``python -m batsnn``)
    resolves to the same settings and gives the same metrics."""
    run, other = tmp_path / "run", tmp_path / "other"
    assert cli.main(["train", *TINY, "--data-dir", str(data_dir), "--epochs", "2", "--dt",
                     "0.002", "--seed", "3", "--out", str(run)]) == 0
    res = subprocess.run([sys.executable, "-m", "batsnn", "train", "--config",
                          str(run / "config.json"), "--out", str(other)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    a = json.loads((run / "config.json").read_text())
    b = json.loads((other / "config.json").read_text())
    assert a.pop("out") == str(run) and b.pop("out") == str(other)
    assert a == b and a["dt"] == 0.002 and a["seed"] == 3 and a["epochs"] == 2
    assert _rows(run / "metrics.csv") == _rows(other / "metrics.csv")


def test_config_file_naming_another_preset_is_an_error(tmp_path, capsys):
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"preset": "fmnist-count"}))
    assert cli.main(["train", "--preset", "mnist-count", "--config", str(conf), "--out",
                     str(tmp_path / "r")]) == 2
    assert "names preset 'fmnist-count' but preset 'mnist-count' was given" in \
        capsys.readouterr().err


@pytest.mark.slow
def test_sweep_and_discretization_error_commands(data_dir, tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", *TINY, "--epochs", "1", "--data-dir", str(data_dir), "--dt", "0,0.004",
            "--seeds", "1", "--jobs", "1", "--out", str(out)]
    assert cli.main(args) == 0
    assert len(_rows(out / "sweep.csv")) == 2
    report = (out / "report.md").read_text()
    assert "Produced by `batsnn sweep --preset mnist-count" in report and "--seeds 1" in report
    assert cli.main(["discretization-error", "--depths", "1", "--dt", "0.008", "--width", "12",
                     "--samples", "4", "--dataset", "random", "--device", "cpu", "--out",
                     str(tmp_path / "dterr")]) == 0
    assert len(_rows(tmp_path / "dterr" / "discretization_error.csv")) == 1


@pytest.mark.slow
def test_conv_preset_through_train_sweep_and_discretization_error(data_dir, tmp_path):
    """The conv presets are accepted by every command (here with a small conv network in a
    config file); --augment sets the setting."""
    conf = tmp_path / "tiny.json"
    conf.write_text(json.dumps({"network": [
        {"type": "conv2d", "channels": 3, "kernel": 5, "theta": 0.04, "max_spikes": 1},
        {"type": "pool2d"}, {"type": "flatten"},
        {"type": "linear", "theta": 0.3, "max_spikes": 5}], "train_samples": 20}))
    common = ["--preset", "fmnist-conv", "--config", str(conf), "--data-dir", str(data_dir),
              "--epochs", "1", "--eval-batch-size", "10", "--quiet"]
    assert cli.main(["train", *common, "--augment", "none", "--out", str(tmp_path / "t")]) == 0
    doc = json.loads((tmp_path / "t" / "config.json").read_text())
    assert doc["augment"] == "none" and doc["layers"] == [784, [3, 24, 24], [3, 12, 12], 432,
                                                          10]
    assert cli.main(["sweep", *common, "--dt", "0,0.004", "--seeds", "1", "--jobs", "1",
                     "--out", str(tmp_path / "s")]) == 0
    rows = _rows(tmp_path / "s" / "sweep.csv")
    assert len(rows) == 2 and "spikes_per_sample_l3" in rows[0]
    assert json.loads((tmp_path / "s" / "runs" / "dt4ms-seed1" / "config.json").read_text())[
        "augment"] == "elastic"
    assert cli.main(["discretization-error", "--preset", "mnist-conv", "--dt", "0.004",
                     "--samples", "2", "--dataset", "random", "--out",
                     str(tmp_path / "d")]) == 0
    assert len(_rows(tmp_path / "d" / "discretization_error.csv")) == 6


@pytest.mark.parametrize("args, words", [
    (["sweep", "--dt", "-1", "--out", "X"], "dt values must be finite and >= 0"),
    (["sweep", "--dt", "0", "--seeds", "0", "--out", "X"], "--seeds must be >= 1"),
    (["sweep", "--dt", "0"], "--out DIR is required"),
    (["sweep", "--dt", "0,x", "--out", "X"], "expected comma-separated numbers"),
    (["discretization-error", "--depths", "0", "--dt", "0.001", "--out", "X"],
     "depths must be integers >= 1"),
    (["discretization-error", "--dt", "0.001", "--out", "X"], "give either --depths"),
    (["discretization-error", "--depths", "1", "--preset", "mnist-conv", "--dt", "0.001",
      "--out", "X"], "give either --depths"),
], ids=["negative-dt", "no-seeds", "no-out", "bad-list", "depth0", "neither", "both"])
def test_sweep_and_dterr_bad_arguments(args, words, tmp_path, capsys):
    args = [str(tmp_path / "x") if a == "X" else a for a in args]
    try:
        rc = cli.main([*args, "--device", "cpu"])
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_python_dash_m_batsnn():
    res = subprocess.run([sys.executable, "-m", "batsnn", "--version"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == f"batsnn {batsnn.__version__}"


@pytest.mark.cuda
def test_graphed_training_run_matches_eager_run(data_dir, tmp_path):
    """batsnn train on a GPU: the CUDA-graph loop and the kernel-by-kernel loop agree."""
    gpu = [a if a != "cpu" else "cuda" for a in TINY]
    for name, extra in (("graph", []), ("eager", ["--no-cuda-graph"])):
        assert cli.main(["train", *gpu, *extra, "--data-dir", str(data_dir), "--epochs", "2",
                         "--out", str(tmp_path / name)]) == 0
    a = torch.load(tmp_path / "graph" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "eager" / "last.pt", weights_only=False)
    # float32 atomics sum the gradients in another order in every run, so the two runs are
    # compared as two runs of the same training, not bit for bit
    for k in a["model"]:
        diff = (a["model"][k] - b["model"][k]).norm() / b["model"][k].norm()
        assert diff < 1e-2, (k, float(diff))
    ra, rb = _rows(tmp_path / "graph" / "metrics.csv"), _rows(tmp_path / "eager" / "metrics.csv")
    for x, y in zip(ra, rb):
        assert abs(float(x["test_accuracy"]) - float(y["test_accuracy"])) <= 0.1
        assert abs(float(x["train_loss"]) - float(y["train_loss"])) <= 0.05 * float(y["train_loss"])
    # each run resumes with the other loop (the learning rate is a tensor under graphs)
    for name, extra in (("graph", ["--no-cuda-graph"]), ("eager", [])):
        assert cli.main(["train", *gpu, *extra, "--data-dir", str(data_dir), "--epochs", "3",
                         "--out", str(tmp_path / name), "--resume"]) == 0
        assert len(_rows(tmp_path / name / "metrics.csv")) == 3


# ----------------------------------------------------------------------------- run directories

def _subparsers(parser):
    """Every parser below ``parser`` (subcommands and their own subcommands)."""
    import argparse

    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((name, sub))
                found.extend(_subparsers(sub))
    return found


def test_no_parser_accepts_abbreviated_options():
    parser = cli.build_parser()
    subs = dict(_subparsers(parser))
    assert {"train", "data", "prepare", "sweep", "discretization-error", "convergence",
            "export"} <= set(subs)
    assert parser.allow_abbrev is False
    assert [n for n, p in subs.items() if p.allow_abbrev is not False] == []
    for argv in (["sweep", "--dt", "0", "--seed", "3"], ["train", "--epoch", "2"],
                 ["convergence", "--out", "x", "--repeat", "2"],
                 ["export", "--run", "r", "--out", "o", "--checkp", "last"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)


def test_errors_are_one_escaped_line(monkeypatch, capsys):
    def shout(args):
        raise ValueError("bad \x1b[2Jname\nsecond line\x07")

    monkeypatch.setattr(cli, "cmd_data", shout)
    monkeypatch.delenv("BATSNN_DEBUG", raising=False)
    assert cli.main(["data", "prepare", "mnist"]) == 2
    assert capsys.readouterr().err == "batsnn: error: bad \\x1b[2Jname second line\\x07\n"
    assert cli.main(["train", "--preset", "mnist-count", "--\x1b[5m"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "batsnn: error: unrecognized arguments: --\\x1b[5m (see batsnn --help)"]


@pytest.mark.slow
def test_runs_without_out_get_directories_of_their_own(data_dir, tmp_path, monkeypatch, capsys):
    from batsnn.experiments import rundir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rundir.time, "strftime", lambda fmt: "20261207-120000")
    for _ in range(2):  # started in the same second: two directories
        assert cli.main(["train", *TINY, "--data-dir", str(data_dir), "--epochs", "1",
                         "--train-samples", "10", "--test-samples", "10"]) == 0
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all((r / "last.pt").is_file() for r in runs)
    assert [r.name for r in runs] == ["mnist-count-20261207-120000",
                                      "mnist-count-20261207-120000-2"]
    printed = capsys.readouterr().out
    assert all(f"in {r.relative_to(tmp_path)}\n" in printed for r in runs), printed
    assert not any((r / ".batsnn-lock").exists() for r in runs)


@pytest.mark.slow
def test_two_real_processes_on_one_out_one_trains(data_dir, tmp_path):
    """Two ``batsnn train`` commands started together on the same new ``--out``: one trains,
    the other is refused with one line (the directory is in use, or, if the first was done
    already, holds a run); the directory holds one run."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "batsnn", "train", *TINY, "--data-dir", str(data_dir),
            "--epochs", "2", "--out", str(out)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env_with_src()) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _, _ in results)
    assert codes == [0, 2], results
    err = next(e for rc, _, e in results if rc == 2).strip().splitlines()
    assert len(err) == 1 and err[0].startswith("batsnn: error: ") and str(out) in err[0], err
    assert "is in use by batsnn process" in err[0] or "already holds a run" in err[0]
    assert [r["epoch"] for r in _rows(out / "metrics.csv")] == ["1", "2"]
    assert not (out / ".batsnn-lock").exists()


def test_a_held_out_is_refused_by_the_real_command(data_dir, tmp_path):
    out = tmp_path / "run"
    holder = Holder(out)
    try:
        res = subprocess.run([sys.executable, "-m", "batsnn", "train", *TINY, "--data-dir",
                              str(data_dir), "--epochs", "1", "--out", str(out)],
                             capture_output=True, text=True, timeout=300, env=env_with_src())
    finally:
        holder.stop()
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"batsnn: error: output directory '{out}' is in use by batsnn process {holder.pid} "
        "(a train run writing into it); wait for it to end or choose another directory"]
    assert list(out.iterdir()) == []
