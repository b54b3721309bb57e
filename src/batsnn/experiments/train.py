"""The experiment runner: configuration, presets, the training loop and the run directory.

A run writes into its directory ``config.json`` (resolved settings, batsnn version, seed),
``metrics.csv`` (one row per epoch), ``summary.json``, checkpoints ``last.pt`` and
``best.pt`` (model, optimizer and scheduler state, epoch, RNG states, metric history) and
PNG plots. Every file is written atomically after each complete epoch, so an interrupted run
loses only the epoch in progress and ``resume=True`` continues exactly as an uninterrupted
run would (the data order of an epoch depends only on the seed and the epoch number).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import batsnn
from batsnn.experiments.data import canonical_name, load_dataset
from batsnn.encoding import _ttfs_times
from batsnn.losses import count_predict, spike_count_class_loss, ttfs_cross_entropy, ttfs_predict
from batsnn.metrics import EvalStats
from batsnn.nn import LIFLinear, SpikingSequential

__all__ = ["PRESETS", "TrainConfig", "build_model", "resolve_config", "train"]


@dataclass
class TrainConfig:
    """Settings of one training run (times in seconds). See :data:`PRESETS`."""

    preset: str | None = None
    dataset: str = "mnist"
    hidden: list[int] = field(default_factory=lambda: [800])
    theta: list[float] = field(default_factory=lambda: [0.2, 1.3])
    max_spikes: list[int] = field(default_factory=lambda: [30, 30])
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
    seed: int = 1
    device: str = "auto"
    cuda_graph: bool = True
    train_samples: int | None = None
    test_samples: int | None = None
    eval_batch_size: int = 500
    data_dir: str | None = None
    out: str | None = None


#: The reference experiments of model.md section 5.
PRESETS: dict[str, dict] = {
    "mnist-ttfs": dict(dataset="mnist", hidden=[800], theta=[0.7, 2.0], max_spikes=[1, 1],
                       loss="ttfs", tau_loss=0.005, batch_size=50, lr=0.002, epochs=30,
                       t_max=1.0, init=[0.0, 1.0]),
    "mnist-count": dict(dataset="mnist", hidden=[800], theta=[0.2, 1.3], max_spikes=[30, 30],
                        loss="count", target_true=15, target_false=3, batch_size=50, lr=0.003,
                        epochs=100, t_max=0.2),
    "emnist-count": dict(dataset="emnist-balanced", hidden=[800], theta=[0.2, 1.3],
                         max_spikes=[30, 30], loss="count", target_true=15, target_false=3,
                         batch_size=50, lr=0.003, epochs=100, t_max=0.2),
    "fmnist-count": dict(dataset="fashion-mnist", hidden=[400, 400], theta=[0.13, 0.45, 0.7],
                         max_spikes=[5, 5, 20], loss="count", target_true=15, target_false=3,
                         batch_size=5, lr=0.0005, lr_decay=0.5, lr_decay_every=10,
                         lr_min=1e-4, epochs=100, t_max=0.2),
}

_MODEL_FIELDS = ("dataset", "hidden", "theta", "max_spikes", "tau_s", "t_max", "t_window",
                 "loss", "target_true", "target_false", "tau_loss", "init", "batch_size", "lr",
                 "lr_decay", "lr_decay_every", "lr_min", "dt", "seed", "train_samples",
                 "test_samples")


def resolve_config(preset: str | None = None, file: str | os.PathLike | None = None,
                   **overrides) -> TrainConfig:
    """Build a config: defaults, then the preset, then a JSON/TOML file, then ``overrides``
    (``None`` values are ignored). Raises ``ValueError`` for unknown names or bad values."""
    values: dict = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        values.update(PRESETS[preset], preset=preset)
    if file is not None:
        values.update(_read_config_file(file))
    values.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown config field(s) {', '.join(unknown)}")
    cfg = TrainConfig(**values)
    _validate(cfg)
    return cfg


def _read_config_file(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    if path.suffix == ".toml":
        import tomllib

        with open(path, "rb") as f:
            return tomllib.load(f)
    with open(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"config file {str(path)!r} is not valid JSON: {e}") from None
    # a run's own config.json can be fed back: drop the fields that are not settings
    for k in ("batsnn_version", "layers", "n_classes", "resolved_device", "created"):
        data.pop(k, None)
    return data


def _validate(cfg: TrainConfig) -> None:
    cfg.dataset = canonical_name(cfg.dataset)
    n_layers = len(cfg.hidden) + 1
    for name in ("theta", "max_spikes"):
        if len(getattr(cfg, name)) != n_layers:
            raise ValueError(f"{name} needs one value per layer ({n_layers}), got "
                             f"{getattr(cfg, name)}")
    checks = [
        ("epochs", cfg.epochs, cfg.epochs >= 1, ">= 1"),
        ("batch_size", cfg.batch_size, cfg.batch_size >= 1, ">= 1"),
        ("eval_batch_size", cfg.eval_batch_size, cfg.eval_batch_size >= 1, ">= 1"),
        ("lr", cfg.lr, cfg.lr > 0, "> 0"),
        ("tau_s", cfg.tau_s, cfg.tau_s > 0, "> 0"),
        ("t_max", cfg.t_max, cfg.t_max > 0, "> 0"),
        ("t_window", cfg.t_window, cfg.t_window > 0, "> 0"),
        ("dt", cfg.dt, cfg.dt is None or (cfg.dt >= 0 and math.isfinite(cfg.dt)),
         ">= 0 (seconds)"),
        ("loss", cfg.loss, cfg.loss in ("count", "ttfs"), "'count' or 'ttfs'"),
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
    if any(h < 1 for h in cfg.hidden):
        raise ValueError(f"hidden layer sizes must be >= 1, got {cfg.hidden}")
    if cfg.dt == 0:
        cfg.dt = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return dev


def build_model(cfg: TrainConfig, n_inputs: int, n_classes: int) -> SpikingSequential:
    """The network of a config, weights drawn from the current torch RNG."""
    sizes = [n_inputs, *cfg.hidden, n_classes]
    return SpikingSequential(*[
        LIFLinear(a, b, tau_s=cfg.tau_s, theta=th, max_spikes=k, dt=cfg.dt, t_max=cfg.t_max,
                  init=tuple(cfg.init))
        for a, b, th, k in zip(sizes[:-1], sizes[1:], cfg.theta, cfg.max_spikes)])


# ----------------------------------------------------------------------------- files

def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, obj) -> None:
    _atomic_write(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(o):
    if isinstance(o, float) and math.isnan(o):
        return None
    raise TypeError(type(o).__name__)


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    _atomic_write(path, buf.getvalue().encode())


def _save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    _atomic_write(path, buf.getvalue())


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"].cpu())
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in s["cuda"]])


# ----------------------------------------------------------------------------- loop

class RunExists(RuntimeError):
    """The output directory already holds a run and ``resume`` was not asked for."""


def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def _encode(images: torch.Tensor, cfg: TrainConfig, device) -> torch.Tensor:
    # dataset images are uint8 bytes, in [0, 255] by type: encoded without value checks
    x = images.to(device, non_blocking=True).reshape(images.shape[0], -1).to(torch.float32)
    return _ttfs_times(x, cfg.t_window, 255.0, cfg.dt)


def _loss_and_pred(cfg, out, labels):
    if cfg.loss == "ttfs":
        return (ttfs_cross_entropy(out.times, labels, tau_loss=cfg.tau_loss),
                ttfs_predict(out.times))
    return (spike_count_class_loss(out.times, out.counts, labels, target_true=cfg.target_true,
                                   target_false=cfg.target_false), count_predict(out.counts))


def evaluate(model, cfg: TrainConfig, images, labels, device, quiet=True, desc="test"):
    """Metrics of ``model`` on a labelled set (see :class:`batsnn.metrics.EvalStats`)."""
    sizes = [layer.out_features for layer in model]
    stats = EvalStats(sizes, "ttfs" if cfg.loss == "ttfs" else "count",
                      1.0 if cfg.loss == "ttfs" else cfg.target_true)
    model.eval()
    bar = _progress(range(0, len(labels), cfg.eval_batch_size), quiet, desc)
    with torch.no_grad():
        for start in bar:
            sl = slice(start, start + cfg.eval_batch_size)
            y = labels[sl].to(device)
            outs = model.forward_all(_encode(images[sl], cfg, device))
            loss, pred = _loss_and_pred(cfg, outs[-1], y)
            stats.update(outs, y, float(loss), pred)
    return stats.result("test_")


def _progress(it, quiet, desc):
    if quiet:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, leave=False, dynamic_ncols=True)


def train(cfg: TrainConfig, *, resume: bool = False, quiet: bool = False, log=print) -> dict:
    """Train and evaluate per ``cfg``; returns the summary (also written to ``summary.json``).

    Raises:
        RunExists: ``cfg.out`` holds a run and ``resume`` is false.
        batsnn.experiments.data.DatasetNotFound: the data is not there (the message says what to run).
    """
    device = resolve_device(cfg.device)
    out = Path(cfg.out or f"runs/{cfg.preset or 'custom'}-{time.strftime('%Y%m%d-%H%M%S')}")
    cfg.out = str(out)
    last_path = out / "last.pt"
    if last_path.exists() and not resume:
        raise RunExists(f"{out} already holds a run; pass --resume to continue it or choose "
                        "another --out")
    ds = load_dataset(cfg.dataset, cfg.data_dir).subset(cfg.train_samples, cfg.test_samples)
    n_in = ds.train_x.shape[1]

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    model = build_model(cfg, n_in, ds.n_classes).to(device)
    graphed = cfg.cuda_graph and device.type == "cuda"
    if graphed:  # the whole step runs as one CUDA graph (batsnn.experiments.graphs)
        from batsnn.experiments.graphs import capturable_adam

        opt = capturable_adam(model.parameters(), cfg.lr, device)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    every = cfg.lr_decay_every

    def lr_factor(epoch):
        f = cfg.lr_decay ** (epoch // every) if every > 0 else 1.0
        return max(f, cfg.lr_min / cfg.lr)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    history: list[dict] = []
    best = -1.0
    start_epoch = 1
    if resume and last_path.exists():
        # loaded on the CPU: the RNG states must stay CPU tensors; load_state_dict moves the
        # weights and the optimizer state to the model's device
        ck = torch.load(last_path, map_location="cpu", weights_only=False)
        saved = ck["config"]
        diff = [k for k in _MODEL_FIELDS if saved.get(k) != dataclasses.asdict(cfg).get(k)]
        if diff:
            raise ValueError(f"--resume: settings differ from the run in {out}: "
                             + ", ".join(f"{k} {saved.get(k)!r} -> {getattr(cfg, k)!r}"
                                         for k in diff))
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        _optimizer_mode(opt, graphed, device)
        sched.load_state_dict(ck["scheduler"])
        # a run saved under CUDA graphs holds its learning rates as tensors
        sched.base_lrs = [float(v) for v in sched.base_lrs]
        sched._last_lr = [float(v) for v in sched.get_last_lr()]
        _set_rng_state(ck["rng"])
        history = ck["history"]
        best = ck["best_test_accuracy"]
        start_epoch = ck["epoch"] + 1
        log(f"resuming {out} after epoch {ck['epoch']}")
    out.mkdir(parents=True, exist_ok=True)
    sizes = [n_in, *cfg.hidden, ds.n_classes]
    config_doc = {**dataclasses.asdict(cfg), "batsnn_version": batsnn.__version__,
                  "layers": sizes, "n_classes": ds.n_classes, "resolved_device": str(device),
                  "data_source": ds.source}
    _write_json(out / "config.json", config_doc)
    if not quiet:
        log(f"{cfg.preset or 'custom'} on {cfg.dataset}: layers {sizes}, dt "
            f"{cfg.dt or 0} s, seed {cfg.seed}, {len(ds.train_y)} train / {len(ds.test_y)} "
            f"test samples, device {device}; writing to {out}")

    summary = _summary(history, best) if history else {}
    # accumulated on the device: no host synchronisation inside the epoch
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    train_x, train_y = ds.train_x, ds.train_y
    if device.type == "cuda":  # the training set lives on the GPU (uint8: 47 MB for MNIST)
        train_x, train_y = train_x.to(device), train_y.to(device)

    def train_step(idx):
        y = train_y[idx]
        out_spikes = model(_encode(train_x[idx], cfg, device))
        loss, pred = _loss_and_pred(cfg, out_spikes, y)
        loss.backward()
        opt.step()
        loss_sum.add_(loss.detach() * idx.shape[0])
        correct.add_((pred == y).sum())

    graph = None
    for epoch in range(start_epoch, cfg.epochs + 1):
        model.train()
        order = _epoch_order(len(ds.train_y), cfg.seed, epoch).to(device)
        if graphed and graph is None and len(order) >= cfg.batch_size:
            # once per run, outside the epoch's timing: kernels compile, the step is recorded
            from batsnn.experiments.graphs import GraphedStep

            t_capture = time.perf_counter()
            graph = GraphedStep(train_step, order[:cfg.batch_size], state=(model, opt))
            if not quiet:
                log(f"training step captured as a CUDA graph in "
                    f"{time.perf_counter() - t_capture:.1f} s")
        t0 = time.perf_counter()
        loss_sum.zero_()
        correct.zero_()
        seen = 0
        bar = _progress(range(0, len(order), cfg.batch_size), quiet, f"epoch {epoch}")
        for start in bar:
            idx = order[start:start + cfg.batch_size]
            if graph is not None and len(idx) == cfg.batch_size:
                graph(idx)
            else:
                opt.zero_grad(set_to_none=True)
                train_step(idx)
            seen += len(idx)
            if not quiet and (start // cfg.batch_size) % 50 == 0:
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}",
                                acc=f"{int(correct) / seen:.3f}")
                _check_finite(model)
        if device.type == "cuda":  # the queued steps are part of the epoch's time
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - t0
        sched.step()
        row = {"epoch": epoch, "train_loss": float(loss_sum) / seen,
               "train_accuracy": int(correct) / seen}
        row.update(evaluate(model, cfg, ds.test_x, ds.test_y, device, quiet))
        row["lr"] = float(opt.param_groups[0]["lr"])
        _check_finite(model)
        row["train_seconds"] = train_seconds
        row["epoch_seconds"] = time.perf_counter() - t0
        history.append(row)
        is_best = row["test_accuracy"] > best
        best = max(best, row["test_accuracy"])
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "epoch": epoch, "rng": _rng_state(),
                 "history": history, "best_test_accuracy": best,
                 "config": dataclasses.asdict(cfg), "batsnn_version": batsnn.__version__}
        if is_best:
            _save_checkpoint(out / "best.pt", state)
        _save_checkpoint(last_path, state)
        _write_csv(out / "metrics.csv", history)
        summary = _summary(history, best)
        _write_json(out / "summary.json", summary)
        _plots(out, history, model, cfg, ds, device)
        if not quiet:
            log(_epoch_line(row, len(sizes) - 1))
    return summary


def _optimizer_mode(opt, graphed: bool, device) -> None:
    """Make a loaded optimizer state fit the loop that continues it: under CUDA graphs Adam is
    capturable, with its learning rate and step counts as device tensors; otherwise plain
    floats and CPU step counts (a checkpoint keeps them as they were held when saved)."""
    for g in opt.param_groups:
        g["capturable"] = graphed
        for k in ("lr", "initial_lr"):
            if k in g:
                v = float(g[k])
                g[k] = torch.tensor(v, device=device) if graphed else v
    for st in opt.state.values():
        if isinstance(st.get("step"), torch.Tensor):
            st["step"] = st["step"].to(device=device if graphed else "cpu",
                                       dtype=torch.float32)


def _check_finite(model) -> None:
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise FloatingPointError(f"training diverged: {name} holds NaN or infinite values")


def _summary(history, best) -> dict:
    return {**history[-1], "best_test_accuracy": best, "epochs_completed": len(history)}


def _epoch_line(row, n_layers) -> str:
    spikes = ", ".join(f"{row[f'spikes_per_sample_l{i + 1}']:.0f}" for i in range(n_layers))
    return (f"epoch {row['epoch']}: test accuracy {100 * row['test_accuracy']:.2f}% "
            f"(train {100 * row['train_accuracy']:.2f}%), loss {row['test_loss']:.3f}, "
            f"spikes/sample per layer [{spikes}], label spikes by 50 ms "
            f"{100 * row['label_spike_share_50ms']:.0f}%, decision at "
            f"{row['decision_time_ms']:.1f} ms, {row['epoch_seconds']:.1f} s")


def _plots(out, history, model, cfg, ds, device) -> None:
    from batsnn.experiments import plots

    plots.learning_curves(history, out / "learning_curves.png")
    plots.spikes_per_layer(history, out / "spikes_per_layer.png")
    with torch.no_grad():
        model.eval()
        outs = model.forward_all(_encode(ds.test_x[:3], cfg, device))
    plots.raster(outs, ds.test_y[:3], out / "raster.png")
