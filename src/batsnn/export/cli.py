"""``batsnn export``: write a trained run's network as a NIR file.

    batsnn export --run runs/mnist-count --out net.nir

:func:`add_parser` adds the subcommand to ``batsnn``'s argparse subparsers; :func:`main` runs
it. :func:`export_run` is the same as a function.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from batsnn.export.nir import TIME_UNITS, save_nir

__all__ = ["add_parser", "export_run", "main"]


def export_run(run_dir: str | os.PathLike, out_path: str | os.PathLike, *,
               checkpoint: str = "best", time_unit: str = "s") -> Path:
    """Write the network of a ``batsnn train`` run directory as a NIR file.

    The model is rebuilt from the run's ``config.json`` (layer sizes, thresholds, spike
    buffers, ``tau_s``, ``t_max``, ``dt``) with :func:`batsnn.experiments.model.build_model`,
    its weights loaded from ``<checkpoint>.pt`` (:func:`batsnn.experiments.rundir.load_checkpoint`) and written with
    :func:`batsnn.export.save_nir`.

    Args:
        run_dir: the run directory (``config.json`` and ``best.pt``/``last.pt``).
        out_path: the NIR file to write (``*.nir``).
        checkpoint: ``"best"`` (default) or ``"last"``.
        time_unit: the graph's time unit, ``"s"`` or ``"ms"``.

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: the run directory, its config or its checkpoint is missing or does not
            match (the message names the file).
        ImportError: ``nir`` is not installed.
    """
    from batsnn.experiments.config import config_from_dict
    from batsnn.experiments.model import build_model
    from batsnn.experiments.rundir import load_checkpoint, read_json

    run = Path(run_dir)
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    cfg_path, ck_path = run / "config.json", run / f"{checkpoint}.pt"
    for p in (cfg_path, ck_path):
        if not p.is_file():
            raise ValueError(f"{str(p)!r} does not exist: is {str(run)!r} a batsnn train run "
                             "directory with a completed epoch?")
    doc = read_json(cfg_path)
    sizes = doc.get("layers") if isinstance(doc, dict) else None
    if not sizes or len(sizes) < 2:
        raise ValueError(f"{str(cfg_path)!r} has no 'layers' (input, ..., classes): not a "
                         "batsnn train run's config")
    cfg = config_from_dict(doc)
    with torch.random.fork_rng(devices=[]):  # build_model draws weights: keep the caller's RNG
        model = build_model(cfg, sizes[0], sizes[-1])
    state = load_checkpoint(ck_path)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as e:
        raise ValueError(f"{str(ck_path)!r} does not hold this run's model: {e}") from None
    return save_nir(model, out_path, time_unit=time_unit)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``export`` to ``batsnn``'s subparsers (``func`` is set to :func:`main`)."""
    p = subparsers.add_parser("export", help="write a trained run's network as a NIR file")
    p.add_argument("--run", required=True, metavar="DIR", help="a batsnn train run directory")
    p.add_argument("--out", required=True, metavar="FILE.nir", help="NIR (HDF5) file to write")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="which checkpoint of the run (default: best)")
    p.add_argument("--time-unit", choices=sorted(TIME_UNITS), default="s",
                   help="time unit of the graph's time constants (default: s)")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    """Run ``batsnn export`` for parsed ``args``; returns the exit status (0)."""
    path = export_run(args.run, args.out, checkpoint=args.checkpoint, time_unit=args.time_unit)
    print(f"wrote {path} (NIR graph, time unit {args.time_unit}) from {args.run} "
          f"({args.checkpoint}.pt)")
    return 0
