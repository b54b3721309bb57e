"""Runs written before the runner became the ``batsnn.experiments.training`` package still
resume and reproduce: a one-epoch run directory of batsnn 0.1.0 (``fixtures/``) continues
to the metrics of its uninterrupted two-epoch run, and its ``config.json`` retrains to the
same metrics."""

import shutil
from pathlib import Path

from batsnn import cli
from batsnn import metrics as M
from batsnn.experiments.config import resolve_config
from batsnn.experiments.rundir import load_run_checkpoint, read_csv
from batsnn.experiments.train import train

FIXTURE = Path(__file__).parent / "fixtures" / "run-0.1.0-dither"
TIMING = (M.TRAIN_SECONDS, M.EPOCH_SECONDS)


def _untimed(path):
    rows = [{k: v for k, v in r.items() if k not in TIMING} for r in read_csv(path)]
    assert rows and all(len(r) > 10 for r in rows)
    return rows


def test_an_old_run_resumes_to_its_uninterrupted_metrics(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "metrics.csv", "last.pt"):
        shutil.copy(FIXTURE / name, run / name)
    assert cli.main(["train", "--config", str(FIXTURE / "config.json"), "--data-dir",
                     str(data_dir), "--out", str(run), "--epochs", "2", "--resume",
                     "--quiet"]) == 0
    assert f"resuming {run} after epoch 1" in capsys.readouterr().out
    assert load_run_checkpoint(run / "last.pt")["epoch"] == 2
    want = _untimed(FIXTURE / "two-epochs-metrics.csv")
    assert len(want) == 2 and want[0] != want[1]
    assert _untimed(run / "metrics.csv") == want


def test_an_old_config_reproduces_its_run(data_dir, tmp_path):
    cfg = resolve_config(file=FIXTURE / "config.json", data_dir=str(data_dir),
                         out=str(tmp_path / "again"))
    assert (cfg.dt_mode, cfg.dt, cfg.epochs) == ("dither", 0.004, 1)
    train(cfg, quiet=True)
    assert _untimed(tmp_path / "again" / "metrics.csv") == _untimed(FIXTURE / "metrics.csv")


def test_an_old_run_resumed_from_its_preset_continues_as_it_ran(data_dir, tmp_path):
    """The run predates ``revive``, which its preset now turns on: resumed with the preset's
    settings (not its config.json), it continues with the remedy off, as it ran, says so,
    and reaches the uninterrupted run's metrics."""
    import dataclasses
    import json

    from batsnn.experiments.config import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "metrics.csv", "last.pt"):
        shutil.copy(FIXTURE / name, run / name)
    doc = json.loads((FIXTURE / "config.json").read_text())
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"preset", "out", "data_dir",
                                                                  "epochs"}
    cfg = resolve_config("mnist-count", **{k: v for k, v in doc.items() if k in fields},
                         data_dir=str(data_dir), out=str(run), epochs=2)
    assert cfg.revive == "output"  # the preset's, today
    lines = []
    train(cfg, resume=True, quiet=True, log=lines.append)
    assert cfg.revive == "none"
    assert any("continues with revive 'none'" in line for line in lines), lines
    assert _untimed(run / "metrics.csv") == _untimed(FIXTURE / "two-epochs-metrics.csv")
