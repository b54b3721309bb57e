"""The training loop with callbacks (:func:`fit`) and the runner of one configured run
(:func:`train`), in one namespace: the public names of the
:mod:`batsnn.experiments.training` package (loop, callbacks, grid, step, evaluation, resume,
run), of :mod:`batsnn.experiments.timestep` (the time-step modes) and of
:mod:`batsnn.experiments.sources` (the data sources and the image encoding).

Setting one of these names here (e.g. ``monkeypatch.setattr(train, "evaluate", spy)``)
sets it in every module of the runner that uses the same object, so that the runner calls
the replacement as it called the original; putting the original back undoes it.
"""

from __future__ import annotations

import sys
import types

from batsnn.experiments import sources as _sources
from batsnn.experiments.augment import batch_grid, deform_by_grid
from batsnn.experiments.config import training_margin
from batsnn.experiments.rundir import save_checkpoint, write_csv, write_json
from batsnn.experiments.sources import DataSource, ImageSource, Split, encode_images, open_source
from batsnn.experiments.training import callbacks as _callbacks
from batsnn.experiments.training import evaluation as _evaluation
from batsnn.experiments.training import grid as _grid
from batsnn.experiments.training import loop as _loop
from batsnn.experiments.training import resume as _resume
from batsnn.experiments.training import run as _run
from batsnn.experiments.training import step as _step
from batsnn.experiments import timestep as _timestep
from batsnn.experiments.training.callbacks import (EpochLog, ProgressBar, RunPlots, RunRecorder,
                                                   epoch_line)
from batsnn.experiments.training.evaluation import evaluate, loss_and_prediction, output_horizon
from batsnn.experiments.training.grid import (TrainingGrid, dither_shifts, network_params,
                                              set_network_grid, training_dt)
from batsnn.experiments.training.loop import TrainState, check_finite, fit, summary_of
from batsnn.experiments.training.resume import (best_epoch, check_resumable,
                                                optimizer_state_problem, restore_checkpoint,
                                                sync_run_files)
from batsnn.experiments.training.run import epoch_order, lr_schedule, seed_everything, train
from batsnn.experiments.training.step import GraphedTrainStep, TrainStep
from batsnn.experiments.timestep import DT_MODES, DtMode, dt_mode

__all__ = ["DT_MODES", "DataSource", "DtMode", "EpochLog", "GraphedTrainStep", "ImageSource",
           "ProgressBar", "RunPlots", "RunRecorder", "Split", "TrainState", "TrainStep",
           "TrainingGrid", "batch_grid", "best_epoch", "check_finite", "check_resumable",
           "deform_by_grid", "dither_shifts", "dt_mode", "encode_images", "epoch_line",
           "epoch_order", "evaluate", "fit", "loss_and_prediction", "lr_schedule",
           "network_params", "open_source", "optimizer_state_problem", "output_horizon",
           "restore_checkpoint", "save_checkpoint", "seed_everything", "set_network_grid",
           "summary_of", "sync_run_files", "train", "training_dt", "training_margin",
           "write_csv", "write_json"]

#: the modules whose names this one gathers (where a name set here is set too)
RUNNER_MODULES = (_sources, _loop, _callbacks, _evaluation, _grid, _step, _resume, _run,
                  _timestep)


class _Gathered(types.ModuleType):
    """This module's type: setting a name sets it in :data:`RUNNER_MODULES` too, in those
    that hold the object it named."""

    def __setattr__(self, name: str, value) -> None:
        missing = object()
        old = self.__dict__.get(name, missing)
        super().__setattr__(name, value)
        if old is missing or name.startswith("__"):
            return
        for module in RUNNER_MODULES:
            if module.__dict__.get(name, missing) is old:
                setattr(module, name, value)


sys.modules[__name__].__class__ = _Gathered
