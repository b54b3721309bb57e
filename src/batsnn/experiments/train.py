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
- ``on_train_end(state)``: after the epoch's last step, before the row is made (distributed
  training adds the counters over processes here).
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

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import batsnn
from batsnn import metrics as M
from batsnn.encoding import discretize, ttfs_encode
from batsnn.experiments import distributed
from batsnn.experiments.augment import batch_grid, deform_by_grid
from batsnn.experiments.config import (DT_MODES, TrainConfig, config_document,
                                       config_from_dict, resolve_device, settings_difference,
                                       training_margin)
from batsnn.experiments.data import load_dataset
from batsnn.experiments.model import build_model, check_fits, layer_shapes, network_input_shape
from batsnn.experiments.rundir import (CHECKPOINT_FORMAT, MARKER, CheckpointError, RunDir,
                                       load_run_checkpoint, prepare_out, rng_state,
                                       save_checkpoint, set_rng_state, write_csv, write_json)
from batsnn.losses import count_predict, spike_count_class_loss, ttfs_cross_entropy, ttfs_predict
from batsnn.metrics import EvalStats
from batsnn.params import LIFParams
from batsnn.spikes import mark_valid

__all__ = ["EpochLog", "ProgressBar", "RunPlots", "RunRecorder", "TrainState", "check_finite",
           "check_resumable", "encode_images", "epoch_order", "evaluate", "fit",
           "loss_and_prediction", "network_params", "restore_checkpoint", "seed_everything",
           "set_network_grid", "summary_of", "sync_run_files", "train", "training_dt"]


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
                hasattr(cb, n) for n in ("on_epoch_start", "on_step", "on_train_end")):
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
    ``on_step``; then ``on_train_end``, (after a device synchronisation on a GPU)
    ``scheduler.step()``, the row
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
    on_train_end = _hooks(callbacks, "on_train_end")
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
        for hook in on_train_end:
            hook(state)
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
    """Writes a run's files after each epoch: ``last.pt``, ``best.pt`` (when the test
    accuracy improved), ``metrics.csv`` and ``summary.json`` (see
    :mod:`batsnn.experiments.rundir`). ``last.pt`` comes first: it is the source of truth
    from which the others are rewritten if a run stops between two writes
    (:func:`sync_run_files`).

    Args:
        run_dir: where to write.
        settings: the run's settings, stored in the checkpoints (``TrainConfig.to_dict()``).
    """

    def __init__(self, run_dir: RunDir, settings: dict):
        self.run, self.settings = run_dir, settings

    def checkpoint(self, state: TrainState) -> dict:
        """Everything needed to continue the run from the end of ``state.epoch``: tensors and
        plain values only (loaded back with ``weights_only=True``)."""
        best = max(r[M.TEST_ACCURACY] for r in state.history)
        return {"batsnn_checkpoint": CHECKPOINT_FORMAT, "batsnn_version": batsnn.__version__,
                "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
                "scheduler": state.scheduler.state_dict() if state.scheduler else None,
                "epoch": state.epoch, "step": state.step, "rng": rng_state(),
                "history": [dict(r) for r in state.history], "best_test_accuracy": best,
                "config": self.settings}

    def on_epoch_end(self, state: TrainState) -> None:
        ck = self.checkpoint(state)
        earlier = [r[M.TEST_ACCURACY] for r in state.history[:-1]]
        save_checkpoint(self.run.last, ck)
        if not earlier or state.row[M.TEST_ACCURACY] > max(earlier):
            save_checkpoint(self.run.best, ck)
        write_csv(self.run.metrics, state.history)
        write_json(self.run.summary, summary_of(state.history))


def _best_epoch(history: list[dict]) -> int:
    """The first epoch (1-based) with the best test accuracy (the one ``best.pt`` holds)."""
    accs = [r[M.TEST_ACCURACY] for r in history]
    return accs.index(max(accs)) + 1


def sync_run_files(run: RunDir, ck: dict) -> list[dict]:
    """Make a run's files agree with its checkpoint ``ck`` (read from ``last.pt``, the source
    of truth): rewrite ``metrics.csv`` and ``summary.json`` from its history, and ``best.pt``
    when the best epoch is the checkpoint's own and ``best.pt`` is missing or older (a run
    stopped between writing ``last.pt`` and the other files). Returns the history."""
    history = ck["history"]
    write_csv(run.metrics, history)
    write_json(run.summary, summary_of(history))
    if _best_epoch(history) == ck["epoch"]:
        try:
            stale = load_run_checkpoint(run.best)["epoch"] != ck["epoch"]
        except CheckpointError:
            stale = True
        if stale:
            save_checkpoint(run.best, ck)
    return history


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


def training_dt(cfg: TrainConfig, epoch: int) -> float | None:
    """The time step (s; ``None`` for exact time) that epoch ``epoch`` (1-based) of a run of
    ``cfg`` trains at, per ``cfg.dt_mode`` (:class:`~batsnn.experiments.config.TrainConfig`);
    the network is always evaluated at ``cfg.dt``.

    ``"fixed"``: ``cfg.dt``; ``"continuous"``, ``"continuous-margin"``: ``None``; ``"fine"``:
    ``cfg.dt_fine``; ``"dither"``: ``cfg.dt`` (with the inputs moved,
    :func:`dither_shifts`); ``"consistent"``: ``cfg.dt`` (the layers reset at the emitted
    times, :func:`batsnn.experiments.model.build_model`); ``"finetune"``: ``None`` for the
    first ``cfg.dt_warmup_epochs`` epochs, then ``cfg.dt``; ``"anneal"``: ``cfg.dt * epoch /
    (W + 1)`` for ``epoch <= W = cfg.dt_warmup_epochs``, then ``cfg.dt``.
    """
    if cfg.dt is None or cfg.dt_mode in ("fixed", "dither", "consistent"):
        return cfg.dt
    if cfg.dt_mode in ("continuous", "continuous-margin"):
        return None
    if cfg.dt_mode == "fine":
        return cfg.dt_fine
    warm = cfg.dt_warmup_epochs
    if epoch > warm:
        return cfg.dt
    if cfg.dt_mode == "finetune":
        return None
    if cfg.dt_mode == "anneal":
        return cfg.dt * epoch / (warm + 1)
    raise ValueError(f"dt_mode must be one of {', '.join(DT_MODES)}, got {cfg.dt_mode!r}")


def dither_shifts(cfg: TrainConfig, *, epoch: int, batch: int, n: int,
                  rank: int = 0) -> torch.Tensor | None:
    """``dt_mode "dither"``: how much later (s) each of the ``n`` samples of a training batch
    has its input spikes, before they are put on the grid: uniform in ``[0, cfg.dt)``, float64
    on the CPU, drawn from the run's seed, the ``epoch`` (1-based), the ``batch`` index and the
    process ``rank`` only (a resumed run sees the same). ``None`` for the other modes and in
    exact time.

    Moving a sample's whole input by ``s`` moves every exact crossing of the network by ``s``
    (the neuron model is the same at every time), so the grid meets the signal at a random
    phase: a crossing at ``t`` is emitted at the first grid point after ``t + s``, on average
    half a step later whatever ``t`` is, where the fixed grid makes the delay a sawtooth of
    ``t``."""
    if cfg.dt is None or cfg.dt_mode != "dither":
        return None
    rng = np.random.default_rng([int(cfg.seed) % 2**63, int(epoch), int(batch), int(rank),
                                 0xD17])
    return torch.from_numpy(rng.random(int(n)) * cfg.dt)


def network_params(model: torch.nn.Module) -> dict:
    """Each LIF layer of ``model`` (a module with :class:`~batsnn.params.LIFParams` as
    ``params``) mapped to its parameters now: the ``base`` of :func:`set_network_grid`."""
    return {m: m.params for m in model.modules()
            if isinstance(getattr(m, "params", None), LIFParams)}


def set_network_grid(model: torch.nn.Module, base: dict, dt: float | None,
                     margin: float = 0.0) -> None:
    """Run every LIF layer of ``model`` on the time grid ``dt`` (``None``: exact time) with
    its horizon shortened by ``margin`` seconds; ``base`` maps each LIF layer to its own
    (evaluation) :class:`~batsnn.params.LIFParams`, which ``dt = cfg.dt, margin = 0``
    restores."""
    for m, p in base.items():
        want = p.replace(dt=dt, t_max=p.t_max - margin) if margin else p.replace(dt=dt)
        if m.params != want:
            m.params = want


def encode_images(images: torch.Tensor, cfg: TrainConfig, device, dt=...,
                  shift: torch.Tensor | None = None) -> torch.Tensor:
    """TTFS spike times of uint8 images ``(B, ...)`` (window ``cfg.t_window``, grid
    ``cfg.dt`` unless ``dt`` is given; with ``shift``, ``(B,)`` seconds on ``device``, each
    image's times moved that much later before they are put on the grid,
    :func:`dither_shifts`) on ``device``, shaped as ``cfg.network`` takes them:
    ``(B, N, 1)`` float32, or ``(B, 1, H, W, 1)`` maps for a network starting with a conv or
    pool layer
    (:func:`batsnn.experiments.model.network_input_shape`); uint8 values lie in [0, 255] by
    type, so they are encoded without value checks (no host synchronisation) and the times
    are still known valid (:func:`batsnn.ttfs_encode`)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}")
    x = images.to(device, non_blocking=True).reshape(images.shape[0], -1)
    dt = cfg.dt if dt is ... else dt
    if shift is None or not dt:
        t = ttfs_encode(x, t_window=cfg.t_window, x_max=255.0, dt=dt, dtype=torch.float32,
                        validate=False)
    else:  # the cell is found in float64, the grid point rounded once to float32
        t = ttfs_encode(x, t_window=cfg.t_window, x_max=255.0, dtype=torch.float32,
                        validate=False).to(torch.float64)
        t = mark_valid(discretize(t + shift.to(torch.float64).reshape(-1, 1, 1), dt)
                       .to(torch.float32))
    shape = network_input_shape(cfg.network, x.shape[1])
    # the maps of a conv network: the same (valid) times, so the same mark
    return t if len(shape) == 1 else mark_valid(t.reshape(x.shape[0], *shape, t.shape[-1]))


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
             desc: str = "test", reduce: Callable[[EvalStats], None] | None = None) -> dict:
    """Metrics of ``model`` on a labelled set of uint8 images (test loss and accuracy,
    per-layer and latency metrics, see :class:`batsnn.metrics.EvalStats`); ``reduce`` may
    change the accumulated statistics before they are read (distributed evaluation adds them
    over processes)."""
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
    if reduce is not None:
        reduce(stats)
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


def check_resumable(saved: dict, cfg: TrainConfig, path) -> None:
    """Raise unless the settings ``saved`` in checkpoint ``path`` equal ``cfg`` in every
    field of :data:`~batsnn.experiments.config.RESUME_FIELDS`: ``CheckpointError`` when they
    are not valid settings, ``ValueError`` listing the differences otherwise."""
    try:
        before = config_from_dict(saved).to_dict()
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint '{path}' holds invalid settings: {e}") from None
    diff = settings_difference(before, cfg.to_dict())
    if diff:
        raise ValueError(f"--resume: settings differ from the run's checkpoint {path}: "
                         + ", ".join(diff))


def _is_scalar(v) -> bool:
    if isinstance(v, torch.Tensor):
        return v.dim() == 0 and v.is_floating_point()
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_optimizer_state(osd: dict, opt: torch.optim.Optimizer) -> str | None:
    """Why the optimizer state ``osd`` does not fit ``opt`` (``None`` if it does)."""
    groups = osd["param_groups"]
    if len(groups) != len(opt.param_groups):
        return f"{len(groups)} parameter groups, the optimizer has {len(opt.param_groups)}"
    params, ids = [], []
    for g, own in zip(groups, opt.param_groups):
        if len(g["params"]) != len(own["params"]):
            return "parameter groups of other sizes"
        for k in ("lr", "initial_lr", "eps", "weight_decay"):
            if k in g and not _is_scalar(g[k]):
                return f"a parameter group's {k} is not a number"
        params += own["params"]
        ids += g["params"]
    for key, st in osd["state"].items():
        if key not in ids or not isinstance(st, dict):
            return f"state for an unknown parameter {key!r}"
        p = params[ids.index(key)]
        for k, v in st.items():
            if k == "step":
                if not _is_scalar(v):
                    return "a step count that is not a number"
            elif not isinstance(v, torch.Tensor) or v.shape != p.shape:
                return (f"{k} of shape {tuple(getattr(v, 'shape', ()))} for a parameter of "
                        f"shape {tuple(p.shape)}")
    return None


def restore_checkpoint(ck: dict, model: torch.nn.Module, opt: torch.optim.Optimizer,
                       sched, path) -> None:
    """Load a checked run checkpoint (:func:`batsnn.experiments.rundir.load_run_checkpoint`)
    into the model, optimizer and learning-rate schedule, and restore the RNG states.

    The schedule is rebuilt from the epoch (its settings are the run's, equal by
    :func:`check_resumable`), not read from the file.

    Raises:
        CheckpointError: the checkpoint does not fit (other layers or shapes, non-finite
            weights, optimizer state of other shapes), in one line naming the file.
    """
    def bad(why):
        raise CheckpointError(f"checkpoint '{path}' does not fit this run's network: {why}")

    own, saved = model.state_dict(), ck["model"]
    missing, extra = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or extra:
        bad(f"missing {', '.join(missing) or 'nothing'}, "
            f"unexpected {', '.join(extra) or 'nothing'}")
    for k, v in own.items():
        if saved[k].shape != v.shape or saved[k].dtype != v.dtype:
            bad(f"{k} is {tuple(saved[k].shape)} {saved[k].dtype} in the checkpoint, "
                f"{tuple(v.shape)} {v.dtype} in the network")
        if saved[k].is_floating_point() and not bool(torch.isfinite(saved[k]).all()):
            bad(f"{k} holds NaN or infinite values")
    why = _check_optimizer_state(ck["optimizer"], opt)
    if why is not None:
        bad(f"optimizer state with {why}")
    model.load_state_dict(saved)
    try:
        opt.load_state_dict(ck["optimizer"])
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        bad(f"optimizer state ({' '.join(str(e).split())[:160]})")
    epoch = ck["epoch"]
    st = sched.state_dict()
    st.update(last_epoch=epoch, _step_count=epoch + 1)
    sched.load_state_dict(st)
    set_rng_state(ck["rng"])


def _lr_schedule(cfg: TrainConfig) -> Callable[[int], float]:
    every = cfg.lr_decay_every

    def factor(epoch):
        f = cfg.lr_decay ** (epoch // every) if every > 0 else 1.0
        return max(f, cfg.lr_min / cfg.lr)

    return factor


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

    Under an initialised ``torch.distributed`` process group (``torchrun``, see
    :mod:`batsnn.experiments.distributed`) every process calls this with the same ``cfg``:
    ``cfg.batch_size`` samples per process and step, the data and test set sharded, the
    gradients averaged; only rank 0 writes files and logs. The callbacks run on every
    process and see the same rows.

    Raises:
        RunExists: ``cfg.out`` holds a run and ``resume`` is false.
        batsnn.experiments.rundir.OutDirError: ``cfg.out`` is a file, lies under one, is not
            writable, or is a non-empty directory that is not a batsnn training run.
        ValueError: ``resume`` with settings that differ from the saved run's.
        batsnn.experiments.rundir.CheckpointError: ``last.pt`` is corrupt, truncated, not a
            batsnn checkpoint, or does not fit the network.
        MemoryError: the network's weights or spike buffers cannot fit in memory.
        batsnn.experiments.data.DatasetNotFound: the data is not there (the message says what
            to run).
    """
    # one process, or one of several (torchrun)
    ctx = distributed.current("cpu" if resolve_device(cfg.device).type == "cpu" else cfg.device)
    device = ctx.device
    if not ctx.is_main:  # only rank 0 writes and talks
        quiet, log = True, (lambda *a, **k: None)
    out = Path(ctx.broadcast(
        cfg.out or f"runs/{cfg.preset or 'custom'}-{time.strftime('%Y%m%d-%H%M%S')}"))
    cfg.out = str(out)
    run = RunDir(out)
    # new, empty, or a batsnn training run (then only with resume); nothing else is touched;
    # the checkpoint is read and checked by every process, the directory only by rank 0
    if ctx.is_main:
        prepare_out(out, "train", resume=resume)
    ck = None
    if resume and run.has_checkpoint():
        ck = load_run_checkpoint(run.last)
        check_resumable(ck["config"], cfg, run.last)
        distributed.check_resume_world_size(run.config, ctx.world_size)
    with ctx.main_first():
        ds = load_dataset(cfg.dataset, cfg.data_dir).subset(cfg.train_samples, cfg.test_samples)
    test = ctx.shard(len(ds.test_y), "test samples")  # this process's part of the test set
    n_in = ds.train_x.shape[1]
    # MemoryError naming the sizes before anything is allocated or written
    check_fits(cfg, n_in, ds.n_classes, device, max(cfg.batch_size, cfg.eval_batch_size))

    seed_everything(cfg.seed)
    model = build_model(cfg, n_in, ds.n_classes).to(device)
    graphed = cfg.cuda_graph and device.type == "cuda"
    if graphed:  # the whole step runs as one CUDA graph (batsnn.experiments.graphs)
        from batsnn.experiments.graphs import capturable_adam

        opt = capturable_adam(model.parameters(), cfg.lr, device)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_schedule(cfg))
    state = TrainState(model, opt, device, scheduler=sched, config=cfg, run_dir=run)
    steps_per_epoch = distributed.steps_per_epoch(len(ds.train_y), cfg.batch_size, ctx)
    if ck is not None:
        restore_checkpoint(ck, model, opt, sched, run.last)
        _optimizer_mode(opt, graphed, device)
        # a run saved under CUDA graphs holds its learning rates as tensors
        sched.base_lrs = [float(v) for v in sched.base_lrs]
        sched._last_lr = [float(g["lr"]) for g in opt.param_groups]
        state.history = [dict(r) for r in ck["history"]]
        state.epoch = ck["epoch"]
        state.step = ck["step"]
        log(f"resuming {out} after epoch {ck['epoch']}")
    shapes = layer_shapes(cfg.network, network_input_shape(cfg.network, n_in), ds.n_classes,
                          tau_s=cfg.tau_s, t_max=cfg.t_max, init=cfg.init, dt=cfg.dt)
    sizes = [n_in] + [s[0] if len(s) == 1 else list(s) for s in shapes]
    if ctx.is_main:
        write_json(run.config, config_document(
            cfg, **{MARKER: "train"}, batsnn_version=batsnn.__version__, layers=sizes,
            n_classes=ds.n_classes, resolved_device=str(device), data_source=ds.source,
            world_size=ctx.world_size,
            effective_batch_size=distributed.effective_batch_size(cfg.batch_size, ctx)))
        if ck is not None:  # the checkpoint is the source of truth of the run's other files
            sync_run_files(run, ck)
    if not quiet:
        log(f"{cfg.preset or 'custom'} on {cfg.dataset}: layers {sizes}, dt "
            f"{cfg.dt or 0} s, augment {cfg.augment}, seed {cfg.seed}, {len(ds.train_y)} "
            f"train / {len(ds.test_y)} test samples, device {device}"
            + (f" x {ctx.world_size} processes (effective batch "
               f"{distributed.effective_batch_size(cfg.batch_size, ctx)})"
               if ctx.distributed else "") + f"; writing to {out}")

    train_x, train_y = ds.train_x, ds.train_y
    if device.type == "cuda":  # the training set lives on the GPU (uint8: 47 MB for MNIST)
        train_x, train_y = train_x.to(device), train_y.to(device)

    # several processes: DDP, or under CUDA graphs an all-reduce of the gradients in the step
    net, average_gradients = distributed.data_parallel(model, ctx, graphed=graphed)

    # the time step training runs at now (dt_mode); evaluation always runs at cfg.dt
    grid_now = {"dt": training_dt(cfg, state.epoch + 1), "graph": None, "graph_dt": None}
    # (graph_dt: the training step the graph was recorded at)
    own_params = network_params(model)
    margin = training_margin(cfg)
    set_network_grid(model, own_params, grid_now["dt"], margin)

    dithered = cfg.dt is not None and cfg.dt_mode == "dither"  # dither_shifts gives shifts

    def train_step(idx, *extra, weight: float = 1.0):
        # extra: the batch's deformation (its control displacements), then its input shifts
        # (dt_mode dither), each where the run has them; inputs of a CUDA graph
        y = train_y[idx]
        images = train_x[idx]
        if cfg.augment != "none":
            images = deform_by_grid(images, extra[0])
        out_spikes = net(encode_images(images, cfg, device, dt=grid_now["dt"],
                                       shift=extra[-1] if dithered else None))
        loss, pred = loss_and_prediction(cfg, out_spikes, y)
        (loss if weight == 1.0 else loss * weight).backward()
        average_gradients()
        opt.step()
        if weight:  # a placeholder step (weight 0) counts nothing
            # accumulated on the device: no host synchronisation inside the epoch
            state.loss_sum.add_(loss.detach() * idx.shape[0])
            state.correct.add_((pred == y).sum())

    def batch_args(n: int) -> tuple:
        # the batch's own deformation and input shifts (seed, epoch, batch index): a resumed
        # run sees the same
        grid = batch_grid(cfg.augment, seed=cfg.seed, epoch=state.epoch, batch=state.batch)
        shift = dither_shifts(cfg, epoch=state.epoch, batch=state.batch, n=n, rank=ctx.rank)
        return tuple(a.to(device, non_blocking=True) for a in (grid, shift) if a is not None)

    order_of = lambda epoch: epoch_order(len(ds.train_y), cfg.seed, epoch).to(device)  # noqa: E731
    can_graph = graphed and len(ds.train_y) >= cfg.batch_size * ctx.world_size

    def capture(epoch: int) -> None:
        # outside the epochs' timing: kernels compile, the step is recorded; again only
        # when the training time step changes (dt_mode), which the graph holds fixed
        if not can_graph or (grid_now["graph"] is not None
                             and grid_now["graph_dt"] == grid_now["dt"]):
            return
        from batsnn.experiments.graphs import GraphedStep

        grid_now["graph"] = None
        t_capture = time.perf_counter()
        # the warm-up steps of a capture add to the epoch's counters: keep them out
        counters = (state.loss_sum.clone(), state.correct.clone())
        grid_now["graph"] = GraphedStep(train_step, order_of(epoch)[:cfg.batch_size],
                                        *batch_args(cfg.batch_size), state=(model, opt))
        state.loss_sum.copy_(counters[0])
        state.correct.copy_(counters[1])
        grid_now["graph_dt"] = grid_now["dt"]
        if not quiet:
            log(f"training step captured as a CUDA graph in "
                f"{time.perf_counter() - t_capture:.1f} s")

    if state.epoch < cfg.epochs:
        capture(state.epoch + 1)

    class TrainingGrid:
        """Train each epoch at its time step (:func:`training_dt`), evaluate at ``cfg.dt``."""

        def on_epoch_start(self, st):
            grid_now["dt"] = training_dt(cfg, st.epoch)
            set_network_grid(model, own_params, grid_now["dt"], margin)
            capture(st.epoch)

        def on_train_end(self, st):
            set_network_grid(model, own_params, cfg.dt)

    def step(shard: distributed.Shard) -> int:
        extra = batch_args(shard.idx.shape[0])
        graph = grid_now["graph"]
        if graph is not None and shard.full:
            graph(shard.idx, *extra)
        else:
            opt.zero_grad(set_to_none=True)
            train_step(shard.idx, *extra, weight=shard.weight)
        return shard.samples

    own = [RunRecorder(run, cfg.to_dict()),
           RunPlots(run, encode_images(ds.test_x[:3], cfg, device), ds.test_y[:3])
           ] if ctx.is_main else []
    if not quiet:
        own = [ProgressBar(steps_per_epoch), *own, EpochLog(log)]
    if ctx.distributed:
        own.insert(0, distributed.ReduceTrainCounters(ctx))
    try:
        fit(state, epochs=cfg.epochs,
            batches=distributed.shard_batches(order_of, cfg.batch_size, ctx.rank,
                                              ctx.world_size),
            step=step,
            evaluate=lambda st: evaluate(model, cfg, ds.test_x[test], ds.test_y[test], device,
                                         quiet, reduce=lambda s: distributed.reduce_eval_stats(
                                             s, ctx)),
            callbacks=[TrainingGrid(), *own, *callbacks])
    finally:  # a graph holding NCCL collectives must go before its process group can
        grid_now["graph"] = None
        set_network_grid(model, own_params, cfg.dt)
    return summary_of(state.history) if state.history else {}
