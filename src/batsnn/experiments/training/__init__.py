"""The training of one configured run, in pieces:

- :mod:`~batsnn.experiments.training.loop`: :func:`fit` (epochs, counters, evaluation,
  callbacks), :class:`TrainState`, the finite-parameter check and a run's summary.
- :mod:`~batsnn.experiments.training.callbacks`: progress bar, run files, plots, epoch lines.
- :mod:`~batsnn.experiments.training.grid`: the time grid a network runs on, per epoch, as
  the run's time-step mode (:mod:`batsnn.experiments.timestep`) says.
- :mod:`~batsnn.experiments.training.step`: the training step (eager, or a CUDA graph).
- :mod:`~batsnn.experiments.training.revive`: reviving silent neurons after each step.
- :mod:`~batsnn.experiments.training.evaluation`: loss, prediction and test metrics.
- :mod:`~batsnn.experiments.training.resume`: checkpoint checks, restore, run-file sync.
- :mod:`~batsnn.experiments.training.run`: :func:`train`, one run from its settings.

:mod:`batsnn.experiments.train` gathers their public names in one module.
"""
