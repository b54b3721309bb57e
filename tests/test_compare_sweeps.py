"""analysis/compare_sweeps.py: accuracy per epoch of several sources at one dt, by hand."""

import statistics

import pytest

from batsnn import metrics as M
from batsnn.experiments import sweep as S
from batsnn.experiments.rundir import write_csv, write_json
from tests.helpers import analysis_script



def _metrics(path, curve):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(path, [{M.EPOCH: i + 1, M.TEST_ACCURACY: a} for i, a in enumerate(curve)])
    return path


def _sweep(out, curves):
    """A sweep directory holding ``curves[(dt, seed)]`` as each run's accuracy per epoch."""
    for (dt, seed), curve in curves.items():
        _metrics(out / "runs" / S.run_name(dt, seed) / "metrics.csv", curve)
    write_json(out / "sweep.json", {"batsnn_run": "sweep",
                                    "runs": [S.run_name(dt, s) for dt, s in curves]})
    return out


def test_sweeps_and_metrics_files_by_hand(tmp_path, capsys):
    sweep = _sweep(tmp_path / "sweep", {(0.01, 1): [0.5, 0.7], (0.01, 2): [0.3, 0.9],
                                        (0.004, 1): [0.1, 0.1]})
    a = _metrics(tmp_path / "a.csv", [0.8, 0.9, 0.95])
    b = _metrics(tmp_path / "b.csv", [0.6, 0.7])
    png = tmp_path / "cmp.png"
    assert analysis_script("compare_sweeps").main(
        ["--dt", "10e-3", "--out", str(png), f"grid={sweep}", f"fine={a},{b}"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "label,epoch,runs,mean_pct,std_pct"
    rows = [line.split(",") for line in lines[1:]]
    # the sweep's runs at 10 ms only (not its 4 ms run), both seeds per epoch
    assert rows[0][:3] == ["grid", "1", "2"] and float(rows[0][3]) == pytest.approx(40.0)
    assert float(rows[0][4]) == pytest.approx(100 * statistics.stdev([0.5, 0.3]), abs=0.01)
    assert float(rows[1][3]) == pytest.approx(80.0)
    # files of single runs: an epoch only one of them reached counts that one, std 0
    assert rows[2][:3] == ["fine", "1", "2"] and float(rows[2][3]) == pytest.approx(70.0)
    assert rows[4][:3] == ["fine", "3", "1"] and float(rows[4][3]) == pytest.approx(95.0)
    assert float(rows[4][4]) == 0.0
    assert png.is_file() and png.stat().st_size > 1000


@pytest.mark.parametrize("args, words", [
    (["--dt", "-1"], "--dt '-1'"),
    (["--dt", "0.01", "nolabel"], "expected LABEL=SOURCE"),
])
def test_bad_arguments_name_the_argument(tmp_path, capsys, args, words):
    with pytest.raises(SystemExit):
        analysis_script("compare_sweeps").main([*args, "--out", str(tmp_path / "x.png")]
                       + ([] if len(args) > 2 else [f"x={tmp_path}"]))
    assert words in capsys.readouterr().err


def test_missing_sources_are_named(tmp_path):
    script = analysis_script("compare_sweeps")
    with pytest.raises(SystemExit, match="not a sweep directory"):
        script.metrics_files(str(tmp_path), 0.01)
    sweep = _sweep(tmp_path / "sweep", {(0.004, 1): [0.5]})
    with pytest.raises(SystemExit, match="no run at dt = 0.01 s"):
        script.metrics_files(str(sweep), 0.01)
    with pytest.raises(SystemExit, match="no such metrics file: .*nope.csv"):
        script.metrics_files(str(tmp_path / "nope.csv"), 0.01)


@pytest.mark.parametrize("record, words", [
    ("[" * 3000 + "]" * 3000, "nested more than 64 levels"),
    ('{"runs": 3}', "is not a batsnn sweep record"),
    ("[1]", "is not a batsnn sweep record"),
    ("{runs", "is not valid JSON"),
])
def test_corrupt_sweep_records_are_named(tmp_path, record, words):
    script = analysis_script("compare_sweeps")
    (tmp_path / "sweep.json").write_text(record)
    with pytest.raises(SystemExit, match="sweep.json") as e:
        script.metrics_files(str(tmp_path), 0.01)
    assert words in str(e.value)


def test_a_corrupt_metrics_file_is_named(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("epoch,test_accuracy\n1,high\n")
    with pytest.raises(SystemExit, match="bad.csv is not a batsnn metrics file .line 2"):
        analysis_script("compare_sweeps").main(["--dt", "0.01", "--out",
                                                str(tmp_path / "x.png"), f"x={bad}"])
