"""Throughput of batsnn networks: training and inference samples/s, printed as JSON.

Training step = forward, BATS spike-count loss errors, backward and a torch.optim.Adam step.
On a GPU each step is also timed as one CUDA graph (:class:`batsnn.experiments.graphs.GraphedStep`, what
``batsnn train`` runs): ``*_graphed_samples_per_s``.
Input: Fashion-MNIST-like TTFS-encoded images (about half of the 784 inputs spiking), made
deterministically from a seed, or with ``--images mnist`` the first test images of MNIST
(about a fifth of the inputs spiking; needs the dataset, see ``batsnn data``). Inference is
timed at the network's initial weights (the training measurements change them), or with
``--weights CHECKPOINT`` at the weights of a ``batsnn train`` checkpoint of the same network
(e.g. ``runs/x/best.pt``: a trained network's activity, as in an evaluation pass); the
``conv-*`` configs take them as 28 x 28 maps through the
network of the ``mnist-conv`` preset (conv 5x5x15, pool, conv 5x5x40, pool, 300, 10). A
plain torch network of the same shape (MLP, or CNN for ``conv-*``) is timed in the same run
for scale.

    python benchmarks/bench_lif.py                       # 784-800-10, batch 50, CPU
    python benchmarks/bench_lif.py --configs conv-b20,conv-b256
    python benchmarks/bench_lif.py --device cuda --configs all
    python benchmarks/bench_lif.py --device cuda --configs conv-b50 --images mnist \
        --weights runs/conv/best.pt
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time

import torch

import batsnn
from batsnn.losses import spike_count_class_loss
from batsnn.nn import LIFLinear

CONFIGS = {
    # name: (layer sizes, thresholds, max spikes, batch)
    "800-b50": ([784, 800, 10], [0.2, 1.3], [30, 30], 50),
    "800-b100": ([784, 800, 10], [0.2, 1.3], [30, 30], 100),
    "800-b256": ([784, 800, 10], [0.2, 1.3], [30, 30], 256),
    "800-b4096": ([784, 800, 10], [0.2, 1.3], [30, 30], 4096),
    "400x2-b5": ([784, 400, 400, 10], [0.13, 0.45, 0.7], [5, 5, 20], 5),
    "400x2-b256": ([784, 400, 400, 10], [0.13, 0.45, 0.7], [5, 5, 20], 256),
    # the mnist-conv preset's network (its layer descriptions), batch
    "conv-b20": ("mnist-conv", None, None, 20),
    "conv-b50": ("mnist-conv", None, None, 50),
    "conv-b256": ("mnist-conv", None, None, 256),
}


def make_input(batch: int, seed: int, device, images: str = "random") -> torch.Tensor:
    """TTFS-encoded ``(batch, 784, 1)`` input: random images, or MNIST's first test images
    (``images="mnist"``) repeated up to ``batch``."""
    if images == "mnist":
        from batsnn.experiments.data import load_dataset

        test = load_dataset("mnist").test_x.reshape(-1, 784)
        x = test[torch.arange(batch) % len(test)].float() / 255.0
    else:
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(batch, 784, generator=g)
        x = torch.where(torch.rand(batch, 784, generator=g) < 0.5, x, torch.zeros_like(x))
    return batsnn.ttfs_encode(x).to(device)


def build(sizes, thetas, spikes, device):
    if isinstance(sizes, str):  # a preset's network, on 28 x 28 maps
        from batsnn.experiments.config import PRESETS
        from batsnn.experiments.model import build_network

        preset = PRESETS[sizes]
        return build_network(preset["network"], (1, 28, 28), 10, tau_s=0.13,
                             t_max=preset.get("t_max", 0.2)).to(device)
    layers = [LIFLinear(a, b, tau_s=0.13, theta=th, max_spikes=k)
              for a, b, th, k in zip(sizes[:-1], sizes[1:], thetas, spikes)]
    return torch.nn.Sequential(*layers).to(device)


def plain_net(sizes, device):
    """The torch network of the same shape (ReLU), for scale."""
    nn = torch.nn
    if isinstance(sizes, str):
        return nn.Sequential(nn.Conv2d(1, 15, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(15, 40, 5),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(640, 300),
                             nn.ReLU(), nn.Linear(300, 10)).to(device)
    return nn.Sequential(*[m for a, b in zip(sizes[:-1], sizes[1:])
                           for m in (nn.Linear(a, b), nn.ReLU())][:-1]).to(device)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_loop(fn, device, min_time: float, min_iters: int = 3):
    fn()  # warm-up (compilation)
    fn()
    _sync(device)
    n, start = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - start < min_time:
        fn()
        n += 1
    _sync(device)
    return (time.perf_counter() - start) / n


def bench(name, device, min_time, seed=0, images="random", weights=None):
    sizes, thetas, spikes, batch = CONFIGS[name]
    torch.manual_seed(seed)
    net = build(sizes, thetas, spikes, device)
    if weights is not None:
        from batsnn.experiments.rundir import load_checkpoint

        net.load_state_dict(load_checkpoint(weights)["model"])
    start_state = copy.deepcopy(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = make_input(batch, seed, device, images)
    if isinstance(sizes, str):
        x = x.reshape(batch, 1, 28, 28, 1)
    labels = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(seed))
    labels = labels.to(device)
    hidden_spikes = [None]  # the last inference's hidden counts only

    def train_step():
        out = net(x)
        loss = spike_count_class_loss(out.times, out.counts, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer():
        with torch.no_grad():
            h = net[0](x)
            o = h
            for layer in list(net)[1:]:
                o = layer(o)
        hidden_spikes[0] = h.counts  # the first layer's

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t_train = time_loop(train_step, device, min_time)
    net.load_state_dict(start_state)  # inference at the starting weights
    t_infer = time_loop(infer, device, min_time)
    spikes_per_sample = float(hidden_spikes[0].sum()) / batch

    mlp = plain_net(sizes, device)
    mopt = torch.optim.Adam(mlp.parameters(), lr=1e-3)
    xd = torch.rand(batch, 784, device=device)
    if isinstance(sizes, str):
        xd = xd.reshape(batch, 1, 28, 28)

    def mlp_step():
        loss = torch.nn.functional.cross_entropy(mlp(xd), labels)
        mopt.zero_grad(set_to_none=True)
        loss.backward()
        mopt.step()

    graphed = {}
    if device.type == "cuda":
        from batsnn.experiments.graphs import GraphedStep, capturable_adam

        gopt = capturable_adam(net.parameters(), 1e-3, device)

        def graph_train_step(xs, ys):
            out = net(xs)
            loss = spike_count_class_loss(out.times, out.counts, ys)
            loss.backward()
            gopt.step()
            return loss

        def graph_infer(xs):
            with torch.no_grad():
                return net(xs).counts

        g_train = GraphedStep(graph_train_step, x, labels, state=(net, gopt))
        g_infer = GraphedStep(graph_infer, x)
        graphed["train_graphed_samples_per_s"] = round(
            batch / time_loop(lambda: g_train(x, labels), device, min_time), 1)
        net.load_state_dict(start_state)  # in place: the captured graphs see it
        graphed["infer_graphed_samples_per_s"] = round(
            batch / time_loop(lambda: g_infer(x), device, min_time), 1)
    t_mlp = time_loop(mlp_step, device, min_time)
    res = {
        "config": name, "layers": sizes, "max_spikes": spikes or [
            m.max_spikes for m in net if hasattr(m, "max_spikes")], "batch": batch,
        "device": str(device), "images": images, "weights": weights or "initial",
        "train_samples_per_s": round(batch / t_train, 1),
        "infer_samples_per_s": round(batch / t_infer, 1),
        "train_step_ms": round(1e3 * t_train, 3),
        **graphed,
        "hidden_spikes_per_sample": round(spikes_per_sample, 1),
        ("torch_cnn_step_ms" if isinstance(sizes, str) else "dense_mlp_step_ms"):
            round(1e3 * t_mlp, 3),
    }
    if device.type == "cuda":
        res["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--configs", default="800-b50",
                   help=f"comma-separated names or 'all': {', '.join(CONFIGS)}")
    p.add_argument("--min-time", type=float, default=3.0, help="seconds per measurement")
    p.add_argument("--images", default="random", choices=("random", "mnist"),
                   help="input images: random (default) or MNIST's first test images")
    p.add_argument("--weights", help="a batsnn train checkpoint of the config's network: its "
                   "weights for every measurement (default: the initial weights)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    names = list(CONFIGS) if args.configs == "all" else args.configs.split(",")
    info = {"batsnn": batsnn.__version__, "torch": torch.__version__,
            "machine": platform.machine(), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        import numba

        info["numba_threads"] = numba.get_num_threads()
    except ImportError:
        pass
    for name in names:
        if name not in CONFIGS:
            p.error(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")
        print(json.dumps({**info, **bench(name, device, args.min_time,
                                                   images=args.images,
                                                   weights=args.weights)}), flush=True)


if __name__ == "__main__":
    main()
