"""The convergence experiment (model.md section 5): single-spike against multi-spike training
from a grid of weight initialisations.

Two samples of four inputs, one spike each (sample 0 at ``(0, 0, 1, 2)`` s, label 0; sample
1 at ``(0, 0, 2, 1)`` s, label 1), one LIF layer of 4 inputs and 2 outputs (``tau_s`` 1 s,
``theta`` 1, ``delta_theta = theta``, ``t_max`` 10 s). Two variants:

* ``multi``: up to 10 spikes per neuron, spike-count loss with targets 10 (label neuron) and
  0 (the other), prediction by the most spikes;
* ``single``: one spike per neuron, TTFS softmax cross-entropy (``tau_loss`` 0.1 s),
  prediction by the earliest spike.

Each network starts from weights drawn from ``N(mean, std)`` and is trained for ``epochs``
epochs of full-batch plain gradient descent (``torch.optim.SGD``, lr 0.1, the gradient
averaged over the two samples). The accuracy is measured on the weights before each update
and once after the last one (``epochs + 1`` measurements, the initial weights included); a
run's score is its best accuracy over these, and it *converges* when that is 100%.

All networks of a chunk of grid cells are trained together as one wide layer (see
:func:`train_grouped`): each network's loss only depends on its own two output neurons, so
the gradient of the summed loss with respect to its rows is its own gradient, and plain SGD
on the stacked weight equals plain SGD on each network.

A run directory holds ``parts/part-NNNNN.json`` (one per finished chunk: the settings that
determine its result, and each cell's per-run outcomes), and, once every cell is done,
``convergence.csv``, the heat maps ``convergence_multi.png``, ``convergence_single.png``,
``convergence_difference.png`` and ``convergence_grid.png`` (the three side by side),
``report.md`` and ``config.json`` (written first, marking the directory as a batsnn
convergence run). Running the same command again continues a stopped run (finished cells
are skipped); finished parts made with other settings, malformed part files and directories
holding other files are refused.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

import batsnn
from batsnn.encoding import discretize
from batsnn.functional import lif_linear
from batsnn.losses import count_predict, spike_count_class_loss, ttfs_cross_entropy, ttfs_predict
from batsnn.experiments.config import resolve_device
from batsnn.experiments.rundir import (MARKER, atomic_write, make_subdir, prepare_out,
                                       write_csv, write_json)
from batsnn.params import LIFParams

__all__ = ["CSV_COLUMNS", "ConvergenceConfig", "ConvergenceResults", "GroupedRun",
           "SettingsMismatch", "VARIANTS", "add_parser", "cell_generator", "experiment_data",
           "initial_weights", "main", "parse_grid", "run_convergence", "train_grouped",
           "variant_loss", "variant_predict"]

VARIANTS = ("multi", "single")
"""The two trainings: ``multi`` (spike counts, up to ``max_spikes`` spikes per neuron) and
``single`` (TTFS cross-entropy, one spike per neuron)."""

INPUT_TIMES = ((0.0, 0.0, 1.0, 2.0), (0.0, 0.0, 2.0, 1.0))
"""Spike time (s) of each of the 4 inputs, per sample."""
LABELS = (0, 1)

CSV_COLUMNS = ("variant", "mean", "std", "mean_best_accuracy", "share_converged", "repeats",
               "mean_initial_accuracy", "share_converged_at_init", "mean_final_accuracy",
               "share_silent_init", "share_silent_final", "share_blind_final",
               "share_diverged")
"""Columns of ``convergence.csv``, one row per (variant, mean, std) cell:

* ``mean_best_accuracy``: mean over the runs of the best accuracy over the ``epochs + 1``
  measurements (0 to 1);
* ``share_converged``: share of runs whose best accuracy is 100%;
* ``repeats``: runs in the cell;
* ``mean_initial_accuracy``, ``share_converged_at_init``: the same before any update;
* ``mean_final_accuracy``: mean accuracy after the last update;
* ``share_silent_init``, ``share_silent_final``: share of runs with an output neuron that
  emits no spike on either sample, before any update and after the last one (such a neuron
  gets no gradient from either loss);
* ``share_blind_final``: share of runs with an output neuron whose spike train is the same
  on both samples after the last update (silent neurons included: such a neuron cannot tell
  the samples apart);
* ``share_diverged``: share of runs whose weights became NaN or infinite (their accuracy
  counts as 0 from then on; see :func:`train_grouped`)."""

_FORMAT = 1
_HEADLINE_LEVEL = 0.9


@dataclass
class ConvergenceConfig:
    """Settings of the convergence experiment (times in seconds).

    Attributes:
        means, stds: the grid of initial weight distributions ``N(mean, std)``.
        repeats: networks trained per cell and variant.
        epochs: full-batch gradient steps per network.
        lr: SGD learning rate.
        seed: base seed; each cell's weights come from :func:`cell_generator`.
        dt: time step (``None`` or 0: exact continuous time). With ``dt > 0`` the inputs are
            moved to the grid with :func:`batsnn.discretize` and the layer runs with ``dt``.
        device: ``cpu``, ``cuda`` or ``auto``.
        variants: which of :data:`VARIANTS` to run.
        chunk_cells: grid cells trained together (one wide layer, one part file); does not
            change the result.
        tau_s, theta, t_max: the neuron (``delta_theta = theta``).
        max_spikes: spikes per neuron of the ``multi`` variant (``single`` has 1).
        target_true, target_false: spike-count targets of the ``multi`` loss.
        tau_loss: temperature of the ``single`` variant's TTFS cross-entropy.
        dtype: ``float64`` or ``float32``.
    """

    means: tuple = field(default_factory=lambda: tuple(parse_grid("0:2.5:0.2")))
    stds: tuple = field(default_factory=lambda: tuple(parse_grid("0:2.5:0.2")))
    repeats: int = 100
    epochs: int = 50
    lr: float = 0.1
    seed: int = 0
    dt: float | None = None
    device: str = "cpu"
    variants: tuple = VARIANTS
    chunk_cells: int = 13
    tau_s: float = 1.0
    theta: float = 1.0
    t_max: float = 10.0
    max_spikes: int = 10
    target_true: float = 10.0
    target_false: float = 0.0
    tau_loss: float = 0.1
    dtype: str = "float64"

    def __post_init__(self):
        self.means = tuple(_grid_values("means", self.means))
        self.stds = tuple(_grid_values("stds", self.stds))
        if any(s < 0 for s in self.stds):
            raise ValueError(f"stds must be >= 0, got {list(self.stds)}")
        for name in ("repeats", "epochs", "seed", "chunk_cells", "max_spikes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int, got {v!r}")
        for name, low in (("repeats", 1), ("epochs", 0), ("chunk_cells", 1), ("max_spikes", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not (isinstance(self.tau_loss, (int, float)) and self.tau_loss > 0):
            raise ValueError(f"tau_loss must be > 0, got {self.tau_loss!r}")
        if self.dt == 0:
            self.dt = None
        if self.dt is not None and not (isinstance(self.dt, (int, float))
                                        and math.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"dt must be a finite number >= 0 or None, got {self.dt!r}")
        self.variants = tuple(self.variants)
        if not self.variants or any(v not in VARIANTS for v in self.variants) \
                or len(set(self.variants)) != len(self.variants):
            raise ValueError(f"variants must be distinct names among {VARIANTS}, got "
                             f"{self.variants!r}")
        if self.dtype not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32', got {self.dtype!r}")
        self.params("multi")  # validates tau_s, theta, t_max, dt

    def params(self, variant: str) -> LIFParams:
        """The layer's parameters for ``variant`` (``max_spikes`` 1 for ``single``)."""
        k = self.max_spikes if variant == "multi" else 1
        return LIFParams(tau_s=self.tau_s, theta=self.theta, max_spikes=k, t_max=self.t_max,
                         dt=self.dt)

    def settings(self) -> dict:
        """The settings a cell's result depends on (not the grid, the variants or the
        chunking), as stored in each part file and compared on resume."""
        skip = {"means", "stds", "variants", "chunk_cells"}
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        d["dt"] = d["dt"] or 0.0
        d["format"] = _FORMAT
        return d


class SettingsMismatch(ValueError):
    """The run directory holds finished parts made with other settings."""


# ----------------------------------------------------------------------------- grid and data

def parse_grid(text: str) -> list[float]:
    """Grid values from ``"start:stop:step"`` (``stop`` excluded, as ``numpy.arange``) or a
    comma-separated list; values are rounded to 10 decimals (``0:2.5:0.2`` gives 0.0, 0.2,
    ..., 2.4)."""
    if not isinstance(text, str):
        raise TypeError(f"grid must be a string, got {type(text).__name__}")
    try:
        if ":" in text:
            parts = [float(v) for v in text.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if not (all(math.isfinite(v) for v in parts) and step > 0 and stop > start):
                raise ValueError
            n = math.ceil((stop - start) / step - 1e-9)
            return [round(start + i * step, 10) + 0.0 for i in range(n)]
        values = [round(float(v), 10) + 0.0 for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"grid must be 'start:stop:step' (step > 0, stop > start) or a "
                         f"comma-separated list of numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"grid must hold at least one finite number, got {text!r}")
    return values


def _grid_values(name, values) -> list[float]:
    if isinstance(values, str):
        return parse_grid(values)
    try:
        out = [round(float(v), 10) + 0.0 for v in values]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}") from None
    if not out or not all(math.isfinite(v) for v in out) or len(set(out)) != len(out):
        raise ValueError(f"{name} must be distinct finite numbers, got {values!r}")
    return out


def experiment_data(dt: float | None = None, dtype=torch.float64, device="cpu"):
    """The two samples: ``(inputs (2, 4, 1) spike times in s, labels (2,) int64)``; with
    ``dt`` the times are moved to the grid by :func:`batsnn.discretize`."""
    x = torch.tensor(INPUT_TIMES, dtype=torch.float64).unsqueeze(-1)
    x = discretize(x, dt).to(dtype=dtype, device=device)
    return x, torch.tensor(LABELS, dtype=torch.int64, device=device)


def cell_generator(seed: int, variant: str, mean: float, std: float) -> torch.Generator:
    """A CPU generator seeded from ``(seed, variant, mean, std)`` only, so a cell's weights do
    not depend on the grid, the chunking or the order of work."""
    key = f"batsnn-convergence:{int(seed)}:{variant}:{float(mean):.10g}:{float(std):.10g}"
    digest = hashlib.sha256(key.encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def initial_weights(seed: int, variant: str, mean: float, std: float, repeats: int,
                    dtype=torch.float64) -> torch.Tensor:
    """``(repeats, 2, 4)`` initial weights of a cell, drawn from ``N(mean, std)``."""
    g = cell_generator(seed, variant, mean, std)
    z = torch.randn((repeats, 2, len(INPUT_TIMES[0])), generator=g, dtype=torch.float64)
    return (mean + std * z).to(dtype)


# ----------------------------------------------------------------------------- training

class GroupedRun(NamedTuple):
    """Outcome of :func:`train_grouped` for ``n`` networks.

    Attributes:
        accuracy: ``(n, epochs + 1)`` accuracy (0 to 1) on the weights before each update
            and after the last one.
        weights: ``(n, C, N_in)`` final weights (zeros for diverged networks).
        diverged: ``(n,)`` bool, whether the weights became NaN or infinite.
        counts_initial, counts_final: ``(B, n, C)`` output spike counts before any update
            and after the last one.
        times_final: ``(B, n, C, K)`` output spike times after the last update.
    """

    accuracy: torch.Tensor
    weights: torch.Tensor
    diverged: torch.Tensor
    counts_initial: torch.Tensor
    counts_final: torch.Tensor
    times_final: torch.Tensor


def variant_loss(variant: str, times: torch.Tensor, counts: torch.Tensor, labels: torch.Tensor,
                 cfg: ConvergenceConfig, *, reduction: str = "mean") -> torch.Tensor:
    """The training loss of ``variant`` on outputs ``times (B, C, K)``, ``counts (B, C)``."""
    if variant == "multi":
        return spike_count_class_loss(times, counts, labels, target_true=cfg.target_true,
                                      target_false=cfg.target_false, reduction=reduction)
    return ttfs_cross_entropy(times, labels, tau_loss=cfg.tau_loss, reduction=reduction)


def variant_predict(variant: str, times: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``(B,)`` predicted classes: most spikes (``multi``) or earliest spike (``single``)."""
    return count_predict(counts) if variant == "multi" else ttfs_predict(times)


def train_grouped(weights: torch.Tensor, variant: str, cfg: ConvergenceConfig,
                  inputs: torch.Tensor | None = None,
                  labels: torch.Tensor | None = None) -> GroupedRun:
    """Train ``n`` independent one-layer networks together as one wide layer.

    The stacked weight ``(n * C, N_in)`` runs through :func:`batsnn.lif_linear` on the shared
    inputs; the outputs ``(B, n * C, K)`` are grouped per network ``(B, n, C, K)`` and the
    loss is the sum over networks of each network's loss averaged over the ``B`` samples,
    so the gradient of each network's rows is that network's own gradient, and
    ``torch.optim.SGD`` (lr ``cfg.lr``) on the stacked weight steps each network as if it
    were trained alone. A network whose weights become NaN or infinite after a step is
    marked diverged: its weights are set to 0 (a silent network, no gradient) and its
    accuracy counts as 0 from that measurement on.

    Args:
        weights: ``(n, C, N_in)`` initial weights (not modified).
        variant: ``"multi"`` or ``"single"``.
        cfg: the loss, neuron and optimiser settings (``epochs``, ``lr``, ``dt``, ...).
        inputs: ``(B, N_in, S)`` spike times in s (default: :func:`experiment_data`).
        labels: ``(B,)`` int labels in ``[0, C)`` (default: :func:`experiment_data`).

    Returns:
        :class:`GroupedRun` with ``accuracy (n, epochs + 1)``, the final weights and the
        diverged mask.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if not isinstance(weights, torch.Tensor) or weights.dim() != 3:
        raise ValueError(f"weights must be a (n, C, N_in) tensor, got "
                         f"{getattr(weights, 'shape', type(weights).__name__)}")
    if inputs is None or labels is None:
        x, y = experiment_data(cfg.dt, weights.dtype, weights.device)
        inputs = x if inputs is None else inputs
        labels = y if labels is None else labels
    n, c, n_in = weights.shape
    b = inputs.shape[0]
    params = cfg.params(variant)
    k = params.max_spikes
    w = weights.detach().reshape(n * c, n_in).clone().requires_grad_(True)
    opt = torch.optim.SGD([w], lr=cfg.lr)
    rows_labels = labels.repeat_interleave(n)  # row (s, i) of the (B * n, C) view
    accuracy = torch.zeros((n, cfg.epochs + 1), dtype=torch.float64, device=weights.device)
    diverged = torch.zeros(n, dtype=torch.bool, device=weights.device)
    for epoch in range(cfg.epochs + 1):
        last = epoch == cfg.epochs
        with torch.set_grad_enabled(not last):
            out = lif_linear(inputs, w, params=params)
        times = out.times.reshape(b * n, c, k)
        counts = out.counts.reshape(b * n, c)
        pred = variant_predict(variant, times.detach(), counts).reshape(b, n)
        acc = (pred == labels.unsqueeze(1)).to(torch.float64).mean(0)
        accuracy[:, epoch] = torch.where(diverged, 0.0, acc)
        if epoch == 0:
            counts_initial = counts.detach().reshape(b, n, c).clone()
        if last:
            break
        loss = variant_loss(variant, times, counts, rows_labels, cfg, reduction="sum") / b
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            per_net = w.view(n, c * n_in)
            bad = ~torch.isfinite(per_net).all(1)
            if bool(bad.any()):
                diverged |= bad
                per_net[diverged] = 0.0
    return GroupedRun(accuracy, w.detach().reshape(n, c, n_in).clone(), diverged,
                      counts_initial, counts.detach().reshape(b, n, c).clone(),
                      times.detach().reshape(b, n, c, k).clone())


# ----------------------------------------------------------------------------- files

def _settings_difference(stored: dict, wanted: dict) -> list[str]:
    keys = sorted(set(stored) | set(wanted))
    return [f"{k}: stored {stored.get(k, '(absent)')!r}, requested {wanted.get(k, '(absent)')!r}"
            for k in keys if stored.get(k) != wanted.get(k)]


_CELL_LISTS = ("best", "initial", "final", "first_converged_epoch", "silent_initial",
               "silent_final", "blind_final", "diverged")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _read_part(path: Path) -> tuple[dict, int]:
    """A part file's content and number; ``ValueError`` naming it when it is not one."""
    def bad(why):
        raise ValueError(f"{path} is not a convergence part file ({why}); remove it or choose "
                         "another --out")

    if path.is_symlink() or not path.is_file():
        bad("not a regular file")
    try:
        part = json.loads(path.read_text(encoding="utf-8"))
        pid = int(path.stem.split("-")[1])
    except (OSError, ValueError, IndexError) as e:
        bad(" ".join(str(e).split())[:160])
    if not (isinstance(part, dict) and isinstance(part.get("settings"), dict)
            and isinstance(part.get("cells"), list)):
        bad("no settings and cells")
    return part, pid


def _check_cells(path: Path, part: dict, repeats: int) -> None:
    """Each cell of a part (whose settings matched) holds ``repeats`` outcomes per list."""
    if part.get("variant") not in VARIANTS or not _number(part.get("seconds", 0.0)):
        raise ValueError(f"{path} is not a convergence part file (variant or seconds); remove "
                         "it or choose another --out")
    for cell in part["cells"]:
        if not (isinstance(cell, dict) and _number(cell.get("mean")) and _number(cell.get("std"))
                and all(isinstance(cell.get(k), list) and len(cell[k]) == repeats
                        and all(_number(v) for v in cell[k]) for k in _CELL_LISTS)):
            raise ValueError(f"{path} holds a malformed cell (each needs mean, std and "
                             f"{repeats} outcomes per run list); remove it or choose another "
                             "--out")


def _load_parts(out: Path, settings: dict) -> tuple[dict, float, int]:
    """Finished cells ``{(variant, mean, std): outcome}``, their compute seconds and the next
    free part number; raises :class:`SettingsMismatch` on a part with other settings and
    ``ValueError`` naming a file that is not a part file."""
    done, seconds, next_id = {}, 0.0, 0
    parts = out / "parts"
    for path in sorted(parts.glob("part-*.json")) if parts.is_dir() else []:
        part, pid = _read_part(path)
        next_id = max(next_id, pid + 1)
        diff = _settings_difference(part["settings"], settings)
        if diff:
            raise SettingsMismatch(
                f"{out} holds finished cells made with other settings ({path.name}): "
                + "; ".join(diff) + ". Use the same settings to continue, or another --out")
        _check_cells(path, part, settings["repeats"])
        for cell in part["cells"]:
            done[(part["variant"], cell["mean"], cell["std"])] = cell
        seconds += part.get("seconds", 0.0)
    return done, seconds, next_id


# ----------------------------------------------------------------------------- the run

@dataclass
class ConvergenceResults:
    """What :func:`run_convergence` returns.

    Attributes:
        rows: one dict per (variant, mean, std) with :data:`CSV_COLUMNS`.
        headline: per variant, ``cells_converged_90`` (cells where at least 90% of the runs
            converge), ``cells``, ``share_of_grid`` (the first over the second),
            ``cells_converged_50`` (at least half of the runs) and ``mean_share_converged``
            (share of all runs of the grid that converge).
        seconds: wall time of this call; compute_seconds: training time summed over all
            parts (including those of earlier, interrupted calls).
        out: the run directory.
    """

    rows: list
    headline: dict
    seconds: float
    compute_seconds: float
    out: Path


def _cell_outcome(mean: float, std: float, run: GroupedRun, sl: slice) -> dict:
    acc = run.accuracy[sl].cpu()
    best = acc.max(1).values
    reached = acc >= 1.0
    first = torch.where(reached.any(1), reached.to(torch.int64).argmax(1), -1)

    def silent(counts):  # (B, n, C) -> (runs,) 0/1: a neuron silent on every sample
        return (counts[:, sl].sum(0) == 0).any(1).to(torch.int64).cpu().tolist()

    def blind(times):  # (B, n, C, K) -> (runs,) 0/1: a neuron with the same train throughout
        t = times[:, sl]
        return (t == t[:1]).all(3).all(0).any(1).to(torch.int64).cpu().tolist()

    return {"mean": mean, "std": std, "best": best.tolist(), "initial": acc[:, 0].tolist(),
            "final": acc[:, -1].tolist(), "first_converged_epoch": first.tolist(),
            "silent_initial": silent(run.counts_initial),
            "silent_final": silent(run.counts_final),
            "blind_final": blind(run.times_final),
            "diverged": run.diverged[sl].cpu().to(torch.int64).tolist()}


def _row(variant: str, cell: dict) -> dict:
    n = len(cell["best"])

    def mean_of(values):
        return round(sum(values) / n, 6)

    return {"variant": variant, "mean": f"{cell['mean']:.10g}", "std": f"{cell['std']:.10g}",
            "mean_best_accuracy": mean_of(cell["best"]),
            "share_converged": mean_of([float(v >= 1.0) for v in cell["best"]]),
            "repeats": n,
            "mean_initial_accuracy": mean_of(cell["initial"]),
            "share_converged_at_init": mean_of([float(v >= 1.0) for v in cell["initial"]]),
            "mean_final_accuracy": mean_of(cell["final"]),
            "share_silent_init": mean_of(cell["silent_initial"]),
            "share_silent_final": mean_of(cell["silent_final"]),
            "share_blind_final": mean_of(cell["blind_final"]),
            "share_diverged": mean_of(cell["diverged"])}


def _headline(rows: list[dict], variants) -> dict:
    out = {}
    for v in variants:
        vr = [r for r in rows if r["variant"] == v]
        good = sum(r["share_converged"] >= _HEADLINE_LEVEL for r in vr)
        half = sum(r["share_converged"] >= 0.5 for r in vr)
        out[v] = {"cells_converged_90": good, "cells": len(vr),
                  "share_of_grid": good / len(vr),
                  "cells_converged_50": half,
                  "mean_share_converged": sum(r["share_converged"] for r in vr) / len(vr)}
    return out


@contextlib.contextmanager
def _single_threaded():
    """Run the CPU kernels on one thread (restored afterwards).

    The layers of this experiment are tiny (a few thousand neurons, 4 input spikes): a
    parallel kernel spends more time waking its threads than computing, and far more on a
    loaded machine, where each call waits for a free core. One thread also fixes the order in
    which the backward kernel sums its per-thread weight gradients, so the result does not
    depend on the machine's core count.
    """
    import numba

    before_numba, before_torch = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before_numba)
        torch.set_num_threads(before_torch)


def _progress(total: int, quiet: bool):
    if quiet:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="convergence", unit="cell", dynamic_ncols=True)


def run_convergence(cfg: ConvergenceConfig, out, *, quiet: bool = False,
                    log=print) -> ConvergenceResults:
    """Run (or continue) the convergence experiment into directory ``out``.

    Cells already finished in ``out`` with the same :meth:`ConvergenceConfig.settings` are
    skipped; each chunk of ``cfg.chunk_cells`` cells is written as a part file when done, so
    a stopped run loses at most the chunk in progress. The result depends only on the
    settings and the grid, not on the chunking or on interruptions. Writes
    ``convergence.csv``, the heat maps, ``report.md`` and ``config.json`` at the end.

    Raises:
        SettingsMismatch: ``out`` holds finished parts made with other settings.
    """

    t_start = time.perf_counter()
    load_start = _loadavg()
    out = Path(out)
    device = resolve_device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    settings = cfg.settings()
    # new, empty, or a convergence run (continued); parts made with other settings refused
    prepare_out(out, "convergence", resume=True)
    done, past_seconds, next_id = _load_parts(out, settings)
    config = {MARKER: "convergence", **dataclasses.asdict(cfg), "batsnn": batsnn.__version__,
              "device": str(device)}
    write_json(out / "config.json", config)
    make_subdir(out, "parts")

    todo = [(v, m, s) for v in cfg.variants for m in cfg.means for s in cfg.stds
            if (v, m, s) not in done]
    n_cells = len(cfg.variants) * len(cfg.means) * len(cfg.stds)
    if done and todo and log:
        log(f"continuing {out}: {n_cells - len(todo)} of {n_cells} cells already done")
    inputs, labels = experiment_data(cfg.dt, dtype, device)
    bar = _progress(len(todo), quiet)
    compute = 0.0
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: bar is not None and bar.close())
        stack.enter_context(_single_threaded())
        for variant in cfg.variants:
            cells = [(m, s) for (v, m, s) in todo if v == variant]
            for start in range(0, len(cells), cfg.chunk_cells):
                chunk = cells[start:start + cfg.chunk_cells]
                t0 = time.perf_counter()
                w0 = torch.cat([initial_weights(cfg.seed, variant, m, s, cfg.repeats, dtype)
                                for m, s in chunk]).to(device)
                run = train_grouped(w0, variant, cfg, inputs, labels)
                outcomes = [_cell_outcome(m, s, run, slice(i * cfg.repeats,
                                                           (i + 1) * cfg.repeats))
                            for i, (m, s) in enumerate(chunk)]
                seconds = time.perf_counter() - t0
                compute += seconds
                write_json(out / "parts" / f"part-{next_id:05d}.json",
                            {"settings": settings, "variant": variant, "seconds": seconds,
                             "batsnn": batsnn.__version__, "cells": outcomes})
                next_id += 1
                for cell in outcomes:
                    done[(variant, cell["mean"], cell["std"])] = cell
                if bar is not None:
                    bar.update(len(chunk))

    rows = [_row(v, done[(v, m, s)]) for v in cfg.variants for m in cfg.means for s in cfg.stds]
    write_csv(out / "convergence.csv", [{c: r[c] for c in CSV_COLUMNS} for r in rows])
    headline = _headline(rows, cfg.variants)
    plot_heatmaps(rows, cfg, out)
    seconds = time.perf_counter() - t_start
    results = ConvergenceResults(rows, headline, seconds, past_seconds + compute, out)
    write_json(out / "config.json", config)
    cells = {v: [done[(v, m, s)] for m in cfg.means for s in cfg.stds] for v in cfg.variants}
    atomic_write(out / "report.md", _report(cfg, results, cells, len(todo), load_start,
                                             _loadavg()).encode())
    if log:
        for v, h in headline.items():
            log(f"{v}-spike: {h['cells_converged_90']}/{h['cells']} cells "
                f"({100 * h['share_of_grid']:.1f}% of the grid) converge in >= 90% of runs")
        log(f"{len(todo)} cells trained in {compute:.1f} s (call {seconds:.1f} s); "
            f"results in {out}")
    return results


def _loadavg():
    try:
        return os.getloadavg()
    except OSError:
        return None


# ----------------------------------------------------------------------------- report

def _grid_table(rows: list[dict], variant: str, means, stds) -> str:
    """Markdown table for one variant: rows mean, columns std, cells
    ``mean best accuracy % / share converged %``."""
    by = {(r["mean"], r["std"]): r for r in rows if r["variant"] == variant}
    head = "| mean \\ std | " + " | ".join(f"{s:g}" for s in stds) + " |"
    sep = "|---|" + "---|" * len(stds)
    lines = [head, sep]
    for m in means:
        cells = []
        for s in stds:
            r = by[(f"{m:.10g}", f"{s:.10g}")]
            cells.append(f"{100 * r['mean_best_accuracy']:.0f}/{100 * r['share_converged']:.0f}")
        lines.append(f"| {m:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _run_stats(cells: list[dict], epochs: int) -> str:
    """One paragraph on the individual runs of a variant: when they converge, and what the
    runs that never converge look like at the end."""
    first = sorted(e for c in cells for e in c["first_converged_epoch"] if e >= 0)
    runs = [(b >= 1.0, sf, bf, si) for c in cells for b, sf, bf, si in
            zip(c["best"], c["silent_final"], c["blind_final"], c["silent_initial"])]
    n = len(runs)
    failed = [r for r in runs if not r[0]]
    text = f"{len(first)} of {n} runs converge"
    if first:
        late = sum(e >= 0.8 * epochs for e in first)
        text += (f" (first at 100%: median epoch {first[len(first) // 2]}, 90% of them by "
                 f"epoch {first[int(0.9 * (len(first) - 1))]}, {late} at epoch >= "
                 f"{math.ceil(0.8 * epochs)})")
    text += f"; {len(failed)} never do"
    if failed:
        text += (f": at the end, {sum(r[1] for r in failed)} of them have an output neuron "
                 f"silent on both samples ({sum(r[3] for r in failed)} silent from the start) "
                 f"and {sum(r[2] for r in failed)} an output neuron with the same spike train "
                 "on both samples (silent included)")
    return text + "."


def _report(cfg, res: ConvergenceResults, cells: dict, n_trained: int, load_start,
            load_end) -> str:
    variants = {"multi": f"multi-spike (K={cfg.max_spikes}, count loss "
                         f"{cfg.target_true:g}/{cfg.target_false:g})",
                "single": f"single-spike (TTFS cross-entropy, tau_loss {cfg.tau_loss:g} s)"}
    dt = f"{cfg.dt:g} s" if cfg.dt else "continuous time (exact)"
    lines = [
        "# Convergence: single-spike against multi-spike training", "",
        f"batsnn {batsnn.__version__}; seed {cfg.seed}; {cfg.repeats} runs per cell; "
        f"{cfg.epochs} epochs of full-batch SGD, lr {cfg.lr:g}; {dt}; "
        f"tau_s {cfg.tau_s:g} s, theta {cfg.theta:g}, t_max {cfg.t_max:g} s; "
        f"{len(cfg.means)} means x {len(cfg.stds)} stds "
        f"({cfg.means[0]:g}..{cfg.means[-1]:g}, {cfg.stds[0]:g}..{cfg.stds[-1]:g}).", "",
        "A run's score is its best accuracy over the epochs + 1 measurements (initial weights "
        "included); it converges when that is 100%.", "",
        "## Headline", "",
    ]
    for v, h in res.headline.items():
        lines.append(f"- {variants[v]}: {h['cells_converged_90']} of {h['cells']} cells "
                     f"({100 * h['share_of_grid']:.1f}% of the grid) converge in at least "
                     f"{100 * _HEADLINE_LEVEL:.0f}% of runs; {h['cells_converged_50']} cells "
                     f"in at least half of them; {100 * h['mean_share_converged']:.1f}% of all "
                     "its runs converge.")
    load = (f"; load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end"
            if load_start and load_end else "")
    lines += ["", "## Time", "",
              f"{n_trained} cells trained in this call; training time over all parts "
              f"{res.compute_seconds:.1f} s; this call {res.seconds:.1f} s in all "
              f"(device {cfg.device}, kernels on one thread; the machine has {os.cpu_count()} "
              f"CPUs{load}).", "",
              "## Runs", ""]
    for v in cfg.variants:
        lines += [f"- {variants[v]}: {_run_stats(cells[v], cfg.epochs)}"]
    lines += ["", "## Per cell (mean best accuracy % / runs converged %)", ""]
    for v in cfg.variants:
        lines += [f"### {variants[v]}", "", _grid_table(res.rows, v, cfg.means, cfg.stds), ""]
    lines += ["Figures: " + ", ".join(f"`convergence_{v}.png`" for v in cfg.variants)
              + (", `convergence_difference.png`, `convergence_grid.png`"
                 if len(cfg.variants) == 2 else "") + ".", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots

_TITLES = {"multi": "multi-spike (count loss)", "single": "single-spike (TTFS)"}


def _share_grid(rows, variant, means, stds) -> torch.Tensor:
    by = {(r["mean"], r["std"]): r["share_converged"] for r in rows if r["variant"] == variant}
    return torch.tensor([[by[(f"{m:.10g}", f"{s:.10g}")] for s in stds] for m in means],
                        dtype=torch.float64)


def _heatmap(ax, values, means, stds, *, cmap, vmin, vmax, title, fmt):
    import matplotlib
    import matplotlib.colors as mcolors

    im = ax.imshow(values.numpy(), origin="lower", cmap=cmap, vmin=vmin, vmax=vmax,
                   aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(stds)), [f"{s:g}" for s in stds])
    ax.set_yticks(range(len(means)), [f"{m:g}" for m in means])
    ax.set_xlabel("std of the initial weights")
    ax.set_ylabel("mean of the initial weights")
    ax.set_title(title)
    if len(means) * len(stds) <= 400:
        norm = mcolors.Normalize(vmin, vmax)
        cm = matplotlib.colormaps[cmap]
        small = 7 if max(len(means), len(stds)) > 10 else 9
        for i in range(len(means)):
            for j in range(len(stds)):
                v = float(values[i, j])
                r, g, b, _ = cm(norm(v))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                ax.text(j, i, fmt(v), ha="center", va="center", fontsize=small,
                        color="white" if dark else "black")
    if len(stds) > 8:
        ax.tick_params(axis="x", labelrotation=90)
    return im


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig, path: Path) -> None:
    from batsnn.experiments.plots import save_png

    save_png(fig, path, dpi=150)


def plot_heatmaps(rows: list[dict], cfg: ConvergenceConfig, out) -> list[Path]:
    """Heat maps of the share of converged runs: one PNG per variant
    (``convergence_<variant>.png``) and, with both variants, their difference
    (``convergence_difference.png``, multi minus single in percentage points) and the three
    side by side (``convergence_grid.png``). Returns the paths written."""
    plt = _pyplot()
    out = Path(out)
    means, stds = cfg.means, cfg.stds
    paths = []
    share = {v: 100 * _share_grid(rows, v, means, stds) for v in cfg.variants}
    label = "runs reaching 100% accuracy (%)"
    pct = "{:.0f}".format
    size = (0.42 * len(stds) + 2.2, 0.36 * len(means) + 1.6)
    panels = [(v, share[v], "viridis", 0, 100, f"{_TITLES[v]}", label, pct)
              for v in cfg.variants]
    if len(cfg.variants) == 2:
        diff = share["multi"] - share["single"]
        panels.append(("difference", diff, "RdBu_r", -100, 100,
                       "multi-spike minus single-spike", "difference (percentage points)",
                       "{:+.0f}".format))
    for name, values, cmap, vmin, vmax, title, clabel, fmt in panels:
        fig, ax = plt.subplots(figsize=(max(size[0], 4.5), max(size[1], 3.5)))
        im = _heatmap(ax, values, means, stds, cmap=cmap, vmin=vmin, vmax=vmax, title=title,
                      fmt=lambda v, f=fmt: f(v).replace("+0", "0"))
        fig.colorbar(im, ax=ax, label=clabel)
        path = out / f"convergence_{name}.png"
        _save_png(fig, path)
        paths.append(path)
    if len(panels) == 3:
        fig, axes = plt.subplots(1, 3, figsize=(3 * max(size[0], 4.5), max(size[1], 3.5)))
        for ax, (name, values, cmap, vmin, vmax, title, clabel, fmt) in zip(axes, panels):
            im = _heatmap(ax, values, means, stds, cmap=cmap, vmin=vmin, vmax=vmax,
                          title=title, fmt=lambda v, f=fmt: f(v).replace("+0", "0"))
            fig.colorbar(im, ax=ax, label=clabel)
        path = out / "convergence_grid.png"
        _save_png(fig, path)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- CLI

def _grid_arg(text: str) -> list[float]:
    try:
        return parse_grid(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``convergence`` subcommand on an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "convergence", help="single-spike against multi-spike training over a grid of "
                            "initial weight distributions (model.md section 5)")
    p.add_argument("--out", required=True, help="run directory (a stopped run continues)")
    p.add_argument("--repeats", type=int, default=100, help="runs per cell and variant")
    p.add_argument("--epochs", type=int, default=50, help="SGD steps per run")
    p.add_argument("--means", type=_grid_arg, default="0:2.5:0.2",
                   help="weight means: start:stop:step (stop excluded) or a comma list")
    p.add_argument("--stds", type=_grid_arg, default="0:2.5:0.2",
                   help="weight standard deviations, same format")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--dt", type=float, default=None,
                   help="time step in seconds (default: exact continuous time)")
    p.add_argument("--chunk-cells", type=int, default=13,
                   help="grid cells trained together (does not change the result)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)
    return p


def main(args) -> int:
    """Run the ``convergence`` subcommand from parsed ``args``; returns the exit status."""
    cfg = ConvergenceConfig(means=tuple(args.means), stds=tuple(args.stds),
                            repeats=args.repeats, epochs=args.epochs, seed=args.seed,
                            dt=args.dt, device=args.device, chunk_cells=args.chunk_cells)
    res = run_convergence(cfg, args.out, quiet=args.quiet)
    print(f"convergence.csv, report.md and heat maps in {res.out}")
    return 0
