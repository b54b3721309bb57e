"""The callbacks of a run (:func:`batsnn.experiments.training.loop.fit`): a progress bar,
the run's files after each epoch (checkpoints, ``metrics.csv``, ``summary.json``), its plots
and one log line per epoch."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

import batsnn
from batsnn import metrics as M
from batsnn.experiments.rundir import (CHECKPOINT_FORMAT, RunDir, rng_state, save_checkpoint,
                                       write_csv, write_json)
from batsnn.experiments.training.loop import TrainState, check_finite, summary_of

__all__ = ["EpochLog", "ProgressBar", "RunPlots", "RunRecorder", "epoch_line"]


class ProgressBar:
    """A tqdm bar over each epoch's steps; every ``every`` steps it shows the running loss
    and accuracy and checks that the parameters are finite (both read the GPU: one host
    synchronisation each ``every`` steps).

    Args:
        steps_per_epoch: the bar's length, optimizer steps per epoch; the bar closes after
            that many steps.
        every: steps between two updates of the shown loss and accuracy (and finiteness
            checks).
    """

    def __init__(self, steps_per_epoch: int, every: int = 50):
        self.total, self.every = steps_per_epoch, every
        self.bar = None

    def on_epoch_start(self, state: TrainState) -> None:
        """Open the epoch's bar (``steps_per_epoch`` steps, labelled ``epoch N``).

        Args:
            state: the loop's state (``state.epoch`` is the epoch starting).
        """
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, desc=f"epoch {state.epoch}", leave=False,
                        dynamic_ncols=True)

    def on_step(self, state: TrainState) -> None:
        """Advance the bar by one step; on the first step and every ``every`` steps after it
        show the epoch's running loss and accuracy and check that the parameters are
        finite; close the bar after the epoch's last step.

        Args:
            state: the loop's state (``state.batch``, ``state.samples``, the device
                counters ``state.loss_sum`` and ``state.correct``, ``state.model``).

        Raises:
            FloatingPointError: a parameter holds NaN or infinite values
                (:func:`~batsnn.experiments.training.loop.check_finite`).
        """
        self.bar.update(1)
        if (state.batch - 1) % self.every == 0:
            self.bar.set_postfix(loss=f"{float(state.loss_sum) / state.samples:.3f}",
                                 acc=f"{int(state.correct) / state.samples:.3f}")
            check_finite(state.model)
        if state.batch == self.total:
            self.bar.close()

    def on_epoch_end(self, state: TrainState) -> None:
        """Close the epoch's bar (if the last step has not already).

        Args:
            state: the loop's state (not read).
        """
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
        """Write the epoch's files, each atomically: ``last.pt``, then ``best.pt`` when the
        epoch's test accuracy beats every earlier epoch's (or it is the first), then
        ``metrics.csv`` (every row of ``state.history``) and ``summary.json``.

        Args:
            state: the loop's state after the epoch (``state.row`` already appended to
                ``state.history``).
        """
        ck = self.checkpoint(state)
        earlier = [r[M.TEST_ACCURACY] for r in state.history[:-1]]
        save_checkpoint(self.run.last, ck)
        if not earlier or state.row[M.TEST_ACCURACY] > max(earlier):
            save_checkpoint(self.run.best, ck)
        write_csv(self.run.metrics, state.history)
        write_json(self.run.summary, summary_of(state.history))


class RunPlots:
    """Draws ``learning_curves.png``, ``spikes_per_layer.png`` and ``raster.png`` (the spike
    trains of every layer for ``inputs``, encoded spike times of a few samples) after the
    first epoch, after the last (``last_epoch``, or one that stops training), and in between
    whenever the time since the last drawing is at least ``1 / share`` times what that
    drawing took: drawing takes about 1.6 s on a 2-core CPU, so short epochs (small
    datasets, a GPU) would otherwise spend most of a run on plots. The metrics are written
    after every epoch regardless; a run interrupted between drawings has plots a few epochs
    old, and ``--resume`` redraws them.

    Args:
        run_dir: the run directory the PNG files are written into (replaced on each drawing).
        inputs: spike times ``(B, *input_shape, S)`` of a few samples, as the network
            takes them, on the model's device.
        labels: their class labels ``(B,)``, marked on the raster's last layer.
        last_epoch: the run's last epoch (always drawn); ``None``: draw after every epoch.
        share: the largest share of the run's time that drawing may take, in ``(0, 1]``.
    """

    def __init__(self, run_dir: RunDir, inputs: torch.Tensor, labels: torch.Tensor,
                 last_epoch: int | None = None, share: float = 0.1):
        if isinstance(share, bool) or not (isinstance(share, (int, float)) and 0 < share <= 1):
            raise ValueError(f"share must be a number in (0, 1], got {share!r}")
        if last_epoch is not None and (isinstance(last_epoch, bool)
                                       or not isinstance(last_epoch, int) or last_epoch < 1):
            raise ValueError(f"last_epoch must be None or an int >= 1, got {last_epoch!r}")
        self.run, self.inputs, self.labels = run_dir, inputs, labels
        self.last_epoch, self.share = last_epoch, float(share)
        self._drawn_at = None  # perf_counter at the end of the last drawing
        self._cost = 0.0  # seconds that drawing took
        self._drawn_epoch = None  # the epoch the plots show

    def due(self, state: TrainState) -> bool:
        """Whether :meth:`on_epoch_end` draws after ``state``'s epoch."""
        if (self._drawn_at is None or self.last_epoch is None or state.stop
                or state.epoch >= self.last_epoch):
            return True
        return time.perf_counter() - self._drawn_at >= self._cost / self.share

    def on_epoch_end(self, state: TrainState) -> None:
        """Redraw the three plots, when :meth:`due`, from ``state.history`` and from the
        spike trains of ``state.model`` (run in eval mode, without gradients) on the stored
        inputs.

        Args:
            state: the loop's state after the epoch.
        """
        if not self.due(state):
            return
        from batsnn.experiments import plots

        t0 = time.perf_counter()
        plots.learning_curves(state.history, self.run.file("learning_curves.png"))
        plots.spikes_per_layer(state.history, self.run.file("spikes_per_layer.png"))
        with torch.no_grad():
            state.model.eval()
            outs = state.model.forward_all(self.inputs)
        # maps (conv, pool layers) are drawn as their neurons in C order
        outs = [batsnn.SpikeTrains(o.times.flatten(1, -2), o.counts.flatten(1)) for o in outs]
        plots.raster(outs, self.labels, self.run.file("raster.png"))
        self._drawn_at = time.perf_counter()
        self._cost = self._drawn_at - t0
        self._drawn_epoch = state.epoch

    def finish(self, state: TrainState) -> None:
        """After training: draw the last completed epoch if the plots do not show it yet
        (training stopped by a later callback, before ``last_epoch``)."""
        if state.history and self._drawn_epoch != state.history[-1].get(M.EPOCH):
            epoch, state.epoch = state.epoch, state.history[-1][M.EPOCH]
            try:
                self._drawn_at = None
                self.on_epoch_end(state)
            finally:
                state.epoch = epoch


class EpochLog:
    """Logs one line per epoch (accuracy, loss, spikes per layer, latency, time, and the
    silent neurons revived when there were any: :func:`epoch_line`).

    Args:
        log: called with each line (:func:`epoch_line`); ``print`` by default.
    """

    def __init__(self, log: Callable[[str], Any] = print):
        self.log = log

    def on_epoch_end(self, state: TrainState) -> None:
        """Pass the epoch's line (:func:`epoch_line` of ``state.row``) to ``log``.

        Args:
            state: the loop's state after the epoch.
        """
        self.log(epoch_line(state.row))


def epoch_line(row: dict) -> str:
    """One line describing an epoch's metrics row; it ends with the number of silent-neuron
    bumps (:data:`batsnn.metrics.REVIVED_NEURONS`) when the epoch's steps made any."""
    spikes = ", ".join(f"{row[k]:.0f}" for k in M.layer_keys(row, M.SPIKES_PER_SAMPLE))
    return (f"epoch {row[M.EPOCH]}: test accuracy {100 * row[M.TEST_ACCURACY]:.2f}% "
            f"(train {100 * row[M.TRAIN_ACCURACY]:.2f}%), loss {row[M.TEST_LOSS]:.3f}, "
            f"spikes/sample per layer [{spikes}], label spikes by 50 ms "
            f"{100 * row[M.label_share_key(50)]:.0f}%, decision at "
            f"{row[M.DECISION_TIME_MS]:.1f} ms, {row[M.EPOCH_SECONDS]:.1f} s"
            + _revived(row))


def _revived(row: dict) -> str:
    """The end of an epoch's line telling its silent-neuron bumps (empty when none)."""
    n = row.get(M.REVIVED_NEURONS, 0)
    if not n:
        return ""
    return (f"; revived silent neurons: {n} bump{'s' if n != 1 else ''} (a neuron without "
            "spikes for a whole batch, its input weights raised by revive_bump)")
