"""The time-step modes of training (``TrainConfig.dt_mode``): one class per mode.

A run is always *evaluated* at its time step ``cfg.dt``; its mode decides how it is
*trained*:

- the grid of each epoch (:meth:`DtMode.epoch_dt`: a time step, or ``None`` for exact time),
- how much every layer's horizon is shortened in training (:meth:`DtMode.margin`),
- how far each training sample's input spikes are moved before they are put on the grid
  (:meth:`DtMode.shifts`),
- when a spike's reset is applied on the grid, in training and evaluation
  (:attr:`DtMode.reset_at`, read by :func:`batsnn.experiments.model.build_model`),
- which settings it needs (:meth:`DtMode.validate`, called by
  :func:`batsnn.experiments.config.validate_config`).

In exact time (``cfg.dt`` unset) every mode trains as it evaluates, in exact time, so that a
sweep over ``dt`` can include ``dt = 0``: the base class answers for that case and the
modes only describe training on a grid (the ``grid_*`` methods).

This module holds the list of modes (:data:`DT_MODES`, in the order the classes are
defined) and nothing else decides by a mode's name: a new mode is one new subclass here
(with ``name`` set, defined above :data:`DT_MODES`), and :func:`dt_mode` finds it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

__all__ = ["DT_MODES", "DtMode", "dt_mode", "spiking_layers"]

_REGISTRY: dict[str, type] = {}


def spiking_layers(network) -> list[int]:
    """The indices of a network description's layers of LIF neurons (linear, conv2d)."""
    return [i for i, s in enumerate(network) if s.get("type") in ("linear", "conv2d")]


class DtMode:
    """A time-step mode of training. Subclasses set ``name`` (the ``dt_mode`` setting) and
    override what differs from the seed's scheme (train on the grid ``cfg.dt``, resets at
    the crossings, no margin, inputs not moved). Every method takes the run's settings
    ``cfg`` (a :class:`~batsnn.experiments.config.TrainConfig`)."""

    #: the ``dt_mode`` setting naming the mode
    name: ClassVar[str] = ""
    #: one line for ``--help``: what the mode trains at
    help: ClassVar[str] = ""
    #: when a spike's reset is applied on the grid (:class:`~batsnn.params.LIFParams`)
    reset_at: ClassVar[str] = "crossing"

    def __init_subclass__(cls, abstract: bool = False, **kwargs):
        super().__init_subclass__(**kwargs)
        if abstract:  # a base of modes, not a mode
            return
        if not cls.name:
            raise TypeError(f"{cls.__name__} must set name")
        if cls.name in _REGISTRY:
            raise TypeError(f"dt_mode {cls.name!r} is defined twice")
        _REGISTRY[cls.name] = cls

    def epoch_dt(self, cfg: Any, epoch: int) -> float | None:
        """The time step (s; ``None`` for exact time) that epoch ``epoch`` (1-based)
        trains at."""
        return None if cfg.dt is None else self.grid_epoch_dt(cfg, epoch)

    def margin(self, cfg: Any) -> float:
        """Seconds by which training shortens every layer's horizon ``t_max``."""
        return 0.0 if cfg.dt is None else self.grid_margin(cfg)

    def shifts(self, cfg: Any, *, epoch: int, batch: int, n: int,
               rank: int = 0) -> torch.Tensor | None:
        """How much later (s) each of the ``n`` samples of training batch ``batch`` of
        ``epoch`` on process ``rank`` has its input spikes before they are put on the grid:
        ``(n,)`` float64 on the CPU, or ``None`` when the mode moves nothing."""
        if cfg.dt is None:
            return None
        return self.grid_shifts(cfg, epoch=epoch, batch=batch, n=n, rank=rank)

    def validate(self, cfg: Any) -> None:
        """Raise ``ValueError`` naming the settings when ``cfg`` does not fit the mode."""

    # what a mode changes on the grid (cfg.dt is set)
    def grid_epoch_dt(self, cfg: Any, epoch: int) -> float | None:
        """:meth:`epoch_dt` on a grid: ``cfg.dt``."""
        return cfg.dt

    def grid_margin(self, cfg: Any) -> float:
        """:meth:`margin` on a grid: 0."""
        return 0.0

    def grid_shifts(self, cfg: Any, *, epoch: int, batch: int, n: int,
                    rank: int) -> torch.Tensor | None:
        """:meth:`shifts` on a grid: ``None``."""
        return None


class Fixed(DtMode):
    """``"fixed"``: train at ``dt`` throughout (the seed's scheme)."""

    name = "fixed"
    help = "default: train at dt"


class Continuous(DtMode):
    """``"continuous"``: train in exact time throughout."""

    name = "continuous"
    help = "exact time"

    def grid_epoch_dt(self, cfg, epoch):
        """Exact time."""
        return None


class ContinuousMargin(Continuous):
    """``"continuous-margin"``: exact time with every layer's horizon ``t_max`` shortened by
    ``(L + 1) * dt`` (``L`` spiking layers: on the grid the input and each layer delay
    spikes by up to one step, so what the trained network emits by then still lands in the
    window)."""

    name = "continuous-margin"
    help = "exact time, every layer's t_max shortened by (layers + 1) * dt"

    def grid_margin(self, cfg):
        """``(L + 1) * cfg.dt``."""
        return (len(spiking_layers(cfg.network)) + 1) * cfg.dt

    def validate(self, cfg):
        """Every spiking layer's horizon must be longer than the margin."""
        margin = self.margin(cfg)
        short = [i for i in spiking_layers(cfg.network)
                 if float(cfg.network[i].get("t_max", cfg.t_max)) <= margin]
        if short:
            raise ValueError(f"dt_mode {self.name!r} shortens the training horizon by "
                             f"{margin:g} s, not less than t_max of network layer {short[0]}")


class Fine(DtMode):
    """``"fine"``: train on the finer grid ``dt_fine`` throughout."""

    name = "fine"
    help = "the finer step --dt-fine"

    def grid_epoch_dt(self, cfg, epoch):
        """``cfg.dt_fine``."""
        return cfg.dt_fine

    def validate(self, cfg):
        """On a grid ``0 < dt_fine < dt``."""
        if cfg.dt is not None and (cfg.dt_fine is None or not cfg.dt_fine < cfg.dt):
            raise ValueError(f"dt_mode {self.name!r} needs 0 < dt_fine < dt, got "
                             f"dt_fine={cfg.dt_fine!r} and dt={cfg.dt!r}")


class _WarmUp(DtMode, abstract=True):
    """A mode with ``dt_warmup_epochs`` epochs (at least one) before it trains at ``dt``."""

    def grid_epoch_dt(self, cfg, epoch):
        """``cfg.dt`` after the warm-up, :meth:`warmup_dt` in it."""
        return cfg.dt if epoch > cfg.dt_warmup_epochs else self.warmup_dt(cfg, epoch)

    def warmup_dt(self, cfg, epoch: int) -> float | None:
        """The time step of warm-up epoch ``epoch``."""
        raise NotImplementedError

    def validate(self, cfg):
        """``dt_warmup_epochs >= 1``."""
        if cfg.dt_warmup_epochs < 1:
            raise ValueError(f"dt_mode {self.name!r} needs dt_warmup_epochs >= 1, got "
                             f"{cfg.dt_warmup_epochs}")


class Finetune(_WarmUp):
    """``"finetune"``: exact time for the first ``dt_warmup_epochs`` epochs, then ``dt``."""

    name = "finetune"
    help = "exact time for --dt-warmup-epochs, then dt"

    def warmup_dt(self, cfg, epoch):
        """Exact time."""
        return None


class Anneal(_WarmUp):
    """``"anneal"``: ``dt * e / (W + 1)`` in epoch ``e <= W = dt_warmup_epochs``, then
    ``dt``."""

    name = "anneal"
    help = "dt growing to its value over --dt-warmup-epochs"

    def warmup_dt(self, cfg, epoch):
        """``cfg.dt * epoch / (W + 1)``."""
        return cfg.dt * epoch / (cfg.dt_warmup_epochs + 1)


class Dither(DtMode):
    """``"dither"``: ``dt`` with each training sample's input spikes moved later by a random
    fraction of a step before they are put on the grid.

    Moving a sample's whole input by ``s`` moves every exact crossing of the network by
    ``s`` (the neuron model is the same at every time), so the grid meets the signal at a
    random phase: a crossing at ``t`` is emitted at the first grid point after ``t + s``, on
    average half a step later whatever ``t`` is, where the fixed grid makes the delay a
    sawtooth of ``t``."""

    name = "dither"
    help = ("dt, each training sample's input moved by a random fraction of a step "
            "before the grid")

    def grid_shifts(self, cfg, *, epoch, batch, n, rank):
        """Uniform in ``[0, cfg.dt)``, drawn from the run's seed, the ``epoch``, the
        ``batch`` index and the ``rank`` only (a resumed run sees the same)."""
        rng = np.random.default_rng([int(cfg.seed) % 2**63, int(epoch), int(batch),
                                     int(rank), 0xD17])
        return torch.from_numpy(rng.random(int(n)) * cfg.dt)


class Consistent(DtMode):
    """``"consistent"``: ``dt`` with the consistent discrete model in training *and*
    evaluation: every layer resets at its emitted grid times and spikes again at the next
    grid point when a reset leaves it at or above threshold (``reset_at="emitted"``), and
    the gradient describes that network."""

    name = "consistent"
    help = ("dt, with resets at the emitted grid times in training and evaluation: "
            "the consistent discrete model")
    reset_at = "emitted"


#: every mode's name, in the order of definition
DT_MODES: tuple[str, ...] = tuple(_REGISTRY)


def modes_help() -> str:
    """Every mode with its one-line help, for the command line's ``--dt-mode``."""
    return ", ".join(f"{name} ({cls.help})" for name, cls in _REGISTRY.items())
_INSTANCES = {name: cls() for name, cls in _REGISTRY.items()}


def dt_mode(name: str) -> DtMode:
    """The mode named ``name`` (a ``dt_mode`` setting).

    Raises:
        ValueError: ``name`` is not one of :data:`DT_MODES` (the message lists them).
    """
    try:
        return _INSTANCES[name]
    except (KeyError, TypeError):
        raise ValueError(f"dt_mode must be {', '.join(repr(m) for m in DT_MODES)}, got "
                         f"{name!r}") from None
