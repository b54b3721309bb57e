"""A run's loss and prediction (per its settings) and its test metrics."""

from __future__ import annotations

from collections.abc import Callable

import torch

from batsnn.experiments.sources import Split, encode_images
from batsnn.losses import count_predict, spike_count_class_loss, ttfs_cross_entropy, ttfs_predict
from batsnn.metrics import EvalStats

__all__ = ["evaluate", "loss_and_prediction", "output_horizon"]


def output_horizon(cfg) -> float:
    """The output layer's simulation horizon ``t_max`` (s)."""
    return float(cfg.network[-1].get("t_max", cfg.t_max))


def loss_and_prediction(cfg, outputs, labels: torch.Tensor):
    """The configured loss (a scalar, mean over the batch) and the predicted classes ``(B,)``
    for the output layer's :class:`batsnn.SpikeTrains` ``outputs``."""
    if cfg.loss == "ttfs":
        return (ttfs_cross_entropy(outputs.times, labels, tau_loss=cfg.tau_loss,
                                   t_max=output_horizon(cfg)),
                ttfs_predict(outputs.times))
    return (spike_count_class_loss(outputs.times, outputs.counts, labels,
                                   target_true=cfg.target_true, target_false=cfg.target_false),
            count_predict(outputs.counts))


def evaluate(model, cfg, images, labels, device, quiet: bool = True,
             desc: str = "test", reduce: Callable[[EvalStats], None] | None = None) -> dict:
    """Metrics of ``model`` on labelled samples at the run's time step ``cfg.dt`` (test loss
    and accuracy, per-layer and latency metrics, see :class:`batsnn.metrics.EvalStats`);
    ``reduce`` may change the accumulated statistics before they are read (distributed
    evaluation adds them over processes).

    Args:
        model: the network (a :class:`batsnn.nn.SpikingSequential`: ``forward_all`` gives
            every layer's spike trains); put in eval mode, run without gradients.
        cfg: the run's settings (a :class:`~batsnn.experiments.config.TrainConfig`): its
            ``dt``, ``loss`` (with ``target_true``/``target_false`` or ``tau_loss``),
            ``eval_batch_size`` and, for images, the encoding window.
        images: uint8 images ``(N, ...)`` (encoded by
            :func:`batsnn.experiments.sources.encode_images`), or samples of a data source
            (a :class:`batsnn.experiments.sources.Split`).
        labels: their class labels ``(N,)``.
        device: the device the batches run on (the model's).
        quiet: no progress bar; ``False`` shows a tqdm bar over the batches.
        desc: the progress bar's label.
        reduce: called once with the accumulated :class:`~batsnn.metrics.EvalStats` before
            the metrics are read (``None``: none).

    Returns:
        The metrics as plain Python numbers, keyed by the names of :mod:`batsnn.metrics`
        (:meth:`~batsnn.metrics.EvalStats.result`: ``test_loss``, ``test_accuracy`` as a
        fraction, the per-layer and latency metrics).
    """
    stats = EvalStats(None, "ttfs" if cfg.loss == "ttfs" else "count",
                      1.0 if cfg.loss == "ttfs" else cfg.target_true)
    model.eval()
    starts = range(0, len(labels), cfg.eval_batch_size)
    if not quiet:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, leave=False, dynamic_ncols=True)
    with torch.no_grad():
        for start in starts:
            sl = slice(start, start + cfg.eval_batch_size)
            y = labels[sl].to(device)
            x = (images[sl].inputs(device, cfg.dt) if isinstance(images, Split)
                 else encode_images(images[sl], cfg, device))
            outs = model.forward_all(x)
            loss, pred = loss_and_prediction(cfg, outs[-1], y)
            stats.update(outs, y, float(loss), pred)
    if reduce is not None:
        reduce(stats)
    return stats.result("test_")
