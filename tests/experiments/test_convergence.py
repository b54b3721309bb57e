"""The convergence experiment: the grouped trainer against a plain per-network loop, the run
directory (determinism, chunking, resume, refusal), ``--dt`` and the written files."""

import argparse
import csv
import json

import pytest
import torch

from batsnn import discretize, lif_linear
from batsnn.experiments import convergence as cv
from batsnn.experiments.convergence import run as cv_run
from batsnn.experiments.convergence.train import single_threaded
from batsnn.losses import count_predict, spike_count_class_loss, ttfs_cross_entropy, ttfs_predict
from batsnn.params import RESET_AT

SMALL = dict(means=(0.8, 1.6), stds=(0.4, 1.2), repeats=3, epochs=4)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny layers: one kernel thread, as run_convergence uses (parallel kernels wait for
    free cores on a loaded machine)."""
    with single_threaded():
        yield


@pytest.fixture
def no_plots(monkeypatch):
    """Skip the heat maps where a test only reads the CSV (test_outputs_... checks them)."""
    monkeypatch.setattr(cv_run, "plot_heatmaps", lambda *args, **kw: [])


def loop_reference(weights, variant, cfg):
    """Train each network alone: its own (2, 4) leaf, SGD, mean loss over the 2 samples."""
    x = torch.tensor(cv.INPUT_TIMES, dtype=torch.float64).unsqueeze(-1)
    x = discretize(x, cfg.dt)
    y = torch.tensor(cv.LABELS)
    k = cfg.max_spikes if variant == "multi" else 1
    accs, finals = [], []
    for w0 in weights:
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.SGD([w], lr=cfg.lr)
        acc = []
        for epoch in range(cfg.epochs + 1):
            out = lif_linear(x, w, tau_s=cfg.tau_s, theta=cfg.theta, max_spikes=k,
                             t_max=cfg.t_max, dt=cfg.dt)
            if variant == "multi":
                pred = count_predict(out.counts)
                loss = spike_count_class_loss(out.times, out.counts, y, target_true=10.0,
                                              target_false=0.0)
            else:
                pred = ttfs_predict(out.times)
                loss = ttfs_cross_entropy(out.times, y, tau_loss=0.1)
            acc.append((pred == y).double().mean().item())
            if epoch == cfg.epochs:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        accs.append(acc)
        finals.append(w.detach())
    return torch.tensor(accs, dtype=torch.float64), torch.stack(finals)


@pytest.mark.parametrize("dt", [None, 0.1], ids=["continuous", "dt0.1"])
@pytest.mark.parametrize("variant", cv.VARIANTS)
def test_grouped_equals_loop(variant, dt):
    cfg = cv.ConvergenceConfig(epochs=12, dt=dt)
    w0 = torch.cat([cv.initial_weights(0, variant, m, s, 4) for m, s in
                    ((0.6, 0.8), (1.0, 0.6), (1.6, 1.2))])
    run = cv.train_grouped(w0, variant, cfg)
    acc_ref, w_ref = loop_reference(w0, variant, cfg)
    assert run.accuracy.shape == (12, 13)
    assert torch.equal(run.accuracy, acc_ref), "per-epoch accuracies differ"
    torch.testing.assert_close(run.weights, w_ref, atol=1e-12, rtol=1e-12)
    # the case is not trivial: weights move, and accuracies change during training
    assert (run.weights - w0).abs().amax() > 1e-2
    assert (run.accuracy[:, 1:] != run.accuracy[:, :1]).any()
    assert not run.diverged.any()


def test_grouped_marks_diverged_networks():
    cfg = cv.ConvergenceConfig(epochs=3)
    cfg.lr = float("inf")  # (bypasses validation) any nonzero gradient gives +-inf or NaN
    w0 = cv.initial_weights(0, "multi", 1.6, 0.4, 4)
    run = cv.train_grouped(w0, "multi", cfg)
    assert run.diverged.all()
    assert torch.equal(run.weights, torch.zeros_like(w0))
    assert (run.accuracy[:, 2:] == 0).all()


def _csv(path):
    return (path / "convergence.csv").read_text()


def test_outputs_columns_and_files(tmp_path):
    cfg = cv.ConvergenceConfig(**SMALL)
    res = cv.run_convergence(cfg, tmp_path, quiet=True, log=None)
    with open(tmp_path / "convergence.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == cv.CSV_COLUMNS
    assert [(r["variant"], r["mean"], r["std"]) for r in rows] == [
        (v, m, s) for v in ("multi", "single") for m in ("0.8", "1.6") for s in ("0.4", "1.2")]
    for r in rows:
        assert int(r["repeats"]) == 3
        for k in cv.CSV_COLUMNS[3:]:
            if k != "repeats":
                assert 0.0 <= float(r[k]) <= 1.0, (k, r[k])
        assert float(r["mean_best_accuracy"]) >= float(r["mean_initial_accuracy"])
    for name in ("multi", "single", "difference", "grid"):
        assert (tmp_path / f"convergence_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "report.md").read_text()
    assert "## Headline" in report and "## Time" in report and "| mean \\ std |" in report
    h = res.headline["multi"]
    assert h["cells"] == 4
    assert h["cells_converged_90"] == sum(
        float(r["share_converged"]) >= 0.9 for r in rows if r["variant"] == "multi")
    assert json.loads((tmp_path / "config.json").read_text())["repeats"] == 3


def test_deterministic_and_chunking_free(tmp_path, no_plots):
    runs = {}
    for name, chunk in (("a", 1), ("b", 3), ("c", 1)):
        cfg = cv.ConvergenceConfig(**SMALL, chunk_cells=chunk)
        cv.run_convergence(cfg, tmp_path / name, quiet=True, log=None)
        runs[name] = _csv(tmp_path / name)
    assert runs["a"] == runs["b"] == runs["c"]
    assert len(list((tmp_path / "a" / "parts").glob("*.json"))) == 8
    assert len(list((tmp_path / "b" / "parts").glob("*.json"))) == 4
    # a cell's weights depend on (seed, variant, mean, std) only
    w = cv.initial_weights(0, "multi", 0.8, 0.4, 3)
    assert torch.equal(w, cv.initial_weights(0, "multi", 0.8, 0.4, 3))
    assert not torch.equal(w, cv.initial_weights(1, "multi", 0.8, 0.4, 3))
    assert not torch.equal(w, cv.initial_weights(0, "single", 0.8, 0.4, 3))


def test_resume_after_interruption(tmp_path, monkeypatch, no_plots):
    cfg = cv.ConvergenceConfig(**SMALL, chunk_cells=3)
    cv.run_convergence(cfg, tmp_path / "full", quiet=True, log=None)

    real = cv.train_grouped
    calls = []

    def interrupted(weights, *a, **kw):
        calls.append(weights.shape[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(weights, *a, **kw)

    monkeypatch.setattr(cv_run, "train_grouped", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cv.run_convergence(cfg, tmp_path / "resumed", quiet=True, log=None)
    assert len(list((tmp_path / "resumed" / "parts").glob("*.json"))) == 1
    assert not (tmp_path / "resumed" / "convergence.csv").exists()
    monkeypatch.setattr(cv_run, "train_grouped", real)
    messages = []
    # a different chunk size on resume changes nothing either
    cfg2 = cv.ConvergenceConfig(**SMALL, chunk_cells=2)
    cv.run_convergence(cfg2, tmp_path / "resumed", quiet=True, log=messages.append)
    assert "3 of 8 cells already done" in messages[0]
    assert _csv(tmp_path / "resumed") == _csv(tmp_path / "full")


@pytest.mark.parametrize("change,key", [({"epochs": 5}, "epochs"), ({"dt": 0.1}, "dt"),
                                         ({"seed": 1}, "seed")])
def test_resume_refuses_other_settings(tmp_path, change, key, no_plots):
    cfg = cv.ConvergenceConfig(**(SMALL | {"means": (0.8,), "stds": (0.4,),
                                           "variants": ("multi",)}))
    cv.run_convergence(cfg, tmp_path, quiet=True, log=None)
    other = cv.ConvergenceConfig(**(SMALL | {"means": (0.8,), "stds": (0.4,)} | change))
    with pytest.raises(cv.SettingsMismatch, match=rf"{key}: stored .* requested"):
        cv.run_convergence(other, tmp_path, quiet=True, log=None)


def test_cli_with_dt(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cv.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["convergence", "--out", str(tmp_path), "--repeats", "2",
                              "--epochs", "3", "--means", "1:2:0.6", "--stds", "0.5",
                              "--seed", "3", "--dt", "0.1", "--quiet"])
    assert args.means == [1.0, 1.6] and args.stds == [0.5]
    assert args.func(args) == 0
    assert str(tmp_path) in capsys.readouterr().out
    part = json.loads(next((tmp_path / "parts").glob("*.json")).read_text())
    assert part["settings"]["dt"] == 0.1 and part["settings"]["seed"] == 3
    assert len(_csv(tmp_path).splitlines()) == 1 + 2 * 2
    with pytest.raises(SystemExit):
        parser.parse_args(["convergence", "--out", str(tmp_path), "--means", "1:0:0.2"])
    assert "grid must be 'start:stop:step'" in capsys.readouterr().err
    # the inputs are moved to the grid: 0 s -> 0.1 s
    x, _ = cv.experiment_data(0.1)
    assert x[0, 0, 0].item() == pytest.approx(0.1)


def test_parse_grid_and_config_errors():
    assert cv.parse_grid("0:2.5:0.2") == [round(0.2 * i, 10) for i in range(13)]
    assert cv.parse_grid("0.5, 1") == [0.5, 1.0]
    for bad in ("0:1", "1:0:0.2", "0:1:0", "a,b", ""):
        with pytest.raises(ValueError, match="grid"):
            cv.parse_grid(bad)
    with pytest.raises(ValueError, match="stds must be >= 0"):
        cv.ConvergenceConfig(stds=(-0.2,))
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        cv.ConvergenceConfig(repeats=0)
    with pytest.raises(ValueError, match="variants"):
        cv.ConvergenceConfig(variants=("both",))
    with pytest.raises(ValueError, match="variant must be"):
        cv.train_grouped(torch.zeros(1, 2, 4, dtype=torch.float64), "x", cv.ConvergenceConfig())


def test_reset_at_emitted_on_the_grid_only(tmp_path, no_plots):
    """``reset_at`` is a setting of its own: on the grid the emitted-time reset changes the
    training, in exact time it changes nothing; a rerun with the other value is refused."""
    small = SMALL | {"variants": ("multi",), "epochs": 3}
    csvs = {}
    for dt in (None, 0.1):
        for reset_at in RESET_AT:
            out = tmp_path / f"{dt}-{reset_at}"
            cv.run_convergence(cv.ConvergenceConfig(**small, dt=dt, reset_at=reset_at), out,
                               quiet=True, log=None)
            csvs[(dt, reset_at)] = _csv(out)
            part = json.loads(next((out / "parts").glob("*.json")).read_text())
            assert part["settings"]["reset_at"] == reset_at
    assert csvs[(None, "crossing")] == csvs[(None, "emitted")]
    assert csvs[(0.1, "crossing")] != csvs[(0.1, "emitted")]
    assert cv.ConvergenceConfig(dt=0.1, reset_at="emitted").params("single").reset_at \
        == "emitted"
    with pytest.raises(cv.SettingsMismatch, match="reset_at: stored 'emitted', requested "
                                                  "'crossing'"):
        cv.run_convergence(cv.ConvergenceConfig(**small, dt=0.1), tmp_path / "0.1-emitted",
                           quiet=True, log=None)


def test_parts_without_reset_at_were_made_with_crossing(tmp_path, no_plots):
    """Part files written before ``reset_at`` was recorded continue as ``crossing``."""
    cfg = cv.ConvergenceConfig(**SMALL | {"variants": ("multi",), "stds": (0.4,)})
    cv.run_convergence(cfg, tmp_path, quiet=True, log=None)
    before = _csv(tmp_path)
    for path in (tmp_path / "parts").glob("*.json"):
        part = json.loads(path.read_text())
        del part["settings"]["reset_at"]
        path.write_text(json.dumps(part))
    messages = []
    cv.run_convergence(cfg, tmp_path, quiet=True, log=messages.append)
    assert _csv(tmp_path) == before and "0 cells trained" in messages[-1]
    with pytest.raises(cv.SettingsMismatch, match="reset_at"):
        cv.run_convergence(cv.ConvergenceConfig(**SMALL | {"variants": ("multi",), "stds": (0.4,),
                                                           "reset_at": "emitted"}),
                           tmp_path, quiet=True, log=None)


def test_cli_reset_at_and_one_settings_mismatch(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cv.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["convergence", "--out", str(tmp_path), "--repeats", "2",
                              "--epochs", "2", "--means", "1", "--stds", "0.5", "--dt", "0.1",
                              "--reset-at", "emitted", "--quiet"])
    assert args.reset_at == "emitted" and args.func(args) == 0
    part = json.loads(next((tmp_path / "parts").glob("*.json")).read_text())
    assert part["settings"]["reset_at"] == "emitted"
    assert "resets at the emitted grid times" in (tmp_path / "report.md").read_text()
    assert parser.parse_args(["convergence", "--out", "x"]).reset_at == "crossing"
    from batsnn.experiments import sweep
    assert cv.SettingsMismatch is sweep.SettingsMismatch


def test_heat_maps_of_a_large_grid_stay_small(tmp_path):
    """A grid of many values makes an image of at most MAX_INCHES a side (150 dpi)."""
    import struct

    from batsnn.experiments.convergence.heatmaps import MAX_INCHES

    cfg = cv.ConvergenceConfig(means=cv.parse_grid("0:150:1"), stds=(0.5, 1.0),
                               variants=("multi",), repeats=1)
    rows = [{"variant": "multi", "mean": f"{m:.10g}", "std": f"{s:.10g}",
             "share_converged": (m % 7) / 7} for m in cfg.means for s in cfg.stds]
    (path,) = cv.plot_heatmaps(rows, cfg, tmp_path)
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    assert height <= MAX_INCHES * 150 + 1 and height > 20 * 150
    assert width < 1000
