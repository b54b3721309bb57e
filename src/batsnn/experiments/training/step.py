"""The training step: one optimizer step on a batch of training samples, eager
(:class:`TrainStep`) or replayed as one CUDA graph (:class:`GraphedTrainStep`), and the
optimizer it steps (:func:`make_optimizer`).

A step asks the data source (:mod:`batsnn.experiments.sources`) for the batch's labels and
spike times on the grid training runs at now
(:class:`~batsnn.experiments.training.grid.TrainingGrid`), with the batch's own random draw
(augmentation) and input shifts (the time-step mode's): both depend only on the seed, the
epoch, the batch index and the process rank, so a resumed run sees the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from batsnn.experiments.sources import DataSource
from batsnn.experiments.training.evaluation import loss_and_prediction
from batsnn.experiments.training.grid import TrainingGrid
from batsnn.experiments.training.loop import TrainState
from batsnn.experiments.training.revive import Reviver
from batsnn.experiments.timestep import dt_mode

__all__ = ["GraphedTrainStep", "TrainStep", "make_optimizer", "optimizer_mode"]


def make_optimizer(model: torch.nn.Module, lr: float, device,
                   graphed: bool) -> torch.optim.Optimizer:
    """Adam over ``model``'s parameters; under CUDA graphs (``graphed``) one that can run
    inside a graph (:func:`batsnn.experiments.graphs.capturable_adam`)."""
    if graphed:
        from batsnn.experiments.graphs import capturable_adam

        return capturable_adam(model.parameters(), lr, device)
    return torch.optim.Adam(model.parameters(), lr=lr)


def optimizer_mode(opt: torch.optim.Optimizer, graphed: bool, device) -> None:
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


class TrainStep:
    """One optimizer step per :class:`batsnn.experiments.distributed.Shard` (the step
    function of :func:`~batsnn.experiments.training.loop.fit`): zero the gradients, run
    :meth:`compute`, return the shard's sample count.

    Args:
        state: the model, optimizer, device, counters and the run's settings
            (``state.config``).
        net: the module the batch runs through (the model, or its data-parallel wrapper).
        source: the training samples.
        grid: the time step training runs at now (``grid.dt``).
        average_gradients: called between the backward pass and the optimizer step.
        rank: this process's rank (its input shifts differ from the other processes').
        all_sum: sums a device tensor over processes, inside the step (the spike counts of
            the remedy for silent neurons, ``config.revive``); ``None`` in one process.

    After each optimizer step the neurons that ``config.revive`` covers and that were silent
    over the whole batch get ``config.revive_bump`` added to their input weights
    (:class:`~batsnn.experiments.training.revive.Reviver`, ``self.reviver``).
    """

    def __init__(self, state: TrainState, net: torch.nn.Module, source: DataSource,
                 grid: TrainingGrid, average_gradients: Callable[[], None] = lambda: None,
                 rank: int = 0, all_sum: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.state, self.net, self.source, self.grid = state, net, source, grid
        self.cfg = state.config
        self.mode = dt_mode(self.cfg.dt_mode)
        self.average_gradients, self.rank = average_gradients, rank
        self.layout = (False, False)  # which batch inputs there are: (draw, shift)
        self.reviver = Reviver(state.model, self.cfg.revive, self.cfg.revive_bump, all_sum)

    def batch_inputs(self, n: int) -> tuple[torch.Tensor, ...]:
        """The current batch's random draw and input shifts (those the run has), on the
        device: the extra arguments of :meth:`compute`."""
        st = self.state
        draw = self.source.batch_draw(epoch=st.epoch, batch=st.batch)
        shift = self.mode.shifts(self.cfg, epoch=st.epoch, batch=st.batch, n=n, rank=self.rank)
        self.layout = (draw is not None, shift is not None)
        return tuple(a.to(st.device, non_blocking=True) for a in (draw, shift)
                     if a is not None)

    def compute(self, idx: torch.Tensor, *extra: torch.Tensor, weight: float = 1.0) -> None:
        """Forward, loss (times ``weight``), backward, optimizer step and the silent neurons'
        bump (``self.reviver``; a placeholder's spikes do not count) on the training
        samples ``idx`` with the batch inputs ``extra`` (:meth:`batch_inputs`); adds the
        batch's loss sum and correct predictions to the state's counters on the device
        (nothing for a placeholder, ``weight`` 0). Free of host synchronisation: a CUDA
        graph can record it."""
        st = self.state
        draw = extra[0] if self.layout[0] else None
        shift = extra[-1] if self.layout[1] else None
        y = self.source.labels("train", idx)
        x = self.source.inputs("train", idx, st.device, dt=self.grid.dt, shift=shift,
                               draw=draw)
        loss, pred = loss_and_prediction(self.cfg, self.net(x), y)
        (loss if weight == 1.0 else loss * weight).backward()
        self.average_gradients()
        st.optimizer.step()
        self.reviver.after_step(counted=bool(weight))
        if weight:  # accumulated on the device: no host synchronisation inside the epoch
            st.loss_sum.add_(loss.detach() * idx.shape[0])
            st.correct.add_((pred == y).sum())

    def __call__(self, shard) -> int:
        self.run(shard, self.batch_inputs(shard.idx.shape[0]))
        return shard.samples

    def run(self, shard, extra: tuple) -> None:
        """Step on ``shard`` with its batch inputs ``extra``."""
        self.state.optimizer.zero_grad(set_to_none=True)
        self.compute(shard.idx, *extra, weight=shard.weight)

    def on_epoch_start(self, state: TrainState) -> None:
        """A callback: the epoch's count of revived neurons starts at zero."""
        self.reviver.reset_count()

    def epoch_metrics(self) -> dict:
        """The epoch's training-step metrics for its row: the count of revived neurons when
        the run revives any (:meth:`Reviver.epoch_metrics
        <batsnn.experiments.training.revive.Reviver.epoch_metrics>`), else nothing."""
        return self.reviver.epoch_metrics() if self.reviver.layers else {}

    def release(self) -> None:
        """Take the reviver's hooks off the model."""
        self.reviver.remove()


class GraphedTrainStep(TrainStep):
    """:class:`TrainStep` replayed as one CUDA graph for full batches
    (:class:`batsnn.experiments.graphs.GraphedStep`); a last, smaller batch runs eagerly.

    The graph holds the training time step fixed: it is recorded before the first epoch
    (:meth:`prepare`, outside the epochs' timing) and again at the start of an epoch whose
    time step differs (a callback: ``on_epoch_start``). A capture's warm-up steps are undone
    and kept out of the epoch's counters.

    Args:
        state: the model, optimizer, device and counters, as for :class:`TrainStep`; the
            graph captures the model and optimizer held there.
        net: the module the batch runs through (the model, or its data-parallel wrapper).
        source: the training samples.
        grid: the time step training runs at now; the graph is recorded again when
            ``grid.dt`` changes.
        order_of: ``epoch -> order of the training samples`` (an index tensor ``(N,)`` on
            the device; its first ``batch_size`` entries are the capture's example batch).
        batch_size: samples per process and step (a full batch replays the graph).
        average_gradients: called between the backward pass and the optimizer step (it is
            recorded into the graph).
        rank: this process's rank (its input shifts differ from the other processes').
        log: where the capture time is told, one line (``None``: nowhere).
        all_sum: sums a device tensor over processes (recorded into the graph), as for
            :class:`TrainStep`.
    """

    def __init__(self, state: TrainState, net: torch.nn.Module, source: DataSource,
                 grid: TrainingGrid, order_of: Callable[[int], torch.Tensor],
                 batch_size: int, average_gradients: Callable[[], None] = lambda: None,
                 rank: int = 0, log: Callable[[str], Any] | None = None,
                 all_sum: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__(state, net, source, grid, average_gradients, rank, all_sum)
        self.order_of, self.batch_size, self.log = order_of, batch_size, log
        self.graph, self.graph_dt = None, None

    def prepare(self, epoch: int) -> None:
        """Record the step for epoch ``epoch`` unless the graph already runs at
        ``grid.dt``."""
        if self.graph is not None and self.graph_dt == self.grid.dt:
            return
        from batsnn.experiments.graphs import GraphedStep

        st = self.state
        self.graph = None
        t0 = time.perf_counter()
        counters = (st.loss_sum, st.correct, self.reviver.revived)
        saved = [c.clone() for c in counters]
        self.graph = GraphedStep(self.compute, self.order_of(epoch)[:self.batch_size],
                                 *self.batch_inputs(self.batch_size),
                                 state=(st.model, st.optimizer))
        for c, v in zip(counters, saved):
            c.copy_(v)
        self.graph_dt = self.grid.dt
        if self.log is not None:
            self.log(f"training step captured as a CUDA graph in "
                     f"{time.perf_counter() - t0:.1f} s")

    def on_epoch_start(self, state: TrainState) -> None:
        """Zero the epoch's count of revived neurons; record the step again when the
        epoch's time step differs."""
        super().on_epoch_start(state)
        self.prepare(state.epoch)

    def run(self, shard, extra: tuple) -> None:
        """Replay the graph on a full batch, else step eagerly."""
        if self.graph is not None and shard.full:
            self.graph(shard.idx, *extra)
        else:
            super().run(shard, extra)

    def release(self) -> None:
        """Drop the graph (one holding NCCL collectives must go before its process group) and
        the reviver's hooks."""
        self.graph = None
        super().release()
