"""analysis/tuning/train_generated.py: reviving silent neurons after every step."""

import json

import pytest

from tests.helpers import analysis_script

#: 8 hidden neurons; output weights from [-1, -0.5]: every output neuron silent for every sample
SILENT_OUTPUT = [{"features": 8, "theta": 0.3, "max_spikes": 3},
                 {"theta": 1.0, "max_spikes": 3, "init": [-1.0, -0.5]}]


def run_one_epoch(capsys, *extra) -> dict:
    """One epoch in 10 steps of 500 samples; the seed's JSON line."""
    script = analysis_script("tuning/train_generated")
    script.main(["--layers", json.dumps(SILENT_OUTPUT), "--epochs", "1", "--batch", "500",
                 "--t-max", "20", *extra])
    return json.loads(capsys.readouterr().out.splitlines()[0])


def test_revive_output_bumps_each_silent_output_neuron_after_every_step(capsys):
    # 3 output neurons silent at each of the 10 steps (a bump of 0.001 cannot wake them)
    assert run_one_epoch(capsys, "--revive", "output")["revived"] == 30
    assert run_one_epoch(capsys)["revived"] == 0


def test_revive_bump_must_be_positive(capsys):
    with pytest.raises(ValueError, match="revive_bump must be a finite number > 0, got 0.0"):
        run_one_epoch(capsys, "--revive", "output", "--revive-bump", "0")
