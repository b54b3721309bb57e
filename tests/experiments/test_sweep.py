"""batsnn.experiments.sweep: tables from run directories, and whole sweeps on tiny data."""

import math
import statistics

import pytest

import batsnn
from batsnn import metrics as M
from batsnn.experiments import sweep as S
from batsnn.experiments.config import resolve_config
from batsnn.experiments.rundir import RunDir, read_csv, write_csv, write_json
from batsnn.experiments.train import train

TINY = dict(dataset="fashion-mnist", hidden=[20], max_spikes=[6, 6], theta=[0.2, 0.4],
            batch_size=10, eval_batch_size=20, epochs=1, device="cpu")


def _fake_run(out, dt, seed, acc, spikes, decision, seconds, curve=None):
    run = RunDir(out / "runs" / S.run_name(dt, seed))
    run.path.mkdir(parents=True)
    summary = {M.TEST_ACCURACY: acc, M.BEST_TEST_ACCURACY: acc, M.DECISION_TIME_MS: decision,
               **{k: 0.5 for k in M.LABEL_SHARE_KEYS}, M.SILENT_LABELS_PCT: 0.0,
               M.layer_key(M.SPIKES_PER_SAMPLE, 1): spikes[0],
               M.layer_key(M.SPIKES_PER_SAMPLE, 2): spikes[1],
               M.layer_key(M.SILENT_NEURONS_PCT, 1): 1.0,
               M.layer_key(M.SILENT_NEURONS_PCT, 2): 0.0, M.EPOCHS_COMPLETED: len(seconds)}
    write_json(run.summary, summary)
    curve = curve or [acc] * len(seconds)
    write_csv(run.metrics, [{M.EPOCH: i + 1, M.TRAIN_SECONDS: s, M.TEST_ACCURACY: a}
                            for i, (s, a) in enumerate(zip(seconds, curve))])


def test_rows_and_summary_by_hand(tmp_path):
    _fake_run(tmp_path, 0.0, 1, 0.8, (10.0, 2.0), 5.0, [1.0, 2.0])
    _fake_run(tmp_path, 0.0, 2, 0.6, (14.0, 4.0), math.nan, [1.0, 1.0])
    _fake_run(tmp_path, 0.002, 1, 0.5, (8.0, 1.0), 7.0, [3.0, 3.0])
    rows = S.sweep_rows(tmp_path, [0.0, 0.002, 0.004], [1, 2])
    assert [(r[S.DT], r[S.SEED]) for r in rows] == [(0.0, 1), (0.0, 2), (0.002, 1)]
    assert rows[0][M.TRAIN_SECONDS] == 3.0 and rows[0][S.EPOCHS] == 2
    assert rows[0][S.RUN_DIR].endswith("dt0ms-seed1")
    assert M.layer_keys(rows[0], M.SPIKES_PER_SAMPLE) == ["spikes_per_sample_l1",
                                                          "spikes_per_sample_l2"]
    summ = S.summary_rows(rows, [0.0, 0.002, 0.004])
    assert [(s[S.DT], s[S.N_SEEDS]) for s in summ] == [(0.0, 2), (0.002, 1)]
    acc = S.mean_key(M.TEST_ACCURACY), S.std_key(M.TEST_ACCURACY)
    assert summ[0][acc[0]] == pytest.approx(0.7)
    assert summ[0][acc[1]] == pytest.approx(statistics.stdev([0.8, 0.6]))
    assert summ[1][acc[1]] == 0.0  # one seed
    # a NaN decision time (no output spikes) is left out of the mean
    assert summ[0][S.mean_key(M.DECISION_TIME_MS)] == 5.0
    assert summ[0][S.mean_key(M.TRAIN_SECONDS)] == 2.5
    assert S.run_name(0.0005, 3) == "dt0.5ms-seed3"


def test_epoch_rows_and_table_by_hand(tmp_path):
    """Per dt and epoch, the mean over the runs that reached the epoch; a stopped run (seed 2
    at 0 ms, one epoch) counts where it got to, and the report's cell says how many runs."""
    _fake_run(tmp_path, 0.0, 1, 0.9, (1.0, 1.0), 5.0, [1.0, 1.0, 1.0], curve=[0.5, 0.7, 0.9])
    _fake_run(tmp_path, 0.0, 2, 0.3, (1.0, 1.0), 5.0, [1.0], curve=[0.3])
    _fake_run(tmp_path, 0.004, 1, 0.2, (1.0, 1.0), 5.0, [1.0, 1.0], curve=[0.4, 0.2])
    _fake_run(tmp_path, 0.004, 2, 0.6, (1.0, 1.0), 5.0, [1.0, 1.0], curve=[0.6, 0.6])
    rows = S.epoch_rows(tmp_path, [0.0, 0.004, 0.008], [1, 2])
    acc = S.mean_key(M.TEST_ACCURACY), S.std_key(M.TEST_ACCURACY)
    got = [(r[S.DT], r[M.EPOCH], r[S.N_SEEDS], r[acc[0]]) for r in rows]
    assert got == [(0.0, 1, 2, pytest.approx(0.4)), (0.0, 2, 1, pytest.approx(0.7)),
                   (0.0, 3, 1, pytest.approx(0.9)), (0.004, 1, 2, pytest.approx(0.5)),
                   (0.004, 2, 2, pytest.approx(0.4))]
    assert rows[0][acc[1]] == pytest.approx(statistics.stdev([0.5, 0.3]))
    assert math.isnan(rows[0][S.mean_key(M.DECISION_TIME_MS)])  # not in these metrics.csv
    lines = S._epoch_table(rows, 2)
    header, table = _table("\n".join(lines))
    assert header == ["dt (ms)", "1", "2", "3"]
    assert table["0"] == ["0", "40.00", "70.00 (1)", "90.00 (1)"]
    assert table["4"] == ["4", "50.00", "40.00", "-"]
    assert S._epoch_table([], 2) == []


def _table(report, which=0):
    """Table ``which`` of the report as {dt cell: [cells]} and its header."""
    blocks, cur = [], []
    for ln in report.splitlines() + [""]:
        if ln.startswith("|"):
            cur.append(ln)
        elif cur:
            blocks.append(cur)
            cur = []
    lines = blocks[which]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return cells[0], {row[0]: row for row in cells[2:]}


def _check_report(report, cfg, summary, dts, seeds, command):
    """The report names the settings and shows summary.csv's numbers for every dt."""
    assert f"# Time-step sweep: {cfg.preset} on {cfg.dataset}" in report
    assert f"Produced by `{command}` with batsnn {batsnn.__version__}" in report
    assert f"{len(dts)} time steps x {len(seeds)} seeds (seeds {', '.join(map(str, seeds))}" \
        in report
    assert f"{cfg.epochs} epochs set, {cfg.epochs} completed per run" in report
    assert f"train samples: {cfg.train_samples or 'all'}" in report
    header, table = _table(report)
    assert header[:2] == ["dt (ms)", "test accuracy (%)"] and header[-1] == "train s"
    assert header[2:4] == ["spikes/sample l1", "spikes/sample l2"]
    assert sorted(table) == sorted(f"{1e3 * dt:g}" for dt in dts)

    def pm(row, key, scale, digits):
        return (f"{scale * float(row[S.mean_key(key)]):.{digits}f} ± "
                f"{scale * float(row[S.std_key(key)]):.{digits}f}")

    for s in summary:
        cells = table[f"{1e3 * float(s[S.DT]):g}"]
        assert cells[1] == pm(s, M.TEST_ACCURACY, 100, 2)
        assert cells[2] == pm(s, "spikes_per_sample_l1", 1, 1)
        assert cells[3] == pm(s, "spikes_per_sample_l2", 1, 1)
        assert cells[4] == pm(s, M.DECISION_TIME_MS, 1, 1)
        assert cells[5] == pm(s, M.label_share_key(50), 100, 1)
        for i, ms in enumerate(M.READOUT_MS):
            assert cells[6 + i] == pm(s, M.readout_accuracy_key(ms), 100, 1)
        assert cells[6 + len(M.READOUT_MS)] == f"{float(s[S.mean_key(M.TRAIN_SECONDS)]):.0f}"


def test_sweep_skips_finished_pairs(data_dir, tmp_path):
    """One (dt, seed) pair trained, its row and report written; run again, nothing trains."""
    out = tmp_path / "sweep"
    base = resolve_config("mnist-count", **TINY, data_dir=str(data_dir))
    lines = []
    rows = S.run_sweep(base, [0.004], [2], out, jobs=1, quiet=True, log=lines.append)
    assert "0 finished already, 1 to train" in lines[0]
    csv_rows = read_csv(out / "sweep.csv")
    assert [(float(r[S.DT]), int(r[S.SEED])) for r in csv_rows] == [(0.004, 2)]
    assert float(csv_rows[0][M.TEST_ACCURACY]) == rows[0][M.TEST_ACCURACY]
    assert float(csv_rows[0]["spikes_per_sample_l1"]) > 0
    assert (out / "report.md").is_file() and (out / "accuracy_vs_dt.png").is_file()
    lines.clear()
    again = S.run_sweep(base, [0.004], [2], out, jobs=1, quiet=True, log=lines.append)
    assert "1 finished already, 0 to train" in lines[0]
    assert again[0][M.TEST_ACCURACY] == rows[0][M.TEST_ACCURACY]


@pytest.mark.slow  # seven runs; test_sweep_skips_finished_pairs runs by default
def test_sweep_end_to_end_resume_and_rows_equal_single_runs(data_dir, tmp_path):
    out = tmp_path / "sweep"
    base = resolve_config("mnist-count", **TINY, data_dir=str(data_dir))
    lines = []
    cmd = "batsnn sweep --tiny"
    rows = S.run_sweep(base, [0, 0.004], [1, 2], out, jobs=1, quiet=True, command=cmd,
                       log=lines.append)
    assert lines[0].startswith("sweep: 2 dt x 2 seeds, 0 finished already, 4 to train")
    csv_rows = read_csv(out / "sweep.csv")
    assert [(float(r[S.DT]), int(r[S.SEED])) for r in csv_rows] == [(0.0, 1), (0.0, 2),
                                                                    (0.004, 1), (0.004, 2)]
    assert [r[M.TEST_ACCURACY] for r in rows] == [float(r[M.TEST_ACCURACY]) for r in csv_rows]
    for col in (M.TEST_ACCURACY, "spikes_per_sample_l1", "spikes_per_sample_l2",
                M.DECISION_TIME_MS, M.label_share_key(50), M.TRAIN_SECONDS):
        assert col in csv_rows[0], col
    summary = read_csv(out / "summary.csv")
    assert [float(r[S.DT]) for r in summary] == [0.0, 0.004]
    # summary.csv: mean and std over the seeds of sweep.csv
    for s, dt in zip(summary, (0.0, 0.004)):
        accs = [float(r[M.TEST_ACCURACY]) for r in csv_rows if float(r[S.DT]) == dt]
        assert float(s[S.mean_key(M.TEST_ACCURACY)]) == pytest.approx(statistics.mean(accs))
        assert float(s[S.std_key(M.TEST_ACCURACY)]) == pytest.approx(statistics.stdev(accs))
    for name in ("accuracy_vs_dt.png", "spikes_vs_dt.png", "latency_vs_dt.png",
                 "label_spikes_vs_dt.png", "readout_vs_dt.png", "accuracy_per_epoch.png",
                 "report.md"):
        assert (out / name).is_file(), name
    _check_report((out / "report.md").read_text(), base, summary, [0, 0.004], [1, 2], cmd)
    # epochs.csv: one epoch here, so its means are those of summary.csv
    per_epoch = read_csv(out / "epochs.csv")
    assert [(float(r[S.DT]), int(r[M.EPOCH]), int(r[S.N_SEEDS])) for r in per_epoch] == [
        (0.0, 1, 2), (0.004, 1, 2)]
    for e, s in zip(per_epoch, summary):
        for k in (M.TEST_ACCURACY, M.DECISION_TIME_MS, M.readout_accuracy_key(100)):
            assert float(e[S.mean_key(k)]) == pytest.approx(float(s[S.mean_key(k)])), k
    _, epoch_table = _table((out / "report.md").read_text(), 1)
    assert epoch_table["4"][1] == f"{100 * float(per_epoch[1][S.mean_key(M.TEST_ACCURACY)]):.2f}"

    # a sweep row equals what a single run gives for the same settings
    single = resolve_config("mnist-count", **TINY, data_dir=str(data_dir), dt=0.004, seed=2,
                            out=str(tmp_path / "single"))
    s = train(single, quiet=True)
    row = csv_rows[3]
    assert float(row[M.TEST_ACCURACY]) == s[M.TEST_ACCURACY]
    assert float(row["spikes_per_sample_l1"]) == s["spikes_per_sample_l1"]
    assert float(row[M.DECISION_TIME_MS]) == pytest.approx(s[M.DECISION_TIME_MS])
    assert float(row["spikes_per_sample_l2"]) > 0

    # rerun: every pair is finished and skipped
    lines.clear()
    S.run_sweep(base, [0, 0.004], [1, 2], out, jobs=1, quiet=True, log=lines.append)
    assert "4 finished already, 0 to train" in lines[0]
    # more seeds: only the new pairs are trained
    S.run_sweep(base, [0, 0.004], [1, 2, 3], out, jobs=1, quiet=True, log=lines.append)
    assert "4 finished already, 2 to train" in lines[-4]
    assert len(read_csv(out / "sweep.csv")) == 6
    # report only: nothing is trained, the tables come from the finished runs
    (out / "sweep.csv").unlink()
    S.run_sweep(base, [0, 0.004], [1, 2, 3, 4], out, report_only=True, log=lines.append)
    assert "6 of 8 (dt, seed) runs have results (6 with a final checkpoint)" in lines[-2]
    assert len(read_csv(out / "sweep.csv")) == 6
    report = (out / "report.md").read_text()
    _check_report(report, base, read_csv(out / "summary.csv"), [0, 0.004], [1, 2, 3, 4],
                  "batsnn.experiments.sweep.run_sweep")


@pytest.mark.slow  # worker processes; the scheduler tests cover the slots by default
def test_sweep_in_parallel_processes(data_dir, tmp_path):
    out = tmp_path / "sweep"
    base = resolve_config("mnist-count", **TINY, data_dir=str(data_dir))
    S.run_sweep(base, [0, 0.002], [1], out, jobs=2, log=lambda line: None)
    assert len(read_csv(out / "sweep.csv")) == 2


@pytest.mark.parametrize("dts, seeds, words", [
    ([-1.0], [1], "dt values must be finite and >= 0"),
    ([], [1], "dts needs at least one value"),
    ([0.0], [], "seeds must be a non-empty list of ints"),
    ([0.0], [1.5], "seeds must be a non-empty list of ints"),
])
def test_sweep_bad_arguments(tmp_path, dts, seeds, words):
    with pytest.raises(ValueError, match=words):
        S.run_sweep(resolve_config("mnist-count", device="cpu"), dts, seeds, tmp_path)
