"""The experiment runner, built on the library (:mod:`batsnn.functional`, :mod:`batsnn.nn`,
:mod:`batsnn.losses`, :mod:`batsnn.encoding`, :mod:`batsnn.metrics`, :mod:`batsnn.ops`),
which never imports it. One module per job:

- :mod:`~batsnn.experiments.config`: ``TrainConfig``, presets, config files, validation.
- :mod:`~batsnn.experiments.model`: networks built from a description of their layers.
- :mod:`~batsnn.experiments.rundir`: output-directory checks, the one safe file writer,
  the one checkpoint loader, run-directory layout.
- :mod:`~batsnn.experiments.timestep`: the time-step modes of training (``dt_mode``).
- :mod:`~batsnn.experiments.training`: the training loop with callbacks (``fit``), the
  step, resume and the runner of one configured run (``train``);
  :mod:`~batsnn.experiments.train` gathers their names.
- :mod:`~batsnn.experiments.sources`: the data-source interface the loop uses (images
  encoded to spike times).
- :mod:`~batsnn.experiments.sweep`: one run per (dt, seed), tables and report.
- :mod:`~batsnn.experiments.dterr`: the per-layer discretization-error study.
- :mod:`~batsnn.experiments.data`: dataset readers; :mod:`~batsnn.experiments.plots`: PNG
  plots; :mod:`~batsnn.experiments.graphs`: training steps as CUDA graphs.

Entry points take typed arguments (a config, lists of dt and seeds, an output path); the
command line (:mod:`batsnn.cli`) only parses and calls them.
"""
