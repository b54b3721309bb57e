"""The ``batsnn convergence`` subcommand."""

from __future__ import annotations

import argparse

from batsnn.experiments.convergence.config import ConvergenceConfig, parse_grid
from batsnn.experiments.convergence.run import run_convergence
from batsnn.fileio import printable
from batsnn.params import RESET_AT

__all__ = ["add_parser", "main"]


def _grid_arg(text: str) -> list[float]:
    try:
        return parse_grid(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``convergence`` subcommand on an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "convergence", allow_abbrev=False,
        help="single-spike against multi-spike training over a grid of initial weight "
             "distributions (model.md section 5)")
    p.add_argument("--out", required=True, help="run directory (a stopped run continues)")
    p.add_argument("--repeats", type=int, default=100, help="runs per cell and variant")
    p.add_argument("--epochs", type=int, default=50, help="SGD steps per run")
    p.add_argument("--means", type=_grid_arg, default="0:2.5:0.2",
                   help="weight means: start:stop:step (stop excluded) or a comma list")
    p.add_argument("--stds", type=_grid_arg, default="0:2.5:0.2",
                   help="weight standard deviations, same format")
    p.add_argument("--seed", type=int, default=0, help="base seed, in [0, 2^32 - 1]")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--dt", type=float, default=None,
                   help="time step in seconds (default: exact continuous time)")
    p.add_argument("--reset-at", choices=RESET_AT, default="crossing",
                   help="with --dt, where a spike's reset applies: at the continuous crossing "
                        "time (default) or at the emitted grid time")
    p.add_argument("--chunk-cells", type=int, default=13,
                   help="grid cells trained together (does not change the result)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)
    return p


def main(args) -> int:
    """Run the ``convergence`` subcommand from parsed ``args``; returns the exit status."""
    cfg = ConvergenceConfig(means=tuple(args.means), stds=tuple(args.stds),
                            repeats=args.repeats, epochs=args.epochs, seed=args.seed,
                            dt=args.dt, device=args.device, chunk_cells=args.chunk_cells,
                            reset_at=args.reset_at)
    from batsnn.experiments.rundir import hold_out_dir

    with hold_out_dir(args.out, "convergence", resume=True):  # one writer
        res = run_convergence(cfg, args.out, quiet=args.quiet)
    print(f"convergence.csv, report.md and heat maps in {printable(res.out)}")
    return 0
