"""The time-step study: one training run per (dt, seed), then tables, plots and a report.

:func:`run_sweep` trains one model per (dt, seed) into ``OUT/runs/dt<ms>ms-seed<k>`` (each a
normal run directory), records the shared settings and the run directories it starts in
``OUT/sweep.json``, then writes ``sweep.csv`` (one row per finished run:
:data:`ROW_METRICS`, the per-layer metrics, the training time summed over epochs, epochs and
run directory), ``summary.csv`` (per dt the number of seeds and the mean and standard
deviation over seeds of every numeric column), ``epochs.csv`` (per dt and epoch the mean and
standard deviation over seeds of :data:`EPOCH_METRICS`), plots and ``report.md``.

Several runs train at once in worker processes: on the CPU sharing the cores, on GPUs one
or more per GPU, each process seeing only its GPU (:mod:`batsnn.experiments.scheduler`).
A run is the same whichever process or GPU trains it.

Rerunning a sweep continues it, with these guarantees: the settings must equal the stored
ones (otherwise it stops and lists the differences); a run counts as finished only when its
checkpoint's settings equal the requested ones and it has the epochs asked for; a stopped run
is continued only if this sweep started it (listed in ``sweep.json``, marked as a batsnn run,
its checkpoint loaded with ``weights_only=True``), and the output says which; any other
directory under ``OUT/runs`` is refused. Each run's ``metrics.csv`` and ``summary.json`` are
rewritten from its checkpoint before they are read, so the tables never show stale values.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
import numbers
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import batsnn
from batsnn import metrics as M
from batsnn.experiments.common import SettingsMismatch, check_size
from batsnn.experiments.config import (RESUME_FIELDS, TrainConfig, check_setting,
                                       config_from_dict, keep_earlier_settings,
                                       later_defaults, resolve_device, settings_difference,
                                       validate_config)
from batsnn.experiments.rundir import (MARKER, OutDirError, RunDir, atomic_write,
                                       load_run_checkpoint, make_subdir,
                                       dir_entries, hold_out_dir,
                                       read_csv, read_json, run_kind, write_csv, write_json)
from batsnn.experiments.scheduler import plan_slots, run_on_slots, set_threads
from batsnn.experiments.train import sync_run_files
from batsnn.fileio import describe_path, one_line, printable

__all__ = ["DT", "EPOCHS", "EPOCH_METRICS", "MAX_RUNS", "MAX_SEEDS", "N_SEEDS", "ROW_METRICS",
           "check_grid", "check_sweep_dir",
           "RUN_DIR", "SEED", "SWEEP_FILE", "SWEEP_SETTINGS", "SettingsMismatch", "check_dts",
           "epoch_rows", "epoch_stats", "mean_key", "read_metrics", "run_name", "run_sweep",
           "std_key", "summary_rows", "sweep_rows"]

#: sweep.csv columns besides the metrics
DT, SEED, EPOCHS, RUN_DIR = "dt", "seed", "epochs", "run_dir"
#: summary.csv column: seeds finished at that dt
N_SEEDS = "n_seeds"
#: the run summary's metrics copied into each sweep row (then the per-layer ones)
ROW_METRICS = (M.TEST_ACCURACY, M.BEST_TEST_ACCURACY, M.DECISION_TIME_MS, *M.LABEL_SHARE_KEYS,
               M.SILENT_LABELS_PCT, *M.READOUT_KEYS)
_LAYER_FAMILIES = (M.SILENT_NEURONS_PCT, M.SPIKES_PER_SAMPLE)
#: the per-epoch metrics that epochs.csv averages over seeds
EPOCH_METRICS = (M.TEST_ACCURACY, M.DECISION_TIME_MS, *M.READOUT_KEYS)
#: the sweep's own record: marker, shared settings, the run directories it started
SWEEP_FILE = "sweep.json"
#: settings every run of a sweep shares and a rerun must not change (``epochs`` may: runs
#: with fewer epochs are continued)
SWEEP_SETTINGS = tuple(k for k in RESUME_FIELDS if k not in ("dt", "seed"))
#: sweep settings added after sweep records were first written: a record without them
#: was made with their defaults
ADDED_SETTINGS = ("dt_mode", "dt_warmup_epochs", "dt_fine", "dataset_options",
                  "input_max_spikes", "input_t_start", "input_t_stop", "input_time_scale",
                  "input_dtype")
#: at most this many seeds per sweep
MAX_SEEDS = 10_000
#: at most this many (dt, seed) runs per sweep
MAX_RUNS = 100_000


def mean_key(key: str) -> str:
    """summary.csv column of the mean over seeds of ``key``."""
    return f"{key}_mean"


def std_key(key: str) -> str:
    """summary.csv column of the standard deviation over seeds (n - 1) of ``key``."""
    return f"{key}_std"


def run_name(dt: float, seed: int) -> str:
    """Directory name of the (dt, seed) run under ``OUT/runs``, e.g. ``dt4ms-seed2``."""
    return f"dt{dt * 1e3:g}ms-seed{seed}"


def _print(line: str) -> None:
    print(line, flush=True)


def _train_one(cfg: TrainConfig, threads: int, quiet: bool) -> dict:
    """Worker: train one (dt, seed) run, continuing the batsnn run in ``cfg.out`` if there is
    one (:func:`run_sweep` has checked that it is one this sweep started, with the same
    settings). Returns its summary."""
    set_threads(threads)
    from batsnn.experiments.train import train

    resume = run_kind(cfg.out) == "train"
    return train(cfg, resume=resume, quiet=True, log=(lambda *a: None) if quiet else print)


def check_dts(dts) -> list[float]:
    """The distinct time steps as floats (numpy scalars accepted), each finite and >= 0, no
    two of them sharing a run directory name."""
    values = []
    for d in dts:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, numbers.Real):
            raise ValueError(f"dt values must be numbers, got {d!r}")
        values.append(float(d))
    values = list(dict.fromkeys(values))
    if not values:
        raise ValueError("dts needs at least one value")
    if any(d < 0 or not math.isfinite(d) for d in values):
        raise ValueError(f"dt values must be finite and >= 0, got {values}")
    names: dict[str, float] = {}
    for d in values:
        name = run_name(d, 1).rsplit("-", 1)[0]
        other = names.setdefault(name, d)
        if other != d:
            raise ValueError(f"dt values {other!r} and {d!r} map to the same run directory "
                             f"name ({name}); give time steps that differ within 6 significant "
                             "digits (in ms)")
    return values


_check_dts = check_dts  # also under this name, for existing callers


def _sweep_settings(cfg: TrainConfig) -> dict:
    d = cfg.to_dict()
    return {k: d[k] for k in (*SWEEP_SETTINGS, "epochs")}


def _sweep_record(out: Path, base: TrainConfig, log: Callable[[str], Any]) -> dict:
    """The sweep's record (``sweep.json``): read and compared with ``base``, or a new one.
    A sweep recorded before one of :data:`~batsnn.experiments.config.LATER_SETTINGS`
    existed continues with the value its runs trained with: ``base`` is set so, in place,
    and ``log`` says it."""
    path = out / SWEEP_FILE
    want = _sweep_settings(base)
    if not path.is_file():
        if run_kind(out) is not None or (out / "runs").exists():
            raise OutDirError(f"{out} holds no {SWEEP_FILE}: it was not written by batsnn "
                              "sweep; choose another --out")
        return {MARKER: "sweep", "batsnn_version": batsnn.__version__, "settings": want,
                "runs": []}
    try:
        record = read_json(path)
    except (OSError, ValueError) as e:
        raise OutDirError(f"{path} cannot be read ({e})") from None
    if not (isinstance(record, dict) and record.get(MARKER) == "sweep"
            and isinstance(record.get("settings"), dict) and isinstance(record.get("runs"), list)
            and all(isinstance(r, str) for r in record["runs"])):
        raise OutDirError(f"{path} is not a batsnn sweep record")
    # settings that batsnn gained after the record was written had their defaults then
    stored = {**{k: getattr(TrainConfig(), k) for k in ADDED_SETTINGS}, **later_defaults(),
              **record["settings"]}
    kept = keep_earlier_settings(record["settings"], base)
    if kept:
        want = _sweep_settings(base)
        log(f"the sweep in {printable(out)} started before " + ", ".join(kept) + " existed: "
            "it continues with " + ", ".join(f"{k} {stored[k]!r}" for k in kept) + ", as its "
            "runs trained")
    diff = settings_difference(stored, want, SWEEP_SETTINGS)
    if diff:
        raise SettingsMismatch(f"{out} holds a sweep with other settings: " + ", ".join(diff)
                               + "; use the same settings to continue it, or another --out")
    record["batsnn_version"] = batsnn.__version__
    return record


def _refuse_strangers(runs_dir: Path, record: dict) -> None:
    """Refuse anything under ``OUT/runs`` that this sweep did not start (empty folders
    aside)."""
    for p in sorted(runs_dir.iterdir()):
        if p.name in record["runs"] and p.is_dir() and not p.is_symlink():
            continue
        if p.is_dir() and not p.is_symlink() and not dir_entries(p):
            continue
        raise OutDirError(f"{p} was not started by this sweep (not listed in "
                          f"{runs_dir.parent / SWEEP_FILE}); move it away or choose another "
                          "--out")


def _run_status(run: RunDir, cfg: TrainConfig, record: dict) -> str:
    """``new`` (nothing there), ``started`` (this sweep's run, no epoch completed),
    ``stopped`` (this sweep's run with fewer epochs than ``cfg.epochs``) or ``finished``.
    A run with a checkpoint has its settings compared with ``cfg`` and its ``metrics.csv``
    and ``summary.json`` rewritten from the checkpoint."""
    if not run.path.is_dir() or not dir_entries(run.path):
        return "new"
    if run_kind(run.path) != "train":
        raise OutDirError(f"{run.path} holds files but is not a batsnn training run; move it "
                          "away or choose another --out")
    if not run.has_checkpoint():
        return "started"
    ck = load_run_checkpoint(run.last)
    try:
        stored = config_from_dict(ck["config"]).to_dict()
    except (ValueError, TypeError) as e:
        raise SettingsMismatch(f"{run.last} holds invalid settings: {e}") from None
    diff = settings_difference(stored, cfg.to_dict())
    if diff:
        raise SettingsMismatch(f"{run.path} was trained with other settings: "
                               + ", ".join(diff) + "; use the same settings or another --out")
    sync_run_files(run, ck)
    return "finished" if ck["epoch"] >= cfg.epochs else "stopped"


def sweep_rows(out: str | os.PathLike, dts: Sequence[float], seeds: Sequence[int]) -> list[dict]:
    """One row per finished (dt, seed) run under ``out/runs``, read from its ``summary.json``
    and ``metrics.csv``; unstarted runs are left out. Order: by dt, then seed, as given.

    Raises:
        ValueError: a run's ``summary.json`` or ``metrics.csv`` cannot be read or is not
            batsnn's (the message names the file).
    """
    rows = []
    for dt in dts:
        for seed in seeds:
            run = RunDir(Path(out) / "runs" / run_name(dt, seed))
            if not run.summary.is_file():
                continue
            row = {DT: dt, SEED: seed, **_summary_metrics(run.summary)}
            row[M.TRAIN_SECONDS] = sum(r[M.TRAIN_SECONDS]
                                       for r in read_metrics(run.metrics, [M.TRAIN_SECONDS]))
            row[RUN_DIR] = str(run.path)
            rows.append(row)
    return rows


def _number_or_none(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _summary_metrics(path: Path) -> dict:
    """The sweep row's metrics from a run's ``summary.json`` (:data:`ROW_METRICS`, the
    per-layer ones, then ``epochs``); ``ValueError`` naming the file if it is not one."""
    try:
        s = read_json(path)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{printable(path)} cannot be read ({one_line(e)})") from None
    if not isinstance(s, dict):
        raise ValueError(f"{printable(path)} is not a batsnn run summary (not a JSON object)")
    row = {k: s.get(k) for k in ROW_METRICS}
    for family in _LAYER_FAMILIES:
        for k in M.layer_keys(s, family):
            row[k] = s[k]
    row[EPOCHS] = s.get(M.EPOCHS_COMPLETED)
    bad = [k for k, v in row.items() if not _number_or_none(v)]
    if bad or not (row[EPOCHS] is None or isinstance(row[EPOCHS], int)):
        key = bad[0] if bad else M.EPOCHS_COMPLETED
        raise ValueError(f"{printable(path)} is not a batsnn run summary ({printable(key)} is "
                         f"{printable(repr(s.get(key)), 60)}, not a number)")
    return row


def read_metrics(path: str | os.PathLike, keys: Sequence[str]) -> list[dict]:
    """The rows of a run's ``metrics.csv``: each row's ``epoch`` as an int and ``keys`` as
    floats (NaN where empty or where the column is absent: files written before it).

    Raises:
        ValueError: ``path`` is not a regular file, cannot be read, or has a row without an
            ``epoch`` or with a value that is not a number (the message names the file and
            the line).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{printable(path)} {describe_path(path)}, expected a run's "
                         "metrics.csv")
    try:
        rows = read_csv(path)
    except (OSError, ValueError, csv.Error) as e:
        raise ValueError(f"{printable(path)} cannot be read as CSV ({one_line(e)[:160]})") \
            from None
    out = []
    for i, r in enumerate(rows, start=2):
        row = dict(r)
        try:
            row[M.EPOCH] = int(r[M.EPOCH])
            for k in keys:
                v = r.get(k)
                row[k] = math.nan if v in (None, "") else float(v)
        except (KeyError, TypeError, ValueError) as e:
            what = (f"no column {printable(e.args[0], 60)}" if isinstance(e, KeyError)
                    else one_line(e)[:120])
            raise ValueError(f"{printable(path)} is not a batsnn metrics file (line {i}: "
                             f"{what})") from None
        out.append(row)
    return out


def epoch_rows(out: str | os.PathLike, dts: Sequence[float],
               seeds: Sequence[int]) -> list[dict]:
    """Per dt and epoch: ``dt``, ``epoch``, ``n_seeds`` (the runs that completed that epoch)
    and the mean and standard deviation over those runs of :data:`EPOCH_METRICS`, read from
    the ``metrics.csv`` of every started (dt, seed) run under ``out/runs``, stopped ones
    included. Order: by dt as given, then epoch."""
    rows = []
    for dt in dts:
        files = [RunDir(Path(out) / "runs" / run_name(dt, seed)).metrics for seed in seeds]
        rows += [{DT: dt, **r} for r in epoch_stats([f for f in files if f.is_file()])]
    return rows


def epoch_stats(metrics_files: Sequence[str | os.PathLike],
                keys: Sequence[str] = EPOCH_METRICS) -> list[dict]:
    """Per epoch (in order) over the runs whose ``metrics.csv`` files are given: ``epoch``,
    ``n_seeds`` (the runs that completed that epoch) and the mean and sample standard
    deviation of each of ``keys`` over those runs (std 0 for one run)."""
    per_epoch: dict[int, list[dict]] = {}
    for f in metrics_files:
        for r in read_metrics(f, keys):
            per_epoch.setdefault(r[M.EPOCH], []).append(r)
    rows = []
    for epoch in sorted(per_epoch):
        sel = per_epoch[epoch]
        row = {M.EPOCH: epoch, N_SEEDS: len(sel)}
        for k in keys:
            row[mean_key(k)], row[std_key(k)] = _mean_std([r.get(k) for r in sel])
        rows.append(row)
    return rows


def _mean_std(values) -> tuple[float, float]:
    vals = [float(v) for v in values if v not in (None, "") and not (isinstance(v, float)
                                                                      and math.isnan(v))]
    if not vals:
        return math.nan, math.nan
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd


def summary_rows(rows: list[dict], dts: Sequence[float]) -> list[dict]:
    """Per dt (in the order of ``dts``, those with rows only): ``dt``, ``n_seeds`` and, for
    every metric column of ``rows``, its mean and sample standard deviation over seeds (NaN
    and missing values left out; std 0 for one seed)."""
    keys = [k for k in rows[0] if k not in (DT, SEED, RUN_DIR, EPOCHS)] if rows else []
    out = []
    for dt in dts:
        sel = [r for r in rows if r[DT] == dt]
        if not sel:
            continue
        s = {DT: dt, N_SEEDS: len(sel)}
        for k in keys:
            s[mean_key(k)], s[std_key(k)] = _mean_std([r.get(k) for r in sel])
        out.append(s)
    return out


def _plan_line(n_dts: int, n_seeds: int, finished_already: int, todo: list, resumed: list,
               plan) -> str:
    """The sweep's first progress line: runs finished already, to train, and continued."""
    line = (f"sweep: {n_dts} dt x {n_seeds} seeds, {finished_already} finished already, "
            f"{len(todo)} to train with {plan.description}")
    if resumed:
        line += (f"; {len(resumed)} of them continue stopped runs that this sweep started "
                 f"(listed in {SWEEP_FILE}): {', '.join(resumed)}")
    return line


def run_sweep(base: TrainConfig, dts: Sequence[float], seeds: Sequence[int],
              out: str | os.PathLike, *, jobs: int = 0, report_only: bool = False,
              quiet: bool = False, command: str | None = None,
              log: Callable[[str], Any] = _print, gpus: Sequence[int] | None = None,
              jobs_per_gpu: int | None = None) -> list[dict]:
    """Train one run per (dt, seed) with the settings of ``base`` and write the tables, plots
    and report (see the module docstring).

    Args:
        base: the settings shared by every run (its ``dt``, ``seed`` and ``out`` are replaced).
        dts: time steps in seconds (>= 0; 0 is exact time); duplicates are dropped.
        seeds: seeds (ints); duplicates are dropped.
        out: the sweep directory.
        jobs: trainings at once (0: one per CPU core on a CPU; on GPUs ``jobs_per_gpu`` per
            GPU, a positive value is the total); several run in separate processes.
        report_only: train nothing (and need no device: ``base.device``, ``gpus`` and the
            jobs are not checked); rebuild the tables, plots and report from the runs'
            results, also of runs whose checkpoints were removed.
        quiet: no per-epoch output from the trainings (in one process).
        command: the command line to name in the report (default: this function).
        log: where progress lines go.
        gpus: on GPUs, the indices of those to use (default: the one ``base.device`` names,
            else every visible GPU); each run's process sees only its GPU
            (:mod:`batsnn.experiments.scheduler`).
        jobs_per_gpu: trainings at once per GPU (default 1).

    Returns:
        the rows of ``sweep.csv``.

    Raises:
        ValueError: bad ``dts`` (negative, not finite, two mapping to the same run
            directory), ``seeds`` or ``jobs``, more than :data:`MAX_RUNS` runs, no sweep in
            ``out`` with ``report_only`` (:func:`check_sweep_dir`: nothing is created), or a
            run's ``summary.json`` or ``metrics.csv`` that cannot be read (the message names
            it).
        SettingsMismatch: ``out`` holds a sweep, or a run, with other settings (the message
            lists the differences).
        batsnn.experiments.rundir.OutDirError: ``out`` is unusable or holds files this sweep
            did not write.
        batsnn.experiments.rundir.CheckpointError: a run's checkpoint is corrupt or not
            batsnn's.
    """
    dts, seeds = check_grid(dts, seeds)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0:
        raise ValueError(f"jobs must be an int >= 0, got {jobs!r}")
    if report_only:
        check_sweep_dir(out)
    base = validate_config(dataclasses.replace(base, network=[dict(s) for s in base.network]))
    out = Path(out)
    # a report trains nothing, so it needs no device: one made on a machine without the GPU
    # the runs trained on reads them as well
    plan = None if report_only else plan_slots(
        resolve_device(base.device), jobs=jobs, gpus=gpus, jobs_per_gpu=jobs_per_gpu,
        base_device=base.device)

    # the sweep directory: new, empty, or a sweep with the same settings; one writer
    with hold_out_dir(out, "sweep", resume=True):
        record = _sweep_record(out, base, log)
        runs_dir = make_subdir(out, "runs")
        _refuse_strangers(runs_dir, record)
        todo, resumed, finished_already = _runs_to_train(runs_dir, base, dts, seeds, record, plan)
        if not report_only:  # recorded before training: a run is continued only if listed here
            record["runs"] = sorted(set(record["runs"]) | {Path(c.out).name for c in todo})
            record["settings"]["epochs"] = base.epochs
        write_json(out / SWEEP_FILE, record)
        t0 = time.perf_counter()
        if plan is not None:
            log(_plan_line(len(dts), len(seeds), finished_already, todo, resumed, plan))
            _train_runs(todo, plan, quiet, log)
        rows = sweep_rows(out, dts, seeds)
        if plan is None:
            log(f"sweep --report-only: {len(rows)} of {len(dts) * len(seeds)} (dt, seed) runs "
                f"have results ({finished_already} with a final checkpoint); nothing is trained")
        _write_results(out, base, rows, dts, seeds, time.perf_counter() - t0,
                       command or "batsnn.experiments.sweep.run_sweep")
        log(f"sweep results in {printable(out)} (sweep.csv, summary.csv, report.md, plots)")
        return rows


def check_sweep_dir(out: str | os.PathLike, what: str = "out") -> Path:
    """``out`` as a :class:`~pathlib.Path` if it is a directory holding a sweep (its
    :data:`SWEEP_FILE` a regular file), as a report of the finished runs needs; a
    ``ValueError`` naming ``what`` and the path (and what is there) otherwise. Nothing is
    created."""
    out = Path(out)
    record = out / SWEEP_FILE
    if not out.is_dir() or os.path.islink(record) or not record.is_file():
        where = (f"{printable(out)} {describe_path(out)}" if not out.is_dir()
                 else f"{printable(record)} {describe_path(record)}")
        raise ValueError(f"no sweep in {what} {printable(out)} ({where}): a report is made "
                         "from the runs of a sweep that was started there")
    return out


def check_grid(dts, seeds) -> tuple[list[float], list[int]]:
    """The distinct time steps (:func:`check_dts`) and seeds, checked, at most
    :data:`MAX_RUNS` runs in all."""
    dts = check_dts(dts)
    seeds = list(dict.fromkeys(seeds))
    if not seeds or len(seeds) > MAX_SEEDS or any(
            isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of ints (at most {MAX_SEEDS}), got "
                         f"{seeds if len(seeds) <= 20 else f'{len(seeds)} seeds'}")
    for seed in seeds:
        check_setting("seed", seed)
    check_size("(dt, seed) runs", {"dt values": len(dts), "seeds": len(seeds)}, MAX_RUNS)
    return dts, seeds


def _runs_to_train(runs_dir: Path, base: TrainConfig, dts, seeds, record: dict,
                   plan) -> tuple[list[TrainConfig], list[str], int]:
    """Each (dt, seed) run's status: the configs of the runs to train (none with
    ``plan=None``, a report), the names of the stopped ones among them, and the number of
    runs finished already."""
    todo, resumed, finished_already = [], [], 0
    for dt in dts:
        for seed in seeds:
            run = RunDir(runs_dir / run_name(dt, seed))
            cfg = validate_config(dataclasses.replace(
                base, network=[dict(s) for s in base.network], dt=dt, seed=seed,
                out=str(run.path), device=plan.device if plan else base.device))
            status = _run_status(run, cfg, record)
            if status == "finished":
                finished_already += 1
            elif plan is not None:
                todo.append(cfg)
                if status == "stopped":
                    resumed.append(run.path.name)
    return todo, resumed, finished_already


def _train_runs(todo: list[TrainConfig], plan, quiet: bool, log) -> None:
    """Train the runs ``todo`` on the slots of ``plan``, one line each when it is done."""
    def finished(cfg, s, slot=None):
        log(f"  dt {cfg.dt or 0:g} s seed {cfg.seed}: test accuracy "
            f"{100 * s[M.TEST_ACCURACY]:.2f}%"
            + (f" (GPU {slot.gpu})" if slot is not None and slot.gpu is not None else ""))

    if plan.in_process:
        for cfg in todo:
            finished(cfg, _train_one(cfg, plan.threads, quiet))
    elif todo:  # one worker process per slot, each on its GPU (or its share of the cores)
        run_on_slots(functools.partial(_train_one, threads=plan.threads, quiet=True), todo,
                     plan.slots, on_done=finished)


def _write_results(out: Path, base: TrainConfig, rows: list[dict], dts, seeds,
                   seconds: float, command: str) -> None:
    """``sweep.csv``, ``summary.csv``, ``epochs.csv``, the plots and ``report.md``."""
    write_csv(out / "sweep.csv", rows)
    summary = summary_rows(rows, dts)
    write_csv(out / "summary.csv", summary)
    per_epoch = epoch_rows(out, dts, seeds)
    write_csv(out / "epochs.csv", per_epoch)
    _plots(out, summary, per_epoch)
    report = _report(base, summary, rows, per_epoch, dts, seeds, seconds, command)
    atomic_write(out / "report.md", report.encode())


def _plots(out: Path, summary: list[dict], per_epoch: list[dict]) -> None:
    from batsnn.experiments import plots

    if per_epoch:
        acc = mean_key(M.TEST_ACCURACY), std_key(M.TEST_ACCURACY)
        curves = {}
        for dt in dict.fromkeys(r[DT] for r in per_epoch):
            sel = [r for r in per_epoch if r[DT] == dt]
            curves[f"dt {1e3 * dt:g} ms"] = ([r[M.EPOCH] for r in sel],
                                             [100 * r[acc[0]] for r in sel],
                                             [100 * r[acc[1]] for r in sel])
        plots.errorbar_plot(None, curves, out / "accuracy_per_epoch.png", xlabel="epoch",
                            ylabel="test accuracy (%)", title="test accuracy per epoch")
    if not summary:
        return
    xs = [1e3 * s[DT] for s in summary]

    def col(k, scale=1.0):
        return ([scale * s[mean_key(k)] for s in summary],
                [scale * s[std_key(k)] for s in summary])

    plots.errorbar_plot(xs, {"test accuracy": col(M.TEST_ACCURACY, 100)},
                        out / "accuracy_vs_dt.png", xlabel="dt (ms)",
                        ylabel="test accuracy (%)", title="accuracy against time step")
    layers = M.layer_keys([k[:-len("_mean")] for k in summary[0] if k.endswith("_mean")],
                          M.SPIKES_PER_SAMPLE)
    plots.errorbar_plot(xs, {f"layer {M.layer_of(k)}": col(k) for k in layers},
                        out / "spikes_vs_dt.png", xlabel="dt (ms)", ylabel="spikes per sample",
                        title="sparsity against time step", logy=True)
    plots.errorbar_plot(xs, {"decision time": col(M.DECISION_TIME_MS)},
                        out / "latency_vs_dt.png", xlabel="dt (ms)", ylabel="ms",
                        title="mean decision time against time step")
    share = {f"by {ms} ms": col(M.label_share_key(ms), 100) for ms in M.LATENCY_MS}
    plots.errorbar_plot(xs, share, out / "label_spikes_vs_dt.png", xlabel="dt (ms)",
                        ylabel="% of target label spikes", title="label-neuron evidence by time")
    readout = {f"read at {ms} ms": col(M.readout_accuracy_key(ms), 100) for ms in M.READOUT_MS}
    plots.errorbar_plot(xs, readout, out / "readout_vs_dt.png", xlabel="dt (ms)",
                        ylabel="test accuracy (%)", title="accuracy when the output is read early")


def _fmt(m, s, scale=1.0, digits=2) -> str:
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "-"
    return f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"


def _epochs_done(rows: list[dict]) -> str:
    done = [r[EPOCHS] for r in rows]
    if not done:
        return "0"
    return str(min(done)) if min(done) == max(done) else f"{min(done)} to {max(done)}"


def _epoch_table(per_epoch: list[dict], n_seeds: int) -> list[str]:
    """Test accuracy (%) per dt (rows) and epoch (columns), mean over seeds; a cell averaged
    over fewer than ``n_seeds`` runs shows how many in brackets."""
    if not per_epoch:
        return []
    epochs = sorted({r[M.EPOCH] for r in per_epoch})
    cells = {(r[DT], r[M.EPOCH]): r for r in per_epoch}
    lines = ["Test accuracy (%) per epoch, mean over seeds (in brackets: the number of runs "
             "averaged, where fewer than all seeds reached the epoch):", "",
             "| dt (ms) | " + " | ".join(map(str, epochs)) + " |",
             "|---" * (1 + len(epochs)) + "|"]
    for dt in dict.fromkeys(r[DT] for r in per_epoch):
        row = []
        for e in epochs:
            c = cells.get((dt, e))
            row.append("-" if c is None else f"{100 * c[mean_key(M.TEST_ACCURACY)]:.2f}"
                       + (f" ({c[N_SEEDS]})" if c[N_SEEDS] < n_seeds else ""))
        lines.append(f"| {1e3 * dt:g} | " + " | ".join(row) + " |")
    return lines + ["", "![accuracy per epoch](accuracy_per_epoch.png)", ""]


def _report(cfg: TrainConfig, summary, rows, per_epoch, dts, seeds, seconds: float,
            command: str) -> str:
    layers = M.layer_keys([k[:-len("_mean")] for k in (summary[0] if summary else {})
                           if k.endswith("_mean")], M.SPIKES_PER_SAMPLE)
    share50 = M.label_share_key(50)
    lines = [
        f"# Time-step sweep: {cfg.preset or 'custom'} on {cfg.dataset}", "",
        f"Produced by `{command}` with batsnn {batsnn.__version__}.", "",
        f"{len(dts)} time steps x {len(seeds)} seeds (seeds {', '.join(map(str, seeds))}, the "
        f"same initial weights and data order for every dt); {cfg.epochs} epochs set, "
        f"{_epochs_done(rows)} completed per run; "
        f"train samples: {cfg.train_samples or 'all'}, test samples: "
        f"{cfg.test_samples or 'all'}. Mean ± standard deviation over seeds.", "",
        "| dt (ms) | test accuracy (%) | " + " | ".join(
            f"spikes/sample l{M.layer_of(k)}" for k in layers)
        + " | decision time (ms) | label spikes by 50 ms (%) | " + " | ".join(
            f"acc. read at {ms} ms (%)" for ms in M.READOUT_MS) + " | train s |",
        "|---" * (5 + len(layers) + len(M.READOUT_MS)) + "|",
    ]
    for s in summary:
        lines.append(
            f"| {1e3 * s[DT]:g} | "
            + _fmt(s[mean_key(M.TEST_ACCURACY)], s[std_key(M.TEST_ACCURACY)], 100)
            + " | " + " | ".join(_fmt(s[mean_key(k)], s[std_key(k)], 1, 1) for k in layers)
            + " | " + _fmt(s[mean_key(M.DECISION_TIME_MS)], s[std_key(M.DECISION_TIME_MS)], 1, 1)
            + " | " + _fmt(s[mean_key(share50)], s[std_key(share50)], 100, 1)
            + "".join(" | " + _fmt(s.get(mean_key(k)), s.get(std_key(k)), 100, 1)
                      for k in M.READOUT_KEYS)
            + f" | {s[mean_key(M.TRAIN_SECONDS)]:.0f} |")
    lines += ["", "![accuracy](accuracy_vs_dt.png)", "", "![spikes](spikes_vs_dt.png)", "",
              "![latency](latency_vs_dt.png)", "", "![label spikes](label_spikes_vs_dt.png)", "",
              "![read-out](readout_vs_dt.png)", ""]
    lines += _epoch_table(per_epoch, len(seeds))
    lines += [f"Total wall time of this invocation: {seconds:.0f} s.", ""]
    return "\n".join(lines)
