"""batsnn.experiments.rundir: atomic files, checkpoints, RNG states, the run layout."""

import math
import random

import numpy as np
import pytest
import torch

from batsnn.experiments import rundir as R


def test_atomic_write_replaces_whole_files_only(tmp_path, monkeypatch):
    p = tmp_path / "f.txt"
    R.atomic_write(p, b"first")
    R.atomic_write(p, b"second")
    assert p.read_bytes() == b"second" and [q.name for q in tmp_path.iterdir()] == ["f.txt"]

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(R.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        R.atomic_write(p, b"third")
    assert p.read_bytes() == b"second"  # the old content survives a failed write


def test_json_and_csv_round_trip(tmp_path):
    obj = {"a": 1, "b": [1.5, "x"], "nan": math.nan}
    R.write_json(tmp_path / "x.json", obj)
    back = R.read_json(tmp_path / "x.json")
    # strict JSON: a non-finite number is written as null
    assert back == {"a": 1, "b": [1.5, "x"], "nan": None}
    with pytest.raises(TypeError, match="set is not JSON serialisable"):
        R.write_json(tmp_path / "y.json", {"s": {1}})
    rows = [{"epoch": 1, "acc": 0.5}, {"epoch": 2, "acc": 0.75}]
    R.write_csv(tmp_path / "m.csv", rows)
    assert R.read_csv(tmp_path / "m.csv") == [{"epoch": "1", "acc": "0.5"},
                                              {"epoch": "2", "acc": "0.75"}]
    R.write_csv(tmp_path / "empty.csv", [])
    assert R.read_csv(tmp_path / "empty.csv") == []


def test_checkpoint_and_rng_state_round_trip(tmp_path):
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    state = R.rng_state()
    draws = (torch.rand(3), np.random.rand(3), random.random())
    R.save_checkpoint(tmp_path / "c.pt", {"rng": state, "w": torch.arange(4.0)})
    ck = R.load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(ck["w"], torch.arange(4.0))
    torch.rand(10), np.random.rand(10), random.random()  # move every RNG on
    R.set_rng_state(ck["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1])
    assert draws[2] == again[2]


def test_run_dir_layout(tmp_path):
    run = R.RunDir(str(tmp_path / "run"))
    assert run.config.name == "config.json" and run.metrics.name == "metrics.csv"
    assert run.summary.name == "summary.json" and run.last.name == "last.pt"
    assert run.best.name == "best.pt" and run.file("raster.png").parent == run.path
    assert not run.has_checkpoint() and run.epochs_completed() == 0
    run.path.mkdir()
    run.summary.write_text("{not json")
    assert run.epochs_completed() == 0  # unreadable: not finished
    R.write_json(run.summary, {"epochs_completed": 3})
    assert run.is_finished(3) and not run.is_finished(4)
    R.save_checkpoint(run.last, {})
    assert run.has_checkpoint()
