"""Hostile input to the training runner: checkpoints whose optimizer state was changed (a
flipped bit, a crafted value) must stop ``--resume`` at once with one line naming
``last.pt``, never later as a diverged run; bad time-step modes and data-source requests
name what is wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from batsnn import cli
from batsnn.experiments.config import resolve_config
from batsnn.experiments.rundir import CheckpointError, load_run_checkpoint
from batsnn.experiments.sources import open_source
from batsnn.experiments.training.resume import optimizer_state_problem, restore_checkpoint
from batsnn.experiments.timestep import dt_mode
from tests.hostile.harness import (CliCase, LibCase, check_cli_commands, check_cli_in_process,
                                   check_lib)


def _train(data_dir, *extra):
    return ["train", "--preset", "mnist-count", "--dataset", "fashion-mnist", "--data-dir",
            str(data_dir), "--hidden", "16", "--theta", "0.2,0.4", "--max-spikes", "6,6",
            "--batch-size", "10", "--eval-batch-size", "20", "--train-samples", "20",
            "--test-samples", "10", "--epochs", "1", "--quiet", "--device", "cpu",
            *map(str, extra)]


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory):
    """A finished one-epoch run (two optimizer steps)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert cli.main(_train(data_dir, "--out", out)) == 0
    return out


def _first_state(ck):
    """The optimizer state of the first parameter."""
    return next(iter(ck["optimizer"]["state"].values()))


def _set_moment(name, value):
    def mutate(ck):
        st = _first_state(ck)
        st[name].view(-1)[0] = value
    return mutate


def _set_step(value):
    def mutate(ck):
        _first_state(ck)["step"] = value
    return mutate


def _set_group(name, value):
    def mutate(ck):
        ck["optimizer"]["param_groups"][0][name] = value
    return mutate


def _largest(ck):
    """The index of the first parameter's element with the largest first moment."""
    return int(_first_state(ck)["exp_avg"].abs().argmax())


def _flip_bit(name, bit=None):
    """One flipped exponent bit of a float32 moment, at the element with the largest first
    moment: ``bit`` set (a far larger value), or by default the highest exponent bit that
    is set cleared (a far smaller one)."""
    def mutate(ck):
        i = _largest(ck)
        bits = _first_state(ck)[name].view(torch.int32).view(-1)
        b = bit if bit is not None else max(k for k in range(23, 31) if int(bits[i]) >> k & 1)
        assert bit is None or not int(bits[i]) >> bit & 1
        bits[i] ^= 1 << b
    return mutate


def _scale_moment(name, factor):
    def mutate(ck):
        _first_state(ck)[name].view(-1)[_largest(ck)] *= factor
    return mutate


MADE = "exp_avg and exp_avg_sq that Adam cannot have made"

#: (case id, change to last.pt, words of the message besides the file)
OPTIMIZER_CASES = [
    ("exp-avg-nan", _set_moment("exp_avg", float("nan")), ("exp_avg", "NaN or infinite")),
    ("exp-avg-inf", _set_moment("exp_avg", float("-inf")), ("exp_avg", "NaN or infinite")),
    ("exp-avg-bit", _flip_bit("exp_avg", 30), (MADE,)),
    ("exp-avg-sq-bit", _flip_bit("exp_avg_sq"), (MADE,)),
    ("exp-avg-large", _scale_moment("exp_avg", 1e3), (MADE, "7.27 sqrt(exp_avg_sq)")),
    ("exp-avg-sq-small", _scale_moment("exp_avg_sq", 1e-6), (MADE,)),
    ("exp-avg-sq-nan", _set_moment("exp_avg_sq", float("nan")), ("exp_avg_sq",)),
    ("exp-avg-sq-negative", _set_moment("exp_avg_sq", -1.0),
     ("exp_avg_sq", "negative values")),
    ("step-negative", _set_step(torch.tensor(-1.0)), ("step count of -1.0",)),
    ("step-fraction", _set_step(torch.tensor(1.5)), ("step count of 1.5",)),
    ("step-nan", _set_step(torch.tensor(float("nan"))), ("step count of nan",)),
    ("step-beyond-run", _set_step(torch.tensor(2.0**31)), ("step count", "took 2 steps")),
    ("step-text", _set_step("2"), ("step count that is not a number",)),
    ("lr-inf", _set_group("lr", float("inf")), ("lr of inf",)),
    ("lr-negative", _set_group("lr", -0.003), ("lr of -0.003",)),
    ("lr-zero", _set_group("lr", 0.0), ("lr of 0.0",)),
    ("lr-off-schedule", _set_group("lr", 1e30), ("lr of 1e+30", "schedule gives 0.003")),
    ("lr-bit", _set_group("lr", torch.tensor(0.003 * 2.0**64)), ("lr of", "schedule gives")),
    ("initial-lr-nan", _set_group("initial_lr", float("nan")), ("initial_lr of nan",)),
    ("eps-zero", _set_group("eps", 0.0), ("eps of 0.0",)),
    ("weight-decay-negative", _set_group("weight_decay", -1.0), ("weight_decay of -1.0",)),
    ("betas-one", _set_group("betas", (0.9, 1.0)), ("betas of (0.9, 1.0)",)),
    ("betas-three", _set_group("betas", (0.9, 0.99, 0.5)), ("betas",)),
    ("betas-text", _set_group("betas", "0.9"), ("betas",)),
]


def _corrupted(run_dir: Path, root: Path, name: str, mutate) -> Path:
    d = root / name
    shutil.copytree(run_dir, d)
    ck = torch.load(d / "last.pt", weights_only=True)
    mutate(ck)
    torch.save(ck, d / "last.pt")
    return d


def _untouched(d: Path):
    """A check that no file of ``d`` is added, removed or rewritten from now on (content
    and modification time)."""
    def snapshot():
        return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.iterdir())}

    before = snapshot()

    def check():
        after = snapshot()
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert not changed, f"{d}: {changed} changed by a refused resume"
    return check


def cli_cases(run_dir: Path, data_dir: Path, root: Path) -> list[CliCase]:
    """Every optimizer-state case as ``batsnn train --resume`` of the corrupted run, and one
    untouched run that resumes."""
    cases = []
    for name, mutate, words in OPTIMIZER_CASES:
        d = _corrupted(run_dir, root, name, mutate)
        cases.append(CliCase(name, _train(data_dir, "--out", d, "--epochs", "2", "--resume"),
                             (str(d / "last.pt"), "optimizer state with", *words),
                             after=_untouched(d)))
    # the run's other files, edited, are not rewritten from last.pt before every check passed
    for name, mutate, words in (c for c in OPTIMIZER_CASES
                                if c[0] in ("exp-avg-nan", "exp-avg-sq-negative", "lr-inf")):
        d = _corrupted(run_dir, root, f"{name}-edited-files", mutate)
        (d / "metrics.csv").write_text("epoch,test_accuracy\n")
        (d / "summary.json").unlink()
        cases.append(CliCase(f"{name}-edited-files",
                             _train(data_dir, "--out", d, "--epochs", "2", "--resume"),
                             (str(d / "last.pt"), *words), after=_untouched(d)))
    d = root / "other-settings"
    shutil.copytree(run_dir, d)
    cases.append(CliCase("other-settings", _train(data_dir, "--out", d, "--epochs", "2",
                                                  "--resume", "--lr", "0.5"),
                         ("settings differ", "last.pt", "lr"), after=_untouched(d)))
    d = root / "intact"
    shutil.copytree(run_dir, d)
    cases.append(CliCase("intact", _train(data_dir, "--out", d, "--epochs", "2", "--resume"),
                         status=0,
                         after=lambda: load_run_checkpoint(d / "last.pt")["epoch"] == 2
                         or pytest.fail("the intact run did not resume")))
    return cases


def test_corrupted_optimizer_state_in_process(run_dir, data_dir, tmp_path, capsys,
                                              monkeypatch):
    check_cli_in_process(cli_cases(run_dir, data_dir, tmp_path), capsys, monkeypatch,
                         tmp_path / "cache")


@pytest.mark.slow
def test_corrupted_optimizer_state_as_commands(run_dir, data_dir, tmp_path):
    check_cli_commands(cli_cases(run_dir, data_dir, tmp_path), tmp_path / "cache")


def _restore(run_dir, data_dir, mutate):
    """``restore_checkpoint`` of the run's ``last.pt`` changed by ``mutate`` into a fresh
    network and optimizer of the run's settings."""
    from batsnn.experiments.model import build_model

    ck = load_run_checkpoint(run_dir / "last.pt")
    mutate(ck)
    cfg = resolve_config("mnist-count", dataset="fashion-mnist", data_dir=str(data_dir),
                         hidden=[16], theta=[0.2, 0.4], max_spikes=[6, 6])
    model = build_model(cfg, 784, 10)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    restore_checkpoint(ck, model, opt, sched, run_dir / "last.pt")
    return opt


def test_library_calls(run_dir, data_dir):
    cfg = resolve_config("mnist-count", dataset="fashion-mnist", data_dir=str(data_dir))
    source = open_source(cfg)
    cases = [LibCase(f"restore-{name}",
                     lambda mutate=mutate: _restore(run_dir, data_dir, mutate),
                     (CheckpointError,), (str(run_dir / "last.pt"), *words))
             for name, mutate, words in OPTIMIZER_CASES[:6]]
    cases += [
        LibCase("restore-intact", lambda: _restore(run_dir, data_dir, lambda ck: None), (),
                after=lambda opt: (opt.state and all(int(st["step"]) == 2
                                                     for st in opt.state.values()))
                or pytest.fail("the optimizer state was not restored")),
        LibCase("problem-intact", lambda: optimizer_state_problem(
            load_run_checkpoint(run_dir / "last.pt")["optimizer"],
            _restore(run_dir, data_dir, lambda ck: None), 2), (),
            after=lambda why: why is None or pytest.fail(why)),
        LibCase("dt-mode-unknown", lambda: dt_mode("wobble"), (ValueError,),
                ("dt_mode must be 'fixed'", "'consistent'", "got 'wobble'")),
        LibCase("dt-mode-none", lambda: dt_mode(None), (ValueError,), ("got None",)),
        LibCase("dt-mode-list", lambda: dt_mode(["fixed"]), (ValueError,), ("got ['fixed']",)),
        LibCase("dt-mode-case", lambda: dt_mode("Fixed"), (ValueError,), ("got 'Fixed'",)),
        LibCase("split-unknown", lambda: source.split("validation"), (ValueError,),
                ("split must be one of train, test", "'validation'")),
        LibCase("split-none", lambda: source.split(None), (ValueError,), ("got None",)),
        LibCase("open-source-missing-dir", lambda: open_source(resolve_config(
            "mnist-count", dataset="fashion-mnist", data_dir=str(data_dir / "nowhere"))),
            (FileNotFoundError,), (str(data_dir / "nowhere"), "does not exist")),
        LibCase("open-source-too-many", lambda: open_source(resolve_config(
            "mnist-count", dataset="fashion-mnist", data_dir=str(data_dir),
            train_samples=61)), (ValueError,), ("train_samples must be in [1, 60]", "61")),
    ]
    check_lib(cases)
