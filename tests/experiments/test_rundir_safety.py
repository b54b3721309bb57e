"""batsnn.experiments.rundir's guarantees: the safe writer never follows planted links,
strict JSON, output directories are checked before anything is written, and checkpoints
are loaded without running code."""

import io
import json
import math
import os
import pickle

import numpy as np
import pytest
import torch

from batsnn.experiments import rundir as R


def _strict(text):
    """Parse JSON refusing NaN/Infinity (what strict parsers in other languages do)."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def victim(tmp_path):
    """A file outside the output directory that a planted link points at."""
    v = tmp_path / "outside" / "victim.txt"
    v.parent.mkdir()
    v.write_text("precious")
    return v


def test_planted_links_at_temporary_and_final_names_are_not_followed(tmp_path, victim):
    out = tmp_path / "out"
    out.mkdir()
    # the names the old writers used for their temporary files, and the target itself
    for name in ("summary.json.tmp", "metrics.csv.tmp", "learning_curves.tmp.png",
                 "last.pt.tmp", "train-images-idx3-ubyte.tmp"):
        (out / name).symlink_to(victim)
    (out / "config.json").symlink_to(victim)
    R.write_json(out / "summary.json", {"a": 1})
    R.write_csv(out / "metrics.csv", [{"epoch": 1}])
    R.save_checkpoint(out / "last.pt", {"w": torch.ones(2)})
    R.write_json(out / "config.json", {"b": 2})  # replaces the link, not its target
    from batsnn.experiments import data, plots

    import matplotlib.pyplot as plt

    fig, _ = plt.subplots()
    plots.save_png(fig, out / "learning_curves.png")
    data.write_idx(out / "train-images-idx3-ubyte", np.zeros((2, 3, 3), np.uint8))
    assert victim.read_text() == "precious"
    assert not (out / "config.json").is_symlink()
    assert R.read_json(out / "config.json") == {"b": 2}
    assert (out / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    # no temporary file is left behind
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_atomic_write_keeps_the_old_file_and_leaves_no_temporary_on_failure(tmp_path,
                                                                             monkeypatch):
    p = tmp_path / "f.txt"
    R.atomic_write(p, b"old")

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(R.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        R.atomic_write(p, b"new")
    assert p.read_bytes() == b"old" and [q.name for q in tmp_path.iterdir()] == ["f.txt"]


def test_written_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        R._UMASK = None
        R.atomic_write(tmp_path / "f", b"x")
    finally:
        os.umask(old)
        R._UMASK = None
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644


def test_json_is_strict_nonfinite_numbers_become_null(tmp_path):
    obj = {"nan": math.nan, "inf": -math.inf, "np": np.float32(0.5), "i": np.int64(3),
           "nested": [1.0, math.inf, {"x": np.float64("nan")}], "ok": 2.5, "flag": np.bool_(1)}
    R.write_json(tmp_path / "s.json", obj)
    back = _strict((tmp_path / "s.json").read_text())
    assert back == {"nan": None, "inf": None, "np": 0.5, "i": 3,
                    "nested": [1.0, None, {"x": None}], "ok": 2.5, "flag": True}
    with pytest.raises(TypeError, match="Tensor is not JSON serialisable"):
        R.write_json(tmp_path / "t.json", {"t": torch.ones(1)})


# ----------------------------------------------------------------------------- output dirs

def test_prepare_out_accepts_new_empty_and_own_runs_only(tmp_path):
    assert R.prepare_out(tmp_path / "new" / "run", "train") is False
    assert (tmp_path / "new" / "run").is_dir()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert R.prepare_out(empty, "train") is False

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "config.json").write_text('{"lr": 1}')  # the user's own config.json
    with pytest.raises(R.OutDirError, match="not empty and holds no batsnn output .*config"):
        R.prepare_out(theirs, "train", resume=True)
    assert (theirs / "config.json").read_text() == '{"lr": 1}'

    ours = tmp_path / "ours"
    ours.mkdir()
    R.write_json(ours / "config.json", {R.MARKER: "train"})
    with pytest.raises(R.RunExists, match="pass --resume"):
        R.prepare_out(ours, "train")
    assert R.prepare_out(ours, "train", resume=True) is True
    with pytest.raises(R.OutDirError, match="holds a batsnn train output, not a sweep run"):
        R.prepare_out(ours, "sweep", resume=True)


def test_prepare_out_refuses_files_links_and_unwritable_directories(tmp_path, monkeypatch):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(R.OutDirError, match="is a file, not a directory"):
        R.prepare_out(f, "train")
    with pytest.raises(R.OutDirError, match=f"cannot be created: '{f}' is a file"):
        R.prepare_out(f / "a" / "b", "train")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(R.OutDirError, match="broken symbolic link"):
        R.prepare_out(tmp_path / "dangling", "train")

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(R.tempfile, "mkstemp", denied)
    with pytest.raises(R.OutDirError, match="is not writable .Permission denied."):
        R.prepare_out(tmp_path / "ro", "train")


def test_make_subdir_refuses_a_planted_link(tmp_path, victim):
    (tmp_path / "parts").symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(R.OutDirError, match="symbolic link"):
        R.make_subdir(tmp_path, "parts")
    assert R.make_subdir(tmp_path, "runs").is_dir()


# ----------------------------------------------------------------------------- checkpoints

class _Payload:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_crafted_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"model": _Payload(marker)}, tmp_path / "last.pt")
    # the same file, loaded unsafely, would run it (that is what the loader must avoid)
    with pytest.raises(R.CheckpointError,
                       match=r"holds objects other than tensors and plain values \(posix.system\)"):
        R.load_checkpoint(tmp_path / "last.pt")
    assert not marker.exists()
    # a plain pickle (not a torch.save archive) is not unpickled at all
    (tmp_path / "plain.pt").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(R.CheckpointError, match="not a torch.save archive"):
        R.load_checkpoint(tmp_path / "plain.pt")
    assert not marker.exists()


def test_checkpoint_rng_states_are_plain_and_round_trip(tmp_path):
    torch.manual_seed(5)
    np.random.seed(5)
    import random

    random.seed(5)
    np.random.standard_normal()  # numpy's cached gaussian is part of the state
    R.save_checkpoint(tmp_path / "c.pt", {"rng": R.rng_state()})
    draws = (torch.rand(3), np.random.rand(3), np.random.standard_normal(), random.random())
    ck = torch.load(tmp_path / "c.pt", weights_only=True)  # loads without allow-listing
    R.set_rng_state(R.load_checkpoint(tmp_path / "c.pt")["rng"])
    again = (torch.rand(3), np.random.rand(3), np.random.standard_normal(), random.random())
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1])
    assert draws[2:] == again[2:]
    bad = dict(ck["rng"], numpy={**ck["rng"]["numpy"], "keys": torch.zeros(3, dtype=torch.int64)})
    with pytest.raises(ValueError, match="numpy must be an MT19937 state"):
        R.set_rng_state(bad)


def _run_checkpoint(**changes):
    ck = {"batsnn_checkpoint": R.CHECKPOINT_FORMAT, "epoch": 2, "step": 10,
          "model": {"0.weight": torch.zeros(2, 3)},
          "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]},
          "scheduler": None, "rng": R.rng_state(), "config": {},
          "history": [{"epoch": 1, "test_accuracy": 0.5}, {"epoch": 2, "test_accuracy": 0.6}]}
    ck.update(changes)
    return ck


@pytest.mark.parametrize("changes, words", [
    ({"batsnn_checkpoint": None}, "no format-2 marker"),
    ({"epoch": 0}, "epoch must be an int >= 1"),
    ({"step": -1}, "step must be an int >= 0"),
    ({"model": {"w": [1.0]}}, "model must be a dict of named tensors"),
    ({"optimizer": [1]}, "optimizer must be an optimizer state dict"),
    ({"scheduler": 3}, "scheduler must be a dict or None"),
    ({"history": [{"epoch": 1, "test_accuracy": 0.5}]}, "one metrics row per completed epoch"),
    ({"history": [{"epoch": 1, "test_accuracy": 0.5}, {"epoch": 5, "test_accuracy": 0.6}]},
     "history row 1 is not the metrics row of epoch 2"),
    ({"config": "x"}, "config must be a dict"),
    ({"rng": {"torch": torch.zeros(3, dtype=torch.uint8)}}, "rng state: torch must be"),
], ids=lambda v: str(v)[:30] if isinstance(v, str) else None)
def test_run_checkpoints_are_checked_when_loaded(tmp_path, changes, words):
    R.save_checkpoint(tmp_path / "last.pt", _run_checkpoint(**changes))
    with pytest.raises(R.CheckpointError, match=words.replace("(", r"\(")):
        R.load_run_checkpoint(tmp_path / "last.pt")
    R.save_checkpoint(tmp_path / "ok.pt", _run_checkpoint())
    assert R.load_run_checkpoint(tmp_path / "ok.pt")["epoch"] == 2


def test_truncated_missing_and_non_dict_checkpoints(tmp_path):
    R.save_checkpoint(tmp_path / "c.pt", _run_checkpoint())
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[:len(data) // 3])
    with pytest.raises(R.CheckpointError, match="cannot be read .truncated or corrupt"):
        R.load_checkpoint(tmp_path / "t.pt")
    with pytest.raises(R.CheckpointError, match="does not exist"):
        R.load_checkpoint(tmp_path / "none.pt")
    buf = io.BytesIO()
    torch.save([1, 2], buf)
    (tmp_path / "list.pt").write_bytes(buf.getvalue())
    with pytest.raises(R.CheckpointError, match="does not hold a dict of state, got list"):
        R.load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(TypeError, match="set is not JSON serialisable"):
        R.save_checkpoint(tmp_path / "s.pt", {"s": {1}})
