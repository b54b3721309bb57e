"""The convergence experiment's settings: :class:`ConvergenceConfig`, the grid, the two
samples' spike times and labels, the columns of ``convergence.csv`` and the size limits."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from batsnn.experiments.common import check_seed, check_size
from batsnn.params import RESET_AT, LIFParams

__all__ = ["CSV_COLUMNS", "ConvergenceConfig", "FORMAT", "GridTooLarge", "HEADLINE_LEVEL",
           "INPUT_TIMES", "LABELS", "MAX_CHUNK_VALUES", "MAX_GRID_VALUES", "MAX_NETWORKS",
           "MAX_WEIGHT_SCALE", "VARIANTS", "parse_grid"]

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

#: version of the part files' content
FORMAT = 1
#: a cell counts in the headline when at least this share of its runs converge
HEADLINE_LEVEL = 0.9
#: the largest magnitude of a mean or standard deviation of the initial weights
MAX_WEIGHT_SCALE = 1e100
#: values per grid axis (``--means``, ``--stds``)
MAX_GRID_VALUES = 1000
#: networks trained per experiment (variants x means x stds x repeats)
MAX_NETWORKS = 1_000_000
#: accuracy values (networks x (epochs + 1)) or output spike times held for one chunk
MAX_CHUNK_VALUES = 50_000_000


@dataclass
class ConvergenceConfig:
    """Settings of the convergence experiment (times in seconds).

    Attributes:
        means, stds: the grid of initial weight distributions ``N(mean, std)``.
        repeats: networks trained per cell and variant.
        epochs: full-batch gradient steps per network.
        lr: SGD learning rate.
        seed: base seed in ``[0, 2**32 - 1]``; each cell's weights come from :func:`cell_generator`.
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
        reset_at: on the grid (``dt > 0``), where a spike's reset applies: ``crossing``
            (the continuous crossing time) or ``emitted`` (the emitted grid time); no effect
            in exact time.
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
    reset_at: str = "crossing"

    def __post_init__(self):
        self.means = tuple(_grid_values("means", self.means))
        self.stds = tuple(_grid_values("stds", self.stds))
        if any(s < 0 for s in self.stds):
            raise ValueError(f"stds must be >= 0, got {list(self.stds)}")
        for name in ("means", "stds"):
            big = [v for v in getattr(self, name) if abs(v) > MAX_WEIGHT_SCALE]
            if big:
                raise ValueError(f"{name} must be at most {MAX_WEIGHT_SCALE:g} in magnitude "
                                 f"(the initial weights would overflow), got {big[0]!r}")
        for name in ("repeats", "epochs", "chunk_cells", "max_spikes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int, got {v!r}")
        for name, low in (("repeats", 1), ("epochs", 1), ("chunk_cells", 1), ("max_spikes", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)!r}")
        self.seed = check_seed(self.seed)
        for name in ("lr", "tau_loss", "target_true", "target_false"):
            _check_number(name, getattr(self, name), positive=name in ("lr", "tau_loss"))
        if self.dt == 0 and not isinstance(self.dt, bool):
            self.dt = None
        if self.dt is not None:
            _check_number("dt", self.dt, positive=True, none_ok=True)
        self.variants = tuple(self.variants)
        if not self.variants or any(v not in VARIANTS for v in self.variants) \
                or len(set(self.variants)) != len(self.variants):
            raise ValueError(f"variants must be distinct names among {VARIANTS}, got "
                             f"{self.variants!r}")
        if self.dtype not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32', got {self.dtype!r}")
        if self.reset_at not in RESET_AT:
            raise ValueError(f"reset_at must be one of {', '.join(RESET_AT)}, got "
                             f"{self.reset_at!r}")
        self.params("multi")  # validates tau_s, theta, t_max, dt
        self.check_size()

    def check_size(self) -> None:
        """Refuse (``ValueError`` naming the settings, the size and the limit) an experiment
        with more than :data:`MAX_NETWORKS` networks, or a chunk holding more than
        :data:`MAX_CHUNK_VALUES` accuracy values or spike times; nothing is allocated."""
        check_size("networks", {"variants": len(self.variants), "means": len(self.means),
                                "stds": len(self.stds), "repeats": self.repeats},
                   MAX_NETWORKS)
        chunk = min(self.chunk_cells, len(self.means) * len(self.stds))
        check_size("accuracy values in one chunk", {
            "cells per chunk": chunk, "repeats": self.repeats, "(epochs + 1)": self.epochs + 1},
            MAX_CHUNK_VALUES)
        check_size("spike times in one chunk", {
            "cells per chunk": chunk, "repeats": self.repeats, "max_spikes": self.max_spikes,
            "(2 neurons x 2 samples)": 4}, MAX_CHUNK_VALUES)

    def params(self, variant: str) -> LIFParams:
        """The layer's parameters for ``variant`` (``max_spikes`` 1 for ``single``)."""
        k = self.max_spikes if variant == "multi" else 1
        return LIFParams(tau_s=self.tau_s, theta=self.theta, max_spikes=k, t_max=self.t_max,
                         dt=self.dt, reset_at=self.reset_at)

    def settings(self) -> dict:
        """The settings a cell's result depends on (not the grid, the variants or the
        chunking), as stored in each part file and compared on resume."""
        skip = {"means", "stds", "variants", "chunk_cells"}
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        d["dt"] = d["dt"] or 0.0
        d["format"] = FORMAT
        return d



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
            n = (stop - start) / step - 1e-9  # may be inf: 0:1e308:1e-308
            if n > MAX_GRID_VALUES:
                size = (f"{math.ceil(n)}" if n < 1e15 else f"about {n:.3g}"
                        if math.isfinite(n) else "too many")
                raise GridTooLarge(f"grid {text!r} has {size} values, more than the limit of "
                                   f"{MAX_GRID_VALUES}")
            n = math.ceil(n)
            return [round(start + i * step, 10) + 0.0 for i in range(n)]
        values = [round(float(v), 10) + 0.0 for v in text.split(",") if v.strip()]
    except GridTooLarge:
        raise
    except ValueError:
        raise ValueError(f"grid must be 'start:stop:step' (step > 0, stop > start) or a "
                         f"comma-separated list of numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"grid must hold at least one finite number, got {text!r}")
    if len(values) > MAX_GRID_VALUES:
        raise ValueError(f"grid has {len(values)} values, more than the limit of "
                         f"{MAX_GRID_VALUES}")
    return values


class GridTooLarge(ValueError):
    """A grid with more than :data:`MAX_GRID_VALUES` values."""


def _check_number(name, v, *, positive: bool, none_ok: bool = False) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or (positive and v <= 0):
        raise ValueError(f"{name} must be a finite number{' > 0' if positive else ''}"
                         f"{' or None' if none_ok else ''}, got {v!r}")


def _grid_values(name, values) -> list[float]:
    if isinstance(values, str):
        return parse_grid(values)
    if hasattr(values, "__len__") and len(values) > MAX_GRID_VALUES:
        raise ValueError(f"{name} has {len(values)} values, more than the limit of "
                         f"{MAX_GRID_VALUES}")
    try:
        out = [round(float(v), 10) + 0.0 for v in values]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}") from None
    if not out or not all(math.isfinite(v) for v in out) or len(set(out)) != len(out):
        raise ValueError(f"{name} must be distinct finite numbers, got {values!r}")
    return out

