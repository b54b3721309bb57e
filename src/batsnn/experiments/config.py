"""Training settings: the :class:`TrainConfig` dataclass, presets, config files, validation.

A config is resolved from layers of settings, later ones winning (:func:`resolve_config`):
the defaults, a preset (:data:`PRESETS`), a JSON/TOML file, then explicit overrides (the
command line). A file may name a ``preset``: it is applied exactly as ``--preset`` would be,
before the file's other settings. A run's own ``config.json`` is such a file: fed back, it
resolves to the run's settings (the run facts it also holds, :data:`RUN_INFO_KEYS`, are
skipped).

The network is a description of its layers (``network``, see
:mod:`batsnn.experiments.model`). For stacks of linear layers the shorthands ``hidden``,
``theta`` and ``max_spikes`` (lists: hidden sizes, one threshold and one spike buffer per
layer) rewrite it: within one layer of settings ``network`` applies first, then the
shorthands; a later ``network`` replaces earlier shorthands.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from batsnn.experiments.augment import AUGMENTATIONS
from batsnn.experiments.data import canonical_name
from batsnn.experiments.model import check_network, cpu_only, dense_network, network_summary

__all__ = ["PRESETS", "RESUME_FIELDS", "RUN_INFO_KEYS", "SHORTHANDS", "TrainConfig",
           "config_document", "config_from_dict", "read_config_file", "resolve_config",
           "resolve_device", "run_device", "validate_config"]


def _default_network() -> list[dict]:
    return [{"type": "linear", "features": 800, "theta": 0.2, "max_spikes": 30},
            {"type": "linear", "theta": 1.3, "max_spikes": 30}]


@dataclass
class TrainConfig:
    """Settings of one training run (times in seconds). See :data:`PRESETS`.

    Attributes:
        preset: name of the preset the settings started from (recorded only).
        dataset: ``mnist``, ``fashion-mnist`` or ``emnist-balanced``.
        network: the layer descriptions (:mod:`batsnn.experiments.model`).
        tau_s, t_max, init: defaults for layers that do not set them: synaptic time
            constant (s), simulation horizon (s), ``[low, high]`` of the uniform weights.
        t_window: TTFS encoding window (s).
        loss: ``"count"`` (spike counts, targets ``target_true``/``target_false``) or
            ``"ttfs"`` (first-spike cross-entropy, temperature ``tau_loss`` in s).
        batch_size, lr, lr_decay, lr_decay_every, lr_min, epochs: Adam and its schedule (lr
            times ``lr_decay`` every ``lr_decay_every`` epochs, not below ``lr_min``).
        dt: time step (s); ``None`` for exact time.
        augment: ``"none"`` or ``"elastic"`` (one random elastic deformation per training
            batch, :mod:`batsnn.experiments.augment`; never applied to test data).
        seed: seeds weights, data order and every RNG.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; cuda_graph: replay each training
            step as one CUDA graph on a GPU.
        train_samples, test_samples: use the first N samples (``None``: all).
        eval_batch_size: batch size of evaluation.
        data_dir: directory holding the dataset files (``None``: the usual places).
        out: run directory (``None``: ``runs/<preset>-<date>``).
    """

    preset: str | None = None
    dataset: str = "mnist"
    network: list[dict] = field(default_factory=_default_network)
    tau_s: float = 0.130
    t_max: float = 0.2
    t_window: float = 0.1
    loss: str = "count"
    target_true: float = 15.0
    target_false: float = 3.0
    tau_loss: float = 0.005
    init: list[float] = field(default_factory=lambda: [-1.0, 1.0])
    batch_size: int = 50
    lr: float = 0.003
    lr_decay: float = 1.0
    lr_decay_every: int = 0
    lr_min: float = 0.0
    epochs: int = 100
    dt: float | None = None
    augment: str = "none"
    seed: int = 1
    device: str = "auto"
    cuda_graph: bool = True
    train_samples: int | None = None
    test_samples: int | None = None
    eval_batch_size: int = 500
    data_dir: str | None = None
    out: str | None = None

    def to_dict(self) -> dict:
        """The settings as a JSON-able dict (a deep copy)."""
        return dataclasses.asdict(self)


#: The reference experiments of model.md section 5, as settings over the defaults.
PRESETS: dict[str, dict] = {
    "mnist-ttfs": dict(
        dataset="mnist",
        network=[{"type": "linear", "features": 800, "theta": 0.7, "max_spikes": 1},
                 {"type": "linear", "theta": 2.0, "max_spikes": 1}],
        loss="ttfs", tau_loss=0.005, batch_size=50, lr=0.002, epochs=30, t_max=1.0,
        init=[0.0, 1.0]),
    "mnist-count": dict(
        dataset="mnist",
        network=[{"type": "linear", "features": 800, "theta": 0.2, "max_spikes": 30},
                 {"type": "linear", "theta": 1.3, "max_spikes": 30}],
        loss="count", target_true=15, target_false=3, batch_size=50, lr=0.003, epochs=100,
        t_max=0.2),
    "emnist-count": dict(
        dataset="emnist-balanced",
        network=[{"type": "linear", "features": 800, "theta": 0.2, "max_spikes": 30},
                 {"type": "linear", "theta": 1.3, "max_spikes": 30}],
        loss="count", target_true=15, target_false=3, batch_size=50, lr=0.003, epochs=100,
        t_max=0.2),
    "fmnist-count": dict(
        dataset="fashion-mnist",
        network=[{"type": "linear", "features": 400, "theta": 0.13, "max_spikes": 5},
                 {"type": "linear", "features": 400, "theta": 0.45, "max_spikes": 5},
                 {"type": "linear", "theta": 0.7, "max_spikes": 20}],
        loss="count", target_true=15, target_false=3, batch_size=5, lr=0.0005, lr_decay=0.5,
        lr_decay_every=10, lr_min=1e-4, epochs=100, t_max=0.2),
    "mnist-conv": dict(
        dataset="mnist",
        network=[{"type": "conv2d", "channels": 15, "kernel": 5, "theta": 0.04, "max_spikes": 1},
                 {"type": "pool2d", "kernel": 2},
                 {"type": "conv2d", "channels": 40, "kernel": 5, "theta": 0.8, "max_spikes": 3},
                 {"type": "pool2d", "kernel": 2},
                 {"type": "flatten"},
                 {"type": "linear", "features": 300, "theta": 0.6, "max_spikes": 10},
                 {"type": "linear", "theta": 0.3, "max_spikes": 30}],
        loss="count", target_true=30, target_false=3, batch_size=20, lr=0.003, lr_decay=0.5,
        lr_decay_every=10, lr_min=1e-4, epochs=100, t_max=0.2, augment="elastic"),
}
#: Fashion-MNIST through the conv network of the MNIST experiment
PRESETS["fmnist-conv"] = {**copy.deepcopy(PRESETS["mnist-conv"]), "dataset": "fashion-mnist"}

#: shorthand settings for stacks of linear layers (they rewrite ``network``)
SHORTHANDS = ("hidden", "theta", "max_spikes")

#: facts about a run that its ``config.json`` records besides the settings (skipped when
#: the file is read back as a config)
RUN_INFO_KEYS = ("batsnn_version", "layers", "n_classes", "resolved_device", "data_source")

#: settings that must not change when a run is resumed
RESUME_FIELDS = ("dataset", "network", "tau_s", "t_max", "t_window", "loss", "target_true",
                 "target_false", "tau_loss", "init", "batch_size", "lr", "lr_decay",
                 "lr_decay_every", "lr_min", "dt", "augment", "seed", "train_samples",
                 "test_samples")

_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
_NUM = (int, float)
_TYPES = {"dataset": (str,), "network": (list, tuple), "tau_s": _NUM, "t_max": _NUM,
          "t_window": _NUM, "loss": (str,), "target_true": _NUM, "target_false": _NUM,
          "tau_loss": _NUM, "init": (list, tuple), "batch_size": (int,), "lr": _NUM,
          "lr_decay": _NUM, "lr_decay_every": (int,), "lr_min": _NUM, "epochs": (int,),
          "dt": _NUM, "augment": (str,), "seed": (int,), "device": (str,), "cuda_graph": (bool,),
          "train_samples": (int,), "test_samples": (int,), "eval_batch_size": (int,),
          "data_dir": (str, os.PathLike), "out": (str, os.PathLike), "preset": (str,)}
_OPTIONAL = {"dt", "train_samples", "test_samples", "data_dir", "out", "preset"}


def read_config_file(path: str | os.PathLike) -> dict:
    """The settings in a JSON (``.json`` or any other suffix) or TOML (``.toml``) file, as a
    dict; the run facts of a run's ``config.json`` (:data:`RUN_INFO_KEYS`) are dropped.
    Raises ``ValueError`` for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    if path.suffix == ".toml":
        import tomllib

        with open(path, "rb") as f:
            try:
                data = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise ValueError(f"config file {str(path)!r} is not valid TOML: {e}") from None
    else:
        with open(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"config file {str(path)!r} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a table of settings, got "
                         f"{type(data).__name__}")
    return {k: v for k, v in data.items() if k not in RUN_INFO_KEYS}


def _preset_values(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return {**copy.deepcopy(PRESETS[name]), "preset": name}


def _merge(sources: list[dict]) -> TrainConfig:
    """Apply layers of settings in order (see the module docstring) and validate."""
    values: dict = {}
    network = None
    pending: dict = {}
    for src in sources:
        src = copy.deepcopy(dict(src))
        if "network" in src:
            network = src.pop("network")
            pending = {}
        for k in SHORTHANDS:
            if k in src:
                v = src.pop(k)
                if isinstance(v, (str, bytes)) or not isinstance(v, (list, tuple)):
                    raise ValueError(f"{k} must be a list, got {v!r}")
                pending[k] = list(v)
        values.update(src)
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown config field(s) {', '.join(unknown)}")
    if network is None:
        network = _default_network()
    if pending:
        check_network(network)
        base = network_summary(network)
        if base is None:
            raise ValueError(f"{', '.join(pending)} can only rewrite a network of linear layers "
                             "whose last layer has one neuron per class; set 'network' instead")
        new = {**base, **pending}
        layers = dense_network(new["hidden"], new["theta"], new["max_spikes"])
        if len(layers) == len(network):  # same depth: other per-layer settings stay
            layers = [{**old, **lay} for old, lay in zip(network, layers)]
        network = layers
    return validate_config(TrainConfig(**values, network=network))


def resolve_config(preset: str | None = None, file: str | os.PathLike | None = None,
                   **overrides) -> TrainConfig:
    """Build a validated config: defaults, then the ``preset``, then the settings in ``file``
    (JSON/TOML; a ``preset`` named there is applied first), then ``overrides`` (``None``
    values are ignored; ``hidden``/``theta``/``max_spikes`` rewrite the network).

    Raises:
        ValueError: unknown preset or field, a value out of range, or a file naming another
            preset than ``preset``.
    """
    sources = []
    if preset is not None:
        sources.append(_preset_values(preset))
    if file is not None:
        values = read_config_file(file)
        named = values.pop("preset", None)
        if named is not None:
            if preset is not None and named != preset:
                raise ValueError(f"config file {str(file)!r} names preset {named!r} but preset "
                                 f"{preset!r} was given")
            sources.append(_preset_values(named))
        sources.append(values)
    sources.append({k: v for k, v in overrides.items() if v is not None})
    return _merge(sources)


def config_from_dict(settings: Mapping) -> TrainConfig:
    """A validated config from a dict of settings, e.g. :meth:`TrainConfig.to_dict` or the
    ``config`` saved in a checkpoint (older ones hold ``hidden``/``theta``/``max_spikes``
    instead of ``network``: they are read as shorthands). ``preset`` is recorded, not applied."""
    return _merge([{k: v for k, v in settings.items() if k not in RUN_INFO_KEYS}])


def validate_config(cfg: TrainConfig) -> TrainConfig:
    """Check every setting; normalise ``dataset`` to its canonical name and ``dt = 0`` to
    ``None``. Returns ``cfg`` (changed in place). Raises ``ValueError``/``TypeError`` naming
    the setting and its value."""
    for name, kinds in _TYPES.items():
        v = getattr(cfg, name)
        if v is None and name in _OPTIONAL:
            continue
        if isinstance(v, bool) and bool not in kinds or not isinstance(v, kinds):
            what = " or ".join(k.__name__ for k in kinds)
            raise TypeError(f"{name} must be {what}{' or null' if name in _OPTIONAL else ''}, "
                            f"got {v!r}")
    cfg.dataset = canonical_name(cfg.dataset)
    cfg.data_dir = None if cfg.data_dir is None else str(cfg.data_dir)
    cfg.out = None if cfg.out is None else str(cfg.out)
    checks = [
        ("epochs", cfg.epochs, cfg.epochs >= 1, ">= 1"),
        ("batch_size", cfg.batch_size, cfg.batch_size >= 1, ">= 1"),
        ("eval_batch_size", cfg.eval_batch_size, cfg.eval_batch_size >= 1, ">= 1"),
        ("lr", cfg.lr, cfg.lr > 0, "> 0"),
        ("lr_min", cfg.lr_min, cfg.lr_min >= 0, ">= 0"),
        ("lr_decay", cfg.lr_decay, cfg.lr_decay > 0, "> 0"),
        ("tau_s", cfg.tau_s, cfg.tau_s > 0, "> 0"),
        ("t_max", cfg.t_max, cfg.t_max > 0, "> 0"),
        ("t_window", cfg.t_window, cfg.t_window > 0, "> 0"),
        ("tau_loss", cfg.tau_loss, cfg.tau_loss > 0, "> 0"),
        ("dt", cfg.dt, cfg.dt is None or (cfg.dt >= 0 and math.isfinite(cfg.dt)),
         ">= 0 (seconds)"),
        ("loss", cfg.loss, cfg.loss in ("count", "ttfs"), "'count' or 'ttfs'"),
        ("augment", cfg.augment, cfg.augment in AUGMENTATIONS,
         " or ".join(repr(a) for a in AUGMENTATIONS)),
        ("device", cfg.device, cfg.device in ("auto", "cpu", "cuda")
         or cfg.device.startswith("cuda:"), "cpu, cuda or auto"),
        ("train_samples", cfg.train_samples, cfg.train_samples is None or cfg.train_samples >= 1,
         ">= 1"),
        ("test_samples", cfg.test_samples, cfg.test_samples is None or cfg.test_samples >= 1,
         ">= 1"),
    ]
    for name, value, ok, what in checks:
        if not ok:
            raise ValueError(f"{name} must be {what}, got {value!r}")
    if len(cfg.init) != 2 or cfg.init[0] > cfg.init[1]:
        raise ValueError(f"init must be [low, high] with low <= high, got {cfg.init!r}")
    check_network(cfg.network)
    if cfg.dt == 0:
        cfg.dt = None
    return cfg


def config_document(cfg: TrainConfig, **run_info) -> dict:
    """The content of a run's ``config.json``: the settings, the ``hidden``/``theta``/
    ``max_spikes`` view of a stack of linear layers, and the run facts ``run_info`` (keys
    from :data:`RUN_INFO_KEYS` only, so that the file reads back as a config)."""
    extra = sorted(set(run_info) - set(RUN_INFO_KEYS))
    if extra:
        raise ValueError(f"run facts {', '.join(extra)} are not in RUN_INFO_KEYS")
    return {**cfg.to_dict(), **(network_summary(cfg.network) or {}), **run_info}


def run_device(cfg: TrainConfig) -> torch.device:
    """The device a run of ``cfg`` trains on: :func:`resolve_device` of ``cfg.device``, except
    for networks with layers that only have CPU kernels (``conv2d``): ``"auto"`` picks the
    CPU for them, and an explicit GPU raises ``ValueError``."""
    dev = resolve_device(cfg.device)
    only = cpu_only(cfg.network)
    if dev.type != "cpu" and only:
        if cfg.device != "auto":
            raise ValueError(f"device {cfg.device!r}: {', '.join(only)} layers have CPU kernels "
                             "only for now (no GPU kernels yet); use --device cpu")
        dev = torch.device("cpu")
    return dev


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a
    ``torch.device``; raises ``ValueError`` when CUDA is asked for but not available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be cpu, cuda or auto, got {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return dev
