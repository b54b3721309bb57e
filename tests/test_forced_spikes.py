"""analysis/forced_spikes.py: the share of a trained network's spikes that the grid forces."""

import json

import pytest

from batsnn.experiments import train as T
from batsnn.experiments.config import resolve_config
from tests.helpers import analysis_script


def _run(data_dir, out, **kw):
    cfg = resolve_config("mnist-count", dataset="fashion-mnist", hidden=[24], theta=[0.2, 0.4],
                         max_spikes=[8, 8], batch_size=10, eval_batch_size=16, device="cpu",
                         data_dir=str(data_dir), epochs=1, dt=0.02, out=str(out), **kw)
    T.train(cfg, quiet=True)


@pytest.mark.slow
def test_forced_spikes_of_consistent_and_seed_runs(data_dir, tmp_path, capsys):
    script = analysis_script("forced_spikes")
    _run(data_dir, tmp_path / "consistent", dt_mode="consistent")
    script.main([str(tmp_path / "consistent"), "20"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["reset_at"] == "emitted" and row["test_samples"] == 20 and row["dt_ms"] == 20.0
    hidden = row["layer 1"]
    assert hidden["spikes_per_sample"] > 0 and 0 < hidden["forced_pct"] <= 100
    # the seed's neuron has a crossing for every spike: nothing is forced
    _run(data_dir, tmp_path / "fixed")
    script.main([str(tmp_path / "fixed"), "20"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["reset_at"] == "crossing" and row["layer 1"]["spikes_per_sample"] > 0
    assert row["layer 1"]["forced_pct"] == 0.0 and row["layer 2"]["forced_pct"] == 0.0
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "fixed"), "0"])
