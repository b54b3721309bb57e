"""Event streams end to end: tiny training runs on generated Randman (every time-step mode,
resume), on a small file in the SHD layout (the input cap's drops in the log and in
config.json), ``batsnn train``/``sweep``/``data info`` on event data."""

import json

import pytest
import torch

from batsnn import cli
from batsnn import metrics as M
from batsnn.experiments.config import DT_MODES, resolve_config
from batsnn.experiments.rundir import read_csv
from batsnn.experiments.train import train

#: a tiny Randman: 3 classes, 8 channels, 48 train / 6 test samples
TINY = dict(dataset="randman", dataset_options={"n_classes": 3, "n_channels": 8,
                                                "samples_per_class": 20},
            hidden=[8], theta=[0.01, 0.05], max_spikes=[4, 6], tau_s=0.01, t_max=0.3,
            batch_size=16, eval_batch_size=32, epochs=1, device="cpu")

#: what each mode needs besides dt
MODE_SETTINGS = {"fine": {"dt_fine": 0.5e-3}, "finetune": {"dt_warmup_epochs": 1},
                 "anneal": {"dt_warmup_epochs": 1}}


def _config(out, **kw):
    return resolve_config(**{**TINY, "out": str(out), **kw})


def _config_json(run) -> dict:
    return json.loads((run / "config.json").read_text())


@pytest.mark.parametrize("mode", [m if m in ("fixed", "consistent") else
                                  pytest.param(m, marks=pytest.mark.slow) for m in DT_MODES])
def test_every_dt_mode_trains_on_events(mode, tmp_path):  # two by default, all under slow
    cfg = _config(tmp_path / mode, dt=1e-3, dt_mode=mode, epochs=2,
                  **MODE_SETTINGS.get(mode, {}))
    summary = train(cfg, quiet=True, log=lambda line: None)
    assert summary[M.EPOCHS_COMPLETED] == 2
    assert 0.0 <= summary[M.TEST_ACCURACY] <= 1.0
    assert summary["spikes_per_sample_l1"] > 0  # the hidden layer saw the events


def test_randman_run_records_its_input_and_resumes(tmp_path):
    lines = []
    cfg = _config(tmp_path / "run", epochs=2)
    full = train(cfg, quiet=True, log=lines.append)
    doc = _config_json(tmp_path / "run")
    assert doc["dataset"] == "randman" and doc["input_shape"] == [8]
    assert doc["layers"] == [8, 8, 3]
    assert doc["data_facts"]["train"] == {
        "samples": 48, "channels": 8, "slots": 1, "spikes": 48 * 8, "dropped": 0,
        "cropped": 0, "largest_per_channel": 1, "dtype": "torch.float32"}
    assert doc["data_source"].startswith("Randman, 3 classes, 8 channels")
    assert lines == []  # nothing dropped: nothing to tell in a quiet run
    # one epoch, then resumed to two: the same rows as the uninterrupted run
    part = _config(tmp_path / "part", epochs=1)
    train(part, quiet=True, log=lambda line: None)
    resumed = train(_config(tmp_path / "part", epochs=2), resume=True, quiet=True,
                    log=lines.append)
    assert lines[0].startswith("resuming")
    for key in (M.TEST_ACCURACY, M.TRAIN_LOSS, "spikes_per_sample_l1"):
        assert resumed[key] == full[key], key
    assert len(read_csv(tmp_path / "part" / "metrics.csv")) == 2


def test_resume_refuses_changed_input_settings(tmp_path):
    train(_config(tmp_path / "run"), quiet=True, log=lambda line: None)
    with pytest.raises(ValueError, match="input_max_spikes None -> 1"):
        train(_config(tmp_path / "run", epochs=2, input_max_spikes=1), resume=True,
              quiet=True)


@pytest.fixture(scope="module")
def shd_dir(tmp_path_factory):
    """A small file pair in the SHD layout (12 train / 6 test samples of ~5000 events)."""
    pytest.importorskip("h5py")
    from batsnn.experiments.datasets.heidelberg import write_synthetic_shd

    d = tmp_path_factory.mktemp("shd")
    write_synthetic_shd(d, n_train=12, n_test=6)
    return d


def test_shd_file_run_reports_dropped_spikes(shd_dir, tmp_path):
    lines = []
    cfg = resolve_config("shd", data_dir=str(shd_dir), out=str(tmp_path / "shd"), epochs=1,
                         hidden=[16], batch_size=6, device="cpu", input_max_spikes=3)
    summary = train(cfg, quiet=True, log=lines.append)
    assert summary[M.EPOCHS_COMPLETED] == 1
    doc = _config_json(tmp_path / "shd")
    facts = doc["data_facts"]
    assert doc["input_shape"] == [700] and doc["layers"] == [700, 16, 20]
    assert facts["train"]["slots"] == 3 and facts["train"]["largest_per_channel"] > 3
    assert facts["train"]["dropped"] > 0 and facts["test"]["dropped"] > 0
    assert facts["train"]["cropped"] >= 0 and facts["train"]["samples"] == 12
    # told once, in the log, even in a quiet run
    told = [ln for ln in lines if "input_max_spikes 3" in ln]
    assert len(told) == 1 and f"train {facts['train']['dropped']:,} of" in told[0]
    assert doc["data_source"] == str(shd_dir)


@pytest.mark.parametrize("preset, layers", [  # the recurrent one by default
    pytest.param("shd", [700, 128, 20], marks=pytest.mark.slow),
    pytest.param("shd-delay", [700, 700, 256, 256, 256, 20], marks=pytest.mark.slow),
    ("shd-rec", [700, 256, 20])])
def test_shd_presets_fire_in_every_layer_from_the_start(preset, layers, shd_dir, tmp_path):
    """The SHD presets on a file of SHD's layout: every spiking layer fires in the first
    epoch (an output layer that never fires gives no gradient at all), the delays learn."""
    cfg = resolve_config(preset, data_dir=str(shd_dir), out=str(tmp_path / preset), epochs=1,
                         batch_size=6, device="cpu")
    summary = train(cfg, quiet=True, log=lambda line: None)
    assert _config_json(tmp_path / preset)["layers"] == layers
    n_spiking = sum(1 for spec in cfg.network if spec["type"] in ("linear", "recurrent"))
    for i in range(1, n_spiking + 1):
        assert summary[f"spikes_per_sample_l{i}"] > 0, i
    if preset == "shd-delay":
        ck = torch.load(tmp_path / preset / "last.pt", weights_only=False)["model"]
        torch.manual_seed(cfg.seed)
        from batsnn.experiments.model import build_model
        start = build_model(cfg, 700, 20)
        for k in ("0.delay", "2.delay"):
            assert not torch.equal(ck[k], start.state_dict()[k]), k


def test_cli_train_and_data_info_on_events(shd_dir, tmp_path, capsys):
    settings = tmp_path / "tiny.json"
    settings.write_text(json.dumps(TINY))
    out = tmp_path / "cli"
    rc = cli.main(["train", "--config", str(settings), "--out", str(out), "--quiet",
                   "--input-max-spikes", "1", "--dt", "0.001"])
    assert rc == 0, capsys.readouterr().err
    assert "test accuracy" in capsys.readouterr().out
    doc = _config_json(out)
    assert doc["input_max_spikes"] == 1 and doc["dt"] == 0.001
    # the run's config.json reproduces the run's settings
    again = resolve_config(file=out / "config.json", out=str(out))
    assert again.to_dict() == resolve_config(**TINY, input_max_spikes=1, dt=0.001,
                                             out=str(out)).to_dict()

    assert cli.main(["data", "info", "yinyang"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("yin-yang: 3 classes, 5 channels (5,)")
    assert "train: 5000 samples" in text and "test: 1000 samples" in text
    assert cli.main(["data", "info", "shd", "--data-dir", str(shd_dir)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("shd: 20 classes, 700 channels (700,)")
    assert "train: 12 samples" in text and "most in one channel" in text


@pytest.mark.slow  # a sweep of two runs, its tables and plots
def test_sweep_over_dt_on_events(tmp_path):
    from batsnn.experiments.sweep import run_sweep

    base = resolve_config(**TINY)
    rows = run_sweep(base, [0, 1e-3], [1], tmp_path / "sweep", jobs=1, quiet=True,
                     log=lambda line: None)
    assert len(rows) == 2
    assert [float(r["dt"]) for r in read_csv(tmp_path / "sweep" / "sweep.csv")] == [0.0, 0.001]


def test_event_inputs_are_float32_on_the_runs_device(tmp_path):
    from batsnn.experiments.sources import open_source

    src = open_source(_config(tmp_path / "x"))
    x = src.inputs("train", torch.arange(4), "cpu", dt=1e-3)
    assert x.dtype == torch.float32 and x.shape == (4, 8, 1)


@pytest.fixture(scope="module")
def nmnist_dir(tmp_path_factory):
    """A few N-MNIST files in the published layout: 10 train / 10 test samples (one per
    digit) of 300 events over 0.3 s, each digit's events in its own band of rows."""
    import numpy as np

    from batsnn.experiments.datasets.nmnist import write_nmnist_file

    d = tmp_path_factory.mktemp("nmnist")
    rng = np.random.default_rng(0)
    for split in ("Train", "Test"):
        for digit in range(10):
            folder = d / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            t = np.sort(rng.integers(0, 300_000, 300))
            write_nmnist_file(folder / f"{digit:05d}.bin", t, rng.integers(0, 34, 300),
                              rng.integers(3 * digit, 3 * digit + 4, 300),
                              rng.integers(0, 2, 300))
    return d


@pytest.mark.slow  # about a minute on a 2-core CPU: the conv layers' kernels
def test_nmnist_conv_trains_on_maps(nmnist_dir, tmp_path):
    cfg = resolve_config("nmnist-conv", data_dir=str(nmnist_dir), out=str(tmp_path / "conv"),
                         epochs=1, batch_size=5, eval_batch_size=5, device="cpu", dt=1e-3,
                         input_max_spikes=2)
    summary = train(cfg, quiet=True, log=lambda line: None)
    assert summary[M.EPOCHS_COMPLETED] == 1
    doc = _config_json(tmp_path / "conv")
    assert doc["input_shape"] == [2, 34, 34]
    assert doc["layers"][0] == 2312 and doc["layers"][1] == [15, 30, 30]
    assert doc["data_facts"]["train"]["slots"] == 2


@pytest.mark.cuda
@pytest.mark.parametrize("dt, mode", [(None, "fixed"), (1e-3, "dither")])
def test_graphed_event_run_matches_eager_run(dt, mode, tmp_path):
    """Event inputs on a GPU: the CUDA-graph step (which records the input's gather, shift
    and grid rounding) and the eager step train the same network."""
    for name, graph in (("graph", True), ("eager", False)):
        train(_config(tmp_path / name, device="cuda", cuda_graph=graph, epochs=2, dt=dt,
                      dt_mode=mode, batch_size=8), quiet=True, log=lambda *a: None)
    a = torch.load(tmp_path / "graph" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "eager" / "last.pt", weights_only=False)
    for k in a["model"]:  # float32 atomics: two runs of one training, not bit for bit
        diff = (a["model"][k] - b["model"][k]).norm() / b["model"][k].norm()
        assert diff < 1e-2, (k, float(diff))
    ra = read_csv(tmp_path / "graph" / "metrics.csv")
    rb = read_csv(tmp_path / "eager" / "metrics.csv")
    assert [r[M.EPOCH] for r in ra] == [r[M.EPOCH] for r in rb] == ["1", "2"]
    for x, y in zip(ra, rb):
        assert abs(float(x[M.TEST_ACCURACY]) - float(y[M.TEST_ACCURACY])) <= 0.2


def test_an_input_too_large_keeps_its_own_message(tmp_path, monkeypatch):
    """A source's input that cannot fit is told in its own words (naming its settings), not
    as a network too large for the batch size."""
    from batsnn.experiments import event_source as E

    def refuse(self, device, batch_size):
        raise E.InputTooLarge("the training split needs more: lower input_max_spikes")

    monkeypatch.setattr(E.EventSource, "check_fits", refuse)
    with pytest.raises(E.InputTooLarge) as e:
        train(_config(tmp_path / "run"), quiet=True, log=lambda *a: None)
    assert str(e.value) == "the training split needs more: lower input_max_spikes"


#: a network with learnable axonal delays on its input channels
DELAY_NET = [{"type": "delay", "init": [0.0, 0.005], "max_delay": 0.05},
             {"type": "linear", "features": 8, "theta": 0.002, "max_spikes": 4, "init": [0, 1]},
             {"type": "linear", "theta": 0.005, "max_spikes": 6, "init": [0, 1]}]


def _delay_config(out, epochs):
    kw = {k: v for k, v in TINY.items() if k not in ("hidden", "theta", "max_spikes", "epochs")}
    return resolve_config(**kw, network=DELAY_NET, out=str(out), epochs=epochs)


def test_the_delays_of_a_run_learn(tmp_path):
    """A run whose description holds a ``delay`` layer: one epoch moves its delays away
    from their initial values (the model built with the run's seed), the checkpoint holds
    them."""
    from batsnn.experiments.model import build_model

    cfg = _delay_config(tmp_path / "run", 1)
    train(cfg, quiet=True, log=lambda line: None)
    assert _config_json(tmp_path / "run")["layers"] == [8, 8, 8, 3]
    torch.manual_seed(cfg.seed)
    start = build_model(cfg, 8, 3)[0].delay.detach()
    assert 0 <= float(start.min()) and 0 < float(start.max()) <= 0.005
    learned = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["model"]["0.delay"]
    assert learned.shape == (8,) and not torch.equal(learned, start)


@pytest.mark.slow  # three runs; test_the_delays_of_a_run_learn runs by default
def test_a_network_with_delay_layers_trains_and_resumes(tmp_path):
    """Learnable axonal delays in a run description: they move in training, are saved in
    the checkpoint, and a resumed run equals the uninterrupted one."""
    cfg = _delay_config
    full = train(cfg(tmp_path / "full", 2), quiet=True, log=lambda line: None)
    assert _config_json(tmp_path / "full")["layers"] == [8, 8, 8, 3]
    delays = torch.load(tmp_path / "full" / "last.pt", weights_only=False)["model"]["0.delay"]
    assert delays.shape == (8,)
    train(cfg(tmp_path / "part", 1), quiet=True, log=lambda line: None)
    first = torch.load(tmp_path / "part" / "last.pt", weights_only=False)["model"]["0.delay"]
    assert not torch.equal(first, delays)  # the delays learn
    resumed = train(cfg(tmp_path / "part", 2), resume=True, quiet=True,
                    log=lambda line: None)
    for key in (M.TEST_ACCURACY, M.TRAIN_LOSS, "spikes_per_sample_l1"):
        assert resumed[key] == full[key], key


@pytest.mark.slow  # three runs; test_shd_presets_fire_in_every_layer_from_the_start[shd-rec]
def test_a_recurrent_network_trains_resumes_and_is_revived(tmp_path):  # runs by default
    """A ``recurrent`` hidden layer in a run: its weights (input and recurrent) learn, a
    resumed run equals the uninterrupted one, reviving covers a recurrent output layer."""
    net = [{"type": "recurrent", "features": 8, "theta": 0.002, "max_spikes": 4,
            "init": [0, 1], "recurrent_init": [-0.2, 0.2]},
           {"type": "recurrent", "theta": 0.005, "max_spikes": 6, "init": [0, 1],
            "self_connections": False}]
    kw = {k: v for k, v in TINY.items() if k not in ("hidden", "theta", "max_spikes", "epochs")}
    cfg = lambda out, epochs: resolve_config(**kw, network=net, out=str(out),  # noqa: E731
                                             epochs=epochs, revive="output")
    full = train(cfg(tmp_path / "full", 2), quiet=True, log=lambda line: None)
    train(cfg(tmp_path / "part", 1), quiet=True, log=lambda line: None)
    resumed = train(cfg(tmp_path / "part", 2), resume=True, quiet=True, log=lambda line: None)
    for key in (M.TEST_ACCURACY, M.TRAIN_LOSS, "spikes_per_sample_l1", "spikes_per_sample_l2"):
        assert resumed[key] == full[key], key
    assert full["spikes_per_sample_l1"] > 0
    ck = torch.load(tmp_path / "full" / "last.pt", weights_only=False)["model"]
    from batsnn.experiments.model import build_model
    from batsnn.experiments.training.revive import covered_layers

    c = cfg(tmp_path / "x", 1)
    torch.manual_seed(c.seed)
    start = build_model(c, 8, 3)
    for k in ("0.weight", "0.recurrent_weight", "1.weight", "1.recurrent_weight"):
        assert not torch.equal(ck[k], start.state_dict()[k]), k
    assert torch.equal(torch.diagonal(ck["1.recurrent_weight"] * ck["1.mask"]), torch.zeros(3))
    assert covered_layers(start, "output") == [start[1]]
