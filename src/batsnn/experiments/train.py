"""The training loop with callbacks (:func:`fit`), and the runner of one configured run on an
image dataset (:func:`train`).

:func:`fit` runs epochs of optimizer steps and calls back at fixed points with a
:class:`TrainState`. A callback is any object with some of these methods (each takes the
state and returns nothing); a plain callable is taken as ``on_epoch_end``:

- ``on_epoch_start(state)``: before the epoch's first step (``state.epoch`` is set).
- ``on_step(state)``: after every optimizer step (``state.batch``, ``state.step`` and
  ``state.samples`` updated). Nothing has been read back from the GPU: the running
  ``state.loss_sum`` and ``state.correct`` are device tensors, and reading them (``float``,
  ``int``) synchronises with the host, so do it only every so many steps. The loop calls no
  Python code per step when no callback has ``on_step``.
- ``on_epoch_end(state)``: after the epoch's evaluation; ``state.row`` is the epoch's
  metrics row (named as in :mod:`batsnn.metrics`), already appended to ``state.history``.

Stopping early: a callback sets ``state.stop = True``. From ``on_epoch_end`` training ends
after that epoch (it is complete and recorded). From ``on_step`` :func:`fit` returns at
once: the epoch is abandoned (no evaluation, no row, no ``on_epoch_end``), as if the run had
been interrupted, although the model keeps the steps already taken.

:func:`train` is :func:`fit` with the run's data, model, optimizer and schedule, and these
callbacks: :class:`ProgressBar` (without ``quiet``), :class:`RunRecorder` (checkpoints,
``metrics.csv``, ``summary.json``), :class:`RunPlots`, :class:`EpochLog` (without
``quiet``), then the caller's. Every file is written atomically after each complete epoch,
so an interrupted run loses only the epoch in progress and ``resume=True`` continues exactly
as an uninterrupted run would (the data order of an epoch depends only on the seed and the
epoch number).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import batsnn
from batsnn import metrics as M
from batsnn.encoding import ttfs_encode
from batsnn.experiments.augment import augment_batch
from batsnn.experiments.config import (RESUME_FIELDS, TrainConfig, config_document,
                                       config_from_dict, run_device)
from batsnn.experiments.data import load_dataset
from batsnn.experiments.model import build_model, layer_shapes, network_input_shape
from batsnn.experiments.rundir import (RunDir, RunExists, load_checkpoint, rng_state,
                                       save_checkpoint, set_rng_state, write_csv, write_json)
from batsnn.losses import count_predict, spike_count_class_loss, ttfs_cross_entropy, ttfs_predict
from batsnn.metrics import EvalStats

__all__ = ["EpochLog", "ProgressBar", "RunPlots", "RunRecorder", "TrainState", "check_finite",
           "encode_images", "epoch_order", "evaluate", "fit", "loss_and_prediction",
           "seed_everything", "summary_of", "train"]


# ----------------------------------------------------------------------------- the loop

@dataclass(eq=False)
class TrainState:
    """What :func:`fit` shares with the step function and the callbacks.

    Attributes:
        model, optimizer, device: what is trained, how, where.
        scheduler: stepped once after each epoch's training pass (optional).
        config: the run's settings (any object; :func:`train` puts its :class:`TrainConfig`).
        run_dir: the run directory, if any.
        epoch: the current epoch (1-based; the last completed one between epochs).
        step: optimizer steps since the run began (counted across epochs and resumes).
        batch: steps taken in the current epoch.
        samples: samples seen in the current epoch.
        loss_sum: float64 device scalar, sum over the epoch's samples of the training loss
            (the step function adds to it in place).
        correct: int64 device scalar, correct training predictions in the epoch (same).
        row: the last completed epoch's metrics row.
        history: every completed epoch's row, in order.
        stop: set to ``True`` to stop training (see the module docstring).
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    scheduler: Any = None
    config: Any = None
    run_dir: RunDir | None = None
    epoch: int = 0
    step: int = 0
    batch: int = 0
    samples: int = 0
    loss_sum: torch.Tensor | None = None
    correct: torch.Tensor | None = None
    row: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    stop: bool = False

    def __post_init__(self):
        self.device = torch.device(self.device)
        if self.loss_sum is None:
            self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        if self.correct is None:
            self.correct = torch.zeros((), dtype=torch.int64, device=self.device)


def _hooks(callbacks: Iterable, name: str) -> list[Callable]:
    out = []
    for cb in callbacks:
        hook = getattr(cb, name, None)
        if hook is None and name == "on_epoch_end" and callable(cb) and not any(
                hasattr(cb, n) for n in ("on_epoch_start", "on_step")):
            hook = cb
        if hook is not None:
            out.append(hook)
    return out


def fit(state: TrainState, *, epochs: int, batches: Callable[[int], Iterable],
        step: Callable[[Any], int], evaluate: Callable[[TrainState], dict] | None = None,
        callbacks: Iterable = ()) -> TrainState:
    """Train epochs ``state.epoch + 1`` to ``epochs``.

    Per epoch: ``model.train()``, zero ``state.loss_sum``/``state.correct`` (in place),
    ``on_epoch_start``; for each ``batch`` of ``batches(epoch)``: ``n = step(batch)``,
    ``on_step``; then (after a device synchronisation on a GPU) ``scheduler.step()``, the row
    ``{epoch, train_loss, train_accuracy, **evaluate(state), lr, train_seconds,
    epoch_seconds}``, a check that the parameters are finite, ``on_epoch_end``.

    Args:
        state: the model, optimizer and counters; changed in place and returned.
        epochs: the last epoch to train (1-based).
        batches: ``epoch -> iterable of batches`` (anything ``step`` takes).
        step: runs one optimizer step on a batch (zeroing gradients itself), adds the sum of
            the batch's per-sample losses to ``state.loss_sum`` and its number of correct
            predictions to ``state.correct`` on the device without reading them back, and
            returns the number of samples in the batch (a Python int).
        evaluate: ``state -> dict`` of evaluation metrics merged into the epoch's row (with
            the model in whatever mode it sets).
        callbacks: see the module docstring.

    Raises:
        FloatingPointError: a parameter holds NaN or infinite values after an epoch.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int):
        raise TypeError(f"epochs must be an int, got {epochs!r}")
    callbacks = list(callbacks)
    on_start = _hooks(callbacks, "on_epoch_start")
    on_step = _hooks(callbacks, "on_step")
    on_end = _hooks(callbacks, "on_epoch_end")
    state.stop = False
    for epoch in range(state.epoch + 1, epochs + 1):
        state.epoch, state.batch, state.samples = epoch, 0, 0
        state.model.train()
        state.loss_sum.zero_()
        state.correct.zero_()
        for hook in on_start:
            hook(state)
        t0 = time.perf_counter()
        for batch in batches(epoch):
            n = step(batch)
            state.batch += 1
            state.step += 1
            state.samples += n
            if on_step:
                for hook in on_step:
                    hook(state)
                if state.stop:
                    return state
        if state.device.type == "cuda":  # the queued steps are part of the epoch's time
            torch.cuda.synchronize(state.device)
        train_seconds = time.perf_counter() - t0
        if state.scheduler is not None:
            state.scheduler.step()
        seen = max(state.samples, 1)
        row = {M.EPOCH: epoch, M.TRAIN_LOSS: float(state.loss_sum) / seen,
               M.TRAIN_ACCURACY: int(state.correct) / seen}
        if evaluate is not None:
            row.update(evaluate(state))
        row[M.LR] = float(state.optimizer.param_groups[0]["lr"])
        check_finite(state.model)
        row[M.TRAIN_SECONDS] = train_seconds
        row[M.EPOCH_SECONDS] = time.perf_counter() - t0
        state.row = row
        state.history.append(row)
        for hook in on_end:
            hook(state)
        if state.stop:
            break
    return state


def check_finite(model: torch.nn.Module) -> None:
    """Raise ``FloatingPointError`` naming the first parameter holding NaN or inf."""
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise FloatingPointError(f"training diverged: {name} holds NaN or infinite values")


def summary_of(history: list[dict]) -> dict:
    """The summary of a run: its last row, the best test accuracy and the epochs done."""
    if not history:
        raise ValueError("summary_of needs at least one epoch's row")
    return {**history[-1], M.BEST_TEST_ACCURACY: max(r[M.TEST_ACCURACY] for r in history),
            M.EPOCHS_COMPLETED: len(history)}


# ----------------------------------------------------------------------------- callbacks

class ProgressBar:
    """A tqdm bar over each epoch's steps; every ``every`` steps it shows the running loss
    and accuracy and checks that the parameters are finite (both read the GPU: one host
    synchronisation each ``every`` steps)."""

    def __init__(self, steps_per_epoch: int, every: int = 50):
        self.total, self.every = steps_per_epoch, every
        self.bar = None

    def on_epoch_start(self, state: TrainState) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, desc=f"epoch {state.epoch}", leave=False,
                        dynamic_ncols=True)

    def on_step(self, state: TrainState) -> None:
        self.bar.update(1)
        if (state.batch - 1) % self.every == 0:
            self.bar.set_postfix(loss=f"{float(state.loss_sum) / state.samples:.3f}",
                                 acc=f"{int(state.correct) / state.samples:.3f}")
            check_finite(state.model)
        if state.batch == self.total:
            self.bar.close()

    def on_epoch_end(self, state: TrainState) -> None:
        self.bar.close()


class RunRecorder:
    """Writes a run's files after each epoch: ``best.pt`` (when the test accuracy improved),
    ``last.pt``, ``metrics.csv`` and ``summary.json`` (see :mod:`batsnn.experiments.rundir`).

    Args:
        run_dir: where to write.
        settings: the run's settings, stored in the checkpoints (``TrainConfig.to_dict()``).
    """

    def __init__(self, run_dir: RunDir, settings: dict):
        self.run, self.settings = run_dir, settings

    def checkpoint(self, state: TrainState) -> dict:
        """Everything needed to continue the run from the end of ``state.epoch``."""
        best = max(r[M.TEST_ACCURACY] for r in state.history)
        return {"model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
                "scheduler": state.scheduler.state_dict() if state.scheduler else None,
                "epoch": state.epoch, "step": state.step, "rng": rng_state(),
                "history": state.history, "best_test_accuracy": best,
                "config": self.settings, "batsnn_version": batsnn.__version__}

    def on_epoch_end(self, state: TrainState) -> None:
        ck = self.checkpoint(state)
        earlier = [r[M.TEST_ACCURACY] for r in state.history[:-1]]
        if not earlier or state.row[M.TEST_ACCURACY] > max(earlier):
            save_checkpoint(self.run.best, ck)
        save_checkpoint(self.run.last, ck)
        write_csv(self.run.metrics, state.history)
        write_json(self.run.summary, summary_of(state.history))


class RunPlots:
    """Draws ``learning_curves.png``, ``spikes_per_layer.png`` and ``raster.png`` (the spike
    trains of every layer for ``inputs``, encoded spike times of a few samples) after each
    epoch."""

    def __init__(self, run_dir: RunDir, inputs: torch.Tensor, labels: torch.Tensor):
        self.run, self.inputs, self.labels = run_dir, inputs, labels

    def on_epoch_end(self, state: TrainState) -> None:
        from batsnn.experiments import plots

        plots.learning_curves(state.history, self.run.file("learning_curves.png"))
        plots.spikes_per_layer(state.history, self.run.file("spikes_per_layer.png"))
        with torch.no_grad():
            state.model.eval()
            outs = state.model.forward_all(self.inputs)
        # maps (conv, pool layers) are drawn as their neurons in C order
        outs = [batsnn.SpikeTrains(o.times.flatten(1, -2), o.counts.flatten(1)) for o in outs]
        plots.raster(outs, self.labels, self.run.file("raster.png"))


class EpochLog:
    """Logs one line per epoch (accuracy, loss, spikes per layer, latency, time)."""

    def __init__(self, log: Callable[[str], Any] = print):
        self.log = log

    def on_epoch_end(self, state: TrainState) -> None:
        self.log(epoch_line(state.row))


def epoch_line(row: dict) -> str:
    """One line describing an epoch's metrics row."""
    spikes = ", ".join(f"{row[k]:.0f}" for k in M.layer_keys(row, M.SPIKES_PER_SAMPLE))
    return (f"epoch {row[M.EPOCH]}: test accuracy {100 * row[M.TEST_ACCURACY]:.2f}% "
            f"(train {100 * row[M.TRAIN_ACCURACY]:.2f}%), loss {row[M.TEST_LOSS]:.3f}, "
            f"spikes/sample per layer [{spikes}], label spikes by 50 ms "
            f"{100 * row[M.label_share_key(50)]:.0f}%, decision at "
            f"{row[M.DECISION_TIME_MS]:.1f} ms, {row[M.EPOCH_SECONDS]:.1f} s")


# ----------------------------------------------------------------------------- the runner

def seed_everything(seed: int) -> None:
    """Seed torch (CPU and GPUs), numpy and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the ``n`` training samples in ``epoch``: a permutation that depends only
    on ``seed`` and ``epoch`` (so a resumed run sees the same data)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def encode_images(images: torch.Tensor, cfg: TrainConfig, device) -> torch.Tensor:
    """TTFS spike times of uint8 images ``(B, ...)`` (window ``cfg.t_window``, grid
    ``cfg.dt``) on ``device``, shaped as ``cfg.network`` takes them: ``(B, N, 1)``, or
    ``(B, 1, H, W, 1)`` maps for a network starting with a conv or pool layer
    (:func:`batsnn.experiments.model.network_input_shape`); uint8 values lie in [0, 255] by
    type, so they are encoded without value checks (no host synchronisation)."""
    x = images.to(device, non_blocking=True).reshape(images.shape[0], -1).to(torch.float32)
    t = ttfs_encode(x, t_window=cfg.t_window, x_max=255.0, dt=cfg.dt, validate=False)
    shape = network_input_shape(cfg.network, x.shape[1])
    return t if len(shape) == 1 else t.reshape(x.shape[0], *shape, t.shape[-1])


def output_horizon(cfg: TrainConfig) -> float:
    """The output layer's simulation horizon ``t_max`` (s)."""
    return float(cfg.network[-1].get("t_max", cfg.t_max))


def loss_and_prediction(cfg: TrainConfig, outputs, labels: torch.Tensor):
    """The configured loss (a scalar, mean over the batch) and the predicted classes ``(B,)``
    for the output layer's :class:`batsnn.SpikeTrains` ``outputs``."""
    if cfg.loss == "ttfs":
        return (ttfs_cross_entropy(outputs.times, labels, tau_loss=cfg.tau_loss,
                                   t_max=output_horizon(cfg)),
                ttfs_predict(outputs.times))
    return (spike_count_class_loss(outputs.times, outputs.counts, labels,
                                   target_true=cfg.target_true, target_false=cfg.target_false),
            count_predict(outputs.counts))


def evaluate(model, cfg: TrainConfig, images, labels, device, quiet: bool = True,
             desc: str = "test") -> dict:
    """Metrics of ``model`` on a labelled set of uint8 images (test loss and accuracy,
    per-layer and latency metrics, see :class:`batsnn.metrics.EvalStats`)."""
    stats = EvalStats(None, "ttfs" if cfg.loss == "ttfs" else "count",
                      1.0 if cfg.loss == "ttfs" else cfg.target_true)
    model.eval()
    starts = range(0, len(labels), cfg.eval_batch_size)
    if not quiet:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, leave=False, dynamic_ncols=True)
    with torch.no_grad():
        for start in starts:
            sl = slice(start, start + cfg.eval_batch_size)
            y = labels[sl].to(device)
            outs = model.forward_all(encode_images(images[sl], cfg, device))
            loss, pred = loss_and_prediction(cfg, outs[-1], y)
            stats.update(outs, y, float(loss), pred)
    return stats.result("test_")


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


def _check_resumable(saved: dict, cfg: TrainConfig, out: Path) -> None:
    before = config_from_dict(saved).to_dict()
    now = cfg.to_dict()
    diff = [k for k in RESUME_FIELDS if before.get(k) != now.get(k)]
    if diff:
        raise ValueError(f"--resume: settings differ from the run in {out}: "
                         + ", ".join(f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in diff))


def _lr_schedule(cfg: TrainConfig) -> Callable[[int], float]:
    every = cfg.lr_decay_every

    def factor(epoch):
        f = cfg.lr_decay ** (epoch // every) if every > 0 else 1.0
        return max(f, cfg.lr_min / cfg.lr)

    return factor


def _batches(order_of: Callable[[int], torch.Tensor], batch_size: int):
    def batches(epoch: int) -> Iterator[torch.Tensor]:
        order = order_of(epoch)
        for start in range(0, len(order), batch_size):
            yield order[start:start + batch_size]

    return batches


def train(cfg: TrainConfig, *, resume: bool = False, quiet: bool = False,
          log: Callable[[str], Any] = print, callbacks: Iterable = ()) -> dict:
    """Train and evaluate per ``cfg``; returns the summary (also written to ``summary.json``).

    Args:
        cfg: the run's settings (:func:`batsnn.experiments.config.resolve_config`); its
            ``out`` is set to the run directory used.
        resume: continue the run in ``cfg.out`` after its last complete epoch.
        quiet: no progress bars and no per-epoch lines.
        log: where lines go.
        callbacks: more callbacks for :func:`fit`, called after the run's own.

    Raises:
        RunExists: ``cfg.out`` holds a run and ``resume`` is false.
        ValueError: ``resume`` with settings that differ from the saved run's.
        batsnn.experiments.data.DatasetNotFound: the data is not there (the message says what
            to run).
    """
    device = run_device(cfg)
    out = Path(cfg.out or f"runs/{cfg.preset or 'custom'}-{time.strftime('%Y%m%d-%H%M%S')}")
    cfg.out = str(out)
    run = RunDir(out)
    if run.has_checkpoint() and not resume:
        raise RunExists(f"{out} already holds a run; pass --resume to continue it or choose "
                        "another --out")
    ds = load_dataset(cfg.dataset, cfg.data_dir).subset(cfg.train_samples, cfg.test_samples)
    n_in = ds.train_x.shape[1]

    seed_everything(cfg.seed)
    model = build_model(cfg, n_in, ds.n_classes).to(device)
    # a graph would replay one batch's deformation: augmented runs launch step by step
    graphed = cfg.cuda_graph and device.type == "cuda" and cfg.augment == "none"
    if graphed:  # the whole step runs as one CUDA graph (batsnn.experiments.graphs)
        from batsnn.experiments.graphs import capturable_adam

        opt = capturable_adam(model.parameters(), cfg.lr, device)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_schedule(cfg))
    state = TrainState(model, opt, device, scheduler=sched, config=cfg, run_dir=run)
    steps_per_epoch = math.ceil(len(ds.train_y) / cfg.batch_size)
    if resume and run.has_checkpoint():
        ck = load_checkpoint(run.last)
        _check_resumable(ck["config"], cfg, out)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        _optimizer_mode(opt, graphed, device)
        sched.load_state_dict(ck["scheduler"])
        # a run saved under CUDA graphs holds its learning rates as tensors
        sched.base_lrs = [float(v) for v in sched.base_lrs]
        sched._last_lr = [float(v) for v in sched.get_last_lr()]
        set_rng_state(ck["rng"])
        state.history = ck["history"]
        state.epoch = ck["epoch"]
        state.step = ck.get("step", ck["epoch"] * steps_per_epoch)
        log(f"resuming {out} after epoch {ck['epoch']}")
    out.mkdir(parents=True, exist_ok=True)
    shapes = layer_shapes(cfg.network, network_input_shape(cfg.network, n_in), ds.n_classes,
                          tau_s=cfg.tau_s, t_max=cfg.t_max, init=cfg.init, dt=cfg.dt)
    sizes = [n_in] + [s[0] if len(s) == 1 else list(s) for s in shapes]
    write_json(run.config, config_document(
        cfg, batsnn_version=batsnn.__version__, layers=sizes, n_classes=ds.n_classes,
        resolved_device=str(device), data_source=ds.source))
    if not quiet:
        log(f"{cfg.preset or 'custom'} on {cfg.dataset}: layers {sizes}, dt "
            f"{cfg.dt or 0} s, augment {cfg.augment}, seed {cfg.seed}, {len(ds.train_y)} "
            f"train / {len(ds.test_y)} "
            f"test samples, device {device}; writing to {out}")

    train_x, train_y = ds.train_x, ds.train_y
    if device.type == "cuda":  # the training set lives on the GPU (uint8: 47 MB for MNIST)
        train_x, train_y = train_x.to(device), train_y.to(device)

    def train_step(idx):
        y = train_y[idx]
        # the batch's own deformation (seed, epoch, batch index): a resumed run sees the same
        images = augment_batch(train_x[idx], cfg.augment, seed=cfg.seed, epoch=state.epoch,
                               batch=state.batch)
        out_spikes = model(encode_images(images, cfg, device))
        loss, pred = loss_and_prediction(cfg, out_spikes, y)
        loss.backward()
        opt.step()
        # accumulated on the device: no host synchronisation inside the epoch
        state.loss_sum.add_(loss.detach() * idx.shape[0])
        state.correct.add_((pred == y).sum())

    order_of = lambda epoch: epoch_order(len(ds.train_y), cfg.seed, epoch).to(device)  # noqa: E731
    graph = None
    if graphed and len(ds.train_y) >= cfg.batch_size and state.epoch < cfg.epochs:
        # once per run, outside the epochs' timing: kernels compile, the step is recorded
        from batsnn.experiments.graphs import GraphedStep

        t_capture = time.perf_counter()
        graph = GraphedStep(train_step, order_of(state.epoch + 1)[:cfg.batch_size],
                            state=(model, opt))
        if not quiet:
            log(f"training step captured as a CUDA graph in "
                f"{time.perf_counter() - t_capture:.1f} s")

    def step(idx) -> int:
        if graph is not None and len(idx) == cfg.batch_size:
            graph(idx)
        else:
            opt.zero_grad(set_to_none=True)
            train_step(idx)
        return len(idx)

    own = [RunRecorder(run, cfg.to_dict()),
           RunPlots(run, encode_images(ds.test_x[:3], cfg, device), ds.test_y[:3])]
    if not quiet:
        own = [ProgressBar(steps_per_epoch), *own, EpochLog(log)]
    fit(state, epochs=cfg.epochs, batches=_batches(order_of, cfg.batch_size), step=step,
        evaluate=lambda st: evaluate(model, cfg, ds.test_x, ds.test_y, device, quiet),
        callbacks=[*own, *callbacks])
    return summary_of(state.history) if state.history else {}
