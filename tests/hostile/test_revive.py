"""Hostile settings of the remedy for silent neurons (``revive``, ``revive_bump``): on the
command line, in a settings file and through the library, each ends in one line or one
``ValueError``/``TypeError`` naming the setting and the value; nothing is trained or
written. A resumed run may not change them."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from batsnn import cli
from batsnn.experiments.config import check_setting, resolve_config
from batsnn.experiments.training.revive import Reviver, covered_layers
from batsnn.nn import LIFLinear, SpikingSequential
from tests.hostile.harness import (CliCase, LibCase, check_cli_commands, check_cli_in_process,
                                   check_lib)


def _train(data_dir, out, *extra):
    return ["train", "--preset", "mnist-count", "--dataset", "fashion-mnist", "--data-dir",
            str(data_dir), "--hidden", "8", "--theta", "0.2,0.4", "--max-spikes", "4,4",
            "--batch-size", "10", "--eval-batch-size", "20", "--train-samples", "20",
            "--test-samples", "10", "--epochs", "1", "--quiet", "--device", "cpu", "--out",
            str(out), *map(str, extra)]


def _absent(path: Path):
    def check():
        assert not os.path.lexists(path), f"{path} was created"
    return check


def _file(tmp_path: Path, name: str, settings: dict) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(settings))
    return p


def cli_cases(data_dir, tmp_path: Path) -> list[CliCase]:
    out = tmp_path / "never"
    cases = [
        CliCase("mode-unknown", _train(data_dir, out, "--revive", "hidden"),
                ("--revive", "invalid choice", "'hidden'"), after=_absent(out)),
        CliCase("mode-case", _train(data_dir, out, "--revive", "Output"),
                ("--revive", "'Output'"), after=_absent(out)),
        CliCase("mode-empty", _train(data_dir, out, "--revive", ""), ("--revive",),
                after=_absent(out)),
        CliCase("bump-zero", _train(data_dir, out, "--revive-bump", "0"),
                ("revive_bump must be > 0", "0.0"), after=_absent(out)),
        CliCase("bump-negative", _train(data_dir, out, "--revive-bump", "-0.5"),
                ("revive_bump must be > 0", "-0.5"), after=_absent(out)),
        CliCase("bump-nan", _train(data_dir, out, "--revive-bump", "nan"),
                ("revive_bump must be finite", "nan"), after=_absent(out)),
        CliCase("bump-inf", _train(data_dir, out, "--revive-bump", "inf"),
                ("revive_bump must be finite", "inf"), after=_absent(out)),
        CliCase("bump-word", _train(data_dir, out, "--revive-bump", "lots"),
                ("--revive-bump", "invalid float value", "'lots'"), after=_absent(out)),
    ]
    files = {
        "file-mode-number": ({"revive": 1}, ("revive must be str", "1")),
        "file-mode-list": ({"revive": ["output"]}, ("revive must be str", "['output']")),
        "file-mode-unknown": ({"revive": "every"}, ("revive must be", "'every'")),
        "file-mode-control": ({"revive": "out\x1bput"}, ("revive must be", "\\x1b")),
        "file-bump-bool": ({"revive_bump": True}, ("revive_bump must be int or float",
                                                  "True")),
        "file-bump-string": ({"revive_bump": "0.1"}, ("revive_bump must be int or float",
                                                     "'0.1'")),
        "file-bump-null": ({"revive_bump": None}, ("revive_bump must be int or float",
                                                  "None")),
        "file-bump-huge": ({"revive_bump": 10**400}, ("revive_bump", "digits")),
    }
    for name, (settings, words) in files.items():
        f = _file(tmp_path, f"{name}.json", settings)
        cases.append(CliCase(name, _train(data_dir, out, "--config", f),
                             (f"config file '{f}'", *words), after=_absent(out)))
    return cases


def test_bad_revive_settings_in_process(data_dir, tmp_path, capsys, monkeypatch):
    check_cli_in_process(cli_cases(data_dir, tmp_path), capsys, monkeypatch, tmp_path / "cache")


@pytest.mark.slow
def test_bad_revive_settings_as_commands(data_dir, tmp_path):
    check_cli_commands(cli_cases(data_dir, tmp_path), tmp_path / "cache")


def test_a_resumed_run_keeps_its_revive_settings(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(_train(data_dir, run, "--revive", "output")) == 0
    cases = [
        CliCase("resume-mode", _train(data_dir, run, "--epochs", "2", "--resume", "--revive",
                                      "none"),
                ("--resume: settings differ", "revive 'output' -> 'none'")),
        CliCase("resume-bump", _train(data_dir, run, "--epochs", "2", "--resume",
                                      "--revive", "output", "--revive-bump", "0.5"),
                ("--resume: settings differ", "revive_bump 0.001 -> 0.5")),
    ]
    capsys.readouterr()
    for case in cases:
        rc = cli.main(case.argv)
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1, (case.id, err)
        assert all(w in err for w in case.words), (case.id, err)


def _net():
    return SpikingSequential(LIFLinear(3, 2, tau_s=0.13, theta=0.2, max_spikes=2))


def test_library_calls():
    check_lib([
        LibCase("resolve-mode", lambda: resolve_config("mnist-count", revive="outputs"),
                (ValueError,), ("revive must be 'none', 'output', 'all'", "'outputs'")),
        LibCase("resolve-mode-type", lambda: resolve_config(revive=b"all"), (TypeError,),
                ("revive must be str", "b'all'")),
        LibCase("resolve-bump-neg", lambda: resolve_config(revive_bump=-1e-3), (ValueError,),
                ("revive_bump must be > 0", "-0.001")),
        LibCase("resolve-bump-tensor", lambda: resolve_config(revive_bump=torch.tensor(0.1)),
                (TypeError,), ("revive_bump must be int or float",)),
        LibCase("check-bump-nan", lambda: check_setting("revive_bump", math.nan),
                (ValueError,), ("revive_bump must be finite", "nan")),
        LibCase("check-ok", lambda: check_setting("revive_bump", 1), (),
                after=lambda v: isinstance(v, float) and v == 1.0),
        LibCase("covered-mode", lambda: covered_layers(_net(), "output "), (ValueError,),
                ("revive must be one of", "'output '")),
        LibCase("reviver-mode", lambda: Reviver(_net(), None, 0.1), (ValueError,),
                ("revive must be one of", "None")),
        LibCase("reviver-bump-zero", lambda: Reviver(_net(), "output", 0.0), (ValueError,),
                ("revive_bump must be a finite number > 0", "0.0")),
        LibCase("reviver-bump-inf", lambda: Reviver(_net(), "all", math.inf), (ValueError,),
                ("revive_bump must be a finite number > 0", "inf")),
        LibCase("reviver-bump-str", lambda: Reviver(_net(), "all", "0.1"), (ValueError,),
                ("revive_bump must be a finite number > 0", "'0.1'")),
    ])
