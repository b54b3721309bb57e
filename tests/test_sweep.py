"""``batsnn sweep`` and ``batsnn discretization-error`` end to end on tiny data."""

import csv
import json

import pytest

from batsnn import cli

TINY = ["--preset", "mnist-count", "--dataset", "fashion-mnist", "--hidden", "20",
        "--max-spikes", "6,6", "--theta", "0.2,0.4", "--batch-size", "10", "--eval-batch-size",
        "20", "--epochs", "1",
        "--quiet", "--device", "cpu"]



def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_sweep_end_to_end_resume_and_rows_equal_single_runs(data_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", *TINY, "--data-dir", str(data_dir), "--dt", "0,0.004", "--seeds", "2",
            "--jobs", "1", "--out", str(out)]
    assert cli.main(args) == 0
    rows = _csv(out / "sweep.csv")
    assert [(float(r["dt"]), int(r["seed"])) for r in rows] == [(0.0, 1), (0.0, 2),
                                                                 (0.004, 1), (0.004, 2)]
    for col in ("test_accuracy", "spikes_per_sample_l1", "spikes_per_sample_l2",
                "decision_time_ms", "label_spike_share_50ms", "train_seconds"):
        assert col in rows[0]
    summary = _csv(out / "summary.csv")
    assert [float(r["dt"]) for r in summary] == [0.0, 0.004]
    assert "test_accuracy_mean" in summary[0] and "test_accuracy_std" in summary[0]
    for name in ("accuracy_vs_dt.png", "spikes_vs_dt.png", "latency_vs_dt.png", "report.md"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "batsnn sweep" in report or "Produced by" in report
    assert "| 4 |" in report

    # a sweep row equals what batsnn train gives for the same settings
    single = tmp_path / "single"
    assert cli.main(["train", *TINY, "--data-dir", str(data_dir), "--dt", "0.004", "--seed",
                     "2", "--out", str(single)]) == 0
    s = json.loads((single / "summary.json").read_text())
    row = rows[3]
    assert float(row["test_accuracy"]) == s["test_accuracy"]
    assert float(row["spikes_per_sample_l1"]) == s["spikes_per_sample_l1"]
    assert float(row["decision_time_ms"]) == pytest.approx(s["decision_time_ms"])
    assert float(row["spikes_per_sample_l2"]) > 0

    # rerun: every pair is finished and skipped
    capsys.readouterr()
    assert cli.main(args) == 0
    assert "4 finished already, 0 to train" in capsys.readouterr().out
    # more seeds: only the new pairs are trained
    assert cli.main(args[:-4] + ["--seeds", "3", "--jobs", "1", "--out", str(out)]) == 0
    assert "4 finished already, 2 to train" in capsys.readouterr().out
    assert len(_csv(out / "sweep.csv")) == 6
    # report only: nothing is trained, the tables come from the finished runs
    (out / "sweep.csv").unlink()
    assert cli.main(args[:-4] + ["--seeds", "4", "--report-only", "--out", str(out)]) == 0
    assert "0 to train" in capsys.readouterr().out
    assert len(_csv(out / "sweep.csv")) == 6


def test_sweep_in_parallel_processes(data_dir, tmp_path):
    out = tmp_path / "sweep"
    assert cli.main(["sweep", *TINY, "--data-dir", str(data_dir), "--dt", "0,0.002", "--seeds",
                     "1", "--jobs", "2", "--out", str(out)]) == 0
    assert len(_csv(out / "sweep.csv")) == 2


def test_sweep_bad_arguments(tmp_path):
    assert cli.main(["sweep", *TINY, "--dt", "-1", "--out", str(tmp_path)]) == 2
    assert cli.main(["sweep", *TINY, "--dt", "0", "--seeds", "0", "--out", str(tmp_path)]) == 2


def test_discretization_error(tmp_path):
    out = tmp_path / "dterr"
    assert cli.main(["discretization-error", "--depths", "1,2", "--dt", "0.001,0.008",
                     "--width", "40", "--samples", "8", "--dataset", "random", "--theta", "0.1",
                     "--device", "cpu", "--out", str(out)]) == 0
    rows = _csv(out / "discretization_error.csv")
    keys = {(int(r["depth"]), int(r["layer"]), float(r["dt"])) for r in rows}
    assert keys == {(1, 1, 0.001), (1, 1, 0.008), (2, 1, 0.001), (2, 1, 0.008), (2, 2, 0.001),
                    (2, 2, 0.008)}
    by = {(int(r["depth"]), int(r["layer"]), float(r["dt"])): r for r in rows}
    # same weights: layer 1 is the same network at every depth
    assert by[(1, 1, 0.001)]["rmse_ms"] == by[(2, 1, 0.001)]["rmse_ms"]
    # a coarser grid moves spikes further
    assert float(by[(1, 1, 0.008)]["rmse_ms"]) > float(by[(1, 1, 0.001)]["rmse_ms"]) > 0
    assert float(by[(1, 1, 0.001)]["spikes_per_sample_continuous"]) > 0
    for name in ("rmse_by_layer_depth1.png", "rmse_by_layer_depth2.png",
                 "count_changed_vs_dt.png"):
        assert (out / name).is_file(), name
    assert cli.main(["discretization-error", "--depths", "0", "--dt", "0.001", "--out",
                     str(out)]) == 2
