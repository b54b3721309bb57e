"""Placing independent runs (a sweep's (dt, seed) pairs) on the CPU cores or the GPUs.

:func:`plan_slots` decides where runs go: a list of *slots*, each a place where one run
trains at a time. On the CPU the slots share the cores (``jobs`` of them, each run on
``cores // jobs`` threads). On GPUs each slot belongs to one GPU, several slots per GPU
when runs are small (``jobs_per_gpu``), handed out round-robin so that the first runs go
to different GPUs. :func:`run_on_slots` runs tasks with one worker process per slot, each
new task going to the first slot that is free; a worker on a GPU sees only its GPU
(``CUDA_VISIBLE_DEVICES`` is set in the worker before CUDA starts), so a run inside it uses
``cuda`` as if alone. With a single slot the runs train one after the other in this process,
on an explicit device string (``cuda:N``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["MAX_JOBS", "Slot", "SlotPlan", "plan_slots", "run_on_slots", "visible_gpus"]


@dataclass(frozen=True)
class Slot:
    """A place where one run trains at a time.

    Attributes:
        gpu: index of the GPU as this process sees it (``cuda:gpu``); ``None`` on the CPU.
        visible: what ``CUDA_VISIBLE_DEVICES`` is set to in the slot's worker process (the
            GPU's id in this process's ``CUDA_VISIBLE_DEVICES``, or its index when that is
            unset); ``None`` on the CPU.
    """

    gpu: int | None = None
    visible: str | None = None


@dataclass(frozen=True)
class SlotPlan:
    """Where a set of runs trains.

    Attributes:
        slots: one per run at once.
        device: the device string each run is configured with (``cuda`` inside a worker that
            sees one GPU, ``cuda:N`` for runs in this process, else the base setting).
        threads: CPU threads per run (0: leave torch's and numba's defaults).
        description: e.g. ``"2 at once on cpu"`` or ``"4 at once on GPUs 0,1 (2 per GPU)"``.
    """

    slots: list[Slot]
    device: str
    threads: int
    description: str

    @property
    def in_process(self) -> bool:
        """Whether the runs train one after the other in this process (one slot)."""
        return len(self.slots) == 1


def visible_gpus() -> list[str]:
    """The ids to put in ``CUDA_VISIBLE_DEVICES`` for each GPU this process sees, in the
    order of ``cuda:0, cuda:1, ...`` (entries of this process's ``CUDA_VISIBLE_DEVICES``
    when it is set, else ``"0", "1", ...``); empty without CUDA."""
    if not torch.cuda.is_available():
        return []
    n = torch.cuda.device_count()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return [str(i) for i in range(n)]
    ids = [v.strip() for v in env.split(",") if v.strip()]
    return ids[:n]


#: the most trainings at once, in all or per GPU (each holds processes and open files)
MAX_JOBS = 256


def _positive(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_JOBS:
        raise ValueError(f"{name} must be an int >= 1 and <= {MAX_JOBS}, got {v!r}")
    return v


def plan_slots(device: torch.device | str, *, jobs: int = 0,
               gpus: Sequence[int] | None = None, jobs_per_gpu: int | None = None,
               base_device: str | None = None, visible: Sequence[str] | None = None,
               cpu_count: int | None = None) -> SlotPlan:
    """Decide where the runs go.

    Args:
        device: the device the runs' settings resolve to (``cpu`` or ``cuda[:N]``).
        jobs: runs at once. On the CPU, 0 means one per core. On GPUs, 0 means
            ``jobs_per_gpu`` per GPU; a positive value is the total, spread round-robin.
        gpus: indices (``cuda:i``) of the GPUs to use; ``None``: the one the runs' setting
            ``base_device`` names (``cuda:N``), else (``cuda``, ``auto``) every visible GPU.
        jobs_per_gpu: runs at once on each GPU (default 1); not together with ``jobs``.
        base_device: the runs' ``device`` setting (kept when nothing needs changing).
        visible: ``CUDA_VISIBLE_DEVICES`` ids per GPU (default :func:`visible_gpus`).
        cpu_count: cores (default ``os.cpu_count()``).

    Raises:
        ValueError: bad counts, GPUs asked for on the CPU or without CUDA, an unknown or
            repeated GPU index, or both ``jobs`` and ``jobs_per_gpu``.
    """
    device = torch.device(device)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 0 <= jobs <= MAX_JOBS:
        raise ValueError(f"jobs must be an int >= 0 and <= {MAX_JOBS}, got {jobs!r}")
    if jobs_per_gpu is not None:
        _positive("jobs_per_gpu", jobs_per_gpu)
    base_device = base_device or str(device)
    if device.type != "cuda":
        if gpus:
            raise ValueError(f"gpus {list(gpus)} given but the runs train on {device}")
        if jobs_per_gpu is not None:
            raise ValueError(f"jobs_per_gpu given but the runs train on {device}")
        cores = max(1, cpu_count or os.cpu_count() or 1)
        jobs = jobs or cores
        return SlotPlan([Slot()] * jobs, base_device, max(1, cores // jobs),
                        f"{jobs} at once on {device}")
    if jobs and jobs_per_gpu is not None:
        raise ValueError("give jobs (runs at once in all) or jobs_per_gpu, not both")
    ids = list(visible_gpus() if visible is None else visible)
    if gpus is None:
        # the user's setting decides, not the resolved device: "cuda" resolves to cuda:0
        named = torch.device("cuda" if base_device == "auto" else base_device)
        gpus = [named.index] if named.index is not None else list(range(len(ids)))
    gpus = list(gpus)
    if not gpus:
        raise ValueError("gpus must name at least one GPU")
    for g in gpus:
        if isinstance(g, bool) or not isinstance(g, int) or not 0 <= g < len(ids):
            raise ValueError(f"gpus: no GPU {g!r}; {len(ids)} visible (0 to {len(ids) - 1})")
    if len(set(gpus)) != len(gpus):
        raise ValueError(f"gpus must not repeat a GPU, got {gpus}")
    n = jobs or len(gpus) * (jobs_per_gpu or 1)
    slots = [Slot(g, ids[g]) for g in (gpus[i % len(gpus)] for i in range(n))]
    names = ",".join(map(str, gpus))
    per = f" ({n // len(gpus)} per GPU)" if n % len(gpus) == 0 else ""
    if n == 1:
        g = gpus[0]
        same = torch.device(base_device if base_device != "auto" else "cuda")
        keep = same.type == "cuda" and (same.index or 0) == g
        return SlotPlan(slots, base_device if keep else f"cuda:{g}", 0, f"1 at once on cuda:{g}")
    return SlotPlan(slots, "cuda", 0, f"{n} at once on GPU{'s' if len(gpus) > 1 else ''} "
                    f"{names}{per}")


def _pin(visible: str | None, threads: int) -> None:
    """Worker start: see only the slot's GPU; use ``threads`` CPU threads."""
    if visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible
    set_threads(threads)


def run_on_slots(fn: Callable[[Any], Any], tasks: Iterable, slots: Sequence[Slot], *,
                 on_done: Callable[[Any, Any, Slot], None] | None = None,
                 threads: int = 0) -> None:
    """Run ``fn(task)`` for every task, one worker process per slot (spawned, so nothing of
    this process's CUDA state is inherited), each task going to the first free slot in
    order of ``tasks``: the first ``len(slots)`` tasks start at once, one per slot.

    Args:
        fn: a picklable function (module level, or ``functools.partial`` of one).
        tasks: picklable arguments, one per run.
        slots: where runs train (:func:`plan_slots`).
        on_done: called in this process as ``on_done(task, result, slot)`` when a task ends.
        threads: CPU threads per worker (0: defaults).

    Raises:
        whatever a task raised: the tasks already running finish, no new one starts.
    """
    if not slots:
        raise ValueError("run_on_slots needs at least one slot")
    ctx = mp.get_context("spawn")
    pools = [ProcessPoolExecutor(1, mp_context=ctx, initializer=_pin,
                                 initargs=(s.visible, threads)) for s in slots]
    todo = iter(tasks)
    running: dict[Future, tuple[int, Any]] = {}

    def feed(i: int) -> None:
        for task in todo:
            running[pools[i].submit(fn, task)] = (i, task)
            return

    try:
        for i in range(len(pools)):
            feed(i)
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: running[f][0]):
                i, task = running.pop(fut)
                result = fut.result()
                if on_done is not None:
                    on_done(task, result, slots[i])
                feed(i)
    finally:
        for p in pools:
            p.shutdown(wait=True, cancel_futures=True)


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads in this process, in torch and in the numba kernels
    (``0``: leave them as they are)."""
    if threads:
        torch.set_num_threads(threads)
        try:
            import numba

            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        except ImportError:  # pragma: no cover
            pass
