"""One configured run from its settings (:func:`train`): the run directory, the data
source, the network, optimizer and schedule, a resumed checkpoint, then
:func:`~batsnn.experiments.training.loop.fit` with the run's step and callbacks.

:func:`train` is :func:`fit` with the run's data, model, optimizer and schedule, and these
callbacks: the training grid (:class:`~batsnn.experiments.training.grid.TrainingGrid`), the
CUDA-graph step's recapture (on a GPU) and its count of revived neurons
(:mod:`~batsnn.experiments.training.revive`, a column of the epoch's row when the run revives
any), :class:`ProgressBar` (without ``quiet``),
:class:`RunRecorder` (checkpoints, ``metrics.csv``, ``summary.json``), :class:`RunPlots`,
:class:`EpochLog` (without ``quiet``), then the caller's. Every file is written atomically
after each complete epoch, so an interrupted run loses only the epoch in progress and
``resume=True`` continues exactly as an uninterrupted run would (the data order of an epoch
depends only on the seed and the epoch number).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

import batsnn
from batsnn.experiments import distributed
from batsnn.experiments.config import TrainConfig, config_document, resolve_device
from batsnn.experiments.datasource import InputTooLarge
from batsnn.experiments.model import NetworkTooLarge, build_model, layer_shapes
from batsnn.experiments.rundir import (MARKER, RunDir, hold_out_dir, load_run_checkpoint,
                                       new_run_dir, write_json)
from batsnn.experiments.sources import DataSource, open_source
from batsnn.experiments.training.callbacks import EpochLog, ProgressBar, RunPlots, RunRecorder
from batsnn.experiments.training.evaluation import evaluate
from batsnn.experiments.training.grid import TrainingGrid
from batsnn.experiments.training.loop import TrainState, fit, summary_of
from batsnn.experiments.training.resume import (check_resumable, restore_checkpoint,
                                                sync_run_files)
from batsnn.experiments.training.step import (GraphedTrainStep, TrainStep, make_optimizer,
                                              optimizer_mode)

__all__ = ["epoch_order", "lr_schedule", "seed_everything", "train", "uses_cuda_graph"]


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


def lr_schedule(cfg: TrainConfig) -> Callable[[int], float]:
    """The learning-rate factor of each epoch: ``lr_decay`` every ``lr_decay_every`` epochs,
    not below ``lr_min / lr``."""
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
    ctx = distributed.current("cpu" if resolve_device(cfg.device).type == "cpu" else cfg.device)
    if not ctx.is_main:  # only rank 0 writes and talks
        quiet, log = True, (lambda *a, **k: None)
    out = Path(ctx.broadcast(cfg.out or (str(new_run_dir(cfg.preset or "custom"))
                                         if ctx.is_main else None)))
    cfg.out = str(out)
    # one writer per run directory: rank 0 holds it (checked under the lock) to the end
    with (hold_out_dir(out, "train", resume=resume) if ctx.is_main
          else contextlib.nullcontext()):
        return _train_in(cfg, ctx, RunDir(out), resume, quiet, log, callbacks)


def _train_in(cfg: TrainConfig, ctx, run: RunDir, resume: bool, quiet: bool,
              log: Callable[[str], Any], callbacks: Iterable) -> dict:
    """:func:`train` in its held run directory ``run``."""
    ck = _checkpoint(cfg, ctx, run, resume, log)
    with ctx.main_first():
        source = open_source(cfg)
    test = source.split("test", ctx.shard(source.n_test, "test samples"))  # this process's
    # MemoryError naming the sizes before anything is allocated or written
    batch = max(cfg.batch_size, cfg.eval_batch_size)
    try:
        source.check_fits(ctx.device, batch)
    except InputTooLarge:  # the data source's input, in its own words
        raise
    except MemoryError as e:
        which = "batch_size" if cfg.batch_size >= cfg.eval_batch_size else "eval_batch_size"
        raise NetworkTooLarge(f"{e} (batch {batch}: {which})") from None
    state = _new_state(cfg, source, ctx.device, run)
    if ck is not None:
        _resume_state(state, ck, run.last)
        log(f"resuming {run.path} after epoch {ck['epoch']}")
    _write_run_config(cfg, source, ctx, run, ck, quiet, log)
    if ctx.device.type == "cuda":  # the training set lives on the GPU
        source.keep_on(ctx.device)
    grid = TrainingGrid(state.model, cfg)
    grid.train_at(state.epoch + 1)
    order_of = partial(_device_order, source.n_train, cfg.seed, ctx.device)
    step = _make_step(state, source, grid, order_of, ctx, None if quiet else log)
    own = _run_callbacks(state, source, ctx, quiet, log)
    try:
        fit(state, epochs=cfg.epochs, step=step,
            batches=distributed.shard_batches(order_of, cfg.batch_size, ctx.rank,
                                              ctx.world_size),
            evaluate=lambda st: {**step.epoch_metrics(),
                                 **evaluate(st.model, cfg, test, test.labels, ctx.device,
                                            quiet, reduce=lambda s:
                                            distributed.reduce_eval_stats(s, ctx))},
            callbacks=[grid, step, *own, *callbacks])
        for cb in own:
            if isinstance(cb, RunPlots):
                cb.finish(state)
    finally:  # a graph holding NCCL collectives must go before its process group can
        step.release()
        grid.evaluate_at()
    return summary_of(state.history) if state.history else {}


def _checkpoint(cfg: TrainConfig, ctx, run: RunDir, resume: bool,
                log: Callable[[str], Any]) -> dict | None:
    """The checked checkpoint to continue from (read by every process), if any; settings
    the run predates keep the values it ran with (said in one line)."""
    ck = None
    if resume and run.has_checkpoint():
        ck = load_run_checkpoint(run.last)
        kept = check_resumable(ck["config"], cfg, run.last)
        if kept:
            log("the run started before " + ", ".join(kept) + " existed: it continues with "
                + ", ".join(f"{k} {getattr(cfg, k)!r}" for k in kept) + ", as it ran")
        distributed.check_resume_world_size(run.config, ctx.world_size)
    return ck


def uses_cuda_graph(cfg: TrainConfig, device: torch.device, model: torch.nn.Module) -> bool:
    """Whether a run's training step is recorded as a CUDA graph: asked for (``cuda_graph``)
    on a GPU, and every layer of ``model`` has GPU kernels (a layer whose kernels run on the
    host, ``host_kernels``, such as :class:`~batsnn.nn.LIFRecurrent` for now, copies its
    tensors to the CPU, which a graph cannot hold: such a run steps eagerly)."""
    return (bool(cfg.cuda_graph) and device.type == "cuda"
            and not any(getattr(m, "host_kernels", False) for m in model.modules()))


def _new_state(cfg: TrainConfig, source: DataSource, device, run: RunDir) -> TrainState:
    """The seeded network, its optimizer and learning-rate schedule, as a fresh state."""
    seed_everything(cfg.seed)
    model = build_model(cfg, source.n_inputs, source.n_classes, source.input_shape).to(device)
    graphed = uses_cuda_graph(cfg, device, model)
    opt = make_optimizer(model, cfg.lr, device, graphed)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(cfg))
    return TrainState(model, opt, device, scheduler=sched, config=cfg, run_dir=run)


def _resume_state(state: TrainState, ck: dict, path) -> None:
    """Continue ``state`` from the checked checkpoint ``ck`` read from ``path``."""
    opt, sched = state.optimizer, state.scheduler
    restore_checkpoint(ck, state.model, opt, sched, path)
    optimizer_mode(opt, uses_cuda_graph(state.config, state.device, state.model), state.device)
    # a run saved under CUDA graphs holds its learning rates as tensors
    sched.base_lrs = [float(v) for v in sched.base_lrs]
    sched._last_lr = [float(g["lr"]) for g in opt.param_groups]
    state.history = [dict(r) for r in ck["history"]]
    state.epoch = ck["epoch"]
    state.step = ck["step"]


def _write_run_config(cfg: TrainConfig, source: DataSource, ctx, run: RunDir,
                      ck: dict | None, quiet: bool, log: Callable[[str], Any]) -> None:
    """Write ``config.json`` (settings and run facts: the input's shape and the source's
    facts, :meth:`~batsnn.experiments.sources.DataSource.facts`) and, when resuming, the
    run's other files from the checkpoint (rank 0); tell what runs (without ``quiet``) and
    the source's notice (:meth:`~batsnn.experiments.sources.DataSource.notice`, always)."""
    shapes = layer_shapes(cfg.network, source.input_shape, source.n_classes, tau_s=cfg.tau_s,
                          t_max=cfg.t_max, init=cfg.init, dt=cfg.dt)
    sizes = [source.n_inputs] + [s[0] if len(s) == 1 else list(s) for s in shapes]
    effective = distributed.effective_batch_size(cfg.batch_size, ctx)
    facts = source.facts()
    if ctx.is_main:
        write_json(run.config, config_document(
            cfg, **{MARKER: "train"}, batsnn_version=batsnn.__version__, layers=sizes,
            n_classes=source.n_classes, resolved_device=str(ctx.device),
            data_source=source.origin, world_size=ctx.world_size,
            effective_batch_size=effective, input_shape=list(source.input_shape),
            **({} if facts is None else {"data_facts": facts})))
        if ck is not None:  # the checkpoint is the source of truth of the run's other files
            sync_run_files(run, ck)
    if not quiet:
        log(f"{cfg.preset or 'custom'} on {cfg.dataset}: layers {sizes}, dt "
            f"{cfg.dt or 0} s, augment {cfg.augment}, seed {cfg.seed}, {source.n_train} "
            f"train / {source.n_test} test samples, device {ctx.device}"
            + (f" x {ctx.world_size} processes (effective batch {effective})"
               if ctx.distributed else "") + f"; writing to {run.path}")
    notice = source.notice()
    if notice is not None:  # told even when quiet (rank 0 only: the others' log is silent)
        log(notice)


def _device_order(n: int, seed: int, device, epoch: int) -> torch.Tensor:
    """:func:`epoch_order` on ``device``."""
    return epoch_order(n, seed, epoch).to(device)


def _make_step(state: TrainState, source: DataSource, grid: TrainingGrid,
               order_of: Callable[[int], torch.Tensor], ctx,
               log: Callable[[str], Any] | None) -> TrainStep:
    """The run's training step: a CUDA graph where the run asks for one and a full global
    batch exists (recorded here, before the first epoch), else eager."""
    cfg, device = state.config, state.device
    graphed = uses_cuda_graph(cfg, device, state.model)
    # several processes: DDP, or under CUDA graphs an all-reduce of the gradients in the step
    net, average = distributed.data_parallel(state.model, ctx, graphed=graphed)
    all_sum = ctx.all_sum if ctx.distributed else None  # silent neurons over processes
    if graphed and source.n_train >= cfg.batch_size * ctx.world_size:
        step = GraphedTrainStep(state, net, source, grid, order_of, cfg.batch_size,
                                average, ctx.rank, log, all_sum=all_sum)
        if state.epoch < cfg.epochs:  # outside the epochs' timing
            step.prepare(state.epoch + 1)
    else:
        step = TrainStep(state, net, source, grid, average, ctx.rank, all_sum)
    return step


def _run_callbacks(state: TrainState, source: DataSource, ctx, quiet: bool,
                   log: Callable[[str], Any]) -> list:
    """The run's own callbacks (files and plots on rank 0, progress and lines without
    ``quiet``, the counters added over processes)."""
    cfg, run = state.config, state.run_dir
    own = []
    if ctx.is_main:
        shown = source.split("test", slice(0, 3))
        own = [RunRecorder(run, cfg.to_dict()),
               RunPlots(run, shown.inputs(state.device, cfg.dt), shown.labels,
                        last_epoch=cfg.epochs)]
    if not quiet:
        own = [ProgressBar(distributed.steps_per_epoch(source.n_train, cfg.batch_size, ctx)),
               *own, EpochLog(log)]
    if ctx.distributed:
        own.insert(0, distributed.ReduceTrainCounters(ctx))
    return own
