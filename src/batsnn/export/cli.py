"""``batsnn export``: write a trained run's network as a NIR file.

    batsnn export --run runs/mnist-count --out net.nir

:func:`add_parser` adds the subcommand to ``batsnn``'s argparse subparsers; :func:`main` runs
it. :func:`export_run` is the same as a function.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from batsnn.export.nir import TIME_UNITS, save_nir

__all__ = ["add_parser", "export_run", "main"]


def export_run(run_dir: str | os.PathLike, out_path: str | os.PathLike, *,
               checkpoint: str = "best", time_unit: str = "s") -> Path:
    """Write the network of a ``batsnn train`` run directory as a NIR file.

    The model is rebuilt from the run's ``config.json`` (layer sizes, thresholds, spike
    buffers, ``tau_s``, ``t_max``, ``dt``, the reset of ``--dt-mode consistent``) and its
    weights loaded from ``<checkpoint>.pt``
    (:func:`batsnn.experiments.model.load_run_model`), then written with
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
    from batsnn.experiments.model import load_run_model

    _, model, _ = load_run_model(run_dir, checkpoint)
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
