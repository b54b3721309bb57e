"""The training loop with callbacks: :func:`fit` runs epochs of optimizer steps and calls
back at fixed points with a :class:`TrainState`; also the finite-parameter check and a run's
summary.

A callback is any object with some of these methods (each takes the state and returns
nothing); a plain callable is taken as ``on_epoch_end``:

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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from batsnn import metrics as M
from batsnn.experiments.rundir import RunDir

__all__ = ["TrainState", "check_finite", "fit", "summary_of"]


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
    hooks = _Hooks(callbacks)
    state.stop = False
    for epoch in range(state.epoch + 1, epochs + 1):
        state.epoch, state.batch, state.samples = epoch, 0, 0
        state.model.train()
        state.loss_sum.zero_()
        state.correct.zero_()
        hooks.call("on_epoch_start", state)
        t0 = time.perf_counter()
        if not _train_pass(state, batches(epoch), step, hooks):
            return state  # stopped from on_step: the epoch is abandoned
        hooks.call("on_train_end", state)
        if state.device.type == "cuda":  # the queued steps are part of the epoch's time
            torch.cuda.synchronize(state.device)
        train_seconds = time.perf_counter() - t0
        if state.scheduler is not None:
            state.scheduler.step()
        state.row = _epoch_row(state, evaluate, train_seconds, t0)
        state.history.append(state.row)
        hooks.call("on_epoch_end", state)
        if state.stop:
            break
    return state


class _Hooks:
    """The callbacks' methods by event name (see the module docstring)."""

    EVENTS = ("on_epoch_start", "on_step", "on_train_end", "on_epoch_end")

    def __init__(self, callbacks: Iterable):
        callbacks = list(callbacks)
        self.by_event = {name: _hooks(callbacks, name) for name in self.EVENTS}

    def call(self, name: str, state: TrainState) -> None:
        for hook in self.by_event[name]:
            hook(state)


def _train_pass(state: TrainState, batches: Iterable, step: Callable[[Any], int],
                hooks: _Hooks) -> bool:
    """One epoch's steps; ``False`` when a callback stopped training from ``on_step``."""
    on_step = hooks.by_event["on_step"]
    for batch in batches:
        n = step(batch)
        state.batch += 1
        state.step += 1
        state.samples += n
        if on_step:
            for hook in on_step:
                hook(state)
            if state.stop:
                return False
    return True


def _epoch_row(state: TrainState, evaluate, train_seconds: float, t0: float) -> dict:
    """The metrics row of the epoch just trained (its evaluation included)."""
    seen = max(state.samples, 1)
    row = {M.EPOCH: state.epoch, M.TRAIN_LOSS: float(state.loss_sum) / seen,
           M.TRAIN_ACCURACY: int(state.correct) / seen}
    if evaluate is not None:
        row.update(evaluate(state))
    row[M.LR] = float(state.optimizer.param_groups[0]["lr"])
    check_finite(state.model)
    row[M.TRAIN_SECONDS] = train_seconds
    row[M.EPOCH_SECONDS] = time.perf_counter() - t0
    return row


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
