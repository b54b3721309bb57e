"""benchmarks/bench_events.py: one JSON line per preset, its per-epoch figures computed from
the run's own metrics and input facts."""

import json

import pytest

from tests.helpers import benchmark_script


@pytest.mark.slow
def test_bench_events_reports_the_runs_own_figures(capsys):
    bench = benchmark_script("bench_events")
    bench.main(["--device", "cpu", "--presets", "yinyang", "--epochs", "1"])
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert len(lines) == 1
    r = lines[0]
    assert r["preset"] == "yinyang" and r["train_samples"] == 5000
    assert r["input"]["train"]["spikes"] == 5 * 5000 and r["input"]["train"]["dropped"] == 0
    (e,) = r["epochs"]
    assert e["epoch"] == 1 and 0 < e["train_s"] < r["wall_s"]
    assert e["samples_per_s"] == pytest.approx(5000 / e["train_s"], rel=1e-2)
    assert 0.0 <= e["test_accuracy"] <= 1.0


@pytest.mark.slow
def test_presets_of_one_dataset_share_one_synthetic_set(capsys, monkeypatch):
    """``shd`` and ``shd-delay`` read one synthetic set, written once (small here)."""
    from batsnn.experiments.datasets import heidelberg

    written, original = [], heidelberg.write_synthetic_shd

    def small(directory, **kw):
        written.append(directory)
        return original(directory, n_train=12, n_test=6)

    monkeypatch.setattr(heidelberg, "write_synthetic_shd", small)
    bench = benchmark_script("bench_events")
    bench.main(["--device", "cpu", "--presets", "shd,shd-delay", "--epochs", "1"])
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert [r["preset"] for r in lines] == ["shd", "shd-delay"]
    assert len(written) == 1 and all(r["train_samples"] == 12 for r in lines)
    assert "synthetic_shd_written_s" in lines[0]
