"""Data-parallel training of one model by several processes (``torch.distributed``).

    torchrun --nproc-per-node 2 -m batsnn train --preset mnist-count ...
    batsnn train --ddp 2 --preset mnist-count ...          # starts torchrun itself

Each process holds a replica of the model and steps on its shard of every batch; the
replicas stay equal because every step applies the same averaged gradient. The rules, which
make ``N`` processes with ``batch_size`` samples each train as one process with
``batch_size * N`` (the *effective batch*) does, up to the order of float additions:

- Data: an epoch's order is the seeded permutation of single-process training
  (:func:`batsnn.experiments.train.epoch_order`), cut into global batches of
  ``batch_size * N`` samples. Process ``r`` takes every ``N``-th sample of each global batch
  from the ``r``-th on: the split of torch's ``DistributedSampler`` applied to the same order,
  without padding (:func:`shard_batches`). The ``N`` shards of a global batch are the batch
  that a single process with the effective batch size takes.
- Gradients: DDP averages them over processes. A process's loss (the mean over its shard of
  ``n_r`` samples) is weighted by ``n_r N / m`` (``m``: the global batch's samples), so the
  average is the gradient of the mean loss over the global batch. The weight is 1 except in
  an epoch's last, partial batch; a process that has no sample in it steps on one sample
  with weight 0, so that every process takes part in every all-reduce.
- Evaluation: process ``r`` evaluates the ``r``-th contiguous block of the test set; the
  sums behind every metric are added over processes (:func:`reduce_eval_stats`), and so are
  the training loss, correct predictions and samples after each epoch's training pass
  (:class:`ReduceTrainCounters`): every process ends an epoch with the metrics a single
  process would compute.
- Files: only rank 0 (:attr:`DistContext.is_main`) writes the run directory, checkpoints
  and plots, and prints. ``--resume``: every process loads the same ``last.pt``.
- Backend: NCCL on GPUs (process ``r`` uses ``cuda:LOCAL_RANK``), gloo on the CPU.
- Launch (``batsnn train --ddp N``): everything that can be checked before the processes
  start is checked in the launching process (:func:`check_launch`: ``N`` against the GPUs
  or CPU cores, the device, the output directory, a resumed run's settings and process
  count). A process that fails writes its one-line error for the launcher
  (:func:`report_error`), which prints one line for all of them (:func:`launch`).
- CUDA graphs: a training step replayed as a CUDA graph (:mod:`batsnn.experiments.graphs`)
  cannot hold DDP's gradient hooks (capturing them needs NCCL's asynchronous error handling
  turned off in the environment). With graphs the replicas are the plain model and the step
  averages the gradients itself with all-reduces recorded inside the graph (NCCL
  collectives can be captured): each gradient divided by ``N``, then summed, as DDP does.
  Such a graph must be freed before the process group is destroyed (destroying it while the
  graph lives blocks forever): :func:`batsnn.experiments.train.train` drops its graph on
  return, and :func:`process_group` collects garbage before destroying the group.

batsnn does not rescale the learning rate when the effective batch changes: see
``docs/multi-gpu.md``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.distributed as dist

__all__ = ["DistContext", "ERRORS_ENV", "ReduceTrainCounters", "Shard", "check_launch",
           "check_resume_world_size", "cpu_cores", "current", "data_parallel",
           "effective_batch_size", "launch", "launched_by_torchrun", "process_group",
           "reduce_eval_stats", "report_error", "shard_batches", "steps_per_epoch"]

#: environment variable naming the directory where the processes started by :func:`launch`
#: leave their error lines (``rank-R``) for the launcher
ERRORS_ENV = "BATSNN_DDP_ERRORS"


def launched_by_torchrun() -> bool:
    """Whether ``torchrun`` started this process (``RANK`` and ``WORLD_SIZE`` are set in the
    environment), however many processes it started."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be an int, got {os.environ['WORLD_SIZE']!r}") from None


@dataclass(frozen=True)
class DistContext:
    """Where this process stands among the processes training one model.

    Attributes:
        rank: this process's number, 0 to ``world_size - 1``; rank 0 writes the files.
        world_size: number of processes (1: plain single-process training).
        local_rank: this process's number on its machine (its GPU under NCCL).
        device: where this process trains.
        backend: ``"nccl"``, ``"gloo"`` or ``None`` (a single process).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the process that writes and prints)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether several processes train together."""
        return self.world_size > 1

    def broadcast(self, obj):
        """Rank 0's value of the picklable ``obj`` (``obj`` itself in a single process)."""
        if not self.distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` (any shape and device) summed over processes; a new tensor on
        ``values``' device (``values`` itself in a single process)."""
        if not self.distributed:
            return values
        buf = values.to(self._comm_device(), copy=True)
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        return buf.to(values.device)

    @contextlib.contextmanager
    def main_first(self):
        """Rank 0 runs the block first, the others after it (e.g. preparing a dataset
        cache once)."""
        if not self.distributed:
            yield
            return
        if not self.is_main:
            dist.barrier()
        try:
            yield
        finally:
            if self.is_main:
                dist.barrier()

    def shard(self, n: int, name: str = "samples") -> slice:
        """This process's contiguous block of ``n`` items (blocks differ by at most one item).

        Raises:
            ValueError: ``n`` is smaller than the number of processes.
        """
        if n < self.world_size:
            raise ValueError(f"{name} ({n}) must be at least the number of processes "
                             f"({self.world_size})")
        return slice(self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size)

    def _comm_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")


def _check_device_name(name: str, backend: str | None, world_size: int) -> None:
    if world_size > 1 and name.startswith("cuda:"):
        raise ValueError(f"device {name!r} names one GPU, but {world_size} processes train "
                         "together: use --device cuda (process k uses cuda:LOCAL_RANK; choose "
                         "the GPUs with CUDA_VISIBLE_DEVICES)")
    if backend == "nccl" and name == "cpu":
        raise ValueError("device 'cpu' under an NCCL process group: NCCL trains on GPUs; use "
                         "the gloo backend (--device cpu with torchrun starts it) for the CPU")
    if backend == "gloo" and name.startswith("cuda"):
        raise ValueError(f"device {name!r} under a gloo process group: batsnn trains on GPUs "
                         "with the NCCL backend")


def current(device: str = "auto") -> DistContext:
    """The context of this process for a run configured with ``device`` (``auto``, ``cpu``,
    ``cuda`` or ``cuda:N``).

    Without an initialised ``torch.distributed`` process group (or with one of a single
    process) this is a single process on ``resolve_device(device)``. Under a process group,
    NCCL trains on ``cuda:LOCAL_RANK`` and gloo on the CPU.

    Raises:
        ValueError: the device does not fit the process group (``cuda:N`` with several
            processes, ``cpu`` under NCCL, a GPU under gloo), or too few GPUs.
    """
    from batsnn.experiments.config import resolve_device

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return DistContext(device=resolve_device(device))
    backend = str(dist.get_backend())
    world, rank = dist.get_world_size(), dist.get_rank()
    _check_device_name(device, backend, world)
    local = int(os.environ.get("LOCAL_RANK", rank))
    if backend == "nccl":
        n_gpu = torch.cuda.device_count()
        if local >= n_gpu:
            raise ValueError(f"process with local rank {local} needs a GPU of its own, but "
                             f"{n_gpu} are visible")
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    return DistContext(rank=rank, world_size=world, local_rank=local, device=dev,
                       backend=backend)


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[DistContext]:
    """Set up the process group when this process is one of several started by ``torchrun``,
    and take it down afterwards; in any other case (a single process, or a group set up by
    the caller) do nothing. Yields :func:`current` for ``device``.

    The backend follows the device: NCCL when ``device`` is (or ``auto`` finds) CUDA, each
    process on ``cuda:LOCAL_RANK``; gloo on the CPU. Rendezvous through the environment that
    torchrun sets (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``).
    """
    created = False
    world = _env_world_size() if launched_by_torchrun() else 1
    if world > 1 and not dist.is_initialized():
        use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        _check_device_name(device, "nccl" if use_cuda else "gloo", world)
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            if local >= torch.cuda.device_count():
                raise ValueError(f"{world} processes on GPUs need one GPU each, but "
                                 f"{torch.cuda.device_count()} are visible")
            torch.cuda.set_device(local)
            dist.init_process_group("nccl", device_id=torch.device("cuda", local))
        else:
            dist.init_process_group("gloo")
        created = True
    try:
        yield current(device)
        if created:  # every process done (rank 0 writes last) before the group goes
            dist.barrier()
    finally:
        if created:
            # a CUDA graph that recorded NCCL collectives and is still alive makes
            # destroy_process_group wait forever: free unreachable ones first
            gc.collect()
            dist.destroy_process_group()


# ----------------------------------------------------------------------------- data

class Shard(NamedTuple):
    """What one process steps on for one global batch.

    Attributes:
        idx: ``(n,)`` int64 sample indices (on the device of the epoch's order).
        weight: factor of the shard's mean loss: ``n * world_size / m`` for a global batch of
            ``m`` samples (1 for full batches), 0 for a placeholder.
        samples: samples to count (0 for a placeholder).
        full: whether the global batch has ``batch_size * world_size`` samples (every shard
            then has ``batch_size``).
    """

    idx: torch.Tensor
    weight: float
    samples: int
    full: bool


def shard_batches(order_of: Callable[[int], torch.Tensor], batch_size: int, rank: int = 0,
                  world_size: int = 1) -> Callable[[int], Iterator[Shard]]:
    """``epoch -> iterator of Shard``: this process's part of each global batch of the
    epoch's order (see the module docstring).

    Global batch ``k`` is ``order[k B : (k + 1) B]`` with ``B = batch_size * world_size``;
    process ``rank`` takes its entries ``rank, rank + world_size, ...``. Every process gets
    one :class:`Shard` per global batch, ``ceil(len(order) / B)`` in all; when the last global
    batch has fewer samples than processes, a process without any gets a placeholder (the
    batch's first sample, weight 0, 0 samples).

    Args:
        order_of: ``epoch -> (n,)`` permutation of the training samples.
        batch_size: samples per process and step.
        rank, world_size: this process and the number of processes.
    """
    for name, v, low in (("batch_size", batch_size, 1), ("world_size", world_size, 1),
                         ("rank", rank, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
    if rank >= world_size:
        raise ValueError(f"rank must be < world_size ({world_size}), got {rank}")
    step = batch_size * world_size

    def batches(epoch: int) -> Iterator[Shard]:
        order = order_of(epoch)
        for start in range(0, len(order), step):
            glob = order[start:start + step]
            m = len(glob)
            mine = glob[rank::world_size] if world_size > 1 else glob
            n = len(mine)
            if n == 0:
                yield Shard(glob[:1], 0.0, 0, False)
            else:
                yield Shard(mine, 1.0 if m == step else n * world_size / m, n, m == step)

    return batches


# ----------------------------------------------------------------------------- gradients

def data_parallel(model: torch.nn.Module, ctx: DistContext, *,
                  graphed: bool = False) -> tuple[torch.nn.Module, Callable[[], None]]:
    """The module to run a training step through, and the function to call between
    ``loss.backward()`` and ``optimizer.step()``.

    - a single process: ``(model, no-op)``;
    - several, eager: ``(DistributedDataParallel(model), no-op)``: DDP averages the
      gradients during the backward pass;
    - several, inside a CUDA graph (``graphed``): ``(model, average)`` where ``average``
      divides every gradient by ``world_size`` and all-reduces it (sum), which can be
      captured; the replicas start from rank 0's parameters (broadcast here).

    The parameters (and ``model.state_dict()``) stay those of ``model``: checkpoints of a
    distributed run load into a single process.
    """
    if not ctx.distributed:
        return model, _nothing
    if graphed:
        with torch.no_grad():
            for p in model.parameters():
                dist.broadcast(p.data, src=0)
        params = [p for p in model.parameters() if p.requires_grad]
        world = ctx.world_size

        def average() -> None:
            for p in params:
                if p.grad is not None:
                    p.grad.div_(world)
                    dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)

        return model, average
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, output_device=ids and ids[0]), _nothing


def _nothing() -> None:
    return None


# ----------------------------------------------------------------------------- metrics

class ReduceTrainCounters:
    """Callback (``on_train_end``): adds the epoch's training loss sum, correct predictions
    and samples over processes, so that the epoch's row holds the training metrics of the
    whole epoch on every process."""

    def __init__(self, ctx: DistContext):
        self.ctx = ctx

    def on_train_end(self, state) -> None:
        """Replace the process's epoch counters with their sums over all processes (one
        float64 all-reduce; nothing in a single process).

        Args:
            state: the loop's :class:`~batsnn.experiments.training.loop.TrainState`;
                ``state.loss_sum``, ``state.correct`` (in place, on their device) and
                ``state.samples`` become the totals over processes.
        """
        if not self.ctx.distributed:
            return
        dev = state.loss_sum.device
        t = torch.stack([state.loss_sum.to(torch.float64), state.correct.to(torch.float64),
                         torch.tensor(float(state.samples), dtype=torch.float64, device=dev)])
        t = self.ctx.all_sum(t)
        state.loss_sum.copy_(t[0])
        state.correct.copy_(t[1].round().to(torch.int64))
        state.samples = int(round(float(t[2])))


_EVAL_CONSTANTS = ("mode", "target")


def _flatten_sums(stats) -> tuple[list[str], list[torch.Tensor]]:
    """Every accumulator of an EvalStats as float64 CPU tensors, with how to put it back."""
    kinds, parts = [], []
    for key in sorted(vars(stats)):
        if key in _EVAL_CONSTANTS:
            continue
        v = getattr(stats, key)
        if isinstance(v, bool) or v is None:
            raise TypeError(f"EvalStats.{key} = {v!r} cannot be summed over processes")
        if isinstance(v, (int, float)):
            parts.append(torch.tensor([float(v)], dtype=torch.float64))
        elif isinstance(v, dict):
            parts.append(torch.tensor([float(v[k]) for k in sorted(v)], dtype=torch.float64))
        elif isinstance(v, list) and all(isinstance(e, torch.Tensor) for e in v):
            parts.extend(e.reshape(-1).to(torch.float64).cpu() for e in v)
        elif isinstance(v, list):
            parts.append(torch.tensor([float(e) for e in v], dtype=torch.float64))
        else:
            raise TypeError(f"EvalStats.{key} of type {type(v).__name__} cannot be summed over "
                            "processes")
        kinds.append(key)
    return kinds, parts


def reduce_eval_stats(stats, ctx: DistContext) -> None:
    """Add the accumulators of a :class:`batsnn.metrics.EvalStats` over processes, in place:
    counts and sums are added, and a neuron counts as having fired when it fired on any
    process. Afterwards ``stats.result()`` is the evaluation of the union of the processes'
    samples. Nothing happens in a single process.

    Every accumulator must be a number, a list of numbers, a dict of numbers (sums) or a list
    of bool tensors (fired masks); layer sizes must be known on every process (each has at
    least one sample)."""
    if not ctx.distributed:
        return
    keys, parts = _flatten_sums(stats)
    sizes = [p.numel() for p in parts]
    total = ctx.all_sum(torch.cat(parts)).cpu()
    chunks = iter(torch.split(total, sizes))
    for key in keys:
        v = getattr(stats, key)
        if isinstance(v, int):
            setattr(stats, key, int(round(float(next(chunks)))))
        elif isinstance(v, float):
            setattr(stats, key, float(next(chunks)))
        elif isinstance(v, dict):
            vals = next(chunks).tolist()
            setattr(stats, key, {k: type(v[k])(x) for k, x in zip(sorted(v), vals)})
        elif v and isinstance(v[0], torch.Tensor):
            new = []
            for e in v:
                s = next(chunks).reshape(e.shape)
                new.append(s > 0 if e.dtype == torch.bool else s.to(e.dtype))
            setattr(stats, key, new)
        else:
            setattr(stats, key, [type(e)(x) for e, x in zip(v, next(chunks).tolist())])


# ----------------------------------------------------------------------------- runs

def check_resume_world_size(config_file, world_size: int) -> None:
    """Refuse to continue a run with another number of processes than it was trained with
    (the effective batch would change). ``config_file`` is the run's ``config.json``; runs
    that do not record ``world_size`` were trained by one process.

    Raises:
        ValueError: naming both numbers and the way to continue the run.
    """
    from batsnn.experiments.rundir import read_json

    try:
        saved = int(read_json(config_file).get("world_size", 1))
    except (OSError, ValueError, TypeError, AttributeError):
        return
    if saved != world_size:
        how = f"--ddp {saved}" if saved > 1 else "a single process (no --ddp)"
        raise ValueError(f"--resume: the run was trained by {saved} process(es), this is "
                         f"{world_size}; the effective batch would change. Continue it with "
                         f"{how}")


def report_error(line: str) -> bool:
    """In a process started by :func:`launch`, leave the one-line error ``line`` for the
    launcher (file ``rank-R`` in the directory named by :data:`ERRORS_ENV`) instead of
    printing it; returns whether it was left there (``False`` in any other process: print
    it)."""
    where = os.environ.get(ERRORS_ENV)
    if not (where and launched_by_torchrun() and os.path.isdir(where)):
        return False
    from batsnn.fileio import atomic_write

    rank = os.environ.get("RANK", "0")
    try:
        atomic_write(os.path.join(where, f"rank-{int(rank)}"), line.encode())
    except (OSError, ValueError):
        return False
    return True


def _reported_errors(where: str) -> list[str]:
    """The error lines left by :func:`report_error`, lowest rank first."""
    lines = []
    names = [n for n in os.listdir(where) if n.startswith("rank-") and n[5:].isdigit()]
    for name in sorted(names, key=lambda n: int(n[5:])):
        try:
            with open(os.path.join(where, name), encoding="utf-8", errors="replace") as f:
                text = " ".join(f.read(4000).split())
        except OSError:
            continue
        if text:
            lines.append(text)
    return lines


def launch(argv: Sequence[str], nproc: int) -> int:
    """Run ``python -m batsnn <argv>`` in ``nproc`` processes on this machine through
    ``torch.distributed.run`` (``torchrun --standalone --nproc-per-node nproc``); returns
    the exit status (0, or the first failed process's).

    The environment goes to the processes unchanged (batsnn sets no NCCL variables) but for
    :data:`ERRORS_ENV`: a failed process's error line comes back to this process, which
    prints the first one alone (torchrun's own log lines are silenced), so a failure under
    ``--ddp`` is one line on stderr as in a single process."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be an int >= 1, got {nproc!r}")
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    where = tempfile.mkdtemp(prefix="batsnn-ddp-")
    before = os.environ.get(ERRORS_ENV)
    os.environ[ERRORS_ENV] = where
    logging.disable(logging.ERROR)  # torchrun's notes and failure logs: the line below says it
    try:
        torchrun.main(["--standalone", f"--nproc-per-node={nproc}", "--module", "batsnn",
                       *argv])
    except ChildFailedError as e:
        codes = [f.exitcode for _, f in sorted(e.failures.items())]
        reported = _reported_errors(where)
        if reported:
            print(reported[0], file=sys.stderr)
        else:
            print(f"batsnn: error: {len(codes)} of {nproc} processes failed (exit status "
                  f"{', '.join(map(str, codes))}); see their messages above", file=sys.stderr)
        return next((c for c in codes if isinstance(c, int) and c > 0), 1)
    finally:
        logging.disable(logging.NOTSET)
        if before is None:
            os.environ.pop(ERRORS_ENV, None)
        else:
            os.environ[ERRORS_ENV] = before
        shutil.rmtree(where, ignore_errors=True)
    return 0


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_launch(nproc: int, device: str, out: str | None = None, resume: bool = False, *,
                 cfg=None) -> None:
    """Check that ``nproc`` processes can train on ``device`` into ``out`` before starting
    them (:func:`launch`), creating nothing: the processes' own checks would fail in each
    of them, after the process group is set up.

    Args:
        nproc: processes to start: at most one per visible GPU on GPUs, one per CPU core
            (:func:`cpu_cores`) on the CPU.
        device: the run's device setting: ``"auto"``, ``"cpu"`` or ``"cuda"`` (not one
            GPU ``"cuda:N"`` for several processes).
        out: the run directory (:func:`batsnn.experiments.rundir.check_out`); ``None`` or
            empty: only the process count and device are checked.
        resume: continue the run in ``out``: its checkpoint is read and checked against
            ``cfg`` and against ``nproc`` (:func:`check_resume_world_size`).
        cfg: the run's settings (a :class:`~batsnn.experiments.config.TrainConfig`), which
            a resumed run's checkpoint must match in every field of
            :data:`~batsnn.experiments.config.RESUME_FIELDS`
            (:func:`~batsnn.experiments.training.resume.check_resumable`); ``None``: the
            settings are not compared.

    Raises:
        ValueError: ``nproc < 1``, more processes than GPUs or CPU cores, a device naming one
            GPU, or a resumed run with other settings or another number of processes.
        batsnn.experiments.rundir.RunExists: ``out`` holds a run and ``resume`` is false.
        batsnn.experiments.rundir.OutDirError: ``out`` cannot be used (a file, not
            writable, someone else's files, another process writing into it, ...).
        batsnn.experiments.rundir.CheckpointError: its ``last.pt`` cannot be continued.
    """
    from batsnn.experiments.config import resolve_device
    from batsnn.experiments.rundir import RunDir, check_out, load_run_checkpoint

    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"--ddp must be >= 1, got {nproc!r}")
    _check_device_name(device, None, nproc)
    dev = resolve_device(device)
    if dev.type == "cuda" and torch.cuda.device_count() < nproc:
        raise ValueError(f"--ddp {nproc} needs {nproc} GPUs, {torch.cuda.device_count()} "
                         "visible (use --device cpu for processes on the CPU)")
    if dev.type == "cpu" and nproc > cpu_cores():
        raise ValueError(f"--ddp {nproc} would start {nproc} processes on the CPU, which has "
                         f"{cpu_cores()} cores for this process; give --ddp {cpu_cores()} or "
                         "fewer")
    if not out:
        return
    check_out(out, "train", resume=resume)
    run = RunDir(out)
    if resume and run.has_checkpoint():
        ck = load_run_checkpoint(run.last)
        if cfg is not None:
            from batsnn.experiments.training.resume import check_resumable

            check_resumable(ck["config"], cfg, run.last)
        check_resume_world_size(run.config, nproc)


def effective_batch_size(batch_size: int, ctx: DistContext) -> int:
    """Samples per optimizer step over all processes: ``batch_size * world_size``."""
    return batch_size * ctx.world_size


def steps_per_epoch(n: int, batch_size: int, ctx: DistContext) -> int:
    """Optimizer steps per epoch of ``n`` samples."""
    return math.ceil(n / effective_batch_size(batch_size, ctx))
