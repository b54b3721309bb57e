"""batsnn.experiments.config: presets, files, overrides, shorthands, validation."""

import json

import pytest
import torch

from batsnn.experiments import config as C

# model.md section 5, written out: (dataset, layer sizes without the input, theta, max_spikes,
# loss, batch, lr, epochs)
REFERENCE = {
    "mnist-ttfs": ("mnist", [800, None], [0.7, 2.0], [1, 1], "ttfs", 50, 0.002, 30),
    "mnist-count": ("mnist", [800, None], [0.2, 1.3], [30, 30], "count", 50, 0.003, 100),
    "emnist-count": ("emnist-balanced", [800, None], [0.2, 1.3], [30, 30], "count", 50, 0.003,
                     100),
    "fmnist-count": ("fashion-mnist", [400, 400, None], [0.13, 0.45, 0.7], [5, 5, 20], "count",
                     5, 0.0005, 100),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_presets_are_the_reference_experiments(name):
    cfg = C.resolve_config(name)
    dataset, sizes, theta, spikes, loss, batch, lr, epochs = REFERENCE[name]
    assert (cfg.preset, cfg.dataset, cfg.loss, cfg.batch_size, cfg.lr, cfg.epochs) == (
        name, dataset, loss, batch, lr, epochs)
    assert [s.get("features") for s in cfg.network] == sizes
    assert [s["theta"] for s in cfg.network] == theta
    assert [s["max_spikes"] for s in cfg.network] == spikes
    assert all(s["type"] == "linear" for s in cfg.network)
    assert cfg.tau_s == 0.130
    assert cfg.init == ([0.0, 1.0] if name == "mnist-ttfs" else [-1.0, 1.0])
    # resolving never changes the preset table
    cfg.network[0]["theta"] = 99.0
    assert C.resolve_config(name).network[0]["theta"] == theta[0]


#: the conv experiment of model.md section 5: (type, channels or features, kernel, theta,
#: max_spikes) per layer
CONV_REFERENCE = [("conv2d", 15, 5, 0.04, 1), ("pool2d", None, 2, None, None),
                  ("conv2d", 40, 5, 0.8, 3), ("pool2d", None, 2, None, None),
                  ("flatten", None, None, None, None), ("linear", 300, None, 0.6, 10),
                  ("linear", None, None, 0.3, 30)]


@pytest.mark.parametrize("name, dataset", [("mnist-conv", "mnist"),
                                           ("fmnist-conv", "fashion-mnist")])
def test_conv_presets_are_the_reference_experiment(name, dataset):
    cfg = C.resolve_config(name)
    assert [(s["type"], s.get("channels", s.get("features")), s.get("kernel"), s.get("theta"),
             s.get("max_spikes")) for s in cfg.network] == CONV_REFERENCE
    assert all(set(s) <= {"type", "channels", "features", "kernel", "theta", "max_spikes"}
               for s in cfg.network)  # valid, stride 1, no padding, delta_theta = theta
    assert (cfg.dataset, cfg.loss, cfg.target_true, cfg.target_false, cfg.batch_size, cfg.lr,
            cfg.lr_decay, cfg.lr_decay_every, cfg.lr_min, cfg.epochs) == (
        dataset, "count", 30, 3, 20, 0.003, 0.5, 10, 1e-4, 100)
    assert (cfg.tau_s, cfg.t_max, cfg.init, cfg.augment) == (0.13, 0.2, [-1.0, 1.0], "elastic")


def test_augment_setting():
    assert C.resolve_config("mnist-count").augment == "none"
    assert C.resolve_config("mnist-conv", augment="none").augment == "none"
    assert C.resolve_config("mnist-count", augment="elastic").augment == "elastic"
    with pytest.raises(ValueError, match="augment must be 'none' or 'elastic', got 'rotate'"):
        C.resolve_config("mnist-count", augment="rotate")
    assert "augment" in C.RESUME_FIELDS


@pytest.mark.parametrize("suffix", ["json", "toml"])
def test_preset_named_in_a_file_equals_the_preset_option(tmp_path, suffix):
    path = tmp_path / f"c.{suffix}"
    path.write_text('{"preset": "fmnist-count"}' if suffix == "json"
                    else 'preset = "fmnist-count"\n')
    assert C.resolve_config(file=path) == C.resolve_config("fmnist-count")
    assert C.resolve_config("fmnist-count", path) == C.resolve_config("fmnist-count")


def test_file_settings_apply_after_its_preset_and_before_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('preset = "fmnist-count"\nlr = 0.01\nepochs = 7\n')
    cfg = C.resolve_config(file=path, epochs=2, seed=None)
    expect = C.resolve_config("fmnist-count", lr=0.01, epochs=2)
    assert cfg == expect and cfg.lr == 0.01 and cfg.epochs == 2 and cfg.lr_decay == 0.5


def test_file_naming_another_preset_is_refused(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"preset": "fmnist-count"}')
    with pytest.raises(ValueError, match="names preset 'fmnist-count' but preset "
                                         "'mnist-count' was given"):
        C.resolve_config("mnist-count", path)


@pytest.mark.parametrize("name", [*sorted(C.PRESETS), None])
def test_a_runs_config_document_reads_back_as_the_same_config(tmp_path, name):
    cfg = C.resolve_config(name, hidden=[12, 7] if name is None else None,
                           theta=[0.1, 0.2, 0.3] if name is None else None,
                           max_spikes=[3, 3, 9] if name is None else None, dt=0.002,
                           data_dir=str(tmp_path), out=str(tmp_path / "run"))
    doc = C.config_document(cfg, batsnn_version="0", layers=[784, 10], n_classes=10,
                            resolved_device="cpu", data_source=str(tmp_path))
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    assert C.resolve_config(file=path) == cfg
    assert C.config_from_dict(doc) == cfg
    # the hidden/theta/max_spikes view of a linear stack is written for readers
    if all(s["type"] == "linear" for s in cfg.network):
        assert doc["theta"] == [s["theta"] for s in cfg.network]
    else:  # conv presets: the network only
        assert "theta" not in doc and doc["network"] == cfg.network


def test_config_document_refuses_unknown_run_facts():
    with pytest.raises(ValueError, match="created are not in RUN_INFO_KEYS"):
        C.config_document(C.resolve_config(), created="today")


def test_shorthands_rewrite_the_network():
    cfg = C.resolve_config("fmnist-count", hidden=[100, 50], theta=None)
    assert [s.get("features") for s in cfg.network] == [100, 50, None]
    assert [s["theta"] for s in cfg.network] == [0.13, 0.45, 0.7]
    cfg = C.resolve_config("mnist-count", hidden=[16, 16], theta=[0.1, 0.2, 0.3],
                           max_spikes=[4, 4, 8])
    assert C.resolve_config(network=cfg.network) == C.resolve_config(
        hidden=[16, 16], theta=[0.1, 0.2, 0.3], max_spikes=[4, 4, 8])
    with pytest.raises(ValueError, match=r"theta needs one value per layer \(3\), got "
                                         r"\[0.2, 1.3\]"):
        C.resolve_config("mnist-count", hidden=[16, 16])
    with pytest.raises(ValueError, match="hidden layer sizes must be ints >= 1"):
        C.resolve_config(hidden=[0])
    with pytest.raises(ValueError, match="hidden must be a list"):
        C.resolve_config(hidden=12)


def test_same_depth_shorthands_keep_other_per_layer_settings():
    net = [{"type": "linear", "features": 20, "theta": 0.2, "max_spikes": 5, "tau_s": 0.05},
           {"type": "linear", "theta": 0.5, "max_spikes": 5, "init": [0.0, 1.0]}]
    cfg = C.resolve_config(network=net, theta=[0.3, 0.6])
    assert cfg.network == [{**net[0], "theta": 0.3}, {**net[1], "theta": 0.6}]


def test_a_later_network_replaces_earlier_shorthands(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"hidden": [16]}))
    net = [{"type": "linear", "theta": 1.0, "max_spikes": 3}]  # no hidden layer
    assert C.resolve_config("mnist-count", path, network=net).network == net
    # shorthands need a linear stack ending in one neuron per class
    fixed = [{"type": "linear", "features": 10, "theta": 1.0, "max_spikes": 3}]
    with pytest.raises(ValueError, match="can only rewrite a network of linear layers"):
        C.resolve_config(network=fixed, theta=[0.5])


@pytest.mark.parametrize("overrides, error, words", [
    (dict(lr=-1.0), ValueError, "lr must be > 0, got -1.0"),
    (dict(epochs="3"), TypeError, "epochs must be int, got '3'"),
    (dict(cuda_graph=1), TypeError, "cuda_graph must be bool"),
    (dict(batch_size=True), TypeError, "batch_size must be int"),
    (dict(dataset="cifar"), ValueError, "unknown dataset 'cifar'"),
    (dict(loss="mse"), ValueError, "loss must be 'count' or 'ttfs'"),
    (dict(device="tpu"), ValueError, "device must be cpu, cuda or auto"),
    (dict(init=[1.0, -1.0]), ValueError, "init must be [low, high]"),
    (dict(colour="red"), ValueError, "unknown config field(s) colour"),
    (dict(network=[{"type": "linear", "features": 8, "theta": 0.2, "max_spikes": 3},
                   {"type": "conv3d", "theta": 0.2}]), ValueError,
     "network layer 1 (conv3d): unknown layer type 'conv3d'"),
    (dict(network=[{"type": "linear", "theta": -0.2, "max_spikes": 3}]), ValueError,
     "network layer 0 (linear): theta must be > 0"),
])
def test_bad_settings_name_the_setting(overrides, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        C.resolve_config("mnist-count", **overrides)


def test_files_that_are_not_settings(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        C.resolve_config(file=tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{lr: 1")
    with pytest.raises(ValueError, match="is not valid JSON"):
        C.resolve_config(file=tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a table of settings"):
        C.resolve_config(file=tmp_path / "list.json")
    (tmp_path / "bad.toml").write_text("lr = = 1")
    with pytest.raises(ValueError, match="is not valid TOML"):
        C.resolve_config(file=tmp_path / "bad.toml")


def test_old_checkpoint_settings_read_as_shorthands():
    old = {"preset": "fmnist-count", "dataset": "fashion-mnist", "hidden": [30, 20],
           "theta": [0.1, 0.2, 0.3], "max_spikes": [2, 2, 4], "dt": 0.0, "lr": 0.01}
    cfg = C.config_from_dict(old)
    assert cfg.network == [
        {"type": "linear", "features": 30, "theta": 0.1, "max_spikes": 2},
        {"type": "linear", "features": 20, "theta": 0.2, "max_spikes": 2},
        {"type": "linear", "theta": 0.3, "max_spikes": 4}]
    assert cfg.dt is None and cfg.lr == 0.01 and cfg.preset == "fmnist-count"
    assert cfg.batch_size == C.TrainConfig().batch_size  # the preset is recorded, not applied


def test_resolve_device():
    assert C.resolve_device("cpu") == torch.device("cpu")
    assert C.resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            C.resolve_device("cuda")
