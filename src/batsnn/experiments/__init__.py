"""The experiment runner: configs and presets, the training loop, run directories, sweeps,
the discretization-error study, datasets, plots and CUDA-graph steps.

It builds on the library (:mod:`batsnn.functional`, :mod:`batsnn.nn`, :mod:`batsnn.losses`,
:mod:`batsnn.encoding`, :mod:`batsnn.metrics`, :mod:`batsnn.ops`), which never imports it.
"""
