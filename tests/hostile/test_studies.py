"""Hostile input to the study commands (``convergence``, ``discretization-error``, ``sweep
--report-only``) and their library calls: sizes that multiply past any memory, out-of-range
seeds, abbreviated options, and run directories holding deeply nested, corrupt or
wrong-kind files. Every command ends with status 2 and one line naming the option or file;
every library call with a ``ValueError``/``TypeError`` (or ``MemoryError`` where memory is
estimated) naming it."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from batsnn import cli
from batsnn.experiments import convergence as cv
from batsnn.experiments import dterr as D
from batsnn.experiments import sweep as S
from batsnn.experiments.common import check_seed, check_size
from batsnn.experiments.config import resolve_config
from batsnn.experiments.rundir import MARKER, RunDir
from tests.hostile.harness import (CONTROL, SRC, CliCase, LibCase, check_cli_commands,
                                   check_cli_in_process, check_lib)

NESTED = "[" * 5000 + "]" * 5000


def _absent(path: Path):
    def check():
        assert not path.exists(), f"{path} was created"
    return check


def _write(path: Path, text) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# ----------------------------------------------------------------------------- convergence

def _conv(out, *extra):
    return ["convergence", "--out", str(out), "--quiet", *map(str, extra)]


def _conv_dir(root: Path, name: str, part_name="part-00000.json", part=None) -> Path:
    """A convergence run directory (marked) with one part file of content ``part``."""
    out = root / name
    _write(out / "config.json", json.dumps({MARKER: "convergence"}))
    if part is not None:
        p = out / "parts" / part_name
        if part == "fifo":
            p.parent.mkdir(parents=True, exist_ok=True)
            os.mkfifo(p)
        else:
            _write(p, part)
    return out


def _good_settings(**change) -> dict:
    return cv.ConvergenceConfig(repeats=2, epochs=1, **change).settings()


def convergence_cases(root: Path) -> list[CliCase]:
    small = ("--means", "1", "--stds", "0.5", "--repeats", "2", "--epochs", "1")
    settings = _good_settings()
    bad_cell = json.dumps({"settings": settings, "variant": "multi", "seconds": 1.0,
                           "cells": [{"mean": 1.0, "std": 0.5, "best": [1.0]}]})
    return [
        # sizes that multiply
        CliCase("conv-grid-1e7", _conv(root / "c1", "--means", "0:1e7:1", "--stds", "0:1e7:1"),
                ("--means", "10000000 values", "limit of 1000"), after=_absent(root / "c1")),
        CliCase("conv-grid-overflow", _conv(root / "c1b", "--stds", "0:1e308:1e-308"),
                ("--stds", "too many values", "limit of 1000")),
        CliCase("conv-grid-list", _conv(root / "c2", "--stds", ",".join(map(str, range(1001)))),
                ("--stds", "1001 values", "limit of 1000")),
        CliCase("conv-repeats-1e12", _conv(root / "c3", "--repeats", 10**12),
                ("variants x means x stds x repeats", "1000000000000", "networks",
                 "limit of 1000000"), after=_absent(root / "c3")),
        CliCase("conv-grid-times-repeats", _conv(root / "c4", "--means", "0:500:1",
                                                 "--stds", "0:500:1", "--repeats", "3"),
                ("2 x 500 x 500 x 3", "networks", "limit")),
        CliCase("conv-epochs-1e9", _conv(root / "c5", *small[:6], "--epochs", 10**9),
                ("(epochs + 1)", "accuracy values in one chunk", "limit")),
        CliCase("conv-chunk-0", _conv(root / "c6", *small, "--chunk-cells", 0),
                ("chunk_cells must be >= 1",)),
        CliCase("conv-mean-1e308", _conv(root / "c16", "--means", "1e308", "--stds", "1e308",
                                         *small[4:]),
                ("means must be at most 1e+100 in magnitude", "1e+308")),
        CliCase("conv-std-1e200", _conv(root / "c17", "--means", "1", "--stds", "0,1e200",
                                        *small[4:]), ("stds must be at most", "1e+200")),
        CliCase("conv-repeats-0", _conv(root / "c7", "--repeats", 0), ("repeats must be >= 1",)),
        # no training at all is refused, as batsnn train refuses it
        CliCase("conv-epochs-0", _conv(root / "c18", *small[:6], "--epochs", 0),
                ("epochs must be >= 1", "0"), after=_absent(root / "c18")),
        CliCase("conv-epochs-neg", _conv(root / "c19", *small[:6], "--epochs", -5),
                ("epochs must be >= 1", "-5")),
        # a grid too large to count is named by its size, not by a 300-digit number
        CliCase("conv-grid-1e-300", _conv(root / "c20", "--stds", "0:1:1e-300"),
                ("--stds", "about 1e+300 values", "limit of 1000")),
        CliCase("conv-grid-1e-20", _conv(root / "c21", "--means", "0:1:1e-20"),
                ("--means", "about 1e+20 values")),
        # seeds as batsnn train takes them
        CliCase("conv-seed-neg", _conv(root / "c8", *small, "--seed", -1),
                ("seed must be in [0, 4294967295]", "-1"), after=_absent(root / "c8")),
        CliCase("conv-seed-2^32", _conv(root / "c9", *small, "--seed", 2**32),
                ("seed", "4294967296")),
        # options: no abbreviations, checked values
        CliCase("conv-abbrev-rep", _conv(root / "c10", "--rep", 3), ("--rep",)),
        CliCase("conv-abbrev-reset", _conv(root / "c11", *small, "--reset", "emitted"),
                ("--reset",)),
        CliCase("conv-reset-at-bad", _conv(root / "c12", *small, "--reset-at", "never"),
                ("--reset-at", "never")),
        CliCase("conv-dt-nan", _conv(root / "c13", *small, "--dt", "nan"), ("dt must be",)),
        CliCase("conv-dt-neg", _conv(root / "c14", *small, "--dt", "-0.1"), ("dt must be",)),
        CliCase("conv-dt-inf", _conv(root / "c15", *small, "--dt", "inf"), ("dt must be",)),
        # part files
        CliCase("conv-part-nested", _conv(_conv_dir(root, "p1", part=NESTED), *small),
                ("part-00000.json", "nested more than 64 levels")),
        CliCase("conv-part-not-json", _conv(_conv_dir(root, "p2", part="{settings"), *small),
                ("part-00000.json", "not valid JSON")),
        CliCase("conv-part-binary", _conv(_conv_dir(root, "p3", part=b"\xff\xfe\x00\x1b"),
                                          *small), ("part-00000.json", "not a convergence part")),
        CliCase("conv-part-nan", _conv(_conv_dir(root, "p4", part='{"seconds": NaN}'), *small),
                ("part-00000.json", "NaN")),
        CliCase("conv-part-fifo", _conv(_conv_dir(root, "p5", part="fifo"), *small),
                ("part-00000.json", "is a named pipe")),
        CliCase("conv-part-name", _conv(_conv_dir(root, "p6", "part-x1b\x1b.json", "{}"), *small),
                ("part-NUMBER.json", "\\x1b")),
        CliCase("conv-part-list", _conv(_conv_dir(root, "p7", part="[1, 2]"), *small),
                ("part-00000.json", "no settings and cells")),
        CliCase("conv-part-bad-cell", _conv(_conv_dir(root, "p8", part=bad_cell), *small),
                ("part-00000.json", "malformed cell")),
        CliCase("conv-part-other-reset", _conv(_conv_dir(root, "p9", part=json.dumps(
            {"settings": _good_settings(reset_at="emitted"), "cells": []})), *small),
                ("other settings", "reset_at: stored 'emitted', requested 'crossing'")),
        CliCase("conv-out-is-file", _conv(_write(root / "f.txt", "x"), *small),
                ("f.txt", "is a file")),
    ]


# ----------------------------------------------------------------------------- dterr

def _dterr(out, *extra):
    return ["discretization-error", "--out", str(out), "--dataset", "random", "--device",
            "cpu", *map(str, extra)]


def dterr_cases(root: Path) -> list[CliCase]:
    small = ("--depths", "1", "--dt", "1e-3", "--width", "8", "--samples", "2")
    marked = root / "d-marked"
    _write(marked / "config.json", json.dumps({MARKER: "discretization-error",
                                               "settings": ["not", "a", "dict"]}))
    nested = root / "d-nested"
    _write(nested / "config.json", NESTED)
    return [
        CliCase("dterr-samples-1e9", _dterr(root / "d1", *small[:6], "--samples", 10**9),
                ("samples 1000000000", "limit of 100000"), after=_absent(root / "d1")),
        CliCase("dterr-samples-0", _dterr(root / "d2", *small[:6], "--samples", 0),
                ("samples must be an int >= 1",)),
        CliCase("dterr-width-huge", _dterr(root / "d3", "--depths", "3", "--dt", "1e-3",
                                           "--width", 10**7), ("GiB", "--width"),
                after=_absent(root / "d3")),
        CliCase("dterr-max-spikes-huge", _dterr(root / "d4", *small[:4], "--samples", 1000,
                                                "--max-spikes", 10**9),
                ("max_spikes 1000000000", "GiB", "--max-spikes")),
        CliCase("dterr-max-spikes-0", _dterr(root / "d5", *small, "--max-spikes", 0),
                ("max_spikes must be an int >= 1",)),
        CliCase("dterr-seed-neg", _dterr(root / "d6", *small, "--seed", -1),
                ("seed must be in [0, 4294967295]", "-1"), after=_absent(root / "d6")),
        CliCase("dterr-seed-big", _dterr(root / "d7", *small, "--seed", 2**40),
                ("seed", str(2**40))),
        CliCase("dterr-abbrev", _dterr(root / "d8", *small[:6], "--sam", 3), ("--sam",)),
        CliCase("dterr-reset-bad", _dterr(root / "d9", *small, "--reset-at", "late"),
                ("--reset-at", "late")),
        CliCase("dterr-dt-zero", _dterr(root / "d10", "--depths", "1", "--dt", "0"),
                ("dt values must be finite and > 0",)),
        CliCase("dterr-dt-nan", _dterr(root / "d11", "--depths", "1", "--dt", "nan"),
                ("dt values must be finite and > 0",)),
        CliCase("dterr-dts-many", _dterr(root / "d12", "--depths", "1", "--dt", ",".join(
            f"{1e-4 * (i + 1):.6g}" for i in range(1001))), ("1001 dt values", "limit of 1000")),
        CliCase("dterr-config-settings-list", _dterr(marked, *small),
                ("d-marked", "other settings", "depths None -> [1]")),
        CliCase("dterr-config-nested", _dterr(nested, *small),
                ("d-nested", "holds no batsnn output")),
        CliCase("dterr-depth-0", _dterr(root / "d13", "--depths", "0", "--dt", "1e-3"),
                ("depths must be integers >= 1",)),
        # depths bounded before anything runs (a stack per depth, each as deep as its depth)
        CliCase("dterr-depth-huge", _dterr(root / "d14", "--depths", "1,2,100000", *small[2:]),
                ("depths must be integers >= 1 and <= 1000", "100000"),
                after=_absent(root / "d14")),
        CliCase("dterr-depth-1001", _dterr(root / "d15", "--depths", "1001", *small[2:]),
                ("depths", "1001"), after=_absent(root / "d15")),
        CliCase("dterr-depths-many", _dterr(root / "d16", "--depths",
                                            ",".join(map(str, range(1, 102))), *small[2:]),
                ("depths: 101 distinct values", "limit of 100"), after=_absent(root / "d16")),
        CliCase("dterr-depths-bad-count", _dterr(root / "d17", "--depths", "5000,0,7",
                                                 *small[2:]), ("5000", "and 1 more")),
        CliCase("dterr-width-1e11", _dterr(root / "d18", "--depths", "1", "--dt", "1e-3",
                                           "--width", 10**11), ("GiB", "--width"),
                after=_absent(root / "d18")),
    ]


# ----------------------------------------------------------------------------- sweep

_SWEEP_BASE = dict(dataset="fashion-mnist", hidden=[12], max_spikes=[4, 4], epochs=1,
                   device="cpu")
_SWEEP_ARGS = ("--preset", "mnist-count", "--dataset", "fashion-mnist", "--hidden", "12",
               "--max-spikes", "4,4", "--epochs", "1", "--device", "cpu", "--dt", "0",
               "--seeds", "1", "--report-only", "--quiet")


def _sweep_dir(root: Path, name: str, *, summary=None, metrics=None, record=None) -> Path:
    """A sweep directory with one started run (dt 0, seed 1) holding ``summary`` and
    ``metrics`` (text, bytes or ``"fifo"``), as ``--report-only`` reads it."""
    out = root / name
    base = resolve_config("mnist-count", **_SWEEP_BASE)
    rec = {MARKER: "sweep", "batsnn_version": "0", "settings": S._sweep_settings(base),
           "runs": [S.run_name(0.0, 1)]}
    _write(out / S.SWEEP_FILE, json.dumps(rec) if record is None else record)
    run = RunDir(out / "runs" / S.run_name(0.0, 1))
    _write(run.config, json.dumps({MARKER: "train"}))
    for path, content in ((run.summary, summary), (run.metrics, metrics)):
        if content == "fifo":
            os.mkfifo(path)
        elif content is not None:
            _write(path, content)
    return out


def _good_summary(**change) -> str:
    return json.dumps({"test_accuracy": 0.5, "epochs_completed": 1, **change})


_GOOD_METRICS = "epoch,train_seconds,test_accuracy\n1,2.0,0.5\n"


def sweep_cases(root: Path) -> list[CliCase]:
    def sweep(out):
        return ["sweep", *_SWEEP_ARGS, "--out", str(out)]

    return [
        CliCase("sweep-record-nested", sweep(_sweep_dir(root, "s1", record=NESTED)),
                ("sweep.json", "holds no batsnn output")),
        CliCase("sweep-summary-nested", sweep(_sweep_dir(root, "s2", summary=NESTED,
                                                         metrics=_GOOD_METRICS)),
                ("summary.json", "nested more than 64 levels")),
        CliCase("sweep-summary-list", sweep(_sweep_dir(root, "s3", summary="[1]",
                                                       metrics=_GOOD_METRICS)),
                ("summary.json", "not a batsnn run summary")),
        CliCase("sweep-summary-text-value", sweep(_sweep_dir(
            root, "s4", summary=_good_summary(test_accuracy="high\x1b[2J"),
            metrics=_GOOD_METRICS)), ("summary.json", "test_accuracy", "not a number")),
        CliCase("sweep-summary-binary", sweep(_sweep_dir(root, "s5", summary=b"\xff\xfe\x00",
                                                         metrics=_GOOD_METRICS)),
                ("summary.json",)),
        CliCase("sweep-summary-nan", sweep(_sweep_dir(root, "s6", summary='{"x": NaN}',
                                                      metrics=_GOOD_METRICS)),
                ("summary.json", "NaN")),
        CliCase("sweep-metrics-no-epoch", sweep(_sweep_dir(
            root, "s7", summary=_good_summary(), metrics="a,b\n1,2\n")),
                ("metrics.csv", "not a batsnn metrics file", "epoch")),
        CliCase("sweep-metrics-text-seconds", sweep(_sweep_dir(
            root, "s8", summary=_good_summary(), metrics="epoch,train_seconds\n1,slow\n")),
                ("metrics.csv", "line 2", "slow")),
        CliCase("sweep-metrics-binary", sweep(_sweep_dir(
            root, "s9", summary=_good_summary(), metrics=b"\xff\xfe\x00\x00")),
                ("metrics.csv", "cannot be read as CSV")),
        CliCase("sweep-metrics-fifo", sweep(_sweep_dir(root, "s10", summary=_good_summary(),
                                                       metrics="fifo")),
                ("metrics.csv", "is a named pipe")),
        CliCase("sweep-metrics-absent", sweep(_sweep_dir(root, "s11", summary=_good_summary(),
                                                      metrics=None)),
                ("metrics.csv", "does not exist")),
        CliCase("sweep-metrics-only-corrupt", sweep(_sweep_dir(
            root, "s12", metrics="epoch,test_accuracy\none,0.5\n")),
                ("metrics.csv", "line 2")),
        CliCase("sweep-too-many-runs", ["sweep", *_SWEEP_ARGS[:-6], "--seeds", "10000",
                                        "--dt", ",".join(f"{i}e-4" for i in range(11)),
                                        "--report-only", "--out", str(root / "s13")],
                ("dt values x seeds", "110000", "limit of 100000"),
                after=_absent(root / "s13")),
    ]


#: cases refused by argparse itself (option values and names): the subcommand's parser
#: prints its own one line (``batsnn convergence: error: ...``) and exits with status 2
PARSER_CASES = {"conv-grid-1e7", "conv-grid-overflow", "conv-grid-list", "conv-abbrev-rep", "conv-abbrev-reset",
                "conv-reset-at-bad", "dterr-abbrev", "dterr-reset-bad"}


def all_cases(root: Path) -> tuple[list[CliCase], list[CliCase]]:
    """The cases the commands refuse (``batsnn: error: ...``) and those argparse refuses."""
    cases = convergence_cases(root) + dterr_cases(root) + sweep_cases(root)
    return ([c for c in cases if c.id not in PARSER_CASES],
            [c for c in cases if c.id in PARSER_CASES])


def _check_parser_error(case: CliCase, rc: int, err: str) -> None:
    """Status 2 and one line ``batsnn ...: error: ...`` holding every word of the case."""
    assert rc == 2, f"{case.id}: exit status {rc}, stderr: {err}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, f"{case.id}: {err!r}"
    assert lines[0].startswith("batsnn") and ": error: " in lines[0], f"{case.id}: {lines[0]}"
    assert not CONTROL & set(lines[0]), f"{case.id}: {lines[0]!r}"
    for w in case.words:
        assert w in lines[0], f"{case.id}: {w!r} not in {lines[0]!r}"
    if case.after is not None:
        case.after()


def test_every_case_in_process(tmp_path, capsys, monkeypatch):
    refused, parser_cases = all_cases(tmp_path / "cases")
    check_cli_in_process(refused, capsys, monkeypatch, tmp_path / "cache")
    for case in parser_cases:
        capsys.readouterr()
        try:
            rc = cli.main([str(a) for a in case.argv])
        except SystemExit as e:
            rc = e.code
        _check_parser_error(case, rc, capsys.readouterr().err)


@pytest.mark.slow
def test_every_case_as_a_real_command(tmp_path):
    refused, parser_cases = all_cases(tmp_path / "cases")
    check_cli_commands(refused, tmp_path / "cache")
    env = {**os.environ, "BATSNN_DATA": str(tmp_path / "cache"),
           "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("BATSNN_DEBUG", None)
    for case in parser_cases:
        res = subprocess.run([sys.executable, "-m", "batsnn", *map(str, case.argv)],
                             capture_output=True, text=True, env=env, timeout=600,
                             stdin=subprocess.DEVNULL)
        _check_parser_error(case, res.returncode, res.stderr)


# ----------------------------------------------------------------------------- library

def lib_cases(root: Path) -> list[LibCase]:
    conv = cv.ConvergenceConfig
    small = dict(means=(1.0,), stds=(0.5,), repeats=2, epochs=1)

    def dterr(**kw):
        args = dict(depths=[1], dts=[1e-3], out=root / "lib-dterr", width=8, samples=2,
                    dataset="random", device="cpu", log=lambda *a: None)
        return lambda: D.run_discretization_error(**(args | kw))

    return [
        LibCase("dterr-depth-beyond-limit", dterr(depths=[1, D.MAX_DEPTH + 1]),
                words=("depths must be integers >= 1 and <= 1000", "1001")),
        LibCase("dterr-depths-too-many", dterr(depths=list(range(1, D.MAX_DEPTHS + 2))),
                words=("101 distinct values",)),
        LibCase("dterr-depth-float", dterr(depths=[2.0]), words=("depths", "2.0")),
        LibCase("conv-epochs-0", lambda: conv(**(small | dict(epochs=0))),
                words=("epochs must be >= 1", "0")),
        LibCase("grid-uncountable", lambda: cv.parse_grid("0:1:1e-300"),
                words=("about 1e+300 values",)),
        LibCase("grid-too-large", lambda: cv.parse_grid("0:1e7:1"),
                words=("10000000 values", "limit of 1000")),
        LibCase("grid-list-too-long", lambda: conv(means=tuple(range(2000))),
                words=("means has 2000 values",)),
        LibCase("conv-repeats-1e12", lambda: conv(repeats=10**12), words=("networks",)),
        LibCase("conv-chunk-epochs", lambda: conv(**small | {"epochs": 10**8}),
                words=("accuracy values in one chunk",)),
        LibCase("conv-max-spikes", lambda: conv(**small | {"repeats": 1000, "max_spikes": 10**5}),
                words=("spike times in one chunk", "max_spikes")),
        LibCase("conv-seed-neg", lambda: conv(seed=-1), words=("seed", "-1")),
        LibCase("conv-seed-float", lambda: conv(seed=1.5), words=("seed", "1.5")),
        LibCase("conv-lr-bool", lambda: conv(lr=True), words=("lr", "True")),
        LibCase("conv-target-nan", lambda: conv(target_true=math.nan), words=("target_true",)),
        LibCase("conv-tau-loss-inf", lambda: conv(tau_loss=math.inf), words=("tau_loss",)),
        LibCase("conv-reset-at", lambda: conv(reset_at="late"), words=("reset_at", "late")),
        LibCase("conv-size-after-change", lambda: _changed_then_run(root), words=("networks",)),
        LibCase("dterr-samples", dterr(samples=10**9), words=("samples", "limit")),
        LibCase("dterr-samples-float", dterr(samples=2.5), words=("samples", "2.5")),
        LibCase("dterr-seed", dterr(seed=-3), words=("seed", "-3")),
        LibCase("dterr-seed-preset", dterr(seed=2**33, depths=None, preset="mnist-conv"),
                words=("seed",)),
        LibCase("dterr-reset-at", dterr(reset_at="x"), words=("reset_at", "'x'")),
        LibCase("dterr-dt-bool", dterr(dts=[True]), words=("dt values",)),
        LibCase("dterr-width-huge", dterr(width=10**6, depths=[2]), errors=(MemoryError,),
                words=("GiB", "--width")),
        LibCase("dterr-width-zero", dterr(width=0), words=("width must be an int >= 1",)),
        LibCase("sweep-metrics-missing", lambda: S.read_metrics(root / "none.csv", []),
                words=("none.csv", "does not exist")),
        LibCase("sweep-metrics-dir", lambda: S.read_metrics(root, []),
                words=("is a directory",)),
        LibCase("sweep-metrics-bad", lambda: S.read_metrics(
            _write(root / "m.csv", "epoch,x\n1,\n2,abc\n"), ["x"]), words=("m.csv", "line 3")),
        LibCase("sweep-metrics-good", lambda: S.read_metrics(
            _write(root / "ok.csv", "epoch,x\n1,\n2,0.5\n"), ["x", "absent"]), errors=(),
                after=_check_metrics),
        LibCase("sweep-seeds-times-dts", lambda: S.run_sweep(
            resolve_config("mnist-count", **_SWEEP_BASE), [i * 1e-4 for i in range(20)],
            list(range(1, 10_001)), root / "lib-sweep", report_only=True),
                words=("(dt, seed) runs", "200000")),
        LibCase("check-seed-big", lambda: check_seed(2**32), words=("4294967296",)),
        LibCase("check-seed-ok", lambda: check_seed(2**32 - 1), errors=(),
                after=lambda v: _equal(v, 2**32 - 1)),
        LibCase("check-size", lambda: check_size("things", {"a": 10, "b": 11}, 100),
                words=("a x b = 10 x 11 = 110 things", "limit of 100")),
    ]


def _equal(a, b):
    assert a == b, (a, b)


def _check_metrics(rows):
    assert [r["epoch"] for r in rows] == [1, 2]
    assert math.isnan(rows[0]["x"]) and rows[1]["x"] == 0.5 and math.isnan(rows[1]["absent"])


def _changed_then_run(root: Path):
    """Fields changed after construction are checked again by run_convergence."""
    cfg = cv.ConvergenceConfig(means=(1.0,), stds=(0.5,), repeats=2, epochs=1)
    cfg.repeats = 10**9
    return cv.run_convergence(cfg, root / "lib-conv", quiet=True, log=None)


def test_library_cases(tmp_path):
    check_lib(lib_cases(tmp_path))
    assert not (tmp_path / "lib-conv").exists() and not (tmp_path / "lib-dterr").exists()
