"""Hostile input to run and sweep output directories and to the ``batsnn`` command line:
output paths of the wrong kind, directories held by another process, planted lock files,
control characters in names, abbreviated options, ``--ddp`` launches that must be refused
before any process starts, checkpoints of the wrong kind. Every case ends with exit status 2
and one escaped line (``tests/hostile/harness.py``)."""

import os
import shutil
from pathlib import Path

import pytest

from batsnn import cli
from batsnn.experiments import distributed as D
from batsnn.experiments import rundir as R
from batsnn.experiments import scheduler as SC
from batsnn.experiments import sweep as S
from tests.experiments.test_rundir_lock import Holder
from tests.hostile.harness import (CliCase, LibCase, check_cli_commands, check_cli_in_process,
                                   check_lib)


def _train(data_dir, *extra):
    return ["train", "--preset", "mnist-count", "--dataset", "fashion-mnist", "--data-dir",
            str(data_dir), "--hidden", "24", "--max-spikes", "8,8", "--batch-size", "10",
            "--eval-batch-size", "16", "--epochs", "1", "--quiet", "--device", "cpu",
            *map(str, extra)]


def _sweep(data_dir, *extra):
    return ["sweep", *_train(data_dir)[1:], "--dt", "0", "--seeds", "1", *map(str, extra)]


def _dterr(*extra):
    return ["discretization-error", "--depths", "1", "--width", "8", "--samples", "2",
            "--dataset", "random", "--dt", "0.001", "--device", "cpu", *map(str, extra)]


@pytest.fixture(scope="module")
def trained_run(data_dir, tmp_path_factory):
    """A finished one-epoch run of the tiny settings of :func:`_train` (one process)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert cli.main(_train(data_dir, "--out", out)) == 0
    return out


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    """Directories held by other processes: ``{"train": (dir, pid), "sweep": ...}``."""
    root = tmp_path_factory.mktemp("held")
    holders = {kind: Holder(root / kind, kind) for kind in ("train", "sweep",
                                                            "discretization-error")}
    yield {kind: (root / kind, h.pid) for kind, h in holders.items()}
    for h in holders.values():
        h.stop()


def _unchanged(d: Path, names: list):
    def after():
        assert sorted(p.name for p in d.iterdir()) == sorted(names), d
    return after


def _absent(p: Path):
    def after():
        assert not os.path.lexists(p), p
    return after


def make_cases(root: Path, data_dir: Path, run: Path, held: dict) -> list[CliCase]:
    """Write each case's files under ``root`` and return the cases (those every machine
    runs; :func:`make_ddp_cases` has those that start 2 processes)."""
    root.mkdir(parents=True, exist_ok=True)
    cases = []

    def add(name, argv, *words, after=None):
        cases.append(CliCase(name, [str(a) for a in argv], words, after=after))

    def copy_run(name):
        return Path(shutil.copytree(run, root / name))

    # --out of the wrong kind, for every command that writes a directory
    f = root / "a-file"
    f.write_text("mine")
    fifo = root / "a-fifo"
    os.mkfifo(fifo)
    add("out-file", _train(data_dir, "--out", f), str(f), "is a file, not a directory")
    add("out-fifo", _train(data_dir, "--out", fifo), "is a named pipe (FIFO), not a directory")
    add("out-dev-null", _train(data_dir, "--out", "/dev/null"), "/dev/null",
        "is a device, not a directory")
    add("out-last-pt", _train(data_dir, "--out", run / "last.pt", "--resume"),
        "last.pt", "is a file, not a directory")
    add("out-under-fifo", _train(data_dir, "--out", fifo / "run"), "cannot be created",
        "is a named pipe (FIFO)")
    add("out-under-file", _train(data_dir, "--out", f / "a" / "run"), "cannot be created",
        "is a file")
    (root / "dangling").symlink_to(root / "nowhere")
    add("out-broken-link", _train(data_dir, "--out", root / "dangling"),
        "broken symbolic link", after=_absent(root / "nowhere"))
    add("out-name-too-long", _train(data_dir, "--out", root / ("x" * 300) / "run"),
        "File name too long")
    add("out-path-too-long", _train(data_dir, "--out", root / "/".join(["y" * 200] * 30)),
        "File name too long")
    add("sweep-out-fifo", _sweep(data_dir, "--out", fifo), "is a named pipe (FIFO)")
    add("sweep-out-dev-null", _sweep(data_dir, "--out", "/dev/null"), "is a device")
    add("dterr-out-file", _dterr("--out", f), "is a file, not a directory")
    add("dterr-out-fifo", _dterr("--out", fifo), "is a named pipe (FIFO)")
    add("convergence-out-dev-null", ["convergence", "--out", "/dev/null", "--repeats", "1",
                                     "--epochs", "1", "--means", "1", "--stds", "1"],
        "is a device, not a directory")
    if os.geteuid() == 0:  # root writes wherever a permission bit allows: use sysfs
        if Path("/sys").is_dir():
            add("out-unwritable-parent", _train(data_dir, "--out", "/sys/batsnn-run/x"),
                "cannot be created")
    else:
        ro = root / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        add("out-unwritable-parent", _train(data_dir, "--out", ro / "run"),
            "cannot be created", after=_unchanged(ro, []))
        add("out-unwritable", _train(data_dir, "--out", ro), "not writable")

    # held by another process: refused at once, naming the directory and the process
    for kind, argv in (("train", lambda d: _train(data_dir, "--out", d)),
                       ("sweep", lambda d: _sweep(data_dir, "--out", d)),
                       ("discretization-error", lambda d: _dterr("--out", d))):
        d, pid = held[kind]
        add(f"busy-{kind}", argv(d), str(d), f"is in use by batsnn process {pid}",
            after=_unchanged(d, [R.LOCK_FILE]))
    d, pid = held["train"]
    add("busy-resume", _train(data_dir, "--out", d, "--resume"), f"batsnn process {pid}")

    # lock files that batsnn did not make
    d = root / "lock-dir"
    (d / R.LOCK_FILE).mkdir(parents=True)
    add("lock-is-dir", _train(data_dir, "--out", d), "is a directory, expected the lock file")
    d = root / "lock-link"
    d.mkdir()
    (d / R.LOCK_FILE).symlink_to(f)
    add("lock-is-link", _train(data_dir, "--out", d), "is a symbolic link",
        after=lambda: f.read_text() == "mine" or pytest.fail("the link was followed"))
    d = root / "lock-fifo"
    d.mkdir()
    os.mkfifo(d / R.LOCK_FILE)
    add("lock-is-fifo", _sweep(data_dir, "--out", d), "is a named pipe (FIFO)")

    # names from files and directories reach the terminal escaped
    d = root / "foreign"
    d.mkdir()
    for name in ("a\x1b[2Jb", "bell\x07", "nl\nname"):
        (d / name).write_text("x")
    add("foreign-names", _train(data_dir, "--out", d), "holds no batsnn output",
        "a\\x1b[2Jb", "bell\\x07", "nl\\nname",
        after=_unchanged(d, ["a\x1b[2Jb", "bell\x07", "nl\nname"]))
    odd = root / "odd\x1b]0;title\x07"
    odd.write_text("x")
    add("out-under-odd-file", _train(data_dir, "--out", odd / "run"), "odd\\x1b]0;title\\x07")
    add("sweep-out-odd-file", _sweep(data_dir, "--out", odd), "odd\\x1b]0;title\\x07",
        "is a file")
    conf = root / "keys.json"
    conf.write_text('{"\\u001b[31mlr": 1}')
    add("config-key-escaped", _train(data_dir, "--config", conf, "--out", root / "never"),
        "unknown config field", "\\x1b[31mlr", after=_absent(root / "never"))
    add("config-name-escaped", _train(data_dir, "--config", root / "no\x1bpe.json"),
        "no\\x1bpe.json")
    add("argv-escaped", ["train", "--preset", "mnist-count", "--bogus\x1b[5m"],
        "unrecognized arguments", "--bogus\\x1b[5m")

    # abbreviated options are refused by every subcommand
    add("abbrev-top", ["--vers", "train"], "unrecognized arguments: --vers")
    add("abbrev-train", _train(data_dir, "--epoch", "2"), "unrecognized arguments: --epoch")
    add("abbrev-sweep", ["sweep", *_train(data_dir)[1:], "--dt", "0", "--seed", "3",
                         "--out", root / "never"], "unrecognized arguments: --seed 3",
        after=_absent(root / "never"))
    add("abbrev-data", ["data", "prepare", "mnist", "--targ", root / "never"],
        "unrecognized arguments: --targ")
    add("abbrev-dterr", ["discretization-error", "--dept", "1", "--dt", "0.001", "--out",
                         root / "never"], "unrecognized arguments: --dept")
    add("abbrev-convergence", ["convergence", "--out", root / "never", "--repeat", "2"],
        "unrecognized arguments: --repeat")
    add("abbrev-export", ["export", "--run", run, "--out", root / "x.nir", "--checkp", "best"],
        "unrecognized arguments: --checkp")

    # resuming from checkpoints and directories of the wrong kind
    d = copy_run("ckpt-dir")
    (d / "last.pt").unlink()
    (d / "last.pt").mkdir()
    add("ckpt-is-dir", _train(data_dir, "--out", d, "--epochs", "2", "--resume"),
        "last.pt' is a directory, expected a file")
    d = copy_run("ckpt-fifo")
    (d / "last.pt").unlink()
    os.mkfifo(d / "last.pt")
    add("ckpt-is-fifo", _train(data_dir, "--out", d, "--epochs", "2", "--resume"),
        "last.pt' is a named pipe (FIFO), expected a file")
    d = root / "a-sweep"
    d.mkdir()
    R.write_json(d / "sweep.json", {R.MARKER: "sweep"})
    add("resume-a-sweep", _train(data_dir, "--out", d, "--resume"),
        "holds a batsnn sweep output, not a train run")
    add("train-again", _train(data_dir, "--out", run), "already holds a run")

    # sweep --report-only: only of a sweep that was started; nothing is created
    report = ["--report-only"]
    d = root / "report-nowhere"
    add("report-missing-out", _sweep(data_dir, "--out", d, *report), "no sweep in --out",
        str(d), "does not exist", after=_absent(d))
    d = root / "report-nested" / "deeper"
    add("report-missing-parent", _sweep(data_dir, "--out", d, *report), "no sweep in --out",
        after=_absent(root / "report-nested"))
    d = root / "report-empty"
    d.mkdir()
    add("report-empty-dir", _sweep(data_dir, "--out", d, *report), "no sweep in --out",
        "sweep.json does not exist", after=_unchanged(d, []))
    d = root / "report-runs-only"
    (d / "runs").mkdir(parents=True)
    add("report-no-record", _sweep(data_dir, "--out", d, *report), "no sweep in --out",
        "sweep.json", after=_unchanged(d, ["runs"]))
    d = root / "report-record-dir"
    (d / "sweep.json").mkdir(parents=True)
    add("report-record-is-dir", _sweep(data_dir, "--out", d, *report), "sweep.json",
        "is a directory", after=_unchanged(d, ["sweep.json"]))
    add("report-of-train-run", _sweep(data_dir, "--out", run, *report), "no sweep in --out",
        after=_unchanged(run, sorted(p.name for p in run.iterdir())))
    f = root / "report-file"
    f.write_text("mine")
    add("report-out-file", _sweep(data_dir, "--out", f, *report), "no sweep in --out",
        "is a file")

    # sweep --jobs / --jobs-per-gpu: bounded before anything is made
    for name, extra, words in (
            ("jobs-huge", ["--jobs", "100000"], ("--jobs must be", "<= 256", "100000")),
            ("jobs-257", ["--jobs", "257"], ("--jobs must be", "257")),
            ("jobs-huge-report", ["--jobs", "100000", *report], ("--jobs", "100000")),
            ("jobs-per-gpu-huge", ["--jobs-per-gpu", "100000"],
             ("--jobs-per-gpu must be", "<= 256", "100000")),
            ("jobs-per-gpu-zero", ["--jobs-per-gpu", "0"], ("--jobs-per-gpu must be", "0")),
            ("jobs-per-gpu-negative", ["--jobs-per-gpu", "-3"], ("--jobs-per-gpu", "-3"))):
        d = root / f"sweep-{name}"
        add(f"sweep-{name}", _sweep(data_dir, "--out", d, *extra), *words, after=_absent(d))
    return cases


def make_ddp_cases(root: Path, data_dir: Path, run: Path, held: dict) -> list[CliCase]:
    """``--ddp`` launches refused in the launching process (no process is started)."""
    root.mkdir(parents=True, exist_ok=True)
    f = root / "a-file"
    f.write_text("mine")
    d, pid = held["train"]
    ck = Path(shutil.copytree(run, root / "corrupt"))
    (ck / "last.pt").write_bytes(b"PK\x03\x04" + os.urandom(64))
    return [
        CliCase("ddp-too-many", _train(data_dir, "--ddp", "100000"),
                ("--ddp 100000 would start 100000 processes on the CPU",)),
        CliCase("ddp-out-file", _train(data_dir, "--ddp", "2", "--out", f),
                (str(f), "is a file, not a directory")),
        CliCase("ddp-out-busy", _train(data_dir, "--ddp", "2", "--out", d),
                (f"is in use by batsnn process {pid}",)),
        CliCase("ddp-run-exists", _train(data_dir, "--ddp", "2", "--out", run),
                ("already holds a run",)),
        CliCase("ddp-resume-other-count", _train(data_dir, "--ddp", "2", "--out", run,
                                                 "--resume", "--epochs", "2"),
                ("trained by 1 process(es), this is 2", "single process")),
        CliCase("ddp-resume-other-settings", _train(data_dir, "--ddp", "2", "--out", run,
                                                    "--resume", "--hidden", "12"),
                ("settings differ", "network")),
        CliCase("ddp-resume-corrupt", _train(data_dir, "--ddp", "2", "--out", ck, "--resume"),
                ("last.pt", "cannot be read")),
    ]


def _no_launch(monkeypatch):
    def launched(*a, **k):
        raise AssertionError("processes were started")

    monkeypatch.setattr(D, "launch", launched)
    monkeypatch.setattr(D, "cpu_cores", lambda: 8)  # --ddp 2 fits any machine


def test_runs_cli_in_process(data_dir, trained_run, held, tmp_path, capsys, monkeypatch):
    _no_launch(monkeypatch)
    cases = (make_cases(tmp_path / "c", data_dir, trained_run, held)
             + make_ddp_cases(tmp_path / "d", data_dir, trained_run, held))
    assert len(cases) >= 40
    check_cli_in_process(cases, capsys, monkeypatch, tmp_path / "cache")


@pytest.mark.slow
def test_runs_cli_as_real_commands(data_dir, trained_run, held, tmp_path):
    cases = make_cases(tmp_path / "c", data_dir, trained_run, held)
    if D.cpu_cores() >= 2:
        cases += make_ddp_cases(tmp_path / "d", data_dir, trained_run, held)
    check_cli_commands(cases, tmp_path / "cache")


def test_runs_library(tmp_path, held):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "file").write_text("x")
    d, pid = held["train"]
    check_lib([
        LibCase("hold-fifo", lambda: R.hold_out_dir(fifo, "train").__enter__(),
                (R.OutDirError,), ("is a named pipe (FIFO), not a directory",)),
        LibCase("hold-busy", lambda: R.hold_out_dir(d, "train").__enter__(),
                (R.OutDirBusy,), (str(pid),)),
        LibCase("check-busy", lambda: R.check_out(d, "train", resume=True), (R.OutDirBusy,),
                (str(pid),)),
        LibCase("check-dev-null", lambda: R.check_out("/dev/null", "sweep"), (R.OutDirError,),
                ("is a device",)),
        LibCase("new-run-dir-slash", lambda: R.new_run_dir("a/b", tmp_path), (ValueError,),
                ("plain directory name",)),
        LibCase("new-run-dir-control", lambda: R.new_run_dir("a\x1b", tmp_path),
                (ValueError,), ("a\\x1b",)),
        LibCase("new-run-dir-under-file", lambda: R.new_run_dir("a", tmp_path / "file"),
                (R.OutDirError,), ("is a file",)),
        LibCase("ckpt-fifo", lambda: R.load_checkpoint(fifo), (R.CheckpointError,),
                ("is a named pipe (FIFO), expected a file",)),
        LibCase("ckpt-dir", lambda: R.load_run_checkpoint(tmp_path), (R.CheckpointError,),
                ("is a directory, expected a file",)),
        LibCase("launch-many", lambda: D.check_launch(10**6, "cpu"), (ValueError,),
                ("would start 1000000 processes",)),
        LibCase("launch-zero", lambda: D.check_launch(0, "cpu"), (ValueError,),
                ("--ddp must be >= 1",)),
        LibCase("launch-bool", lambda: D.check_launch(True, "cpu"), (ValueError,),
                ("--ddp must be >= 1",)),
        LibCase("launch-dev-null", lambda: D.check_launch(1, "cpu", "/dev/null"),
                (R.OutDirError,), ("is a device",)),
        LibCase("plan-jobs-huge", lambda: SC.plan_slots("cpu", jobs=100_000), (ValueError,),
                ("jobs must be", "<= 256", "100000")),
        LibCase("plan-jobs-per-gpu-huge",
                lambda: SC.plan_slots("cuda", jobs_per_gpu=10**6, visible=["0"]),
                (ValueError,), ("jobs_per_gpu must be", "1000000")),
        LibCase("sweep-dir-missing", lambda: S.check_sweep_dir(tmp_path / "none"),
                (ValueError,), ("no sweep in out", "does not exist")),
        LibCase("sweep-dir-fifo", lambda: S.check_sweep_dir(fifo, "--out"), (ValueError,),
                ("no sweep in --out", "is a named pipe (FIFO)")),
        LibCase("sweep-dir-empty", lambda: S.check_sweep_dir(tmp_path), (ValueError,),
                ("sweep.json does not exist",)),
        LibCase("new-run-dir-ok", lambda: R.new_run_dir("ok", tmp_path / "runs"), (),
                after=lambda p: p.is_dir() or pytest.fail(str(p))),
    ])
