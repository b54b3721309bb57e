"""Training throughput of the event-stream presets per epoch: JSON lines.

Each measurement trains a preset with ``batsnn.experiments.train.train`` for ``--epochs``
epochs and reports, per epoch, the training pass's wall time, samples per second and the
test accuracy (``metrics.csv``), beside the run's input facts (spike slots, dropped spikes).
``shd``, ``shd-delay`` and ``ssc`` read SHD / SSC-format files: with no ``--data-dir`` a synthetic set is
written to a temporary directory first (700 channels, SHD-like spike counts; 8,156 training
samples, an SHD-sized epoch, for both: :func:`batsnn.experiments.datasets.heidelberg.
write_synthetic_shd` and ``write_synthetic_ssc``; needs ``h5py``). ``yinyang`` and
``randman`` are generated.

    python benchmarks/bench_events.py --device cuda --presets shd,shd-delay,ssc,randman,yinyang
    python benchmarks/bench_events.py --device cpu --presets randman --epochs 1
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

import batsnn
from batsnn import metrics as M
from batsnn.experiments.config import resolve_config
from batsnn.experiments.rundir import read_csv, read_json
from batsnn.experiments.train import train


def bench(preset: str, device: str, epochs: int, data_dir: str | None, work: Path,
          cuda_graph: bool) -> dict:
    """Train ``preset`` for ``epochs`` epochs on ``device``; its per-epoch figures."""
    out = work / f"run-{preset}-{device.replace(':', '')}-{int(cuda_graph)}"
    cfg = resolve_config(preset, device=device, epochs=epochs, out=str(out),
                         cuda_graph=cuda_graph, data_dir=data_dir)
    t0 = time.perf_counter()
    train(cfg, quiet=True, log=lambda *a: None)
    wall = time.perf_counter() - t0
    rows = read_csv(out / "metrics.csv")
    facts = read_json(out / "config.json").get("data_facts", {})
    n_train = facts.get("train", {}).get("samples")
    return {
        "preset": preset, "device": device, "cuda_graph": cuda_graph, "batch": cfg.batch_size,
        "train_samples": n_train, "input": facts, "wall_s": round(wall, 2),
        "epochs": [{"epoch": int(r[M.EPOCH]), "train_s": round(float(r[M.TRAIN_SECONDS]), 3),
                    "samples_per_s": round(n_train / float(r[M.TRAIN_SECONDS]), 1)
                    if n_train else None,
                    "test_accuracy": float(r[M.TEST_ACCURACY])} for r in rows],
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--presets", default="shd,ssc,randman,yinyang",
                   help="comma-separated event presets")
    p.add_argument("--epochs", type=int, default=2, help="epochs per measurement")
    p.add_argument("--data-dir", help="directory with the dataset's files (default for shd and "
                   "ssc: synthetic files with SHD's sizes, written to a temporary directory)")
    p.add_argument("--no-cuda-graph", action="store_true", help="eager steps on a GPU")
    args = p.parse_args(argv)
    info = {"batsnn": batsnn.__version__, "torch": torch.__version__,
            "machine": platform.machine()}
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    with tempfile.TemporaryDirectory(prefix="batsnn-bench-events-") as tmp:
        work = Path(tmp)
        written = {}  # dataset -> the synthetic set written for it (shared by its presets)
        for preset in args.presets.split(","):
            dataset = resolve_config(preset).dataset
            data_dir = args.data_dir
            if dataset in ("shd", "ssc") and data_dir is None:
                if dataset not in written:
                    from batsnn.experiments.datasets.heidelberg import (write_synthetic_shd,
                                                                        write_synthetic_ssc)

                    (work / dataset).mkdir()
                    t0 = time.perf_counter()
                    write = {"shd": write_synthetic_shd, "ssc": write_synthetic_ssc}[dataset]
                    write(work / dataset)
                    written[dataset] = str(work / dataset)
                    info[f"synthetic_{dataset}_written_s"] = round(time.perf_counter() - t0, 1)
                data_dir = written[dataset]
            res = bench(preset, args.device, args.epochs,
                        data_dir if dataset in ("shd", "ssc", "nmnist") else None,
                        work, not args.no_cuda_graph)
            print(json.dumps({**info, **res}), flush=True)


if __name__ == "__main__":
    main()
