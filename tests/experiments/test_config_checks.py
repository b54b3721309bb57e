"""The one config validator: every setting checked on its own (type, finiteness, range),
errors naming the setting and the file it came from; numpy scalars accepted like Python
numbers, everywhere a time step is taken."""

import dataclasses
import json

import numpy as np
import pytest
import torch

import batsnn
from batsnn.experiments import config as C
from batsnn.experiments import sweep as S


def test_every_setting_refuses_a_value_of_another_type_naming_itself():
    for name in [f.name for f in dataclasses.fields(C.TrainConfig)] + list(C.SHORTHANDS):
        with pytest.raises((TypeError, ValueError), match=name):
            C.check_setting(name, object())


@pytest.mark.parametrize("field, value, words", [
    ("lr", float("inf"), "lr must be finite, got inf"),
    ("lr", float("nan"), "lr must be finite, got nan"),
    ("tau_s", 0.0, "tau_s must be > 0, got 0.0"),
    ("t_max", float("inf"), "t_max must be finite"),
    ("target_false", -1.0, "target_false must be >= 0"),
    ("seed", 2**32, r"seed must be in \[0, 4294967295\]"),
    ("seed", -3, r"seed must be in \[0, 4294967295\]"),
    ("epochs", 1.5, "epochs must be int, got 1.5"),
    ("batch_size", np.float64(4.0), "batch_size must be int"),
    ("device", "cuda:x", "device must be cpu, cuda or auto"),
    ("device", "cuda:-1", "device must be cpu, cuda or auto"),
    ("init", [0.0, float("inf")], "init must be finite"),
    ("init", "ab", r"init must be \[low, high\]"),
    ("dt", -1e-3, "dt must be >= 0"),
    ("out", "", "out must be a non-empty path"),
    ("theta", [0.2, float("nan")], r"theta\[1\] must be finite"),
    ("network", [{"type": "linear", "theta": 0.2, "max_spikes": 3, "t_max": float("inf")}],
     r"network layer 0 \(linear\): t_max must be finite"),
])
def test_values_out_of_range(field, value, words):
    with pytest.raises((TypeError, ValueError), match=words):
        C.resolve_config("mnist-count", **{field: value})


def test_file_errors_name_the_file_and_the_field(tmp_path):
    f = tmp_path / "c.json"
    f.write_text('{"lr": NaN}')  # Python's json reads NaN; the validator refuses it
    with pytest.raises(ValueError, match=f"config file '{f}': lr must be finite, got nan"):
        C.resolve_config(file=f)
    f.write_text('{"colour": 1, "lr": 0.1}')
    with pytest.raises(ValueError, match=f"config file '{f}': unknown config field.s. colour"):
        C.resolve_config(file=f)
    f.write_text('{"preset": 3}')
    with pytest.raises(TypeError, match=f"config file '{f}': preset must be str"):
        C.resolve_config(file=f)
    f.write_text("[" * 100_000)
    with pytest.raises(ValueError, match="is not valid JSON"):
        C.resolve_config(file=f)
    t = tmp_path / "c.toml"
    t.write_bytes(b'lr = "\xff"\n')
    with pytest.raises(ValueError, match=f"config file '{t}' is not UTF-8"):
        C.resolve_config(file=t)
    t.write_text("epochs = 2.0\n")
    with pytest.raises(TypeError, match=f"config file '{t}': epochs must be int, got 2.0"):
        C.resolve_config(file=t)
    d = tmp_path / "dir.json"
    d.mkdir()
    with pytest.raises(ValueError, match=f"config file '{d}' is a directory, expected a file"):
        C.resolve_config(file=d)
    with pytest.raises(ValueError, match=f"config file '{tmp_path / 'none.json'}' does not exist"):
        C.resolve_config(file=tmp_path / "none.json")


def test_numpy_scalars_are_taken_as_python_numbers(tmp_path):
    dt32 = np.float32(0.002)
    cfg = C.resolve_config("mnist-count", dt=dt32, lr=np.float64(0.01), seed=np.int64(3),
                           epochs=np.int32(2), theta=[np.float32(0.5), 1.3],
                           hidden=[np.int64(16)], max_spikes=[np.int16(4), 4])
    same = C.resolve_config("mnist-count", dt=float(dt32), lr=0.01, seed=3, epochs=2,
                            theta=[float(np.float32(0.5)), 1.3], hidden=[16], max_spikes=[4, 4])
    assert cfg == same
    assert type(cfg.dt) is float and type(cfg.seed) is int and type(cfg.epochs) is int
    assert all(type(v) is float for v in (cfg.lr, cfg.network[0]["theta"]))
    # and the config is written as plain JSON
    doc = C.config_document(cfg)
    assert json.loads(json.dumps(doc)) == doc


def test_numpy_time_steps_everywhere_alike():
    t = torch.tensor([0.0, 0.0015, 0.0031], dtype=torch.float64)
    for dt in (np.float64(1e-3), np.float32(1e-3)):
        assert torch.equal(batsnn.discretize(t, dt), batsnn.discretize(t, float(dt)))
        x = torch.tensor([[0.2, 0.9]])
        assert torch.equal(batsnn.ttfs_encode(x, dt=dt), batsnn.ttfs_encode(x, dt=float(dt)))
    assert batsnn.discretize(t, np.float64(0.0)) is t
    assert S.check_dts([np.float64(0.004), 0, 0.004]) == [0.004, 0.0]
    # float32(0.004) is not 0.004, but both would be written to dt4ms-seed*
    with pytest.raises(ValueError, match=r"map to the same run directory name \(dt4ms\)"):
        S.check_dts([np.float32(0.004), 0.004])
    with pytest.raises(ValueError, match="dt values must be numbers"):
        S.check_dts(["0.004"])
    p = batsnn.LIFParams(tau_s=0.1, theta=1.0, max_spikes=2, dt=np.float32(1e-3))
    assert type(p.dt) is float


def test_numpy_time_steps_in_the_discretization_error_study(tmp_path):
    from batsnn.experiments.dterr import run_discretization_error

    kw = dict(width=6, samples=2, dataset="random", device="cpu", log=lambda line: None)
    a = run_discretization_error([1], [np.float32(0.008)], tmp_path / "a", **kw)
    b = run_discretization_error([1], [float(np.float32(0.008))], tmp_path / "b", **kw)
    assert a == b and type(a[0]["dt"]) is float


def test_resolve_device_refuses_unknown_names_and_missing_gpus():
    with pytest.raises(ValueError, match="device must be cpu, cuda or auto"):
        C.resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            C.resolve_device("cuda:0")
    else:
        with pytest.raises(ValueError, match="CUDA device.s. are present"):
            C.resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("field, value, error, words", [
    ("epochs", 2**63, ValueError, "epochs must be at most 9223372036854775807 in size, got "
                                  "9223372036854775808"),
    ("lr", -10**400, ValueError, "lr must be at most 9223372036854775807 in size, got an "
                                 "integer of 401 digits"),
    ("seed", 10**5000, ValueError, "seed must be at most .* got an integer of over 4000 digits"),
    ("hidden", [2**63], ValueError, "hidden layer sizes must be ints >= 1"),
    ("theta", [True], TypeError, r"theta\[0\] must be int or float, got True"),
    ("device", 5, TypeError, "device must be str, got 5"),
    ("loss", "\x1b[2J", ValueError, r"loss must be 'count' or 'ttfs', got '\\x1b\[2J'"),
    ("dataset", "\x9b", ValueError, r"unknown dataset '\\x9b'"),
    ("data_dir", "a\0b", ValueError, r"data_dir must be a path without NUL characters, got "
                                     r"'a\\x00b'"),
    ("colour\x1b", 1, ValueError, r"unknown config field\(s\) colour\\x1b"),
], ids=["int64-bound", "400-digits", "5000-digits", "hidden-bound", "bool", "device-int",
        "choice-escape", "dataset-escape", "nul-path", "field-escape"])
def test_one_scalar_checker_names_the_setting_and_shows_the_value_safely(field, value, error,
                                                                          words):
    with pytest.raises(error, match=words):
        C.check_setting(field, value)


def test_nesting_is_bounded_in_files_and_in_settings(tmp_path):
    f = tmp_path / "c.json"
    f.write_text('{"lr": ' + "[" * 63 + "]" * 63 + "}")  # 64 levels with the table
    with pytest.raises(TypeError, match=f"config file '{f}': lr must be int or float"):
        C.resolve_config(file=f)
    f.write_text('{"lr": ' + "[" * 64 + "]" * 64 + "}")
    with pytest.raises(ValueError, match=f"config file '{f}' is nested more than 64 levels"):
        C.resolve_config(file=f)
    t = tmp_path / "c.toml"
    t.write_text("lr = " + "[" * 64 + "]" * 64 + "\n")
    with pytest.raises(ValueError, match=f"config file '{t}' is nested more than 64 levels"):
        C.resolve_config(file=t)
    t.write_text("a" + ".a" * 100 + " = 1\n")
    with pytest.raises(ValueError, match=f"config file '{t}' is nested more than 64 levels"):
        C.resolve_config(file=t)
    deep = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(ValueError, match="network is nested more than 64 levels deep"):
        C.config_from_dict({"network": deep})


def test_a_preset_named_in_a_file_is_checked_naming_the_file(tmp_path):
    f = tmp_path / "c.json"
    f.write_text('{"preset": "nope"}')
    with pytest.raises(ValueError, match=f"config file '{f}': unknown preset 'nope'; choose"):
        C.resolve_config(file=f)
    f.write_text('{"preset": "mnist-ttfs"}')
    with pytest.raises(ValueError, match=f"config file '{f}': names preset 'mnist-ttfs' but "
                       "preset 'mnist-count' was given"):
        C.resolve_config("mnist-count", file=f)
    assert C.resolve_config(file=f).preset == "mnist-ttfs"


def test_files_that_are_not_regular_are_described_not_read(tmp_path):
    import os

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=f"config file '{fifo}' is a named pipe"):
        C.read_config_file(fifo)  # returns at once: nothing waits for a writer
    with pytest.raises(ValueError, match="config file '/dev/zero' is a device, expected a file"):
        C.read_config_file("/dev/zero")
    big = tmp_path / "big.json"
    big.write_text("{}" + " " * C.MAX_CONFIG_BYTES)
    with pytest.raises(ValueError, match=f"config file '{big}' is larger than "
                       f"{C.MAX_CONFIG_BYTES} bytes"):
        C.read_config_file(big)
    big.write_text("{}" + " " * (C.MAX_CONFIG_BYTES - 2))
    assert C.read_config_file(big) == {}
