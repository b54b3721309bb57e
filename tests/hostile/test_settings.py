"""Hostile settings files and dataset files: every one ends in one line naming the file and
the field (``batsnn train --config F``, ``--data-dir D``), or in a ``ValueError``/
``TypeError`` naming them from the library; never a traceback, a hang on a named pipe, an
endless read of a device, or an allocation of a network that cannot fit."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from batsnn.experiments import config as C
from batsnn.experiments import data as D
from batsnn.experiments import model as Mo
from tests.hostile.harness import (CliCase, LibCase, check_cli_commands, check_cli_in_process,
                                   check_lib)

#: weights no machine holds (a hidden layer of 10^12 neurons)
HUGE = 10**12


def _train(data_dir, out, *extra):
    return ["train", "--dataset", "fashion-mnist", "--data-dir", data_dir, "--epochs", "1",
            "--quiet", "--device", "cpu", "--out", out, *extra]


def _absent(path: Path):
    def check():
        assert not os.path.lexists(path), f"{path} was created"
    return check


def _deep_list(depth):
    v = []
    for _ in range(depth):
        v = [v]
    return v


def _tiny_net(first):
    return ('{"network": [' + first + ', {"type": "linear", "theta": 1, "max_spikes": 2}]}')


def _copy_data(data_dir, d: Path) -> Path:
    d.mkdir(parents=True)
    for p in Path(data_dir).iterdir():
        shutil.copy(p, d / p.name)
    return d


def make_cases(root: Path, data_dir: Path) -> list[CliCase]:
    """Write each case's files under ``root`` and return the command-line cases."""
    root.mkdir(parents=True, exist_ok=True)
    out = root / "never-written"
    cases = []

    def config(name, content, *words, suffix=".json"):
        f = root / f"{name}{suffix}"
        f.write_bytes(content if isinstance(content, bytes) else content.encode())
        cases.append(CliCase(f"config-{name}", _train(data_dir, out, "--config", f),
                             (f"config file '{f}'", *words)))

    def config_path(name, path, *words):
        cases.append(CliCase(f"config-{name}", _train(data_dir, out, "--config", path),
                             (f"config file '{path}'", *words)))

    # paths of the wrong kind: described, never read (a FIFO would block, /dev/zero never ends)
    (root / "dir.json").mkdir()
    config_path("directory", root / "dir.json", "is a directory, expected a file")
    os.mkfifo(root / "fifo.json")
    config_path("fifo", root / "fifo.json", "is a named pipe (FIFO)")
    config_path("dev-zero", "/dev/zero", "is a device, expected a file")
    os.symlink("/dev/zero", root / "zero.json")
    config_path("link-to-dev-zero", root / "zero.json", "is a device")
    os.symlink(root / "gone", root / "broken.json")
    config_path("broken-link", root / "broken.json", "is a broken symbolic link")
    config_path("missing", root / "none.json", "does not exist")
    config_path("empty-path", "", "the path is empty")
    config("too-large", "{" + " " * (C.MAX_CONFIG_BYTES + 1) + "}", "larger than")

    # nesting beyond what the parsers or later copies recurse through
    config("deep-json", '{"lr": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply")
    config("deep-json-unclosed", "[" * 100_000, "is not valid JSON")
    config("nested-json", '{"network": ' + "[" * 500 + "]" * 500 + "}",
           "nested more than 64 levels deep")
    config("nested-json-dicts", '{"lr": ' + '{"a": ' * 300 + "1" + "}" * 301,
           "nested more than 64 levels deep")
    config("deep-toml-arrays", "lr = " + "[" * 100_000 + "]" * 100_000, "is not valid TOML",
           "nested too deeply", suffix=".toml")
    config("deep-toml-tables", "lr = " + "{a = " * 5000 + "1" + "}" * 5000,
           "nested too deeply", suffix=".toml")
    config("deep-toml-dotted-key", "a" + ".a" * 5000 + " = 1\n",
           "nested more than 64 levels deep", suffix=".toml")
    config("deep-toml-header", "[a" + ".a" * 5000 + "]\nx = 1\n",
           "nested more than 64 levels deep", suffix=".toml")

    # numbers too long or too large: named with their field and file
    config("int-5000-digits", '{"epochs": ' + "9" * 5000 + "}", "more than 4300 digits")
    config("int-5000-digits-toml", "epochs = " + "9" * 5000 + "\n", "more than 4300 digits",
           suffix=".toml")
    config("lr-400-digits", '{"lr": ' + "9" * 400 + "}", "lr must be at most",
           "an integer of 400 digits")
    config("epochs-400-digits", '{"epochs": ' + "9" * 400 + "}", "epochs must be at most")
    config("seed-400-digits", '{"seed": ' + "9" * 400 + "}", "seed must be at most")
    config("tau-s-400-digits", '{"tau_s": ' + "9" * 400 + "}", "tau_s must be at most")
    config("hidden-400-digits", '{"hidden": [' + "9" * 400 + "]}", "hidden layer sizes")
    config("theta-400-digits", '{"theta": [' + "9" * 400 + ", 1]}", "theta[0] must be at most")
    config("init-400-digits", '{"init": [0, ' + "9" * 400 + "]}", "init must be at most")
    config("layer-theta-400-digits",
           _tiny_net('{"type": "linear", "features": 3, "theta": ' + "9" * 400
                     + ', "max_spikes": 2}'),
           "network layer 0: theta must be at most")
    config("layer-kernel-400-digits",
           _tiny_net('{"type": "conv2d", "channels": 2, "kernel": ' + "9" * 400
                     + ', "theta": 1, "max_spikes": 1}, {"type": "flatten"}'),
           "network layer 0: kernel must be at most")
    config("lr-overflows-to-inf", '{"lr": 1e400}', "lr must be finite")

    # a key twice (JSON would keep the last one silently), thousands of unknown keys
    config("key-twice", '{"lr": 0.1, "epochs": 1, "lr": 0.2}', "gives 'lr' twice")
    config("layer-key-twice",
           _tiny_net('{"type": "linear", "features": 3, "theta": 1, "theta": 2, '
                     '"max_spikes": 2}'), "gives 'theta' twice")
    config("many-unknown-keys", "{" + ", ".join(f'"k{i:05d}": 1' for i in range(20_000)) + "}",
           "unknown config field(s) k00000, k00001", "and 19990 more")

    # a preset that does not exist, values of the wrong type
    config("preset-unknown", '{"preset": "nope"}', "unknown preset 'nope'")
    config("preset-list", '{"preset": ["mnist-count"]}', "preset must be str")
    config("preset-other", '{"preset": "mnist-ttfs"}', "names preset 'mnist-ttfs'")
    cases[-1] = cases[-1]._replace(argv=[*cases[-1].argv, "--preset", "mnist-count"])
    config("lr-list", '{"lr": [1, 2]}', "lr must be int or float", "[1, 2]")
    config("lr-dict", '{"lr": {"a": 1}}', "lr must be int or float")
    config("epochs-date", "epochs = 1979-05-27\n", "epochs must be int", suffix=".toml")
    config("network-dict", '{"network": {"type": "linear"}}', "network must be a list")
    config("layer-list", '{"network": [[1]]}', "network layer 0", "must be a dict")
    config("layer-features-dict",
           _tiny_net('{"type": "linear", "features": {"a": 1}, "theta": 1, "max_spikes": 2}'),
           "network layer 0 (linear): features must be an int")
    config("layer-theta-list",
           _tiny_net('{"type": "linear", "features": 3, "theta": [1], "max_spikes": 2}'),
           "network layer 0 (linear): theta")
    config("layer-kernel-dict",
           _tiny_net('{"type": "conv2d", "channels": 2, "kernel": {"a": 1}, "theta": 1, '
                     '"max_spikes": 1}, {"type": "flatten"}'),
           "network layer 0 (conv2d): kernel must be")
    config("layer-type-list", '{"network": [{"type": [1]}]}', "unknown layer type")
    config("dataset-list", '{"dataset": ["mnist"]}', "dataset must be str")
    config("data-dir-nul", '{"data_dir": "a\\u0000b"}', "data_dir must be a path without NUL")
    config("hidden-string", '{"hidden": "800"}', "hidden must be a list")

    # text from the file reaches the terminal escaped
    config("key-escape", '{"\\u001b[31mred": 1}', "unknown config field", "\\x1b[31mred")
    config("layer-type-escape", '{"network": [{"type": "\\u001b[2J"}]}', "\\x1b[2J")
    config("layer-key-escape",
           _tiny_net('{"type": "linear", "\\u009bx": 1, "theta": 1, "max_spikes": 2}'),
           "unknown key(s) \\x9bx")
    config("dataset-escape", '{"dataset": "\\u001b]0;title\\u0007"}', "unknown dataset",
           "\\x1b]0;title\\x07")

    # networks whose weights cannot fit anywhere: refused before anything is allocated
    config("hidden-huge", '{"hidden": [%d]}' % HUGE, "weights need about",
           "lower the layer sizes")
    config("network-huge",
           _tiny_net('{"type": "linear", "features": %d, "theta": 1, "max_spikes": 2}' % HUGE),
           "weights need about")
    config("conv-channels-huge",
           _tiny_net('{"type": "conv2d", "channels": %d, "kernel": 5, "theta": 1, '
                     '"max_spikes": 1}, {"type": "flatten"}' % HUGE), "weights need about")
    config("many-layers",
           '{"network": [' + ", ".join(['{"type": "linear", "features": 2000000, "theta": 1, '
                                        '"max_spikes": 1}'] * 40)
           + ', {"type": "linear", "theta": 1, "max_spikes": 1}]}', "weights need about")

    # spike buffers with more elements than a tensor can have (checked once the data is
    # known, after --out is made: one --out per case)
    for name, field in (("batch-size", "batch_size"), ("eval-batch-size", "eval_batch_size")):
        f = root / f"{name}-huge.json"
        f.write_text('{"%s": %d, "hidden": [8]}' % (field, 10**18))
        cases.append(CliCase(f"config-{name}-huge",
                             _train(data_dir, root / f"out-{name}", "--config", f),
                             ("spike buffer of 1000000000000000000 x",
                              "more elements than any memory holds")))

    # spike buffers beyond memory: the file, the layer's index and the batch field named
    def too_large(name, text, *words):
        f = root / f"mem-{name}.json"
        f.write_text(text)
        d = root / f"out-mem-{name}"
        cases.append(CliCase(f"config-mem-{name}", _train(data_dir, d, "--config", f),
                             (f"config file '{f}'", *words), after=_absent(d)))

    too_large("max-spikes", _tiny_net('{"type": "linear", "features": 8, "theta": 1, '
                                      '"max_spikes": 2000000000}'),
              "network layer 0 (linear)", "max_spikes=2000000000", "GiB")
    too_large("max-spikes-last", _tiny_net('{"type": "linear", "features": 8, "theta": 1, '
                                           '"max_spikes": 2}').replace(
        '"theta": 1, "max_spikes": 2}]', '"theta": 1, "max_spikes": 2000000000}]'),
              "network layer 1 (linear)", "max_spikes=2000000000")
    too_large("conv-channels", _tiny_net('{"type": "conv2d", "channels": 100000, "kernel": 3, '
                                         '"theta": 1, "max_spikes": 2}, {"type": "flatten"}'),
              "network layer 2 (linear)", "GiB")
    too_large("batch-2^62", '{"batch_size": %d, "hidden": [8]}' % 2**62,
              "network layer 0 (linear)", "batch_size", str(2**62))
    too_large("eval-batch-1e12", '{"eval_batch_size": 1000000000000, "hidden": [8]}',
              "network layer 0 (linear)", "eval_batch_size", "1000000000000")
    too_large("both-batches", '{"batch_size": 100000000000, "eval_batch_size": '
              '1000000000000, "hidden": [8]}', "eval_batch_size", "1000000000000")

    # --data-dir and dataset files of the wrong kind
    f = Path(data_dir) / "train-images-idx3-ubyte.gz"
    # (batsnn train makes its --out directory before it reads the dataset: one per case)
    cases.append(CliCase("data-dir-is-file", _train(f, root / "out-data-dir-is-file"),
                         (f"data directory '{f}'", "is a file, expected a directory")))
    os.mkfifo(root / "fifo-as-data-dir")
    cases.append(CliCase("data-dir-is-fifo", _train(root / "fifo-as-data-dir",
                                                    root / "out-data-dir-is-fifo"),
                         ("is a named pipe (FIFO), expected a directory",)))
    for kind, make in [("dir", lambda p: p.mkdir()), ("fifo", os.mkfifo),
                       ("dev-zero", lambda p: os.symlink("/dev/zero", p)),
                       ("broken-link", lambda p: os.symlink(p.parent / "gone", p))]:
        d = _copy_data(data_dir, root / f"data-{kind}")
        target = d / "train-labels-idx1-ubyte.gz"
        target.unlink()
        make(target)
        what = {"dir": "is a directory", "fifo": "is a named pipe (FIFO)",
                "dev-zero": "is a device", "broken-link": "is a broken symbolic link"}[kind]
        cases.append(CliCase(f"data-file-{kind}", _train(d, root / f"out-data-{kind}"),
                             (str(target), what, "expected an IDX file")))
    return cases


def test_settings_and_dataset_files_in_process(data_dir, tmp_path, capsys, monkeypatch):
    cases = make_cases(tmp_path / "cases", data_dir)
    assert len(cases) >= 50
    check_cli_in_process(cases, capsys, monkeypatch, tmp_path / "cache")
    assert not (tmp_path / "cases" / "never-written").exists()  # refused before --out


@pytest.mark.slow
def test_settings_and_dataset_files_as_real_commands(data_dir, tmp_path):
    check_cli_commands(make_cases(tmp_path / "cases", data_dir), tmp_path / "cache")


def _lib_cases(tmp: Path) -> list[LibCase]:
    from batsnn.experiments.rundir import CheckpointError
    from batsnn.experiments.train import check_resumable

    tmp.mkdir(parents=True, exist_ok=True)
    os.mkfifo(tmp / "fifo")
    (tmp / "dir").mkdir()
    cfg = C.resolve_config("mnist-count", hidden=[40_000])
    deep = _deep_list(100_000)
    deep_dict = {}
    for _ in range(100_000):
        deep_dict = {"a": deep_dict}
    ckpt_settings = {**C.resolve_config("mnist-count").to_dict(), "network": [deep]}

    def on_meta():  # shapes only: nothing is allocated, so nothing is refused
        with torch.device("meta"):
            return Mo.build_network([{"type": "linear", "features": 10**6, "theta": 1,
                                      "max_spikes": 1},
                                     {"type": "linear", "theta": 1, "max_spikes": 1}],
                                    (10**6,), 10)

    def weights(expected):
        def after(n):
            assert n == expected, (n, expected)
        return after

    return [
        # settings inside checkpoints and from Python: nesting and types named
        LibCase("from-dict-deep-network", lambda: C.config_from_dict({"network": deep}),
                (ValueError,), ("network is nested more than 64 levels deep",)),
        LibCase("from-dict-deep-dict", lambda: C.config_from_dict({"lr": deep_dict}),
                (ValueError,), ("lr is nested more than 64 levels deep",)),
        LibCase("from-dict-checkpoint-layers", lambda: C.config_from_dict(ckpt_settings),
                (ValueError,), ("network is nested",)),
        LibCase("resume-checkpoint-deep-settings",
                lambda: check_resumable(ckpt_settings, C.resolve_config("mnist-count"),
                                        "run/last.pt"),
                (CheckpointError,), ("checkpoint 'run/last.pt' holds invalid settings",
                                     "network is nested more than 64 levels deep")),
        LibCase("resume-checkpoint-settings-not-a-dict",
                lambda: check_resumable([1], C.resolve_config("mnist-count"), "run/last.pt"),
                (CheckpointError,), ("holds invalid settings", "settings must be a dict")),
        LibCase("from-dict-deep-unknown", lambda: C.config_from_dict({"colour": deep}),
                (ValueError,), ("unknown config field(s) colour",)),
        LibCase("from-dict-not-a-dict", lambda: C.config_from_dict([("lr", 1)]), (TypeError,),
                ("settings must be a dict, got list",)),
        LibCase("setting-5000-digits", lambda: C.check_setting("seed", 10**5000), (ValueError,),
                ("seed must be at most", "over 4000 digits")),
        LibCase("setting-400-digits", lambda: C.check_setting("lr", 10**400), (ValueError,),
                ("lr must be at most", "an integer of 401 digits")),
        LibCase("setting-deep", lambda: C.check_setting("theta", deep), (ValueError,),
                ("theta is nested",)),
        LibCase("setting-path-nul", lambda: C.check_setting("out", "a\0b"), (ValueError,),
                ("out must be a path without NUL", "'a\\x00b'")),
        LibCase("setting-device-list", lambda: C.check_setting("device", ["cpu"]), (TypeError,),
                ("device must be str",)),
        LibCase("setting-choice-escape", lambda: C.check_setting("loss", "\x1b[2J"),
                (ValueError,), ("loss must be 'count' or 'ttfs'", "\\x1b[2J")),
        LibCase("read-config-fifo", lambda: C.read_config_file(tmp / "fifo"), (ValueError,),
                ("is a named pipe (FIFO)",)),
        LibCase("read-config-dev-zero", lambda: C.read_config_file("/dev/zero"), (ValueError,),
                ("is a device",)),
        LibCase("read-config-nul", lambda: C.read_config_file("a\0b.json"), (ValueError,),
                ("config file 'a\\x00b.json' is not a valid path (it holds a NUL character)",)),
        LibCase("read-idx-nul", lambda: D.read_idx("a\0b"), (ValueError,),
                ("a\\x00b is not a valid path",)),
        LibCase("load-data-dir-nul", lambda: D.load_dataset("mnist", "a\0b"), (ValueError,),
                ("data directory 'a\\x00b' is not a valid path",)),
        LibCase("read-config-escaped-name", lambda: C.read_config_file(tmp / "\x1b[2J.json"),
                (ValueError,), ("\\x1b[2J.json' does not exist",)),
        # networks: sizes estimated before anything is allocated, in every path
        LibCase("build-model-too-large", lambda: Mo.build_model(cfg, 10**8, 10),
                (ValueError, MemoryError), ("weights need about", "lower the layer sizes")),
        LibCase("build-network-too-large",
                lambda: Mo.build_network([{"type": "linear", "features": HUGE, "theta": 1,
                                           "max_spikes": 1},
                                          {"type": "linear", "theta": 1, "max_spikes": 1}],
                                         (784,), 10),
                (Mo.NetworkTooLarge,), ("weights need about",)),
        LibCase("check-fits-too-large", lambda: Mo.check_fits(cfg, 10**8, 10, "cpu", 1),
                (MemoryError,), ("with their gradients and Adam's moments",)),
        LibCase("check-fits-batch-beyond-int64",
                lambda: Mo.check_fits(C.resolve_config("mnist-count", hidden=[8]), 784, 10,
                                      "cpu", 2**62),
                (MemoryError,), ("more elements than any memory holds",)),
        LibCase("check-fits-names-layer",
                lambda: Mo.check_fits(C.resolve_config("mnist-count", hidden=[8, 8],
                                                       theta=[1, 1, 1],
                                                       max_spikes=[2, 2 * 10**9, 2]),
                                      784, 10, "cpu", 16),
                (Mo.NetworkTooLarge,), ("network layer 1 (linear)", "max_spikes=2000000000")),
        LibCase("validate-too-large",
                lambda: C.validate_config(C.TrainConfig(network=[
                    {"type": "linear", "features": HUGE, "theta": 1, "max_spikes": 1},
                    {"type": "linear", "theta": 1, "max_spikes": 1}])),
                (Mo.NetworkTooLarge,), ("weights need about",)),
        LibCase("from-dict-too-large", lambda: C.config_from_dict({"hidden": [HUGE]}),
                (ValueError,), ("weights need about",)),
        LibCase("build-on-meta-allocates-nothing", on_meta, (),
                after=lambda net: (net[0].weight.numel() == 10**12
                                   or pytest.fail(f"{net[0].weight.shape}"))),
        LibCase("weights-dense", lambda: Mo.network_weights(C.PRESETS["mnist-count"]["network"],
                                                            (784,), 10),
                (), after=weights(784 * 800 + 800 * 10)),
        LibCase("weights-conv", lambda: Mo.network_weights(C.PRESETS["mnist-conv"]["network"],
                                                           (1, 28, 28), 10),
                (), after=weights(15 * 25 + 40 * 15 * 25 + 40 * 4 * 4 * 300 + 300 * 10)),
        LibCase("min-weights-dense", lambda: Mo.min_weights(C.PRESETS["mnist-count"]["network"],
                                                            10),
                (), after=weights(800 + 800 * 10)),
        LibCase("min-weights-conv", lambda: Mo.min_weights(C.PRESETS["mnist-conv"]["network"],
                                                           10),
                (), after=weights(15 * 25 + 40 * 15 * 25 + 40 * 300 + 300 * 10)),
        LibCase("layer-key-not-str",
                lambda: Mo.check_network([{"type": "flatten", 3: 1},
                                          {"type": "linear", "theta": 1, "max_spikes": 1}]),
                (ValueError,), ("network layer 0 (flatten): unknown key(s) 3",)),
        # dataset files and directories of the wrong kind
        LibCase("read-idx-fifo", lambda: D.read_idx(tmp / "fifo"), (ValueError,),
                ("is a named pipe (FIFO), expected an IDX file",)),
        LibCase("read-idx-dir", lambda: D.read_idx(tmp / "dir"), (ValueError,),
                ("is a directory, expected an IDX file",)),
        LibCase("read-idx-dev-zero", lambda: D.read_idx("/dev/zero"), (ValueError,),
                ("/dev/zero is a device",)),
        LibCase("read-mat-dir", lambda: D.read_emnist_mat(tmp / "dir"), (ValueError,),
                ("is a directory, expected an EMNIST .mat file",)),
        LibCase("load-data-dir-fifo", lambda: D.load_dataset("mnist", tmp / "fifo"),
                (ValueError,), ("data directory", "is a named pipe (FIFO)")),
        LibCase("wheel-dir", lambda: D.prepare_mnist(tmp / "t", wheel=tmp / "dir", quiet=True),
                (ValueError,), ("is a directory, expected a wheel (zip) file",)),
        LibCase("dataset-name-escape", lambda: D.canonical_name("\x1b[2J"), (ValueError,),
                ("unknown dataset '\\x1b[2J'",)),
    ]


def test_library_cases(tmp_path):
    check_lib(_lib_cases(tmp_path / "lib"))
