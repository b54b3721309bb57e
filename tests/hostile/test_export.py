"""Hostile inputs to NIR export and import: ``batsnn export --run DIR --out FILE`` with bad
targets and damaged run directories, and the library (``from_nir``, ``save_nir``, ``to_nir``,
``export_run``) with malformed NIR files and graphs. Every one ends in one clear error naming
the file, the node or the field, and nothing that was there is replaced.

The CLI table runs in-process by default and as real commands under ``-m slow``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")
h5py = pytest.importorskip("h5py")

from batsnn import cli  # noqa: E402
from batsnn.experiments.runs import export_run, load_run_model  # noqa: E402
from batsnn.export import from_nir, save_nir, to_nir  # noqa: E402
from batsnn.export.nir import cuba_lif_constants, is_batsnn_nir_file  # noqa: E402
from batsnn.fileio import check_new_file  # noqa: E402
from batsnn.nn import LIFConv2d, LIFLinear, SpikingSequential  # noqa: E402
from batsnn.params import LIFParams  # noqa: E402
from tests.hostile.harness import (  # noqa: E402
    CONTROL, CliCase, LibCase, check_cli_commands, check_cli_in_process, check_lib)


def _train_argv(data_dir, out):
    return ["train", "--preset", "mnist-count", "--dataset", "fashion-mnist", "--data-dir",
            str(data_dir), "--hidden", "12", "--max-spikes", "5,5", "--batch-size", "20",
            "--eval-batch-size", "20", "--epochs", "1", "--quiet", "--device", "cpu",
            "--out", str(out)]


@pytest.fixture(scope="module")
def trained_run(data_dir, tmp_path_factory):
    """A finished one-epoch run (784-12-10) of a tiny fake Fashion-MNIST."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert cli.main(_train_argv(data_dir, out)) == 0
    return out


def _unchanged(path: Path, content: bytes):
    def check():
        assert path.read_bytes() == content, f"{path} was changed"
    return check


def _absent(path: Path):
    def check():
        assert not os.path.lexists(path), f"{path} was written"
    return check


# ----------------------------------------------------------------------------- CLI table

def make_cli_cases(root: Path, run: Path) -> list[CliCase]:
    """Write each case's files under ``root/<case id>`` and return the cases."""
    cases: list[CliCase] = []

    def case_dir(name):
        d = root / name
        d.mkdir(parents=True)
        return d

    def export(run_dir, out, *extra):
        return ["export", "--run", str(run_dir), "--out", str(out), *map(str, extra)]

    def add(name, argv, *words, status=2, after=None):
        cases.append(CliCase(name, argv, words, status, after))

    # --out: never replaced unless batsnn wrote it and --force is given
    d = case_dir("out-exists")
    (d / "net.nir").write_bytes(b"mine")
    add("out-exists", export(run, d / "net.nir"), str(d / "net.nir"), "already exists",
        "--force", after=_unchanged(d / "net.nir", b"mine"))
    d = case_dir("out-exists-force")
    (d / "net.nir").write_bytes(b"mine")
    add("out-exists-force", export(run, d / "net.nir", "--force"), str(d / "net.nir"),
        "is not a NIR file batsnn wrote", after=_unchanged(d / "net.nir", b"mine"))
    d = case_dir("out-foreign-hdf5-force")
    with h5py.File(d / "net.nir", "w") as f:
        f["data"] = np.arange(3)
    content = (d / "net.nir").read_bytes()
    add("out-foreign-hdf5-force", export(run, d / "net.nir", "--force"),
        "is not a NIR file batsnn wrote", after=_unchanged(d / "net.nir", content))
    d = case_dir("out-batsnn-nir")
    save_nir(LIFLinear(4, 3, tau_s=0.1, theta=0.5, max_spikes=2), d / "old.nir")
    content = (d / "old.nir").read_bytes()
    add("out-batsnn-nir", export(run, d / "old.nir"), "already exists", "--force",
        after=_unchanged(d / "old.nir", content))

    def replaced(p=d / "old.nir"):
        assert [tuple(m.weight.shape) for m in from_nir(p)] == [(12, 784), (10, 12)]
        assert sorted(x.name for x in p.parent.iterdir()) == ["old.nir"]  # no temp file left

    d2 = case_dir("out-batsnn-nir-force")
    shutil.copy(d / "old.nir", d2 / "old.nir")
    add("out-batsnn-nir-force", export(run, d2 / "old.nir", "--force"), status=0,
        after=lambda: replaced(d2 / "old.nir"))

    # --out: links, directories, FIFOs, devices, missing or wrong directories
    d = case_dir("out-link")
    (d / "target").write_bytes(b"target")
    (d / "net.nir").symlink_to(d / "target")
    add("out-link", export(run, d / "net.nir"), str(d / "net.nir"), "symbolic link",
        after=_unchanged(d / "target", b"target"))
    d = case_dir("out-link-force")
    (d / "target").write_bytes(b"target")
    (d / "net.nir").symlink_to(d / "target")
    add("out-link-force", export(run, d / "net.nir", "--force"), "symbolic link",
        after=_unchanged(d / "target", b"target"))
    d = case_dir("out-broken-link")
    (d / "net.nir").symlink_to(d / "nowhere")
    add("out-broken-link", export(run, d / "net.nir"), "symbolic link",
        after=_absent(d / "nowhere"))
    d = case_dir("out-dir")
    (d / "net.nir").mkdir()
    add("out-dir", export(run, d / "net.nir"), str(d / "net.nir"), "is a directory")
    add("out-dir-force", export(run, d / "net.nir", "--force"), "is a directory")
    d = case_dir("out-fifo")
    os.mkfifo(d / "net.nir")
    add("out-fifo", export(run, d / "net.nir", "--force"), "is a named pipe (FIFO)")
    add("out-device", export(run, "/dev/null", "--force"), "/dev/null", "is a device")
    add("out-trailing-slash", export(run, str(case_dir("out-slash")) + "/"),
        "is not a file name")
    d = case_dir("out-no-parent")
    add("out-no-parent", export(run, d / "nowhere" / "net.nir"), str(d / "nowhere"),
        "does not exist", after=_absent(d / "nowhere"))
    d = case_dir("out-parent-file")
    (d / "f").write_bytes(b"f")
    add("out-parent-file", export(run, d / "f" / "net.nir"), str(d / "f"), "is a file")

    # --out: never into a run directory, whatever the name
    d = case_dir("out-into-run")
    r = shutil.copytree(run, d / "run")
    best = (r / "best.pt").read_bytes()
    add("out-into-run-best", export(r, r / "best.pt", "--force"), "batsnn output directory",
        after=_unchanged(r / "best.pt", best))
    add("out-into-run-config", export(r, r / "config.json", "--force"),
        "batsnn output directory",
        after=_unchanged(r / "config.json", (run / "config.json").read_bytes()))
    add("out-into-run-new", export(r, r / "net.nir"), "batsnn output directory",
        after=_absent(r / "net.nir"))
    d = case_dir("out-into-sweep")
    (d / "sweep.json").write_text(json.dumps({"batsnn_run": "sweep"}))
    add("out-into-sweep", export(run, d / "net.nir"), "batsnn output directory",
        "sweep.json", after=_absent(d / "net.nir"))
    # ... nor into any directory below one
    sub = Path(r) / "sub"
    sub.mkdir()
    add("out-under-run", export(r, sub / "x.nir"), "batsnn output directory", "config.json",
        after=_absent(sub / "x.nir"))
    (sub / "deeper").mkdir()
    add("out-two-below-run", export(run, sub / "deeper" / "x.nir"), "batsnn output directory",
        str(r), after=_absent(sub / "deeper" / "x.nir"))
    d = case_dir("out-under-sweep")
    (d / "sweep.json").write_text(json.dumps({"batsnn_run": "sweep"}))
    (d / "runs" / "dt0_seed1").mkdir(parents=True)
    add("out-under-sweep", export(run, d / "runs" / "dt0_seed1" / "net.nir"),
        "batsnn output directory", "sweep.json",
        after=_absent(d / "runs" / "dt0_seed1" / "net.nir"))
    d = case_dir("out-control-chars")
    (d / "a\x1b[31mb").mkdir()
    add("out-control-chars", export(run, d / "a\x1b[31mb"), "is a directory", "\\x1b")

    # --run: missing, of the wrong kind, incomplete
    out = root / "never-written.nir"
    add("run-missing", export(root / "no-run", out), str(root / "no-run"), "does not exist",
        after=_absent(out))
    d = case_dir("run-file")
    (d / "run").write_bytes(b"x")
    add("run-file", export(d / "run", out), "is a file", after=_absent(out))

    def damaged(name, edit):
        r = shutil.copytree(run, case_dir(name) / "run")
        edit(r)
        return r

    r = damaged("run-no-best", lambda r: (r / "best.pt").unlink())
    add("run-no-best", export(r, out), str(r / "best.pt"), "does not exist",
        after=_absent(out))
    r = damaged("run-no-last", lambda r: (r / "last.pt").unlink())
    add("run-no-last", export(r, out, "--checkpoint", "last"), "last.pt", "does not exist")
    r = damaged("run-no-config", lambda r: (r / "config.json").unlink())
    add("run-no-config", export(r, out), "config.json", "does not exist")

    # config.json: corrupt, truncated, of the wrong kind, wrong fields (file and field named)
    good_cfg = (run / "config.json").read_text()
    doc = json.loads(good_cfg)

    def config_case(name, content, *words):
        r = damaged(f"config-{name}", lambda r: None)
        p = r / "config.json"
        p.unlink()
        if content == "fifo":
            os.mkfifo(p)
        elif content == "dir":
            p.mkdir()
        elif content == "link":
            p.symlink_to(run / "config.json")
        else:
            p.write_bytes(content if isinstance(content, bytes) else content.encode())
        out = r.parent / "out.nir"
        add(f"config-{name}", export(r, out), "config.json", *words, after=_absent(out))

    config_case("not-json", "{{{", "not valid JSON")
    config_case("truncated", good_cfg[: len(good_cfg) // 2], "not valid JSON")
    config_case("empty", "", "not valid JSON")
    config_case("not-utf8", b'{"lr": "\xff\xfe"}', "UTF-8")
    config_case("nan", good_cfg.replace('"lr": ', '"lr": NaN, "x": '), "NaN")
    config_case("list", "[1, 2]", "holds a list")
    config_case("deep", "[" * 100_000 + "]" * 100_000, "nested")
    config_case("no-layers", json.dumps({k: v for k, v in doc.items() if k != "layers"}),
                "'layers'")
    config_case("layers-str", json.dumps({**doc, "layers": [784, "10"]}), "'layers'", "'10'")
    config_case("layers-bool", json.dumps({**doc, "layers": [784, True]}), "'layers'")
    config_case("layers-zero", json.dumps({**doc, "layers": [784, 0]}), "'layers'")
    config_case("lr-fast", json.dumps({**doc, "lr": "fast"}), "lr", "'fast'")
    config_case("tau-negative", json.dumps({**doc, "tau_s": -1}), "tau_s", "-1")
    config_case("network-ints", json.dumps({**doc, "network": [1, 2]}), "network")
    config_case("dataset-control", json.dumps({**doc, "dataset": "\x1b[31mred"}),
                "dataset", "\\x1b")
    wider = json.loads(good_cfg)
    wider["network"][0]["features"] = 13
    wider["hidden"] = [13]
    config_case("network-mismatch", json.dumps(wider), "best.pt", "0.weight", "(13, 784)")
    # config.json edited after training: it must agree with the checkpoint's own settings
    config_case("tau-edited", json.dumps({**doc, "tau_s": doc["tau_s"] * 2}), "best.pt",
                "disagrees", "field tau_s", repr(doc["tau_s"] * 2), repr(doc["tau_s"]))
    config_case("t-max-edited", json.dumps({**doc, "t_max": doc["t_max"] / 2}),
                "disagrees", "field t_max", repr(doc["t_max"] / 2))
    config_case("dt-edited", json.dumps({**doc, "dt": 0.001}), "disagrees", "field dt",
                "0.001")
    config_case("lr-edited", json.dumps({**doc, "lr": 0.5}), "disagrees", "field lr", "0.5")
    config_case("theta-edited", json.dumps({**doc, "theta": [7.5, *doc["theta"][1:]]}),
                "disagrees", "field network", "7.5")
    # integers longer than Python reads: the file and the field named
    config_case("features-5000-digits", good_cfg.replace(
        '"features": 12', '"features": ' + "9" * 5000, 1), "more than 4300 digits",
        "field network[0].features")
    config_case("lr-5000-digits",
                good_cfg.replace('"lr": ', '"lr": -' + "1" * 5000 + ', "x": ', 1),
                "more than 4300 digits", "field lr")
    config_case("layers-5000-digits", json.dumps({**doc, "layers": [784, 0]}).replace(
        "[784, 0]", "[784, " + "7" * 5000 + "]"), "more than 4300 digits", "field layers[1]")
    config_case("fifo", "fifo", "is a named pipe (FIFO)")
    config_case("dir", "dir", "is a directory")
    config_case("link", "link", "is a symbolic link")

    # checkpoints: truncated, foreign, NaN weights, wrong dtype, missing or extra parameters
    def ck_case(name, edit, *words):
        def change(r):
            p = r / "best.pt"
            ck = torch.load(p, weights_only=True)
            if edit == "truncate":
                p.write_bytes(p.read_bytes()[:300])
                return
            if edit == "text":
                p.write_text("not a checkpoint")
                return
            edit(ck["model"]) if callable(edit) else None
            torch.save(ck, p)
        r = damaged(f"ck-{name}", change)
        out = r.parent / "out.nir"
        add(f"ck-{name}", export(r, out), "best.pt", *words, after=_absent(out))

    def set_(key, value):
        return lambda m: m.__setitem__(key, value)

    ck_case("truncated", "truncate", "truncated")
    ck_case("text", "text", "not a torch.save archive")
    ck_case("nan", lambda m: m["0.weight"].view(-1).__setitem__(0, math.nan), "'0.weight'",
            "NaN")
    ck_case("inf", lambda m: m["1.weight"].fill_(math.inf), "'1.weight'", "infinite")
    ck_case("float64", lambda m: m.__setitem__("0.weight", m["0.weight"].double()),
            "'0.weight'", "torch.float64")
    ck_case("shape", set_("1.weight", torch.zeros(10, 13)), "'1.weight'", "(10, 13)")
    ck_case("missing", lambda m: m.pop("1.weight"), "missing", "1.weight")
    ck_case("extra", set_("2.weight", torch.zeros(1)), "unexpected", "2.weight")
    ck_case("not-tensor", set_("0.weight", [1.0, 2.0]), "'0.weight'", "list")
    ck_case("control-key", set_("\x1b[31m", torch.zeros(1)), "unexpected", "\\x1b")
    return cases


def test_export_cli_cases_in_process(trained_run, tmp_path, capsys, monkeypatch):
    cases = make_cli_cases(tmp_path / "cases", trained_run)
    assert len(cases) >= 50
    check_cli_in_process(cases, capsys, monkeypatch, tmp_path / "cache")


@pytest.mark.slow
def test_export_cli_cases_as_real_commands(trained_run, tmp_path):
    check_cli_commands(make_cli_cases(tmp_path / "cases", trained_run), tmp_path / "cache")


# ----------------------------------------------------------------------------- library table

def test_export_of_a_grid_run_warns_in_one_line(trained_run, tmp_path, capsys, monkeypatch):
    """A run on a time grid exports (dt kept in the metadata); the per-layer warnings that
    NIR's continuous neuron describes the layers without the grid come as one line."""
    monkeypatch.delenv("BATSNN_DEBUG", raising=False)
    r = Path(shutil.copytree(trained_run, tmp_path / "grid-run"))
    doc = json.loads((r / "config.json").read_text())
    (r / "config.json").write_text(json.dumps({**doc, "dt": 0.001}))
    ck = torch.load(r / "best.pt", weights_only=True)
    ck["config"]["dt"] = 0.001
    torch.save(ck, r / "best.pt")
    capsys.readouterr()
    assert cli.main(["export", "--run", str(r), "--out", str(tmp_path / "g.nir")]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("batsnn: warning: layer 0"), err
    assert "time grid (dt=0.001 s)" in err[0] and "(and 1 more such warnings)" in err[0]
    assert (tmp_path / "g.nir").is_file()


def _lif(n=3, metadata=None, **change):
    k = cuba_lif_constants(LIFParams(tau_s=0.1, theta=0.5, max_spikes=2))
    k.update(change)
    return nir.CubaLIF(**{name: np.broadcast_to(np.asarray(v), (n,)).copy()
                          for name, v in k.items()},
                       metadata={"max_spikes": 2} if metadata is None else metadata)


def _graph(*middle, in_shape=(4,), out_shape=None, edges=None, metadata=None):
    nodes = {"input": nir.Input(input_type={"input": np.array(in_shape)})}
    nodes.update(middle)
    nodes["output"] = nir.Output(output_type={"output": np.array(
        out_shape if out_shape is not None else (3,))})
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=edges if edges is not None
                        else list(zip(names[:-1], names[1:])),
                        metadata=metadata if metadata is not None else {"time_unit": "s"},
                        type_check=False)


def _fc(w=None):
    return nir.Linear(weight=np.ones((3, 4)) / 4 if w is None else w)


def _good(**lif):
    return _graph(("fc", _fc()), ("neuron", _lif(**lif)))


def _write(path: Path, graph) -> Path:
    nir.write(path, graph)
    return path


def _edit_h5(path: Path, edit) -> Path:
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def make_lib_cases(root: Path, run: Path) -> list[LibCase]:
    """Files under ``root``; library calls that must fail with a clear message."""
    root.mkdir(parents=True, exist_ok=True)
    cases: list[LibCase] = []
    net = SpikingSequential(LIFLinear(4, 3, tau_s=0.1, theta=0.5, max_spikes=2))

    def add(name, call, *words, errors=(ValueError,), after=None):
        cases.append(LibCase(name, call, errors, words, after))

    def f(name) -> Path:
        return root / name

    # files that are not NIR files, or are damaged ones
    good = save_nir(net, f("good.nir"))
    data = good.read_bytes()
    f("text.nir").write_text("hello, not HDF5\n")
    f("empty.nir").write_bytes(b"")
    f("half.nir").write_bytes(data[: len(data) // 2])
    f("head.nir").write_bytes(data[:8])
    f("noise.nir").write_bytes(bytes(range(256)) * 8)
    f("a-dir.nir").mkdir()
    os.mkfifo(f("fifo.nir"))
    for name, words in [("text.nir", ("not a readable NIR",)), ("empty.nir", ("not a readable",)),
                        ("half.nir", ("not a readable",)), ("head.nir", ("not a readable",)),
                        ("noise.nir", ("not a readable",)), ("a-dir.nir", ("is a directory",)),
                        ("fifo.nir", ("is a named pipe (FIFO)",)),
                        ("missing.nir", ("does not exist",))]:
        add(f"file-{name}", lambda p=f(name): from_nir(p), str(f(name)), *words)

    with h5py.File(f("other.h5"), "w") as h:
        h["data"] = np.arange(3)
    add("file-other-hdf5", lambda: from_nir(f("other.h5")), "other.h5", "no 'node' group")

    def damaged(name, edit, *words):
        p = f(name)
        shutil.copy(good, p)
        _edit_h5(p, edit)
        add(f"h5-{name}", lambda: from_nir(p), name, *words)

    damaged("unknown-type.nir", lambda h: h["node/nodes/linear_0/type"].__setitem__(
        (), b"Quantum"), "'linear_0'", "Quantum", "cannot be read")
    damaged("no-weight.nir", lambda h: h["node/nodes/linear_0"].__delitem__("weight"),
            "'linear_0'", "cannot be read")
    damaged("no-tau-mem.nir", lambda h: h["node/nodes/lif_0"].__delitem__("tau_mem"),
            "'lif_0'", "cannot be read")
    damaged("no-type.nir", lambda h: h["node/nodes/lif_0"].__delitem__("type"),
            "'lif_0'", "no type")
    damaged("top-not-graph.nir", lambda h: h["node/type"].__setitem__((), b"Linear"),
            "not a NIRGraph")
    damaged("no-nodes.nir", lambda h: h["node"].__delitem__("nodes"), "no nodes")

    def top_type_array(h):
        del h["node/type"]
        h["node/type"] = np.array([1, 2])
    damaged("top-type-array.nir", top_type_array, "not a NIRGraph")
    damaged("name-not-utf8.nir", lambda h: h["node/nodes"].move("lif_0", b"\xff\xfe"),
            "not UTF-8")

    def edges(value):
        def edit(h):
            del h["node/edges"]
            h["node/edges"] = value
        return edit

    damaged("edges-shape.nir", edges(np.array([b"input", b"linear_0", b"lif_0"])),
            "edges must be (source, target) pairs")
    damaged("edges-dangling.nir", edges(np.array([[b"input", b"linear_0"],
                                                  [b"linear_0", b"ghost"]])),
            "'ghost'", "does not have")
    damaged("edges-missing.nir", edges(np.array([[b"input", b"linear_0"],
                                                 [b"linear_0", b"lif_0"]])),
            "'lif_0'", "does not lead to the Output")
    damaged("edges-cycle.nir", edges(np.array([[b"input", b"linear_0"],
                                               [b"linear_0", b"lif_0"],
                                               [b"lif_0", b"input"]])), "cycle")
    damaged("weight-nan.nir", lambda h: h["node/nodes/linear_0/weight"].__setitem__(
        (0, 0), np.nan), "'linear_0'", "NaN")
    damaged("max-spikes-frac.nir", lambda h: (
        h["node/nodes/lif_0/metadata"].__delitem__("max_spikes"),
        h["node/nodes/lif_0/metadata"].__setitem__("max_spikes", 2.5)), "'lif_0'",
        "max_spikes", "2.5")
    damaged("threshold-inf.nir", lambda h: h["node/nodes/lif_0/v_threshold"].__setitem__(
        0, np.inf), "'lif_0'", "v_threshold", "finite")
    damaged("meta-not-utf8.nir", lambda h: (
        h["node/nodes/lif_0/metadata"].__delitem__("reset_at"),
        h["node/nodes/lif_0/metadata"].__setitem__("reset_at", np.void(b"\xff\xfe"))),
        "'lif_0'", "reset_at")

    def renamed(h):
        h.move("node/nodes/lif_0", "node/nodes/\x1b[31mlif")
        del h["node/edges"]
        h["node/edges"] = np.array([[b"input", b"linear_0"], [b"linear_0", b"\x1b[31mlif"],
                                    [b"\x1b[31mlif", b"output"]])
        h["node/nodes/\x1b[31mlif/v_threshold"][0] = np.nan
    damaged("control-name.nir", renamed, "\\x1b[31mlif", "v_threshold")

    # graphs: values accepted without a check before
    add("weight-nan", lambda: from_nir(_graph(("fc", _fc(np.full((3, 4), np.nan))),
                                              ("neuron", _lif()))), "'fc'", "NaN")
    add("weight-inf", lambda: from_nir(_graph(("fc", _fc(np.full((3, 4), -np.inf))),
                                              ("neuron", _lif()))), "'fc'", "infinite")
    add("weight-float16", lambda: from_nir(_graph(("fc", _fc(np.ones((3, 4), np.float16))),
                                                  ("neuron", _lif()))), "'fc'", "float16")
    add("weight-complex", lambda: from_nir(_graph(("fc", _fc(np.ones((3, 4), complex))),
                                                  ("neuron", _lif()))), "'fc'", "complex")
    add("weight-bool", lambda: from_nir(_graph(("fc", _fc(np.ones((3, 4), bool))),
                                               ("neuron", _lif()))), "'fc'", "bool")
    add("weight-str", lambda: from_nir(_graph(("fc", _fc(np.full((3, 4), "x"))),
                                              ("neuron", _lif()))), "'fc'", "dtype")
    add("weight-empty", lambda: from_nir(_graph(("fc", _fc(np.ones((0, 4)))),
                                                ("neuron", _lif(n=0)), out_shape=(0,))),
        "'fc'", "empty")
    add("weight-int-inexact", lambda: from_nir(_graph(
        ("fc", _fc(np.full((3, 4), 2**53 + 1, np.int64))), ("neuron", _lif()))), "'fc'",
        "2**53")
    add("weight-overflows-float32", lambda: from_nir(_graph(
        ("fc", _fc(np.full((3, 4), 1e300))), ("neuron", _lif())), dtype=torch.float32),
        "'fc'", "overflows")
    add("threshold-nan", lambda: from_nir(_good(v_threshold=np.nan)), "'neuron'",
        "v_threshold", "finite")
    add("threshold-inf", lambda: from_nir(_good(v_threshold=np.inf)), "'neuron'",
        "v_threshold")
    add("tau-syn-inf", lambda: from_nir(_good(tau_syn=np.inf)), "'neuron'", "tau_syn")
    add("tau-mem-nan", lambda: from_nir(_good(tau_mem=np.nan)), "'neuron'", "tau_mem")
    add("threshold-complex", lambda: from_nir(_good(v_threshold=0.5 + 1j)), "'neuron'",
        "complex")
    for name, value, word in [("frac", 2.5, "2.5"), ("bool", True, "True"),
                              ("numpy-bool", np.bool_(True), "True"), ("zero", 0, ">= 1"),
                              ("text", "3", "'3'"), ("nan", math.nan, "nan")]:
        add(f"max-spikes-{name}", lambda v=value: from_nir(_good(metadata={"max_spikes": v})),
            "'neuron'", "max_spikes", word)
    add("max-spikes-argument-frac", lambda: from_nir(_good(), max_spikes=2.5), "max_spikes",
        "2.5")
    add("max-spikes-argument-bool", lambda: from_nir(_good(), max_spikes=True), "max_spikes")
    add("t-max-text", lambda: from_nir(_good(metadata={"max_spikes": 2, "t_max": "soon"})),
        "'neuron'", "t_max", "soon")
    add("t-max-nan", lambda: from_nir(_good(metadata={"max_spikes": 2, "t_max": math.nan})),
        "'neuron'", "t_max")
    add("dt-inf", lambda: from_nir(_good(metadata={"max_spikes": 2, "dt": math.inf})),
        "'neuron'", "dt")
    add("tau-s-text", lambda: from_nir(_good(metadata={"max_spikes": 2, "tau_s": b"x"})),
        "'neuron'", "tau_s")
    add("reset-at-number", lambda: from_nir(_good(metadata={"max_spikes": 2, "reset_at": 3})),
        "'neuron'", "reset_at")
    add("meta-not-utf8", lambda: from_nir(_good(metadata={"max_spikes": 2,
                                                          "reset_at": b"\xff"})),
        "'neuron'", "UTF-8")
    add("time-unit-h", lambda: from_nir(_graph(("fc", _fc()), ("neuron", _lif()),
                                               metadata={"time_unit": "h"})), "time_unit",
        "'h'")
    add("time-unit-array", lambda: from_nir(_graph(("fc", _fc()), ("neuron", _lif()),
                                                   metadata={"time_unit": np.array([1, 2])})),
        "time_unit")

    # graphs: structure (cycles, missing edges, branches, shapes that disagree)
    fc, lif = ("fc", _fc()), ("neuron", _lif())
    add("cycle", lambda: from_nir(_graph(fc, lif, edges=[("input", "fc"), ("fc", "neuron"),
                                                          ("neuron", "input")])),
        "'neuron'", "closes a cycle")
    add("self-loop", lambda: from_nir(_graph(fc, lif, edges=[("input", "input")])),
        "'input'", "closes a cycle")
    add("cycle-merging", lambda: from_nir(_graph(fc, lif, edges=[
        ("input", "fc"), ("fc", "neuron"), ("neuron", "fc")])), "'fc'", "branches or merges")
    add("no-edges", lambda: from_nir(_graph(fc, lif, edges=[])), "'input'",
        "does not lead to the Output")
    add("dangling-edge", lambda: from_nir(_graph(fc, lif, edges=[
        ("input", "fc"), ("fc", "neuron"), ("neuron", "ghost")])), "'ghost'", "does not have")
    add("edge-not-pair", lambda: from_nir(_graph(fc, lif, edges=[("input",)])), "edge")
    add("edge-numbers", lambda: from_nir(_graph(fc, lif, edges=[(1, 2)])), "edge")
    add("edges-not-list", lambda: from_nir(_graph(fc, lif, edges=5)), "edges must be a list")
    add("branch", lambda: from_nir(_graph(fc, lif, edges=[
        ("input", "fc"), ("fc", "neuron"), ("neuron", "output"), ("input", "neuron")])),
        "branches or merges")
    add("stray-node", lambda: from_nir(_graph(fc, lif, ("lost", _lif()), edges=[
        ("input", "fc"), ("fc", "neuron"), ("neuron", "output")])), "'lost'",
        "not on the path")
    add("two-inputs", lambda: from_nir(_graph(fc, lif, ("in2", nir.Input(
        input_type={"input": np.array([4])})))), "one Input")
    add("input-shape-wrong", lambda: from_nir(_graph(fc, lif, in_shape=(5,))), "'fc'",
        "takes 4 inputs")
    add("input-shape-negative", lambda: from_nir(_graph(fc, lif, in_shape=(-4,))),
        "'input'", "positive integers")
    add("input-shape-inf", lambda: from_nir(_graph(fc, lif, in_shape=(np.inf,))),
        "'input'", "positive integers")
    add("input-shape-frac", lambda: from_nir(_graph(fc, lif, in_shape=(4.5,))),
        "'input'", "positive integers")
    add("output-shape-wrong", lambda: from_nir(_graph(fc, lif, out_shape=(7,))),
        "'output'", "has shape (7,)")
    add("lif-size-wrong", lambda: from_nir(_graph(fc, ("neuron", _lif(n=5)))), "'neuron'",
        "5 entries for 3 neurons")
    add("linear-no-lif", lambda: from_nir(_graph(fc)), "'fc'", "followed by a CubaLIF")
    add("weight-3d", lambda: from_nir(_graph(("fc", _fc(np.ones((3, 4, 1)))), lif)), "'fc'",
        "2-D")
    conv = nir.Conv2d(input_shape=(6, 6), weight=np.ones((2, 1, 3, 3)), stride=1, padding=0,
                      dilation=1, groups=1, bias=np.zeros(2))
    conv_lif = ("n", _lif(n=2 * 4 * 4))

    def conv_graph(**change):
        c = nir.Conv2d(**{**dict(input_shape=(6, 6), weight=conv.weight, stride=1, padding=0,
                                 dilation=1, groups=1, bias=np.zeros(2)), **change})
        return _graph(("conv", c), conv_lif, in_shape=(1, 6, 6), out_shape=(2, 4, 4))

    assert len(from_nir(conv_graph())) == 1  # the template is importable
    add("conv-groups-array", lambda: from_nir(conv_graph(groups=np.array([1, 2]))),
        "'conv'")
    add("conv-stride-frac", lambda: from_nir(conv_graph(stride=np.array([1.5, 1.5]))),
        "'conv'", "stride")
    add("conv-weight-nan", lambda: from_nir(conv_graph(weight=np.full((2, 1, 3, 3), np.nan))),
        "'conv'", "NaN")
    add("conv-kernel-too-big", lambda: from_nir(conv_graph(weight=np.ones((2, 1, 9, 9)))),
        "'conv'", "does not fit")
    def flatten_graph(**change):
        flat = nir.Flatten(input_type={"input": np.array([2, 4, 4])}, start_dim=0, end_dim=-1)
        for k, v in change.items():
            setattr(flat, k, v)
        return _graph(("conv", conv), conv_lif, ("flat", flat), in_shape=(1, 6, 6),
                      out_shape=(32,))

    assert len(from_nir(flatten_graph())) == 2  # the template is importable
    add("flatten-dims-array", lambda: from_nir(flatten_graph(start_dim=np.array([0, 1]))),
        "'flat'", "malformed")
    add("flatten-dims-text", lambda: from_nir(flatten_graph(end_dim="last")), "'flat'")
    add("flatten-input-type-wrong", lambda: from_nir(flatten_graph(
        input_type={"input": np.array([3, 4, 4])})), "'flat'", "input_type")
    add("name-control-chars", lambda: from_nir(_graph(
        ("\x1b]0;owned\x07", _fc()), ("neuron", _lif(v_threshold=np.nan)))), "'neuron'")
    add("name-unicode", lambda: from_nir(_graph(("fc", _fc()), ("né\u200bron", _lif(
        v_reset=0.1)))), "\\u200b", "v_reset")

    # export: NaN weights, a run whose checkpoint holds NaN, bad targets
    bad = SpikingSequential(LIFLinear(4, 3, tau_s=0.1, theta=0.5, max_spikes=2))
    with torch.no_grad():
        bad[0].weight[1, 2] = math.nan
    add("to-nir-nan-weight", lambda: to_nir(bad), "layer 0", "NaN")
    conv_bad = LIFConv2d(1, 2, 3, tau_s=0.1, theta=0.5, max_spikes=2)
    with torch.no_grad():
        conv_bad.weight.fill_(math.inf)
    add("to-nir-inf-conv", lambda: to_nir(conv_bad, input_shape=(1, 6, 6)), "infinite")
    add("save-nir-nan-weight", lambda: save_nir(bad, f("nan.nir")), "NaN",
        after=None)
    r = shutil.copytree(run, f("nan-run"))
    ck = torch.load(r / "best.pt", weights_only=True)
    ck["model"]["0.weight"][0, 0] = math.nan
    torch.save(ck, r / "best.pt")
    add("export-run-nan", lambda: export_run(r, f("nan-run.nir")), "best.pt", "'0.weight'",
        "NaN")
    add("load-run-model-nan", lambda: load_run_model(r), "best.pt", "NaN")
    add("load-run-model-checkpoint", lambda: load_run_model(run, "worst"), "checkpoint",
        "'worst'")
    f("mine.nir").write_bytes(b"mine")
    add("save-existing", lambda: save_nir(net, f("mine.nir")), "already exists",
        "overwrite=True")
    add("save-existing-overwrite", lambda: save_nir(net, f("mine.nir"), overwrite=True),
        "not a NIR file batsnn wrote")
    (f("link.nir")).symlink_to(f("mine.nir"))
    add("save-link", lambda: save_nir(net, f("link.nir"), overwrite=True), "symbolic link")
    add("save-dir", lambda: save_nir(net, f("a-dir.nir")), "is a directory")
    add("save-fifo", lambda: save_nir(net, f("fifo.nir"), overwrite=True), "named pipe")
    add("save-no-parent", lambda: save_nir(net, f("nowhere") / "x.nir"), "does not exist")
    add("save-into-run", lambda: save_nir(net, run / "net.nir"), "batsnn output directory")
    add("save-into-run-last", lambda: save_nir(net, run / "last.pt", overwrite=True),
        "batsnn output directory")
    add("save-empty-path", lambda: save_nir(net, ""), "not a file name")
    add("save-bytes-path", lambda: save_nir(net, b"x.nir"), "path", errors=(TypeError,))
    add("export-run-existing", lambda: export_run(run, f("mine.nir")), "already exists")

    # weights beyond the layer's supported range (LIFParams.max_weight = 5e9 here), integer
    # weights, and a time step outside its range, refused at import
    two = SpikingSequential(LIFLinear(4, 3, tau_s=0.1, theta=0.5, max_spikes=2),
                            LIFLinear(3, 2, tau_s=0.1, theta=0.5, max_spikes=2))

    def big(value, node="linear_0", net=two):
        g = to_nir(net)
        g.nodes[node].weight[0, 0] = value
        return g

    add("weight-1e16", lambda: from_nir(big(1e16)), "'linear_0'", "magnitude 1e+16",
        "5e+09")
    add("weight-minus-1e16-second-layer", lambda: from_nir(big(-1e16, "linear_1")),
        "'linear_1'", "magnitude 1e+16")
    add("weight-just-beyond", lambda: from_nir(big(5.0001e9)), "'linear_0'", "5e+09")
    add("weight-at-the-bound", lambda: from_nir(big(5e9)), errors=(),
        after=lambda m: m[0].weight[0, 0].item() == 5e9 or pytest.fail(str(m[0].weight)))
    nir.write(f("big.nir"), big(1e16))
    add("weight-1e16-file", lambda: from_nir(f("big.nir")), "big.nir", "'linear_0'",
        "magnitude")
    conv_layer = LIFConv2d(1, 2, 3, tau_s=0.1, theta=0.5, max_spikes=2)
    add("conv-weight-1e16", lambda: from_nir(_conv_big(conv_layer)), "'conv_0'", "magnitude")
    add("weight-int", lambda: from_nir(_graph(("fc", _fc(np.full((3, 4), 3, np.int64))),
                                              ("neuron", _lif()))), errors=(),
        after=lambda m: (m[0].weight.dtype == torch.float32
                         and bool((m[0].weight == 3).all())) or pytest.fail(str(m[0].weight)))
    add("weight-int-runs", lambda: from_nir(_graph(("fc", _fc(np.ones((3, 4), np.int32))),
                                                   ("neuron", _lif()))), errors=(),
        after=lambda m: m(torch.zeros(1, 4, 1)).counts.shape == (1, 3) or pytest.fail())
    add("weight-int-joins-float64", lambda: from_nir(_int_first(two.double())), errors=(),
        after=lambda m: [layer.weight.dtype for layer in m] == [torch.float64] * 2
        or pytest.fail(str([layer.weight.dtype for layer in m])))
    add("weight-int-2-25-float32", lambda: from_nir(_graph(
        ("fc", _fc(np.full((3, 4), 2**25, np.int64))), ("neuron", _lif()))), "'fc'",
        "33554432", "2**24")
    add("weight-int-2-25-float64", lambda: from_nir(_graph(
        ("fc", _fc(np.full((3, 4), 2**25, np.int64))), ("neuron", _lif())),
        dtype=torch.float64), errors=(),
        after=lambda m: m[0].weight[0, 0].item() == 2**25 or pytest.fail())
    add("weight-int-beyond-range", lambda: from_nir(_graph(
        ("fc", _fc(np.full((3, 4), 2**40, np.int64))), ("neuron", _lif())),
        dtype=torch.float64), "'fc'", "magnitude")
    add("dt-subnormal", lambda: from_nir(_good(metadata={"max_spikes": 2, "dt": 1e-320})),
        "'neuron'", "dt=1e-320", "tau_s=0.1")
    add("dt-huge", lambda: from_nir(_good(metadata={"max_spikes": 2, "dt": 1e10})),
        "'neuron'", "dt=10000000000.0")
    add("dt-in-range", lambda: from_nir(_good(metadata={"max_spikes": 2, "dt": 1e-3})),
        errors=(), after=lambda m: m[0].params.dt == 1e-3 or pytest.fail())

    # and what is allowed: a new file, and replacing batsnn's own NIR file when asked
    add("save-new", lambda: save_nir(net, f("new.nir")), errors=(),
        after=lambda p: assert_batsnn_nir(p))
    add("save-overwrite-own", lambda: save_nir(net, good, overwrite=True), errors=(),
        after=lambda p: assert_batsnn_nir(p))
    return cases


def _conv_big(conv) -> nir.NIRGraph:
    g = to_nir(conv, input_shape=(1, 6, 6))
    g.nodes["conv_0"].weight[0, 0, 0, 0] = 1e16
    return g


def _int_first(net) -> nir.NIRGraph:
    """``net``'s graph with the first layer's weights replaced by integers."""
    g = to_nir(net)
    g.nodes["linear_0"].weight = np.ones(g.nodes["linear_0"].weight.shape, np.int64)
    return g


def assert_batsnn_nir(path: Path) -> None:
    assert is_batsnn_nir_file(path)
    assert from_nir(path)[0].weight.shape == (3, 4)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_library_cases(trained_run, tmp_path):
    cases = make_lib_cases(tmp_path / "lib", trained_run)
    assert len(cases) >= 90
    check_lib(cases)


def test_library_messages_are_printable_and_leave_files_alone(trained_run, tmp_path):
    """No raw control character reaches a message; refused targets keep their content."""
    root = tmp_path / "lib"
    cases = make_lib_cases(root, trained_run)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()
              and not p.name.startswith("new")}
    for case in cases:
        if not case.errors:
            continue
        with pytest.raises(case.errors) as info:
            case.call()
        raw = sorted(CONTROL & set(str(info.value)))
        assert not raw, f"{case.id}: raw control characters {raw} in {str(info.value)!r}"
    for p, content in before.items():
        if p.name != "good.nir":  # replaced on purpose by save-overwrite-own
            assert p.read_bytes() == content, f"{p} changed"
    assert not (root / "nan.nir").exists() and not (root / "nan-run.nir").exists()


def test_check_new_file_rules(tmp_path):
    """The single-file check on its own: what it accepts, and ownership decided by the
    caller's test."""
    assert check_new_file(tmp_path / "new.bin", "out") == tmp_path / "new.bin"
    (tmp_path / "old.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="already exists; .*--force replaces a thing"):
        check_new_file(tmp_path / "old.bin", "--out", own="a thing", force_hint="--force")
    with pytest.raises(ValueError, match="is not a file batsnn wrote"):
        check_new_file(tmp_path / "old.bin", "out", overwrite=True)
    with pytest.raises(ValueError, match="is not mine"):
        check_new_file(tmp_path / "old.bin", "out", overwrite=True, is_own=lambda p: False,
                       own="mine")
    assert check_new_file(tmp_path / "old.bin", "out", overwrite=True,
                          is_own=lambda p: p.read_bytes() == b"x") == tmp_path / "old.bin"
    # a config.json without the marker, or a marker behind a link, marks nothing
    (tmp_path / "config.json").write_text('{"mine": 1}')
    assert check_new_file(tmp_path / "a.nir", "out") == tmp_path / "a.nir"
    d = tmp_path / "linked"
    d.mkdir()
    (tmp_path / "marked.json").write_text('{"batsnn_run": "train"}')
    (d / "config.json").symlink_to(tmp_path / "marked.json")
    assert check_new_file(d / "a.nir", "out") == d / "a.nir"
    (tmp_path / "config.json").write_text('{"batsnn_run": "train"}')
    with pytest.raises(ValueError, match="batsnn output directory"):
        check_new_file(tmp_path / "a.nir", "out")
    # and so is any directory below a marked one, however deep
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    for p in (tmp_path / "sub" / "a.nir", tmp_path / "sub" / "deeper" / "a.nir"):
        with pytest.raises(ValueError, match="batsnn output directory .*config.json"):
            check_new_file(p, "out")


def test_save_nir_writes_through_the_safe_writer(tmp_path, monkeypatch):
    """The NIR file reaches disk only through atomic_write: a failure leaves nothing."""
    import batsnn.export.nir as mod

    calls = []

    def failing(path, data):
        calls.append((Path(path), data[:8]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mod, "atomic_write", failing)
    net = LIFLinear(4, 3, tau_s=0.1, theta=0.5, max_spikes=2)
    with pytest.raises(ValueError, match="cannot be written .No space left on device"):
        save_nir(net, tmp_path / "x.nir")
    assert calls == [(tmp_path / "x.nir", b"\x89HDF\r\n\x1a\n")]
    assert list(tmp_path.iterdir()) == []
