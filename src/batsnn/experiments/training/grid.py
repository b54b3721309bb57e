"""The time grid a network runs on: each epoch trains on the grid of the run's time-step
mode (:mod:`batsnn.experiments.timestep`) and evaluates on ``cfg.dt``."""

from __future__ import annotations

from typing import Any

import torch

from batsnn.experiments.timestep import dt_mode
from batsnn.params import LIFParams

__all__ = ["TrainingGrid", "dither_shifts", "network_params", "set_network_grid", "training_dt"]


def training_dt(cfg: Any, epoch: int) -> float | None:
    """The time step (s; ``None`` for exact time) that epoch ``epoch`` (1-based) of a run of
    ``cfg`` trains at, per ``cfg.dt_mode``
    (:meth:`~batsnn.experiments.timestep.DtMode.epoch_dt`); the network is always
    evaluated at ``cfg.dt``."""
    return dt_mode(cfg.dt_mode).epoch_dt(cfg, epoch)


def network_params(model: torch.nn.Module) -> dict:
    """Each LIF layer of ``model`` (a module with :class:`~batsnn.params.LIFParams` as
    ``params``) mapped to its parameters now: the ``base`` of :func:`set_network_grid`."""
    return {m: m.params for m in model.modules()
            if isinstance(getattr(m, "params", None), LIFParams)}


def set_network_grid(model: torch.nn.Module, base: dict, dt: float | None,
                     margin: float = 0.0) -> None:
    """Run every LIF layer of ``model`` on the time grid ``dt`` (``None``: exact time) with
    its horizon shortened by ``margin`` seconds; ``base`` maps each LIF layer to its own
    (evaluation) :class:`~batsnn.params.LIFParams`, which ``dt = cfg.dt, margin = 0``
    restores."""
    for m, p in base.items():
        want = p.replace(dt=dt, t_max=p.t_max - margin) if margin else p.replace(dt=dt)
        if m.params != want:
            m.params = want


class TrainingGrid:
    """A callback: trains each epoch on its grid (:func:`training_dt`, with the mode's
    margin) and evaluates on ``cfg.dt``. ``dt`` is the time step training runs at now
    (the step's inputs are encoded on it).

    Args:
        model: the network (its layers' parameters now are its evaluation parameters).
        cfg: the run's settings.
    """

    def __init__(self, model: torch.nn.Module, cfg: Any):
        self.model, self.cfg = model, cfg
        self.mode = dt_mode(cfg.dt_mode)
        self.base = network_params(model)
        self.margin = self.mode.margin(cfg)
        self.dt = cfg.dt

    def train_at(self, epoch: int) -> None:
        """Put the network on epoch ``epoch``'s training grid."""
        self.dt = self.mode.epoch_dt(self.cfg, epoch)
        set_network_grid(self.model, self.base, self.dt, self.margin)

    def evaluate_at(self) -> None:
        """Put the network back on its own grid ``cfg.dt``."""
        set_network_grid(self.model, self.base, self.cfg.dt)

    def on_epoch_start(self, state) -> None:
        """Train on the epoch's grid."""
        self.train_at(state.epoch)

    def on_train_end(self, state) -> None:
        """Evaluate on ``cfg.dt``."""
        self.evaluate_at()


def dither_shifts(cfg: Any, *, epoch: int, batch: int, n: int,
                  rank: int = 0) -> torch.Tensor | None:
    """How much later (s) each of the ``n`` samples of a training batch has its input
    spikes, per ``cfg.dt_mode`` (:meth:`~batsnn.experiments.timestep.DtMode.shifts`:
    ``dt_mode "dither"`` moves them by uniform draws in ``[0, cfg.dt)`` from the run's seed,
    the ``epoch``, the ``batch`` index and the process ``rank``); ``None`` for the modes that
    move nothing and in exact time."""
    return dt_mode(cfg.dt_mode).shifts(cfg, epoch=epoch, batch=batch, n=n, rank=rank)
