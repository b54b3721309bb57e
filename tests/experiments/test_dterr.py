"""batsnn.experiments.dterr: the discretization-error study on random inputs."""

import pytest

from batsnn import metrics as M
from batsnn.experiments import dterr as D
from batsnn.experiments.rundir import read_csv, read_json, write_json


def test_discretization_error(tmp_path):
    out = tmp_path / "dterr"
    lines = []
    rows = D.run_discretization_error([1, 2], [0.001, 0.008], out, width=40, samples=8,
                                      dataset="random", theta=0.1, device="cpu",
                                      log=lines.append)
    assert "6 (depth, layer, dt) cases" in lines[0]
    csv_rows = read_csv(out / D.CSV_NAME)
    assert [r[M.RMSE_MS] for r in rows] == [float(r[M.RMSE_MS]) for r in csv_rows]
    keys = {(int(r[D.DEPTH]), int(r[D.LAYER]), float(r[D.DT])) for r in csv_rows}
    assert keys == {(1, 1, 0.001), (1, 1, 0.008), (2, 1, 0.001), (2, 1, 0.008), (2, 2, 0.001),
                    (2, 2, 0.008)}
    by = {(int(r[D.DEPTH]), int(r[D.LAYER]), float(r[D.DT])): r for r in csv_rows}
    # same weights: layer 1 is the same network at every depth
    assert by[(1, 1, 0.001)][M.RMSE_MS] == by[(2, 1, 0.001)][M.RMSE_MS]
    # a coarser grid moves spikes further
    assert float(by[(1, 1, 0.008)][M.RMSE_MS]) > float(by[(1, 1, 0.001)][M.RMSE_MS]) > 0
    assert float(by[(1, 1, 0.001)][M.SPIKES_CONTINUOUS]) > 0
    for name in ("rmse_by_layer_depth1.png", "rmse_by_layer_depth2.png",
                 "count_changed_vs_dt.png"):
        assert (out / name).is_file(), name


@pytest.mark.parametrize("depths, dts, words", [
    ([0], [0.001], "depths must be integers >= 1"),
    ([1], [0.0], "dt values must be finite and > 0"),
    ([1], [], "dt values must be finite and > 0"),
])
def test_discretization_error_bad_arguments(tmp_path, depths, dts, words):
    with pytest.raises(ValueError, match=words):
        D.run_discretization_error(depths, dts, tmp_path, device="cpu")


def test_discretization_error_of_a_conv_preset(tmp_path):
    """The mnist-conv network (random weights) compared layer by layer: conv, pool, conv,
    pool, dense, output (flatten only reshapes)."""
    out = tmp_path / "dterr"
    lines = []
    rows = D.run_discretization_error(None, [0.002, 0.008], out, samples=3, dataset="random",
                                      preset="mnist-conv", device="auto", log=lines.append)
    assert "mnist-conv network (6 layers, 2 dt)" in lines[0]
    assert [(r[D.DEPTH], r[D.LAYER], r[D.DT]) for r in rows] == [
        (6, li, dt) for dt in (0.002, 0.008) for li in range(1, 7)]
    by = {(r[D.LAYER], r[D.DT]): r for r in rows}
    assert by[(1, 0.002)][M.SPIKES_CONTINUOUS] > 0
    # pooling keeps every spike of the conv layer it follows
    assert by[(2, 0.002)][M.SPIKES_CONTINUOUS] == by[(1, 0.002)][M.SPIKES_CONTINUOUS]
    assert float(by[(1, 0.008)][M.RMSE_MS]) > float(by[(1, 0.002)][M.RMSE_MS]) > 0
    assert (out / "rmse_by_layer_depth6.png").is_file()
    with pytest.raises(ValueError, match="either depths or preset"):
        D.run_discretization_error([1], [0.001], out, preset="mnist-conv")


def test_reset_at_emitted_changes_the_grid_runs_only(tmp_path):
    """``reset_at="emitted"``: the exact-time reference is the same spike trains, the grid
    runs differ, and the setting is recorded (a rerun with the other value is refused)."""
    args = dict(width=40, samples=8, dataset="random", theta=0.1, device="cpu",
                log=lambda *a: None)
    rows = {r: D.run_discretization_error([2], [0.004], tmp_path / r, reset_at=r, **args)
            for r in ("crossing", "emitted")}
    for a, b in zip(rows["crossing"], rows["emitted"]):
        assert (a[D.LAYER], a[D.DT]) == (b[D.LAYER], b[D.DT])
        assert a[M.SPIKES_CONTINUOUS] == b[M.SPIKES_CONTINUOUS]  # exact time: the same
    assert any(a[M.RMSE_MS] != b[M.RMSE_MS] or a[M.SPIKES_DISCRETE] != b[M.SPIKES_DISCRETE]
               for a, b in zip(rows["crossing"], rows["emitted"]))
    stored = read_json(tmp_path / "emitted" / "config.json")["settings"]
    assert stored["reset_at"] == "emitted"
    with pytest.raises(ValueError, match="other settings: reset_at 'emitted' -> 'crossing'"):
        D.run_discretization_error([2], [0.004], tmp_path / "emitted", **args)
    # a result written before reset_at was recorded was made with crossing
    doc = read_json(tmp_path / "crossing" / "config.json")
    del doc["settings"]["reset_at"]
    write_json(tmp_path / "crossing" / "config.json", doc)
    again = D.run_discretization_error([2], [0.004], tmp_path / "crossing", **args)
    assert again == rows["crossing"]


def test_cli_reset_at_and_seed(tmp_path, capsys):
    from batsnn import cli

    out = tmp_path / "cli"
    assert cli.main(["discretization-error", "--depths", "1", "--dt", "4e-3", "--width", "16",
                     "--samples", "4", "--dataset", "random", "--device", "cpu", "--seed",
                     str(2**32 - 1), "--reset-at", "emitted", "--out", str(out)]) == 0
    settings = read_json(out / "config.json")["settings"]
    assert settings["reset_at"] == "emitted" and settings["seed"] == 2**32 - 1
    assert str(out / D.CSV_NAME) in capsys.readouterr().out
