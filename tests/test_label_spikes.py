"""benchmarks/label_spikes.py: the label neuron's spikes of a trained run, exact and on the
grid."""

import importlib.util
import json
import os

from batsnn.experiments import train as T
from batsnn.experiments.config import resolve_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script():
    spec = importlib.util.spec_from_file_location(
        "label_spikes", os.path.join(ROOT, "benchmarks", "label_spikes.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_label_spikes_of_a_grid_run(data_dir, tmp_path, capsys):
    dt = 0.01
    cfg = resolve_config("mnist-count", dataset="fashion-mnist", hidden=[24], theta=[0.2, 0.4],
                         max_spikes=[8, 8], batch_size=10, eval_batch_size=16, device="cpu",
                         data_dir=str(data_dir), epochs=1, dt=dt, dt_mode="continuous",
                         out=str(tmp_path / "run"))
    summary = T.train(cfg, quiet=True)
    _script().main([str(tmp_path / "run"), "--test-samples", "20"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["epoch"] == 1 and row["dt_ms"] == 10.0 and row["test_samples"] == 20
    grid, exact = row["grid"], row["exact"]
    # the run's own test accuracy is that of the grid network
    assert grid["accuracy_pct"] == round(100 * summary["test_accuracy"], 2)
    assert grid["output_spikes"] > 0 and exact["output_spikes"] > 0
    # on the grid spikes sit on whole steps: no two label spikes closer than one step
    assert grid["label_gaps_below_dt_pct"] in (0.0, None)
    first = grid["first_label_spike_ms"]
    assert first is None or abs(first / 10.0 - round(first / 10.0)) < 1e-6
