"""Data-parallel training throughput on 1 and more GPUs: samples/s, printed as JSON lines.

The network of ``mnist-count`` (784-800-10, 30 spikes per neuron, thresholds 0.2 and 1.3),
the spike-count loss and Adam; synthetic TTFS input as in ``bench_lif.py`` (about half of
the 784 inputs spiking, a different batch per GPU). One process per GPU (NCCL); each step
takes ``batch`` samples per GPU, so the effective batch is ``batch x gpus``. The steps are
those of ``batsnn train``: ``eager`` (DDP averages the gradients during the backward pass)
and ``graph`` (the whole step, the all-reduce of the gradients included, replayed as one
CUDA graph). With 1 GPU there is no process group and no all-reduce: the single-GPU
training step. Every process runs the same number of timed steps (the slowest process's
estimate); samples/s counts all GPUs.

    python benchmarks/bench_ddp.py                                 # 1 and 2 GPUs, batch 256, 4096
    python benchmarks/bench_ddp.py --gpus 1,2,4 --batches 256 --modes graph --min-time 3
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import batsnn
from batsnn.experiments import distributed as D
from batsnn.experiments.graphs import GraphedStep, capturable_adam
from batsnn.losses import count_predict, spike_count_class_loss
from batsnn.nn import LIFLinear, SpikingSequential

SIZES, THETAS, SPIKES = [784, 800, 10], [0.2, 1.3], [30, 30]


def make_input(batch: int, seed: int, device) -> torch.Tensor:
    """TTFS spike times ``(batch, 784, 1)``: about half of the inputs spike."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 784, generator=g)
    x = torch.where(torch.rand(batch, 784, generator=g) < 0.5, x, torch.zeros_like(x))
    return batsnn.ttfs_encode(x).to(device)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _measure(rank: int, world: int, batch: int, mode: str, min_time: float,
             port: int, queue) -> None:
    device = torch.device("cuda", rank)
    torch.cuda.set_device(device)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("nccl", rank=rank, world_size=world, device_id=device)
    res = _throughput(world, batch, mode, min_time, device)
    if rank == 0:
        queue.put(res)
    if world > 1:
        # the graph (NCCL collectives inside) went with _throughput's frame: a live one would
        # make destroy_process_group wait forever
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def _throughput(world: int, batch: int, mode: str, min_time: float, device) -> dict:
    """Time the training step in this process (one of ``world``) on ``device``."""
    rank = dist.get_rank() if world > 1 else 0
    ctx = D.current("cuda") if world > 1 else D.DistContext(device=device)
    torch.manual_seed(0)
    model = SpikingSequential(*[
        LIFLinear(a, b, tau_s=0.13, theta=th, max_spikes=k)
        for a, b, th, k in zip(SIZES[:-1], SIZES[1:], THETAS, SPIKES)]).to(device)
    graphed = mode == "graph"
    opt = (capturable_adam(model.parameters(), 3e-3, device) if graphed
           else torch.optim.Adam(model.parameters(), lr=3e-3))
    net, average = D.data_parallel(model, ctx, graphed=graphed)
    x = make_input(batch, 1000 + rank, device)
    y = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(rank))
    y = y.to(device)
    correct = torch.zeros((), dtype=torch.int64, device=device)

    def step(xs, ys):
        out = net(xs)
        loss = spike_count_class_loss(out.times, out.counts, ys, target_true=15,
                                      target_false=3)
        loss.backward()
        average()
        opt.step()
        correct.add_((count_predict(out.counts) == ys).sum())
        return loss

    if graphed:
        g = GraphedStep(step, x, y, state=(model, opt))
        run = lambda: g(x, y)  # noqa: E731
    else:
        def run():
            opt.zero_grad(set_to_none=True)
            step(x, y)

    def timed(n: int) -> float:
        if world > 1:
            dist.barrier()
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(n):
            run()
        torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    timed(3)  # warm-up: kernels compile, NCCL connects
    probe = timed(5) / 5
    n = torch.tensor([max(10, int(min_time / max(probe, 1e-6)))], device=device)
    if world > 1:  # every process takes the same number of steps
        dist.all_reduce(n, op=dist.ReduceOp.MIN)
    steps = int(n)
    seconds = timed(steps)
    if world > 1:
        t = torch.tensor([seconds], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        seconds = float(t)
    return {"gpus": world, "batch_per_gpu": batch, "effective_batch": batch * world,
            "mode": mode, "steps": steps, "step_ms": round(1e3 * seconds / steps, 3),
            "train_samples_per_s": round(batch * world * steps / seconds, 1),
            "peak_gpu_memory_mib": round(torch.cuda.max_memory_allocated(device) / 2**20,
                                         1)}


def measure(world: int, batch: int, mode: str, min_time: float) -> dict:
    """Train-step throughput of ``world`` processes, one GPU each (see the module doc)."""
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.spawn(_measure, args=(world, batch, mode, min_time, _free_port(), queue), nprocs=world,
             join=True)
    return queue.get()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", default="1,2", help="comma-separated numbers of GPUs")
    p.add_argument("--batches", default="256,4096", help="comma-separated batches per GPU")
    p.add_argument("--modes", default="eager,graph", help="eager, graph or both")
    p.add_argument("--min-time", type=float, default=2.0, help="seconds per measurement")
    args = p.parse_args(argv)
    gpus = [int(v) for v in args.gpus.split(",")]
    batches = [int(v) for v in args.batches.split(",")]
    modes = args.modes.split(",")
    if not torch.cuda.is_available():
        p.error("needs CUDA GPUs")
    if max(gpus) > torch.cuda.device_count():
        p.error(f"--gpus asks for {max(gpus)}, {torch.cuda.device_count()} visible")
    if any(m not in ("eager", "graph") for m in modes):
        p.error(f"--modes: eager or graph, got {args.modes!r}")
    info = {"batsnn": batsnn.__version__, "torch": torch.__version__,
            "machine": platform.machine(), "gpu": torch.cuda.get_device_name(0),
            "network": "784-800-10", "max_spikes": SPIKES}
    base = {}
    for batch in batches:
        for mode in modes:
            for world in gpus:
                res = measure(world, batch, mode, args.min_time)
                key = (batch, mode)
                if world == 1:
                    base[key] = res["train_samples_per_s"]
                if key in base:
                    res["speedup_vs_1_gpu"] = round(res["train_samples_per_s"] / base[key], 2)
                print(json.dumps({**info, **res}), flush=True)


if __name__ == "__main__":
    main()
