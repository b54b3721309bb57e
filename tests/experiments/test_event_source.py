"""EventSource: event datasets as a run's data source (dense spike trains per split, the
input cap and its counted drops, cropping and scaling, the grid rule, shifts, maps, the
memory refusal) and the event settings of TrainConfig."""

import math
from fractions import Fraction
from math import floor

import numpy as np
import pytest
import torch

from batsnn.encoding import discretize
from batsnn.experiments import config as C
from batsnn.experiments import event_source as E
from batsnn.experiments.datasets import EventDataset, batch_spike_trains
from batsnn.experiments.datasets.events import split_from_samples
from batsnn.experiments.sources import IMAGE_KIND, data_kind, open_source
from batsnn.spikes import marked_valid

N_CH = 6


def _dataset(dtype=np.float64, n_train=7, n_test=4, seed=0, shape=(N_CH,)):
    """Samples with several spikes per channel (up to 5 in channel 0), decimal times."""
    rng = np.random.default_rng(seed)
    n_ch = int(np.prod(shape))
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        times, chans = [], []
        for i in range(n):
            k = 5 + i % 4
            ch = np.concatenate([np.zeros(5, np.int64), rng.integers(0, n_ch, k)])
            # times on decimal steps (multiples of 0.1 ms), some exact multiples of dt
            t = rng.integers(0, 400, ch.size) * 1e-4
            times.append(t.astype(dtype))
            chans.append(ch)
        splits[split] = split_from_samples(times, chans, np.arange(n) % 3, n_channels=n_ch,
                                           n_classes=3, source=f"tiny {split}")
    return EventDataset("tiny", tuple(shape), 3, splits)


def _cfg(**kw):
    net = {} if "network" in kw else {"hidden": [4], "theta": [0.1, 0.1], "max_spikes": [3, 3]}
    kw = {"dataset": "randman", **net, "dataset_options": {"n_classes": 3}, **kw}
    return C.resolve_config(**kw)


def _reference(ds, split, idx, dtype=torch.float32, **settings):
    return batch_spike_trains(ds, split, np.asarray(idx), dtype=dtype, **settings).trains.times


def test_exact_time_equals_batch_spike_trains():
    ds = _dataset(np.float32)
    src = E.EventSource(ds, _cfg(), "tiny")
    idx = torch.tensor([3, 0, 5])
    x = src.inputs("train", idx, "cpu", dt=None)
    ref = _reference(ds, "train", [3, 0, 5])
    assert x.dtype == torch.float32 and x.shape[:2] == (3, N_CH)
    # the dense split has the slots of the whole split: the batch's own are a prefix
    assert x.shape[-1] >= ref.shape[-1]
    assert torch.equal(x[..., :ref.shape[-1]], ref)
    assert torch.isinf(x[..., ref.shape[-1]:]).all()
    assert marked_valid(x)
    assert torch.equal(src.labels("train", idx), torch.tensor([0, 0, 2]))
    assert src.size("train") == 7 and src.n_test == 4 and src.n_classes == 3
    assert src.input_shape == (N_CH,) and src.n_inputs == N_CH


def _cell(t: float, dt: float) -> int:
    """The grid rule's cell of ``t`` (model.md section 6): the largest integer ``k`` whose
    grid point ``k * dt``, evaluated in float64, is at or before ``t``; searched from the
    exact quotient of the two binary numbers."""
    k = floor(Fraction(t) / Fraction(dt))
    while (k + 1) * dt <= t:
        k += 1
    while k * dt > t:
        k -= 1
    return k


@pytest.mark.parametrize("input_dtype", ["float32", "float64"])
@pytest.mark.parametrize("dt", [1e-4, 3e-4, 1e-3, 0.5e-3])
def test_grid_rule_on_decimal_steps(dt, input_dtype):
    """The grid point of every time is (k + 1) dt with k the cell of the held time (float32
    by default; float64 kept with input_dtype float64), found here with fractions,
    evaluated in float64 and rounded once to float32."""
    ds = _dataset(np.float64)
    src = E.EventSource(ds, _cfg(input_dtype=input_dtype), "tiny")
    held = torch.float64 if input_dtype == "float64" else torch.float32
    assert src.dense["train"].times.dtype == held
    idx = torch.arange(7)
    x = src.inputs("train", idx, "cpu", dt=dt)
    exact = src.inputs("train", idx, "cpu", dt=None)
    held_times = src.dense["train"].times
    finite = torch.isfinite(held_times)
    assert torch.equal(torch.isfinite(x), finite)
    # times at (or a rounding error from) multiples of dt are among them: the edge cases
    grid = [float(t) for t in held_times[finite]]
    assert sum(abs(t / dt - round(t / dt)) < 1e-3 for t in grid) >= 5
    want = [np.float32((_cell(t, dt) + 1) * dt) for t in grid]
    assert x[finite].tolist() == [float(w) for w in want]
    assert torch.equal(x, discretize(held_times.to(torch.float64), dt).to(torch.float32))
    assert (x[finite] >= exact[finite]).all()  # float32 rounding may meet the time itself
    assert marked_valid(x)


def test_shift_moves_each_sample_before_the_grid():
    ds = _dataset(np.float64)
    src = E.EventSource(ds, _cfg(), "tiny")
    idx = torch.tensor([1, 2, 6])
    shift = torch.tensor([0.0, 1e-4, 2.5e-4], dtype=torch.float64)
    x = src.inputs("train", idx, "cpu", dt=3e-4, shift=shift)
    held = src.dense["train"].times[idx].to(torch.float64)
    want = discretize(held + shift.reshape(-1, 1, 1), 3e-4).to(torch.float32)
    assert torch.equal(x, want)
    assert not torch.equal(x, src.inputs("train", idx, "cpu", dt=3e-4))
    # in exact time the shift is not applied (as for images: the shifts belong to the grid)
    assert torch.equal(src.inputs("train", idx, "cpu", dt=None, shift=shift),
                       src.inputs("train", idx, "cpu", dt=None))


def test_cap_drops_and_counts_spikes():
    ds = _dataset(np.float32)
    full = E.EventSource(ds, _cfg(), "tiny")
    src = E.EventSource(ds, _cfg(input_max_spikes=2), "tiny")
    assert src.slots == 2 and full.slots >= 5
    assert full.notice() is None and full.facts()["train"]["dropped"] == 0
    x = src.inputs("train", torch.arange(7), "cpu", dt=None)
    y = full.inputs("train", torch.arange(7), "cpu", dt=None)
    assert torch.equal(x, y[..., :2])  # the earliest two of each channel are kept
    dropped = int(torch.isfinite(y[..., 2:]).sum())
    facts = src.facts()
    assert facts["train"]["dropped"] == dropped > 0
    assert facts["train"]["spikes"] == int(torch.isfinite(x).sum())
    assert facts["train"]["spikes"] + dropped == full.facts()["train"]["spikes"]
    assert facts["train"]["slots"] == 2 and facts["train"]["largest_per_channel"] >= 5
    line = src.notice()
    assert "input_max_spikes 2" in line and f"train {dropped:,} of" in line


def test_crop_and_scale_equal_batch_spike_trains():
    ds = _dataset(np.float32)
    src = E.EventSource(ds, _cfg(input_t_start=0.01, input_t_stop=0.03,
                                 input_time_scale=2.0), "tiny")
    settings = dict(t_start=0.01, t_stop=0.03, time_scale=2.0)
    ref = batch_spike_trains(ds, "test", np.arange(4), **settings)
    x = src.inputs("test", torch.arange(4), "cpu", dt=None)
    assert torch.equal(x[..., :ref.trains.times.shape[-1]], ref.trains.times)
    assert src.facts()["test"]["cropped"] == int(ref.cropped.sum()) > 0
    assert float(x[torch.isfinite(x)].max()) < (0.03 - 0.01) * 2.0


def test_samples_subset_and_errors():
    ds = _dataset()
    src = E.EventSource(ds, _cfg(train_samples=3, test_samples=2), "tiny")
    assert (src.n_train, src.n_test) == (3, 2)
    with pytest.raises(ValueError, match=r"train_samples must be in \[1, 7\] for tiny, got 9"):
        E.EventSource(ds, _cfg(train_samples=9), "tiny")
    with pytest.raises(ValueError, match="no augmentation"):
        src.inputs("train", torch.arange(2), "cpu", dt=None, draw=torch.zeros(1))


def test_memory_refusal_names_the_sizes():
    ds = _dataset()
    with pytest.raises(E.InputTooLarge) as e:
        E.dense_split(ds, "train", max_bytes=100)
    msg = str(e.value)
    slots = E.dense_split(ds, "train").times.shape[-1]
    assert f"7 samples x {N_CH} channels x {slots} spike slots" in msg
    assert "input_max_spikes" in msg and "MiB" in msg
    assert isinstance(e.value, MemoryError) and isinstance(e.value, ValueError)
    with pytest.raises(E.InputTooLarge):
        E.EventSource(ds, _cfg(), "tiny", max_bytes=100)
    # the cap shrinks it under the limit; the events' working memory counts too
    need = 7 * N_CH * 1 * 4 + int(ds["train"].offsets[7]) * E.EVENT_WORK_BYTES
    assert E.dense_split(ds, "train", max_spikes=1, max_bytes=need).times.shape == (7, N_CH, 1)
    with pytest.raises(E.InputTooLarge, match="events"):
        E.dense_split(ds, "train", max_spikes=1, max_bytes=need - 1)


def test_both_splits_share_one_memory_limit():
    ds = _dataset(n_train=2, n_test=7)
    train = E.dense_split(ds, "train")
    test = E.dense_split(ds, "test")
    work = {s: int(ds[s].offsets[-1]) * E.EVENT_WORK_BYTES for s in ("train", "test")}
    held = train.times.numel() * 4  # the train split, held while the test split is built
    both = max(held + work["train"], held + test.times.numel() * 4 + work["test"])
    assert both > held + work["train"]  # the test split decides the limit
    E.EventSource(ds, _cfg(), "tiny", max_bytes=both)  # fits
    with pytest.raises(E.InputTooLarge, match="test split"):
        E.EventSource(ds, _cfg(), "tiny", max_bytes=both - 1)


def test_inputs_left_out_are_refused_or_reported():
    ds = _dataset()
    with pytest.raises(ValueError, match=r"no input spike of the train split .* widen"):
        E.dense_split(ds, "train", t_start=1e6)
    with pytest.raises(ValueError, match=r"input_time_scale 1e\+308.*beyond torch.float32"):
        E.dense_split(ds, "train", time_scale=1e308)
    top = float(ds["train"].times.max())
    src = E.EventSource(ds, _cfg(input_t_stop=top / 2), "tiny")
    assert "input events outside [input_t_start, input_t_stop)" in src.notice()
    assert src.facts()["train"]["cropped"] > 0
    with pytest.raises(ValueError, match=r"input_time_scale 1000000000.0.*beyond 4.5e\+06 \* tau_s"):
        E.EventSource(ds, _cfg(input_time_scale=1e9), "tiny")


def test_check_fits_counts_the_input_slots(monkeypatch):
    seen = {}
    monkeypatch.setattr(E, "check_fits", lambda *a, **kw: seen.update(kw))
    src = E.EventSource(_dataset(), _cfg(), "tiny")
    src.check_fits("cpu", 8)
    assert seen == {"input_shape": (N_CH,), "input_slots": src.slots} and src.slots >= 5


def test_check_fits_refuses_a_network_too_large_for_its_input():
    from batsnn.experiments.model import NetworkTooLarge, check_fits

    cfg = _cfg()
    check_fits(cfg, N_CH, 3, "cpu", 4, input_shape=(N_CH,), input_slots=5)
    with pytest.raises(NetworkTooLarge, match="network layer 0"):
        check_fits(cfg, N_CH, 3, "cpu", 10**6, input_shape=(N_CH,), input_slots=10**9)


def test_maps_for_conv_networks():
    ds = _dataset(shape=(2, 4, 4))
    conv = [{"type": "conv2d", "channels": 2, "kernel": 3, "theta": 0.5, "max_spikes": 2},
            {"type": "flatten"}, {"type": "linear", "theta": 0.5, "max_spikes": 2}]
    src = E.EventSource(ds, _cfg(network=conv), "tiny")
    assert src.input_shape == (2, 4, 4)
    x = src.inputs("train", torch.arange(2), "cpu", dt=1e-3)
    assert x.shape[:4] == (2, 2, 4, 4) and marked_valid(x)
    flat = E.EventSource(ds, _cfg(), "tiny").inputs("train", torch.arange(2), "cpu", dt=1e-3)
    assert torch.equal(x.reshape(flat.shape), flat)
    with pytest.raises(ValueError, match="takes maps .* start it with a linear layer"):
        E.EventSource(_dataset(), _cfg(network=conv), "tiny")


def test_open_source_dispatches_on_the_kind():
    cfg = _cfg(dataset_options={"n_classes": 3, "n_channels": 5, "samples_per_class": 10})
    src = open_source(cfg)
    assert isinstance(src, E.EventSource)
    assert (src.n_inputs, src.n_classes, src.n_train, src.n_test) == (5, 3, 24, 3)
    assert src.origin.startswith("Randman, 3 classes, 5 channels")
    assert data_kind("mnist") == (IMAGE_KIND, "mnist")
    assert data_kind("Yin_Yang") == (E.EVENT_KIND, "yin-yang")
    assert data_kind("N-MNIST")[1] == "nmnist"


def test_open_events_option_errors_name_the_setting():
    with pytest.raises(ValueError, match="dataset_options: .*n_channels must be an integer"):
        open_source(_cfg(dataset_options={"n_channels": 0}))
    with pytest.raises(ValueError, match="shd is read from its published files"):
        open_source(C.resolve_config("shd"))


def test_old_settings_load_with_event_fields_at_their_defaults():
    old = C.resolve_config("mnist-count").to_dict()
    for k in ("dataset_options", *E.EVENT_SETTINGS):
        del old[k]
    cfg = C.config_from_dict(old)
    assert cfg == C.resolve_config("mnist-count")
    assert (cfg.dataset_options, cfg.input_max_spikes, cfg.input_t_start, cfg.input_t_stop,
            cfg.input_time_scale, cfg.input_dtype) == ({}, None, 0.0, None, 1.0, "float32")


def test_event_presets_resolve():
    for name in ("yinyang", "randman", "shd", "ssc", "shd-delay", "shd-rec", "nmnist",
                 "nmnist-conv"):
        cfg = C.resolve_config(name)
        assert data_kind(cfg.dataset)[0] is E.EVENT_KIND, name
    rm = C.resolve_config("randman")
    assert rm.dataset_options == {"n_classes": 10, "n_channels": 20, "dim": 1, "alpha": 1.0}
    assert (rm.tau_s, rm.lr, rm.lr_decay, rm.epochs) == (0.01, 0.005, 1.0, 60)
    yy = C.resolve_config("yinyang")
    assert (yy.tau_s, yy.lr, yy.lr_decay_every, yy.epochs, yy.batch_size) == (1.0, 0.005, 15,
                                                                              90, 50)
    assert yy.network[0]["features"] == 500 and yy.network[1]["init"] == [0.0, 0.06]
    assert (yy.revive, yy.revive_bump) == ("output", 0.001)
    assert C.resolve_config("nmnist-conv").network[0]["type"] == "conv2d"


@pytest.mark.parametrize("settings, error, words", [
    ({"dataset": "shd", "dataset_options": {"n_channels": 3}}, ValueError,
     "dataset_options: shd takes max_events; got n_channels"),
    ({"dataset": "nmnist", "dataset_options": {"x": 1}}, ValueError, "nmnist takes no options"),
    ({"dataset": "mnist", "dataset_options": {"x": 1}}, ValueError, "mnist takes no options"),
    ({"dataset": "randman", "dataset_options": {"n_classes": 0}}, ValueError,
     "n_classes must be an integer in [1, 1000000], got 0"),
    ({"dataset": "randman", "dataset_options": {"n_classes": True}}, ValueError,
     "n_classes must be an integer"),
    ({"dataset": "randman", "dataset_options": [1]}, TypeError,
     "dataset_options must be a table (dict) of options"),
    ({"dataset": "randman", "input_max_spikes": 0}, ValueError, "input_max_spikes must be >= 1"),
    ({"dataset": "randman", "input_max_spikes": 2.5}, TypeError, "input_max_spikes must be int"),
    ({"dataset": "randman", "input_t_start": -1}, ValueError, "input_t_start must be >= 0"),
    ({"dataset": "randman", "input_t_start": float("nan")}, ValueError,
     "input_t_start must be finite"),
    ({"dataset": "randman", "input_t_start": 0.5, "input_t_stop": 0.2}, ValueError,
     "input_t_stop must be > input_t_start (0.5), got 0.2"),
    ({"dataset": "randman", "input_t_stop": 0}, ValueError, "input_t_stop must be > 0"),
    ({"dataset": "randman", "input_time_scale": 0}, ValueError, "input_time_scale must be > 0"),
    ({"dataset": "randman", "input_time_scale": float("inf")}, ValueError,
     "input_time_scale must be finite"),
    ({"dataset": "randman", "input_dtype": "float16"}, ValueError,
     "input_dtype must be 'float32' or 'float64'"),
    ({"dataset": "mnist", "input_max_spikes": 3}, ValueError,
     "input_max_spikes 3 applies to events"),
    ({"dataset": "fashion-mnist", "input_dtype": "float64"}, ValueError,
     "input_dtype 'float64' applies to events"),
    ({"dataset": "yin-yang", "augment": "elastic"}, ValueError,
     "augment 'elastic' applies to images"),
    ({"dataset": "spikes"}, ValueError, "unknown dataset 'spikes'; choose from mnist"),
])
def test_event_settings_are_checked(settings, error, words):
    with pytest.raises(error) as e:
        C.resolve_config(**settings)
    assert words in str(e.value)


def test_dataset_aliases_are_canonical():
    assert C.resolve_config(dataset="yinyang").dataset == "yin-yang"
    assert C.resolve_config(dataset="N_MNIST").dataset == "nmnist"
    assert C.resolve_config(dataset="fmnist").dataset == "fashion-mnist"


def test_keep_on_moves_only_the_training_split():
    src = E.EventSource(_dataset(), _cfg(), "tiny")
    src.keep_on("meta")  # a device that allocates nothing
    assert src.labels("train", slice(0, 2)).device.type == "meta"
    assert src.inputs("train", slice(0, 2), "meta", dt=None).device.type == "meta"
    assert src.labels("test", slice(0, 2)).device.type == "cpu"
    assert src.labels("test", slice(0, 2), "meta").device.type == "meta"


def test_input_t_stop_inf_is_no_end():
    assert C.resolve_config("shd", input_t_stop=math.inf).input_t_stop is None
    assert C.resolve_config("shd").input_t_stop == 1.0


def test_generators_bound_their_sizes_before_allocating():
    from batsnn.experiments.datasets import randman, yin_yang

    with pytest.raises(ValueError, match=r"n_classes \* samples_per_class \* n_channels = 10 \* "
                                         r"1000000 \* 1000"):
        randman(samples_per_class=10**6, n_channels=1000)
    with pytest.raises(ValueError, match=r"samples_per_class \* n_channels \* frequencies"):
        randman(n_classes=1, samples_per_class=10**5, n_channels=100, alpha=1.0)
    with pytest.raises(ValueError, match=r"sizes\['train'\] must be <= 20,000,000"):
        yin_yang(sizes={"train": 10**9})


def test_dense_split_latest_is_the_latest_kept_time():
    ds = _dataset()
    for kw in ({}, {"max_spikes": 1}, {"t_stop": 0.02, "time_scale": 3.0}):
        d = E.dense_split(ds, "train", **kw)
        t = d.times
        assert d.latest == float(t[torch.isfinite(t)].max()), kw
