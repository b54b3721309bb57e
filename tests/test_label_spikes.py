"""analysis/label_spikes.py: the label neuron's spikes of a trained run, exact and on the
grid."""

import json

import pytest

from batsnn.experiments import train as T
from batsnn.experiments.config import resolve_config
from tests.helpers import analysis_script



def test_label_spikes_of_a_grid_run(data_dir, tmp_path, capsys):
    dt = 0.01
    cfg = resolve_config("mnist-count", dataset="fashion-mnist", hidden=[24], theta=[0.2, 0.4],
                         max_spikes=[8, 8], batch_size=10, eval_batch_size=16, device="cpu",
                         data_dir=str(data_dir), epochs=1, dt=dt, dt_mode="continuous",
                         out=str(tmp_path / "run"))
    summary = T.train(cfg, quiet=True)
    analysis_script("label_spikes").main([str(tmp_path / "run"), "--test-samples", "20"])
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
    assert row["reset_at"] == "crossing"
    # the same weights with the resets at the emitted grid times: the same exact network,
    # another grid network
    analysis_script("label_spikes").main([str(tmp_path / "run"), "--test-samples", "20",
                                           "--reset-at", "emitted"])
    other = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert other["reset_at"] == "emitted" and other["exact"] == exact
    assert other["grid"] != grid


def test_label_spikes_of_an_exact_run_on_named_grids(data_dir, tmp_path, capsys):
    cfg = resolve_config("mnist-count", dataset="fashion-mnist", hidden=[24], theta=[0.2, 0.4],
                         max_spikes=[8, 8], batch_size=10, eval_batch_size=16, device="cpu",
                         data_dir=str(data_dir), epochs=1, out=str(tmp_path / "run"))
    summary = T.train(cfg, quiet=True)
    script = analysis_script("label_spikes")
    # chunks of 7 images: the result does not depend on how the test set is cut
    whole = script.summarise
    script.summarise = lambda *a, **k: whole(*a, **k, batch=7)
    script.main([str(tmp_path / "run"), "--test-samples", "20", "--dt", "0,0.01"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["dt_ms"] == 0.0 and set(row) >= {"exact", "dt 10 ms"}
    assert row["exact"]["accuracy_pct"] == round(100 * summary["test_accuracy"], 2)
    grid = row["dt 10 ms"]
    assert grid["label_gaps_below_dt_pct"] in (0.0, None)
    first = grid["first_label_spike_ms"]
    assert first is None or abs(first / 10.0 - round(first / 10.0)) < 1e-6
    # without --dt an exact-time run has no grid to compare with; bad grids are named
    for args, words in (([], "trained without a time step"), (["--dt", "0,x"], "comma-separated"),
                        (["--dt=-1e-3"], "finite and >= 0"), (["--dt", "nan"], "finite and >= 0")):
        with pytest.raises(SystemExit):
            script.main([str(tmp_path / "run"), "--test-samples", "20", *args])
        assert words in capsys.readouterr().err
