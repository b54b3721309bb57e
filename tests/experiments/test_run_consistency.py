"""Nothing overwritten, nothing reported wrong: the checkpoint is a run's source of truth
(stale metrics.csv/summary.json are rewritten from it), sweeps continue only what they
started and only with the same settings, and every experiment refuses directories that are
not its own."""

import dataclasses
import json
import shutil

import pytest

from batsnn import metrics as M
from batsnn.experiments import convergence as cv
from batsnn.experiments import sweep as S
from batsnn.experiments import rundir as R
from batsnn.experiments import train as T
from batsnn.experiments.config import resolve_config
from batsnn.experiments.dterr import run_discretization_error
from batsnn.experiments.rundir import (CheckpointError, OutDirError, load_run_checkpoint,
                                       read_csv, read_json)

TINY = dict(dataset="fashion-mnist", hidden=[16], max_spikes=[6, 6], theta=[0.2, 0.4],
            batch_size=10, eval_batch_size=20, device="cpu", train_samples=30,
            test_samples=10)
TIMING = (M.TRAIN_SECONDS, M.EPOCH_SECONDS)


def _strict_json(path):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name} in {path}")
    return json.loads(path.read_text(), parse_constant=refuse)


def _untimed(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _kill_after_last_checkpoint(monkeypatch, epoch):
    """Make the run stop (as if killed) right after ``last.pt`` of ``epoch`` is in place,
    before ``best.pt``, ``metrics.csv`` and ``summary.json`` are written."""
    real_save, real_csv = T.save_checkpoint, T.write_csv

    def save(path, ck):
        if path.name == "best.pt" and ck["epoch"] == epoch:
            raise KeyboardInterrupt
        real_save(path, ck)

    def csv(path, rows):
        if len(rows) == epoch:
            raise KeyboardInterrupt
        real_csv(path, rows)

    monkeypatch.setattr(T, "save_checkpoint", save)
    monkeypatch.setattr(T, "write_csv", csv)


def test_resume_rewrites_files_left_stale_by_a_kill(data_dir, tmp_path, monkeypatch):
    cfg = lambda out: resolve_config("mnist-count", **TINY, data_dir=str(data_dir),  # noqa: E731
                                     epochs=2, out=str(out))
    full = T.train(cfg(tmp_path / "full"), quiet=True)

    _kill_after_last_checkpoint(monkeypatch, epoch=2)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg(tmp_path / "killed"), quiet=True)
    monkeypatch.undo()
    run = tmp_path / "killed"
    assert load_run_checkpoint(run / "last.pt")["epoch"] == 2
    assert read_json(run / "summary.json")[M.EPOCHS_COMPLETED] == 1  # stale
    assert len(read_csv(run / "metrics.csv")) == 1

    resumed = T.train(cfg(run), resume=True, quiet=True)  # nothing left to train
    ck = load_run_checkpoint(run / "last.pt")
    assert _strict_json(run / "summary.json") == R._finite_or_null(T.summary_of(ck["history"]))
    assert resumed[M.TEST_ACCURACY] == full[M.TEST_ACCURACY]
    assert resumed[M.EPOCHS_COMPLETED] == 2
    assert _untimed(read_csv(run / "metrics.csv")) == _untimed(read_csv(tmp_path / "full" /
                                                                        "metrics.csv"))
    best = T.best_epoch(ck["history"])
    assert load_run_checkpoint(run / "best.pt")["epoch"] == best
    assert load_run_checkpoint(tmp_path / "full" / "best.pt")["epoch"] == best


def test_a_missing_best_checkpoint_is_restored_when_it_is_the_last(data_dir, tmp_path):
    cfg = resolve_config("mnist-count", **TINY, data_dir=str(data_dir), epochs=1,
                         out=str(tmp_path / "run"))
    T.train(cfg, quiet=True)
    (tmp_path / "run" / "best.pt").unlink()
    (tmp_path / "run" / "summary.json").write_text("{}")
    T.train(cfg, resume=True, quiet=True)
    assert load_run_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 1
    summary = _strict_json(tmp_path / "run" / "summary.json")  # strict JSON: null, not NaN
    assert summary[M.EPOCHS_COMPLETED] == 1


def test_train_refuses_directories_that_are_not_its_runs(data_dir, tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "config.json").write_text('{"dataset": "my own"}')
    cfg = resolve_config("mnist-count", **TINY, data_dir=str(data_dir), epochs=1, out=str(d))
    for resume in (False, True):
        with pytest.raises(OutDirError, match="holds no batsnn output"):
            T.train(cfg, resume=resume, quiet=True)
    assert (d / "config.json").read_text() == '{"dataset": "my own"}'
    sweep = tmp_path / "sweep"
    S.run_sweep(resolve_config("mnist-count", **TINY, data_dir=str(data_dir), epochs=1), [0],
                [1], sweep, jobs=1, log=lambda line: None)
    cfg.out = str(sweep)
    with pytest.raises(OutDirError, match="holds a batsnn sweep output, not a train run"):
        T.train(cfg, resume=True, quiet=True)


# ----------------------------------------------------------------------------- sweeps

@pytest.fixture(scope="module")
def _sweep_once(data_dir, tmp_path_factory):
    base = resolve_config("mnist-count", **TINY, data_dir=str(data_dir), epochs=1)
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    rows = S.run_sweep(base, [0, 0.004], [1], out, jobs=1, log=lambda line: None)
    return base, out, rows


@pytest.fixture
def finished_sweep(_sweep_once, tmp_path):
    """A finished sweep (2 dt x 1 seed, 1 epoch), copied for each test."""
    base, out, rows = _sweep_once
    return base, shutil.copytree(out, tmp_path / "sweep"), rows


def test_a_sweep_reports_the_checkpoint_not_stale_files(finished_sweep):
    base, out, rows = finished_sweep
    run = out / "runs" / S.run_name(0.004, 1)
    stale = read_json(run / "summary.json")
    stale[M.TEST_ACCURACY] = 0.987
    (run / "summary.json").write_text(json.dumps(stale))
    (run / "metrics.csv").write_text("epoch,train_seconds\n")
    lines = []
    again = S.run_sweep(base, [0, 0.004], [1], out, jobs=1, log=lines.append)
    assert "2 finished already, 0 to train" in lines[0]
    truth = load_run_checkpoint(run / "last.pt")["history"][-1][M.TEST_ACCURACY]
    assert again[1][M.TEST_ACCURACY] == truth == rows[1][M.TEST_ACCURACY] != 0.987
    assert read_json(run / "summary.json")[M.TEST_ACCURACY] == truth
    assert float(read_csv(out / "sweep.csv")[1][M.TEST_ACCURACY]) == truth


@pytest.mark.parametrize("change, words", [
    (dict(hidden=[7]), "network .*'features': 16.* -> .*'features': 7"),
    (dict(lr=0.05), "lr 0.003 -> 0.05"),
], ids=["hidden", "lr"])
def test_a_sweep_rerun_with_other_settings_is_refused(finished_sweep, data_dir, change, words):
    base, out, _ = finished_sweep
    before = {p: p.read_bytes() for p in (out / "sweep.csv", out / "report.md")}
    other = resolve_config("mnist-count", **{**TINY, **change}, data_dir=str(data_dir),
                           epochs=1)
    with pytest.raises(S.SettingsMismatch, match=f"holds a sweep with other settings: {words}"):
        S.run_sweep(other, [0, 0.004], [1], out, jobs=1, log=lambda line: None)
    with pytest.raises(S.SettingsMismatch):
        S.run_sweep(other, [0, 0.004], [1], out, report_only=True, log=lambda line: None)
    assert {p: p.read_bytes() for p in before} == before
    # a record edited to the new settings does not help: each run's checkpoint is compared
    record = read_json(out / S.SWEEP_FILE)
    record["settings"] = S._sweep_settings(other)
    (out / S.SWEEP_FILE).write_text(json.dumps(record))
    with pytest.raises(S.SettingsMismatch, match="was trained with other settings"):
        S.run_sweep(other, [0, 0.004], [1], out, jobs=1, log=lambda line: None)


def test_a_sweep_recorded_before_dt_mode_existed_continues(finished_sweep, data_dir):
    """A record without the settings batsnn gained later (dt_mode, dt_warmup_epochs) was
    made with their defaults: the same sweep continues, another dt_mode is refused."""
    base, out, rows = finished_sweep
    record = read_json(out / S.SWEEP_FILE)
    for k in S.ADDED_SETTINGS:
        del record["settings"][k]
    (out / S.SWEEP_FILE).write_text(json.dumps(record))
    lines = []
    again = S.run_sweep(base, [0, 0.004], [1], out, jobs=1, log=lines.append)
    assert "2 finished already, 0 to train" in lines[0]
    assert [r[M.TEST_ACCURACY] for r in again] == [r[M.TEST_ACCURACY] for r in rows]
    other = resolve_config("mnist-count", **TINY, data_dir=str(data_dir), epochs=1,
                           dt_mode="finetune", dt_warmup_epochs=1)
    with pytest.raises(S.SettingsMismatch, match="dt_mode 'fixed' -> 'finetune'"):
        S.run_sweep(other, [0, 0.004], [1], out, jobs=1, log=lambda line: None)


def test_a_sweep_continues_only_runs_it_started(finished_sweep, data_dir, tmp_path):
    base, out, _ = finished_sweep
    # a run directory copied in from elsewhere is refused, not resumed
    stranger = out / "runs" / S.run_name(0.008, 1)
    shutil.copytree(out / "runs" / S.run_name(0.004, 1), stranger)
    with pytest.raises(OutDirError, match="was not started by this sweep"):
        S.run_sweep(base, [0.008], [1], out, jobs=1, log=lambda line: None)
    shutil.rmtree(stranger)
    # someone else's sweep folder without its record: refused as a whole
    copied = tmp_path / "copied"
    shutil.copytree(out, copied)
    (copied / S.SWEEP_FILE).unlink()
    with pytest.raises(OutDirError, match="holds no batsnn output"):
        S.run_sweep(base, [0], [1], copied, jobs=1, log=lambda line: None)
    # a checkpoint that is not batsnn's is never unpickled
    (out / "runs" / S.run_name(0, 1) / "last.pt").write_bytes(b"\x80\x04crafted")
    with pytest.raises(CheckpointError, match="not a torch.save archive"):
        S.run_sweep(base, [0], [1], out, jobs=1, log=lambda line: None)


@pytest.mark.slow
def test_a_stopped_sweep_run_is_continued_and_said_so(data_dir, tmp_path, monkeypatch):
    base = resolve_config("mnist-count", **TINY, data_dir=str(data_dir), epochs=2)
    S.run_sweep(base, [0], [1], tmp_path / "straight", jobs=1, log=lambda line: None)

    real = T.evaluate
    calls = []

    def stop_in_epoch_2(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(T, "evaluate", stop_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        S.run_sweep(base, [0], [1], tmp_path / "stopped", jobs=1, log=lambda line: None)
    monkeypatch.undo()
    lines = []
    S.run_sweep(base, [0], [1], tmp_path / "stopped", jobs=1, log=lines.append)
    assert ("0 finished already, 1 to train with 1 at once on cpu; 1 of them continue "
            "stopped runs that this sweep started (listed in sweep.json): dt0ms-seed1") \
        in lines[0]
    name = S.run_name(0, 1)
    assert _untimed(read_csv(tmp_path / "stopped" / "runs" / name / "metrics.csv")) == \
        _untimed(read_csv(tmp_path / "straight" / "runs" / name / "metrics.csv"))
    assert read_json(tmp_path / "stopped" / S.SWEEP_FILE)["runs"] == [name]


# ----------------------------------------------------------------------------- the others

def test_discretization_error_rewrites_only_its_own_result(tmp_path):
    kw = dict(width=6, samples=2, dataset="random", device="cpu", log=lambda line: None)
    run_discretization_error([1], [0.008], tmp_path / "d", **kw)
    run_discretization_error([1], [0.008], tmp_path / "d", **kw)  # same settings: fine
    with pytest.raises(ValueError, match=r"other settings: width 6 -> 7"):
        run_discretization_error([1], [0.008], tmp_path / "d", **{**kw, "width": 7})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(OutDirError, match="holds no batsnn output"):
        run_discretization_error([1], [0.008], tmp_path / "mine", **kw)


def test_convergence_refuses_foreign_directories_and_malformed_parts(tmp_path):
    small = cv.ConvergenceConfig(means=(0.8,), stds=(0.4,), repeats=2, epochs=2,
                                 variants=("multi",))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text("{}")
    with pytest.raises(OutDirError, match="holds no batsnn output"):
        cv.run_convergence(small, tmp_path / "mine", quiet=True, log=None)
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"precious")
    out = tmp_path / "conv"
    cv.run_convergence(small, out, quiet=True, log=None)
    (out / "convergence_multi.tmp.png").symlink_to(outside)  # the old fixed temporary name
    cv.run_convergence(small, out, quiet=True, log=None)  # all cells done: files rewritten
    assert outside.read_bytes() == b"precious"
    assert (out / "convergence_multi.png").read_bytes()[:4] == b"\x89PNG"
    assert read_json(out / "config.json")["batsnn_run"] == "convergence"
    part = next((out / "parts").glob("part-*.json"))
    doc = read_json(part)
    doc["cells"][0]["best"] = doc["cells"][0]["best"][:1]
    part.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=f"{part} holds a malformed cell"):
        cv.run_convergence(small, out, quiet=True, log=None)
    part.write_text("[1, 2]")
    with pytest.raises(ValueError, match=f"{part} is not a convergence part file"):
        cv.run_convergence(small, out, quiet=True, log=None)


def test_a_report_needs_no_device_and_no_checkpoints(finished_sweep):
    """A published sweep keeps each run's results but not its checkpoints, and is rebuilt
    on a machine without the GPU it trained on: the report comes from the results alone."""
    base, out, rows = finished_sweep
    for ck in out.glob("runs/*/*.pt"):
        ck.unlink()
    (out / "sweep.csv").unlink()
    gpu = dataclasses.replace(base, device="cuda:7")  # no such GPU here, on any CI machine
    lines = []
    again = S.run_sweep(gpu, [0, 0.004], [1], out, report_only=True, gpus=[7],
                        log=lines.append)
    assert "2 of 2 (dt, seed) runs have results (0 with a final checkpoint)" in lines[0]
    assert [r[M.TEST_ACCURACY] for r in again] == [r[M.TEST_ACCURACY] for r in rows]
    assert len(read_csv(out / "sweep.csv")) == 2
    # training still checks the device
    with pytest.raises(ValueError, match="cuda:7"):
        S.run_sweep(gpu, [0, 0.004], [1], out, jobs=1, log=lines.append)
