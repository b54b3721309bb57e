"""Test accuracy per epoch of several trainings at one time step, in one plot: mean and
standard deviation over seeds, one line per labelled source.

A source is a sweep directory (``batsnn sweep --out``; its runs at ``--dt`` are read) or a
comma-separated list of ``metrics.csv`` files of single runs (``batsnn train``), e.g. the
modes of ``--dt-mode`` at one dt:

    python analysis/compare_sweeps.py --dt 10e-3 --out modes-10ms.png \\
        "seed's scheme=full/mnist" "fine 2 ms=modes/gpu/mnist-dt10ms-fine2ms" \\
        "fine 4 ms=modes/full-dt10ms-fine4ms-seed1.csv,modes/full-dt10ms-fine4ms-seed2.csv"

The table of the plotted values is printed as CSV (label, epoch, runs, mean %, std %).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from batsnn import metrics as M
from batsnn.experiments.plots import errorbar_plot
from batsnn.experiments.rundir import read_json
from batsnn.experiments.sweep import (N_SEEDS, check_dts, epoch_stats, mean_key, run_name,
                                     std_key)
from batsnn.fileio import one_line, printable


def metrics_files(source: str, dt: float) -> list[Path]:
    """The ``metrics.csv`` files of ``source`` (a sweep directory: its runs at ``dt``)."""
    path = Path(source)
    if path.is_dir():
        manifest = path / "sweep.json"
        if not manifest.is_file():
            raise SystemExit(f"compare_sweeps: {source!r} is not a sweep directory "
                             "(no sweep.json)")
        try:
            record = read_json(manifest)
        except (OSError, ValueError) as e:
            raise SystemExit(f"compare_sweeps: {one_line(e)}") from None
        runs = record.get("runs") if isinstance(record, dict) else None
        if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
            raise SystemExit(f"compare_sweeps: {printable(manifest)} is not a batsnn sweep "
                             "record (no list of runs)")
        names = set(runs)
        files = [path / "runs" / run_name(dt, seed) / "metrics.csv"
                 for seed in range(1, len(names) + 1) if run_name(dt, seed) in names]
        files = [f for f in files if f.is_file()]
        if not files:
            raise SystemExit(f"compare_sweeps: sweep {source!r} has no run at dt = {dt} s")
        return files
    files = [Path(p) for p in source.split(",")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"compare_sweeps: no such metrics file: {', '.join(missing)}")
    return files


def accuracy_per_epoch(files: list[Path]) -> list[tuple[int, int, float, float]]:
    """(epoch, runs, mean %, std %) of the test accuracy over ``files``, per epoch."""
    acc = M.TEST_ACCURACY
    return [(r[M.EPOCH], r[N_SEEDS], 100 * r[mean_key(acc)], 100 * r[std_key(acc)])
            for r in epoch_stats(files, (acc,))]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sources", nargs="+", metavar="LABEL=SOURCE")
    p.add_argument("--dt", required=True, help="the time step of the runs (s)")
    p.add_argument("--out", required=True, help="the plot (.png)")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    try:
        (dt,) = check_dts([float(args.dt)])
    except ValueError as e:
        p.error(f"--dt {args.dt!r}: {e}")
    series = {}
    print("label,epoch,runs,mean_pct,std_pct")
    for item in args.sources:
        label, sep, source = item.partition("=")
        if not sep or not label or not source:
            p.error(f"source {item!r}: expected LABEL=SOURCE")
        try:
            rows = accuracy_per_epoch(metrics_files(source, dt))
        except ValueError as e:  # a metrics file that is not one, named
            raise SystemExit(f"compare_sweeps: {one_line(e)}") from None
        for epoch, n, mean, std in rows:
            print(f"{label},{epoch},{n},{mean:.2f},{std:.2f}")
        series[label] = ([r[0] for r in rows], [r[2] for r in rows], [r[3] for r in rows])
    title = args.title or f"test accuracy on the {dt * 1e3:g} ms grid"
    errorbar_plot(None, series, args.out, xlabel="epoch", ylabel="test accuracy (%)",
                  title=title, legend_outside=True)
    print(f"plot: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
