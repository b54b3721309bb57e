"""Hostile input to event-stream runs: ``batsnn data info`` and ``batsnn train`` on event
datasets (unknown names, missing or wrong data directories, bad files, bad event settings,
settings of the other kind of data, a map network on channels without maps), and the
library's event source (dataset options, the memory refusal, a run's recorded input
shape). Every failure is one line naming the setting, the file or the value."""

import json
import os
from pathlib import Path

import pytest

from batsnn.experiments import config as C
from batsnn.experiments import event_source as E
from batsnn.experiments.sources import open_source
from tests.hostile.harness import (CliCase, LibCase, check_cli_commands, check_cli_in_process,
                                   check_lib)

TINY_RANDMAN = {"dataset": "randman", "dataset_options": {"n_classes": 3, "n_channels": 4,
                                                          "samples_per_class": 10},
                "hidden": [4], "theta": [0.01, 0.05], "max_spikes": [2, 2], "tau_s": 0.01,
                "t_max": 0.3, "epochs": 1, "batch_size": 8, "device": "cpu"}


def _absent(path: Path):
    def check():
        assert not os.path.lexists(path), f"{path} was created"
    return check


def make_cases(root: Path) -> list[CliCase]:
    """Write each case's files under ``root`` and return the command-line cases."""
    root.mkdir(parents=True, exist_ok=True)
    out = root / "never-written"
    (root / "afile").write_text("x")
    os.mkfifo(root / "fifo")
    (root / "empty").mkdir()
    bad = root / "bad"
    bad.mkdir()
    for stem in ("shd_train", "shd_test"):
        (bad / f"{stem}.h5").write_bytes(b"not an HDF5 file\n")
    cases = []

    def config(name, settings, *words):
        f = root / f"{name}.json"
        f.write_text(json.dumps(settings))
        cases.append(CliCase(f"config-{name}", ["train", "--config", f, "--out", out, "--quiet"],
                             (f"config file '{f}'", *words), after=_absent(out)))

    def train(case_id, *argv, words=()):
        cases.append(CliCase(case_id, ["train", *argv, "--out", out, "--quiet"], words,
                             after=_absent(out)))

    def info(case_id, *argv, words=()):
        cases.append(CliCase(case_id, ["data", "info", *argv], words))

    # data info: names
    info("info-unknown", "spikes", words=("unknown dataset 'spikes'", "randman"))
    info("info-escape", "x\x1b[2J", words=("unknown dataset", "\\x1b[2J"))
    info("info-empty-name", "", words=("unknown dataset ''",))
    info("info-no-name", words=("required: name",))
    # data info: where the files are
    info("info-shd-no-dir", "shd", words=("shd is read from its published files",
                                          "--data-dir"))
    info("info-shd-missing-dir", "shd", "--data-dir", root / "nowhere",
         words=("does not exist",))
    info("info-shd-file-as-dir", "shd", "--data-dir", root / "afile", words=("is a file",))
    info("info-shd-fifo-as-dir", "shd", "--data-dir", root / "fifo",
         words=("is a named pipe (FIFO)",))
    info("info-shd-no-files", "shd", "--data-dir", root / "empty",
         words=("shd_train.h5", "does not exist", "zenkelab.org"))
    info("info-ssc-no-files", "ssc", "--data-dir", root / "empty",
         words=("ssc_train.h5", "SSC is published at"))
    info("info-nmnist-no-files", "nmnist", "--data-dir", root / "empty",
         words=("Train", "N-MNIST is published at"))
    info("info-shd-bad-file", "shd", "--data-dir", bad,
         words=("shd_train.h5", "cannot be read as HDF5"))
    info("info-mnist-missing", "mnist", "--data-dir", root / "empty",
         words=("dataset 'mnist' not found",))
    # train: event settings on the command line
    train("input-max-spikes-zero", "--dataset", "randman", "--input-max-spikes", "0",
          words=("input_max_spikes must be >= 1, got 0",))
    train("input-max-spikes-text", "--dataset", "randman", "--input-max-spikes", "abc",
          words=("--input-max-spikes", "invalid int value"))
    train("input-t-start-negative", "--dataset", "randman", "--input-t-start", "-1",
          words=("input_t_start must be >= 0",))
    train("input-t-start-nan", "--dataset", "randman", "--input-t-start", "nan",
          words=("input_t_start must be finite",))
    train("input-t-stop-before-start", "--dataset", "randman", "--input-t-start", "0.2",
          "--input-t-stop", "0.1", words=("input_t_stop must be > input_t_start (0.2)",))
    train("input-t-stop-zero", "--dataset", "randman", "--input-t-stop", "0",
          words=("input_t_stop must be > 0",))
    train("input-time-scale-zero", "--dataset", "randman", "--input-time-scale", "0",
          words=("input_time_scale must be > 0",))
    train("input-time-scale-inf", "--dataset", "randman", "--input-time-scale", "inf",
          words=("input_time_scale must be finite",))
    # train: settings of the other kind of data
    train("images-input-cap", "--dataset", "mnist", "--input-max-spikes", "3",
          words=("input_max_spikes 3 applies to events", "not to dataset mnist"))
    train("images-input-crop", "--preset", "mnist-count", "--input-t-stop", "1",
          words=("input_t_stop 1.0 applies to events",))
    train("events-augment", "--preset", "yinyang", "--augment", "elastic",
          words=("augment 'elastic' applies to images", "not to dataset yin-yang"))
    train("nmnist-conv-elastic", "--preset", "nmnist-conv", "--augment", "elastic",
          words=("augment 'elastic' applies to images",))
    # train: data that is not there
    train("train-shd-no-dir", "--dataset", "shd", words=("pass --data-dir",))
    train("train-ssc-no-files", "--preset", "ssc", "--data-dir", root / "empty",
          words=("ssc_train.h5", "does not exist"))
    train("train-nmnist-fifo", "--preset", "nmnist", "--data-dir", root / "fifo",
          words=("is a named pipe (FIFO)",))
    train("train-shd-bad-file", "--preset", "shd", "--data-dir", bad,
          words=("cannot be read as HDF5",))
    train("train-unknown-dataset", "--dataset", "n-mnist-2",
          words=("unknown dataset 'n-mnist-2'",))
    # a preset trained on events, for the study that feeds images
    cases.append(CliCase("dterr-event-preset", ["discretization-error", "--preset", "randman",
                                                "--dt", "1e-3", "--out", root / "dterr"],
                         ("discretization-error feeds images", "preset randman",
                          "pass --dataset")))
    # settings files
    config("options-unknown", {**TINY_RANDMAN, "dataset_options": {"n_chanels": 3}},
           "dataset_options: randman takes", "n_chanels")
    config("options-list", {**TINY_RANDMAN, "dataset_options": [3]},
           "dataset_options must be a table (dict) of options")
    config("options-classes", {**TINY_RANDMAN, "dataset_options": {"n_classes": -2}},
           "n_classes must be an integer in [1, 1000000], got -2")
    config("options-shd", {"dataset": "shd", "dataset_options": {"dim": 1}},
           "dataset_options: shd takes max_events; got dim")
    config("options-images", {"dataset": "mnist", "dataset_options": {"a": 1}},
           "mnist takes no options")
    config("input-dtype", {**TINY_RANDMAN, "input_dtype": "float16"},
           "input_dtype must be 'float32' or 'float64'")
    config("input-cap-float", {**TINY_RANDMAN, "input_max_spikes": 2.5},
           "input_max_spikes must be int")
    config("input-cap-huge", {**TINY_RANDMAN, "input_max_spikes": 10**30},
           "input_max_spikes must be at most")
    config("input-scale-text", {**TINY_RANDMAN, "input_time_scale": "fast"},
           "input_time_scale must be int or float")
    # option values the generator refuses, found when the data is made (the run has
    # started: its directory exists, nothing is trained)
    for name, options, words in (
            ("options-channels-zero", {"n_channels": 0}, ("dataset_options:", "n_channels")),
            ("options-alpha-text", {"alpha": "x"}, ("dataset_options:", "alpha")),
            ("options-fractions", {"fractions": [1, 2]}, ("dataset_options:", "fractions"))):
        f = root / f"{name}.json"
        f.write_text(json.dumps({**TINY_RANDMAN, "dataset_options": {
            **TINY_RANDMAN["dataset_options"], **options}}))
        cases.append(CliCase(f"config-{name}", ["train", "--config", f, "--out",
                                                root / f"{name}-run", "--quiet"], words))
    f = root / "yin-yang-sizes.json"
    f.write_text(json.dumps({"preset": "yinyang", "dataset_options": {"sizes": 5}}))
    cases.append(CliCase("config-yin-yang-sizes", ["train", "--config", f, "--out",
                                                   root / "yy-run", "--quiet"],
                         ("dataset_options:",)))
    # a network reading maps on channels without maps
    f = root / "conv-on-randman.json"
    f.write_text(json.dumps({**{k: v for k, v in TINY_RANDMAN.items()
                                if k not in ("hidden", "theta", "max_spikes")},
                             "network": [{"type": "conv2d", "channels": 2, "kernel": 3,
                                          "theta": 1, "max_spikes": 1},
                                         {"type": "flatten"},
                                         {"type": "linear", "theta": 1, "max_spikes": 1}]}))
    cases.append(CliCase("conv-on-channels", ["train", "--config", f, "--out",
                                              root / "conv-run", "--quiet"],
                         ("takes maps", "start it with a linear layer")))
    return cases


def test_event_cli_cases_in_process(tmp_path, capsys, monkeypatch):
    cases = make_cases(tmp_path / "cases")
    assert len(cases) >= 40
    check_cli_in_process(cases, capsys, monkeypatch, tmp_path / "cache")


@pytest.mark.slow
def test_event_cli_cases_as_real_commands(tmp_path):
    check_cli_commands(make_cases(tmp_path / "cases"), tmp_path / "cache")


def _tiny_dataset():
    from batsnn.experiments.datasets import randman

    return randman(n_classes=2, n_channels=3, samples_per_class=10)


def _lib_cases(tmp: Path) -> list[LibCase]:
    cfg = C.resolve_config(**TINY_RANDMAN)
    ds = _tiny_dataset()
    src = E.EventSource(ds, C.resolve_config(**{**TINY_RANDMAN, "dataset_options": {
        "n_classes": 2, "n_channels": 3, "samples_per_class": 10}}), "tiny")
    return [
        LibCase("dense-too-large", lambda: E.dense_split(ds, "train", max_bytes=8),
                (E.InputTooLarge,), ("16 samples x 3 channels x 1 spike slots", "MiB",
                                     "input_max_spikes, train_samples or input_t_stop")),
        LibCase("dense-too-many-samples", lambda: E.dense_split(ds, "test", 99), (ValueError,),
                ("test_samples must be in [1, 2] for randman, got 99",)),
        LibCase("dense-zero-samples", lambda: E.dense_split(ds, "test", 0), (ValueError,),
                ("test_samples must be in [1, 2]",)),
        LibCase("dense-bad-crop", lambda: E.dense_split(ds, "test", t_start=0.5, t_stop=0.1),
                (ValueError,), ("t_stop must be a number > t_start",)),
        LibCase("source-too-large", lambda: E.EventSource(ds, cfg, "tiny", max_bytes=8),
                (MemoryError,), ("spike slots",)),
        LibCase("source-draw", lambda: src.inputs("train", slice(0, 2), "cpu", dt=None,
                                                  draw=object()),
                (ValueError,), ("no augmentation",)),
        LibCase("source-unknown-split", lambda: src.inputs("valid", slice(0, 2), "cpu",
                                                           dt=None), (KeyError,), ("valid",)),
        LibCase("options-type", lambda: C.check_setting("dataset_options", "n_classes=3"),
                (TypeError,), ("dataset_options must be a table (dict) of options",)),
        LibCase("options-key", lambda: C.check_setting("dataset_options", {3: 1}),
                (TypeError,), ("dataset_options keys must be str, got 3",)),
        LibCase("options-deep", lambda: C.check_setting("dataset_options",
                                                        {"a": _deep(100_000)}),
                (ValueError,), ("dataset_options",)),
        LibCase("open-bad-sizes", lambda: open_source(C.resolve_config(
            "yinyang", dataset_options={"sizes": {"train": 0}})), (ValueError,),
            ("dataset_options:", "sizes['train'] must be an integer >= 1")),
        LibCase("open-nmnist-no-dir", lambda: open_source(C.resolve_config("nmnist")),
                (ValueError,), ("nmnist is read from its published files",)),
        LibCase("maps-on-flat", lambda: E.event_input_shape(
            [{"type": "pool2d", "kernel": 2}], ds), (ValueError,),
            ("pool2d takes maps", "(3,) channels")),
    ]


def _deep(depth):
    v = []
    for _ in range(depth):
        v = [v]
    return v


def test_library_cases(tmp_path):
    check_lib(_lib_cases(tmp_path / "lib"))


def test_run_with_a_bad_recorded_input_shape(tmp_path):
    from batsnn.experiments.runs import load_run_model
    from batsnn.experiments.train import train

    run = tmp_path / "run"
    train(C.resolve_config(**TINY_RANDMAN, out=str(run)), quiet=True, log=lambda line: None)
    cfg, model, _ = load_run_model(run)  # the recorded shape rebuilds the network
    assert cfg.dataset == "randman" and model[0].in_features == 4
    doc = json.loads((run / "config.json").read_text())
    for bad in ([], [0], "4", [True], [4.0]):
        (run / "config.json").write_text(json.dumps({**doc, "input_shape": bad}))
        with pytest.raises(ValueError, match="input_shape must be a list of positive integers"):
            load_run_model(run)
