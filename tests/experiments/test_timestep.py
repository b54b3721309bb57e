"""batsnn.experiments.timestep: each time-step mode's decisions (grid per epoch,
margin, input shifts, resets, settings), the list of modes, and that settings, network
building and the training grid ask the modes."""

import pytest
import torch

from batsnn.experiments.config import DT_MODES as CONFIG_MODES
from batsnn.experiments.config import resolve_config, training_margin
from batsnn.experiments.model import build_model
from batsnn.experiments import timestep as TS
from batsnn.experiments.training.grid import TrainingGrid, training_dt
from batsnn.experiments.timestep import DT_MODES, DtMode, dt_mode


def cfg_of(mode, dt=0.01, **kw):
    kw.setdefault("dt_warmup_epochs", 2 if mode in ("finetune", "anneal") else 0)
    if mode == "fine":
        kw.setdefault("dt_fine", 0.004)
    return resolve_config("mnist-count", dt=dt, dt_mode=mode, **kw)


def test_the_list_of_modes_is_the_classes_in_order():
    assert DT_MODES == ("fixed", "continuous", "continuous-margin", "fine", "finetune",
                        "anneal", "dither", "consistent")
    assert CONFIG_MODES is DT_MODES  # config takes the list from here
    for name in DT_MODES:
        mode = dt_mode(name)
        assert isinstance(mode, DtMode) and mode.name == name
        assert dt_mode(name) is mode


@pytest.mark.parametrize("name, dts", [
    ("fixed", [0.01] * 4), ("continuous", [None] * 4), ("continuous-margin", [None] * 4),
    ("fine", [0.004] * 4), ("finetune", [None, None, 0.01, 0.01]),
    ("anneal", [0.01 / 3, 0.02 / 3, 0.01, 0.01]), ("dither", [0.01] * 4),
    ("consistent", [0.01] * 4)])
def test_grid_of_each_epoch(name, dts):
    cfg = cfg_of(name)
    got = [dt_mode(name).epoch_dt(cfg, e) for e in range(1, 5)]
    assert got == pytest.approx(dts) if name == "anneal" else got == dts
    assert [training_dt(cfg, e) for e in range(1, 5)] == got
    exact = cfg_of(name, dt=None)  # exact time: every mode trains in exact time
    assert [dt_mode(name).epoch_dt(exact, e) for e in range(1, 5)] == [None] * 4


@pytest.mark.parametrize("name", DT_MODES)
def test_margin_shifts_and_resets_of_each_mode(name):
    cfg, mode = cfg_of(name), dt_mode(name)
    assert mode.margin(cfg) == (pytest.approx(0.03) if name == "continuous-margin" else 0.0)
    assert training_margin(cfg) == mode.margin(cfg)
    assert mode.margin(cfg_of(name, dt=None)) == 0.0
    s = mode.shifts(cfg, epoch=1, batch=0, n=5)
    if name == "dither":
        assert s.shape == (5,) and s.dtype == torch.float64
        assert float(s.min()) >= 0.0 and float(s.max()) < 0.01
    else:
        assert s is None
    assert mode.shifts(cfg_of(name, dt=None), epoch=1, batch=0, n=5) is None
    assert mode.reset_at == ("emitted" if name == "consistent" else "crossing")
    model = build_model(cfg, 784, 10)  # the network resets as the mode says
    assert {m.params.reset_at for m in model.modules() if hasattr(m, "params")} == {
        mode.reset_at}


def test_each_mode_validates_its_own_settings():
    with pytest.raises(ValueError, match=r"dt_mode 'fine' needs 0 < dt_fine < dt, got "
                                         r"dt_fine=0.01 and dt=0.01"):
        cfg_of("fine", dt_fine=0.01)
    for name in ("finetune", "anneal"):
        with pytest.raises(ValueError, match=f"dt_mode '{name}' needs dt_warmup_epochs >= 1, "
                                             "got 0"):
            cfg_of(name, dt_warmup_epochs=0)
    with pytest.raises(ValueError, match="dt_mode 'continuous-margin' shortens the training "
                                         "horizon by 0.12 s, not less than t_max of network "
                                         "layer 1"):
        cfg_of("continuous-margin", dt=0.04, network=[
            {"type": "linear", "features": 5, "theta": 0.2, "max_spikes": 3},
            {"type": "linear", "theta": 0.4, "max_spikes": 3, "t_max": 0.1}])
    # what one mode needs, another does not ask for
    assert cfg_of("fixed", dt_fine=0.5).dt_fine == 0.5
    assert cfg_of("fine", dt=None).dt_fine == 0.004  # exact time: no grid to be finer than
    # the settings of each mode pass its own check
    for name in DT_MODES:
        dt_mode(name).validate(cfg_of(name))


def test_a_mode_must_be_named_once():
    with pytest.raises(TypeError, match="dt_mode 'fixed' is defined twice"):
        type("Again", (DtMode,), {"name": "fixed"})
    with pytest.raises(TypeError, match="Nameless must set name"):
        type("Nameless", (DtMode,), {})
    assert tuple(TS._REGISTRY) == DT_MODES  # nothing registered by the failures


def test_the_training_grid_follows_the_mode_and_restores_evaluation():
    cfg = cfg_of("continuous-margin", dt=0.01)
    torch.manual_seed(0)
    model = build_model(cfg, 784, 10)
    grid = TrainingGrid(model, cfg)
    params = lambda: {(m.params.dt, m.params.t_max) for m in model.modules()  # noqa: E731
                      if hasattr(m, "params")}
    assert params() == {(0.01, 0.2)}
    grid.train_at(1)
    (dt, t_max), = params()
    assert grid.dt is None and dt == 0.0 and t_max == pytest.approx(0.17)
    grid.evaluate_at()
    assert params() == {(0.01, 0.2)}
    anneal = cfg_of("anneal", dt=0.01)
    model = build_model(anneal, 784, 10)
    grid = TrainingGrid(model, anneal)
    grid.train_at(2)
    assert grid.dt == pytest.approx(0.02 / 3)
    assert {m.params.dt for m in model.modules() if hasattr(m, "params")} == {grid.dt}


def test_the_command_lines_help_lists_every_mode_from_its_class():
    """``--dt-mode``'s help is made from the mode classes: a new mode needs no edit there."""
    from batsnn.experiments.timestep import DT_MODES, dt_mode, modes_help

    text = modes_help()
    for name in DT_MODES:
        mode = dt_mode(name)
        assert mode.help, f"{name} has no help line"
        assert f"{name} ({mode.help})" in text
