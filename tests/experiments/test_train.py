"""batsnn.experiments.train: the loop's callbacks and early stop on a tiny problem, and the
runner (train) on a tiny fake dataset (the ``data_dir`` fixture)."""

import json
import math

import pytest
import torch

import batsnn
from batsnn import metrics as M
from batsnn.experiments import train as T
from batsnn.experiments.config import resolve_config
from batsnn.experiments.data import load_dataset
from batsnn.experiments.model import build_model
from batsnn.experiments.rundir import read_csv
from batsnn.losses import count_predict, spike_count_class_loss
from batsnn.nn import LIFLinear, SpikingSequential


def tiny_problem(n=10, batch=3):
    """A 6-4-2 network, ``n`` random samples, batches of ``batch``; returns the state, the
    step and batches functions, and the list of (loss, size) of every step taken."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = SpikingSequential(LIFLinear(6, 4, tau_s=0.13, theta=0.2, max_spikes=3),
                              LIFLinear(4, 2, tau_s=0.13, theta=0.3, max_spikes=3))
    x = batsnn.ttfs_encode(torch.rand(n, 6, generator=g))
    y = torch.randint(0, 2, (n,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    state = T.TrainState(model, opt, "cpu")
    taken = []

    def step(idx):
        opt.zero_grad()
        out = model(x[idx])
        loss = spike_count_class_loss(out.times, out.counts, y[idx], target_true=3,
                                      target_false=1)
        loss.backward()
        opt.step()
        state.loss_sum.add_(loss.detach() * len(idx))
        state.correct.add_((count_predict(out.counts) == y[idx]).sum())
        taken.append((loss.item(), len(idx)))
        return len(idx)

    def batches(epoch):
        return [torch.arange(n)[i:i + batch] for i in range(0, n, batch)]

    return state, step, batches, taken


class Recorder:
    def __init__(self):
        self.events = []

    def on_epoch_start(self, state):
        self.events.append(("start", state.epoch, state.batch, state.step))

    def on_step(self, state):
        self.events.append(("step", state.epoch, state.batch, state.step, state.samples))

    def on_epoch_end(self, state):
        self.events.append(("end", state.epoch, state.batch, state.step, dict(state.row)))


def test_callbacks_see_every_step_and_epoch():
    state, step, batches, taken = tiny_problem(n=10, batch=3)
    rec, ends = Recorder(), []
    T.fit(state, epochs=2, batches=batches, step=step, evaluate=lambda st: {"extra": 7},
          callbacks=[rec, lambda st: ends.append(st.epoch)])  # a callable: on_epoch_end
    sizes = [3, 3, 3, 1]
    expect = []
    for epoch in (1, 2):
        expect.append(("start", epoch, 0, 4 * (epoch - 1)))
        for b in range(4):
            expect.append(("step", epoch, b + 1, 4 * (epoch - 1) + b + 1, sum(sizes[:b + 1])))
        expect.append(("end", epoch, 4, 4 * epoch))
    assert [e[:5] if e[0] == "step" else e[:4] for e in rec.events] == expect
    assert ends == [1, 2]
    rows = [e[4] for e in rec.events if e[0] == "end"]
    assert rows == state.history and state.row == rows[-1]
    assert list(rows[0]) == [M.EPOCH, M.TRAIN_LOSS, M.TRAIN_ACCURACY, "extra", M.LR,
                             M.TRAIN_SECONDS, M.EPOCH_SECONDS]
    # the row's training loss is the sample-weighted mean of the epoch's step losses
    for epoch, row in zip((0, 1), rows):
        steps = taken[4 * epoch:4 * epoch + 4]
        assert row[M.TRAIN_LOSS] == pytest.approx(sum(l * n for l, n in steps) / 10)
        assert 0 <= row[M.TRAIN_ACCURACY] <= 1 and row["extra"] == 7
    assert state.epoch == 2 and state.step == 8


def test_stop_from_epoch_end_ends_after_that_epoch():
    state, step, batches, taken = tiny_problem()

    def stop_after_two(st):
        st.stop = st.epoch == 2

    T.fit(state, epochs=5, batches=batches, step=step, callbacks=[stop_after_two])
    assert [r[M.EPOCH] for r in state.history] == [1, 2] and len(taken) == 8
    # fit continues from where the state stands
    T.fit(state, epochs=3, batches=batches, step=step)
    assert [r[M.EPOCH] for r in state.history] == [1, 2, 3] and len(taken) == 12


def test_stop_from_a_step_abandons_the_epoch():
    state, step, batches, taken = tiny_problem()
    rec = Recorder()

    class StopAtStep6:
        def on_step(self, st):
            st.stop = st.step == 6

    T.fit(state, epochs=3, batches=batches, step=step, callbacks=[StopAtStep6(), rec])
    assert len(taken) == 6 and state.epoch == 2 and state.batch == 2
    assert [r[M.EPOCH] for r in state.history] == [1]  # epoch 2 is not recorded
    assert [e[1] for e in rec.events if e[0] == "end"] == [1]


def test_diverged_weights_raise_naming_the_parameter():
    model = build_model(resolve_config("mnist-count", hidden=[4]), 6, 3)
    T.check_finite(model)
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"training diverged: 1\.weight holds NaN"):
        T.check_finite(model)
    state, step, batches, _ = tiny_problem()

    def diverging_step(idx):  # the epoch's last step leaves an infinite weight
        n = step(idx)
        if state.batch == 3:
            with torch.no_grad():
                state.model[0].weight[1, 1] = math.inf
        return n

    with pytest.raises(FloatingPointError, match=r"0\.weight holds NaN or infinite"):
        T.fit(state, epochs=1, batches=batches, step=diverging_step)


def test_summary_of():
    rows = [{M.TEST_ACCURACY: 0.5, "x": 1}, {M.TEST_ACCURACY: 0.7, "x": 2},
            {M.TEST_ACCURACY: 0.6, "x": 3}]
    assert T.summary_of(rows) == {M.TEST_ACCURACY: 0.6, "x": 3, M.BEST_TEST_ACCURACY: 0.7,
                                  M.EPOCHS_COMPLETED: 3}
    with pytest.raises(ValueError, match="at least one epoch"):
        T.summary_of([])


def test_epoch_order_depends_only_on_seed_and_epoch():
    a = T.epoch_order(50, 3, 2)
    assert torch.equal(a, T.epoch_order(50, 3, 2)) and sorted(a.tolist()) == list(range(50))
    assert not torch.equal(a, T.epoch_order(50, 3, 3))
    assert not torch.equal(a, T.epoch_order(50, 4, 2))


@pytest.mark.parametrize("preset, shape", [("mnist-count", (784,)),
                                           ("mnist-conv", (1, 28, 28))])
def test_encode_images_equals_the_checked_encoder(preset, shape):
    """The times of the checked encoder, shaped as the network takes them (a conv network:
    maps)."""
    images = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    cfg = resolve_config(preset, dt=0.002)
    got = T.encode_images(images, cfg, "cpu")
    want = batsnn.ttfs_encode(images.reshape(4, -1).float(), t_window=cfg.t_window, x_max=255.0,
                              dt=cfg.dt)
    assert got.shape == (4, *shape, 1) and torch.equal(got.reshape(4, 784, 1), want)


TINY = dict(dataset="fashion-mnist", hidden=[24], max_spikes=[8, 8], batch_size=10,
            eval_batch_size=16, device="cpu")


def test_train_with_callbacks_and_log(data_dir, tmp_path):
    cfg = resolve_config("mnist-count", **TINY, data_dir=str(data_dir), epochs=2,
                         out=str(tmp_path / "run"))
    rec, lines = Recorder(), []
    summary = T.train(cfg, quiet=False, log=lines.append, callbacks=[rec])
    steps = [e for e in rec.events if e[0] == "step"]
    assert len(steps) == 2 * 6 and steps[-1][3] == 12  # 60 samples in batches of 10
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    ends = [e[4] for e in rec.events if e[0] == "end"]
    assert [r[M.EPOCH] for r in rows] == ["1", "2"]
    assert [float(r[M.TEST_ACCURACY]) for r in rows] == [r[M.TEST_ACCURACY] for r in ends]
    assert summary[M.EPOCHS_COMPLETED] == 2 and summary[M.TEST_ACCURACY] == ends[-1][
        M.TEST_ACCURACY]
    assert lines[0].startswith("mnist-count on fashion-mnist: layers [784, 24, 10]")
    assert [ln.split(":")[0] for ln in lines[1:]] == ["epoch 1", "epoch 2"]
    assert "spikes/sample per layer [" in lines[1] and "decision at" in lines[1]


def test_ttfs_run_logs_finite_losses_with_silent_label_neurons(data_dir, tmp_path):
    """mnist-ttfs settings under which label neurons stay silent (the loss was inf)."""
    cfg = resolve_config("mnist-ttfs", **{**TINY, "max_spikes": [1, 1]}, theta=[0.7, 0.8],
                         data_dir=str(data_dir), epochs=1, out=str(tmp_path / "run"))
    T.train(cfg, quiet=True)
    (row,) = read_csv(tmp_path / "run" / "metrics.csv")
    assert 0 < float(row[M.SILENT_LABELS_PCT]) < 100  # some label neurons silent, not all
    assert math.isfinite(float(row[M.TRAIN_LOSS])) and math.isfinite(float(row[M.TEST_LOSS]))
    # a silent label costs about (t_max - earliest first spike) / tau_loss
    assert float(row[M.TEST_LOSS]) > 10


@pytest.mark.cuda
def test_ttfs_run_under_cuda_graphs_matches_eager(data_dir, tmp_path):
    """The TTFS loss (silent label neurons included) inside a captured step: same training as
    the kernel-by-kernel loop, up to float32 summation order."""
    base = dict(**{**TINY, "max_spikes": [1, 1], "device": "cuda"}, theta=[0.7, 0.8],
                data_dir=str(data_dir), epochs=2)
    runs = {}
    for name, graph in (("graph", True), ("eager", False)):
        cfg = resolve_config("mnist-ttfs", **base, cuda_graph=graph, out=str(tmp_path / name))
        T.train(cfg, quiet=True)
        runs[name] = read_csv(tmp_path / name / "metrics.csv")
    for a, b in zip(runs["graph"], runs["eager"]):
        assert math.isfinite(float(a[M.TRAIN_LOSS])) and 0 < float(a[M.SILENT_LABELS_PCT])
        assert float(a[M.TRAIN_LOSS]) == pytest.approx(float(b[M.TRAIN_LOSS]), rel=0.05)
        assert abs(float(a[M.TEST_ACCURACY]) - float(b[M.TEST_ACCURACY])) <= 0.1


TINY_CONV = dict(
    dataset="fashion-mnist", batch_size=10, eval_batch_size=16, device="cpu",
    network=[{"type": "conv2d", "channels": 4, "kernel": 5, "theta": 0.04, "max_spikes": 1},
             {"type": "pool2d", "kernel": 2},
             {"type": "conv2d", "channels": 6, "kernel": 5, "theta": 0.3, "max_spikes": 2},
             {"type": "pool2d", "kernel": 2},
             {"type": "flatten"},
             {"type": "linear", "theta": 0.3, "max_spikes": 6}])


def test_conv_run_augments_training_batches_only(data_dir, tmp_path, monkeypatch):
    """Elastic deformation reaches every training batch and no test sample: the epoch's test
    metrics are those of the trained model on the plain test images."""
    cfg = resolve_config("mnist-conv", **TINY_CONV, data_dir=str(data_dir), epochs=1,
                         out=str(tmp_path / "run"))
    assert cfg.augment == "elastic"
    seen = []
    real_grid, real_deform = T.batch_grid, T.deform_by_grid

    def spy_grid(kind, **kw):
        seen.append((kind, kw["epoch"], kw["batch"]))
        return real_grid(kind, **kw)

    def spy_deform(images, grid, *a):
        seen.append(images.shape[0])
        return real_deform(images, grid, *a)

    monkeypatch.setattr(T, "batch_grid", spy_grid)
    monkeypatch.setattr(T, "deform_by_grid", spy_deform)
    ds = load_dataset("fashion-mnist", data_dir)
    check = {}

    def recompute(state):
        check.update(T.evaluate(state.model, cfg, ds.test_x, ds.test_y, "cpu"))

    summary = T.train(cfg, quiet=True, callbacks=[recompute])
    assert seen == [x for b in range(6) for x in (("elastic", 1, b), 10)]
    row = read_csv(tmp_path / "run" / "metrics.csv")[0]
    assert float(row[M.TEST_ACCURACY]) == check[M.TEST_ACCURACY]
    assert float(row[M.TEST_LOSS]) == check[M.TEST_LOSS]
    # per-layer metrics of conv, pool, conv, pool and the output layer (flatten only reshapes)
    assert M.layer_keys(summary, M.SPIKES_PER_SAMPLE) == [
        M.layer_key(M.SPIKES_PER_SAMPLE, i) for i in range(1, 6)]
    assert summary[M.layer_key(M.SPIKES_PER_SAMPLE, 1)] > 0
    assert summary[M.layer_key(M.SPIKES_PER_SAMPLE, 2)] == pytest.approx(
        summary[M.layer_key(M.SPIKES_PER_SAMPLE, 1)], rel=0.1)  # pooling keeps the spikes
    assert 0 <= summary[M.layer_key(M.SILENT_NEURONS_PCT, 3)] <= 100
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    assert doc["layers"] == [784, [4, 24, 24], [4, 12, 12], [6, 8, 8], [6, 4, 4], 96, 10]
    assert doc["augment"] == "elastic" and (tmp_path / "run" / "raster.png").is_file()


@pytest.mark.cuda
def test_augmented_conv_run_under_cuda_graphs_matches_eager_and_cpu(data_dir, tmp_path):
    """A conv network with elastic deformation on the GPU: the graphed step (the batch's
    control displacements an input of the graph) trains as the eager one, and both as the
    CPU run, up to float32 summation order."""
    base = dict(**TINY_CONV, data_dir=str(data_dir), epochs=2)
    assert resolve_config("mnist-conv", **base).augment == "elastic"
    graph_eager_and_cpu_agree("mnist-conv", base, tmp_path)


def graph_eager_and_cpu_agree(preset, base, tmp_path):
    """Train ``base`` on the GPU with and without CUDA graphs and on the CPU; assert the same
    training up to float32 summation order."""
    runs = {}
    for name, dev, graph in (("graph", "cuda", True), ("eager", "cuda", False),
                             ("cpu", "cpu", False)):
        cfg = resolve_config(preset, **{**base, "device": dev}, cuda_graph=graph,
                             out=str(tmp_path / name))
        T.train(cfg, quiet=True)
        runs[name] = read_csv(tmp_path / name / "metrics.csv")
    for other in ("eager", "cpu"):
        for a, b in zip(runs["graph"], runs[other]):
            assert float(a[M.TRAIN_LOSS]) == pytest.approx(float(b[M.TRAIN_LOSS]), rel=0.05)
            assert abs(float(a[M.TEST_ACCURACY]) - float(b[M.TEST_ACCURACY])) <= 0.1


def resumed_equals_uninterrupted(preset, base, tmp_path, epochs):
    """Train ``epochs`` epochs in one go and, elsewhere, one epoch then ``--resume`` to
    ``epochs``; assert equal metrics rows (timing aside) and final weights. Returns the
    rows."""
    full = resolve_config(preset, **base, epochs=epochs, out=str(tmp_path / "full"))
    T.train(full, quiet=True)
    part = resolve_config(preset, **base, epochs=1, out=str(tmp_path / "part"))
    T.train(part, quiet=True)
    part = resolve_config(preset, **base, epochs=epochs, out=str(tmp_path / "part"))
    T.train(part, resume=True, quiet=True)
    timing = {M.TRAIN_SECONDS, M.EPOCH_SECONDS}
    rows = [[{k: v for k, v in r.items() if k not in timing}
             for r in read_csv(tmp_path / name / "metrics.csv")] for name in ("full", "part")]
    assert rows[0] == rows[1] and len(rows[0]) == epochs
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    return rows[0]


@pytest.mark.slow  # conv training twice; the dense resume tests and test_conv_run_augments_training_batches_only run by default
def test_conv_run_with_augmentation_resumes_exactly(data_dir, tmp_path):
    base = dict(**TINY_CONV, data_dir=str(data_dir), train_samples=30)
    rows = resumed_equals_uninterrupted("mnist-conv", base, tmp_path, 2)
    # and the deformation does change training
    plain = resolve_config("mnist-conv", **base, epochs=1, augment="none",
                           out=str(tmp_path / "plain"))
    T.train(plain, quiet=True)
    assert read_csv(tmp_path / "plain" / "metrics.csv")[0][M.TRAIN_LOSS] != rows[0][M.TRAIN_LOSS]


# ----------------------------------------------------------------------------- dt_mode

def test_training_dt_of_each_mode():
    def at(mode, warm, epochs=5, dt=0.01):
        cfg = resolve_config("mnist-count", dt=dt, dt_mode=mode, dt_warmup_epochs=warm)
        return [T.training_dt(cfg, e) for e in range(1, epochs + 1)]

    assert at("fixed", 0) == [0.01] * 5
    assert at("continuous", 0) == [None] * 5
    assert at("finetune", 2) == [None, None, 0.01, 0.01, 0.01]
    assert at("anneal", 3) == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01])
    assert at("continuous-margin", 0) == [None] * 5
    assert at("dither", 0) == [0.01] * 5
    assert at("consistent", 0) == [0.01] * 5
    fine = resolve_config("mnist-count", dt=0.01, dt_mode="fine", dt_fine=0.004)
    assert [T.training_dt(fine, e) for e in (1, 2)] == [0.004, 0.004]
    # the margin: one step for the input and one per spiking layer (mnist-count: 2 layers)
    cfg = resolve_config("mnist-count", dt=0.01, dt_mode="continuous-margin")
    assert T.training_margin(cfg) == pytest.approx(0.03)
    assert T.training_margin(resolve_config("mnist-count", dt=0.01)) == 0.0
    assert T.training_margin(resolve_config("mnist-conv", dt=0.002,
                                            dt_mode="continuous-margin")) == pytest.approx(0.01)
    # exact time: every mode trains as it evaluates (a sweep's dt = 0 run)
    for mode in ("fixed", "continuous", "finetune", "anneal", "dither", "consistent"):
        cfg = resolve_config("mnist-count", dt_mode=mode, dt_warmup_epochs=1)
        assert [T.training_dt(cfg, e) for e in (1, 2, 3)] == [None] * 3
        assert T.dither_shifts(cfg, epoch=1, batch=0, n=4) is None


def test_dt_mode_settings_are_checked():
    with pytest.raises(ValueError, match="dt_mode must be 'fixed', 'continuous', "
                                         "'continuous-margin', 'fine', 'finetune', 'anneal', "
                                         "'dither', 'consistent', got 'wobble'"):
        resolve_config("mnist-count", dt=0.01, dt_mode="wobble")
    with pytest.raises(ValueError, match="dt_mode 'anneal' needs dt_warmup_epochs >= 1, got 0"):
        resolve_config("mnist-count", dt=0.01, dt_mode="anneal")
    with pytest.raises(ValueError, match="dt_mode 'continuous-margin' shortens the training "
                                         "horizon by 0.3 s, not less than t_max of network "
                                         "layer 0"):
        resolve_config("mnist-count", dt=0.1, dt_mode="continuous-margin")
    with pytest.raises(ValueError, match=r"dt_mode 'fine' needs 0 < dt_fine < dt, got "
                                         r"dt_fine=0.02 and dt=0.01"):
        resolve_config("mnist-count", dt=0.01, dt_mode="fine", dt_fine=0.02)
    with pytest.raises(ValueError, match="dt_mode 'fine' needs 0 < dt_fine < dt, got "
                                         "dt_fine=None"):
        resolve_config("mnist-count", dt=0.01, dt_mode="fine")
    with pytest.raises(ValueError, match="dt_warmup_epochs must be >= 0"):
        resolve_config("mnist-count", dt=0.01, dt_warmup_epochs=-1)


@pytest.mark.slow
def test_finetune_trains_in_exact_time_then_on_the_grid_and_always_evaluates_on_it(
        data_dir, tmp_path, monkeypatch):
    """dt_mode finetune: epoch 1 trains in exact time (inputs and every layer), epoch 2 at
    dt; both epochs' test metrics are those of the network on the grid."""
    dt = 0.004
    tiny = {**TINY, "theta": [0.2, 0.4]}  # output neurons that spike, so that it learns
    cfg = resolve_config("mnist-count", **tiny, data_dir=str(data_dir), epochs=2, dt=dt,
                         dt_mode="finetune", dt_warmup_epochs=1, out=str(tmp_path / "run"))
    encoded = []  # (epoch, dt of the encoding) of every call
    real = T.encode_images
    state_of = {}

    def spy(images, c, device, dt=..., shift=None):
        assert shift is None  # only dt_mode dither moves inputs
        encoded.append((state_of.get("epoch"), c.dt if dt is ... else dt))
        return real(images, c, device, dt=dt)

    monkeypatch.setattr(T, "encode_images", spy)
    layer_dts, evals = [], {}
    ds = load_dataset("fashion-mnist", data_dir)

    class Probe:
        def on_epoch_start(self, st):
            state_of["epoch"] = st.epoch

        def on_step(self, st):
            layer_dts.append((st.epoch, {m.params.dt for m in st.model.modules()
                                         if hasattr(m, "params")}))

        def on_train_end(self, st):  # evaluation follows
            state_of["epoch"] = None

        def on_epoch_end(self, st):
            evals[st.epoch] = T.evaluate(st.model, cfg, ds.test_x, ds.test_y, "cpu")

    T.train(cfg, quiet=True, callbacks=[Probe()])
    assert {frozenset(d) for e, d in layer_dts if e == 1} == {frozenset({0.0})}
    assert {frozenset(d) for e, d in layer_dts if e == 2} == {frozenset({dt})}
    train_enc = [(e, d) for e, d in encoded if e is not None]
    assert {d for e, d in encoded if e is None} == {dt}  # every evaluation
    assert {d for e, d in train_enc if e == 1} == {None}
    assert {d for e, d in train_enc if e == 2} == {dt}
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    assert float(rows[0][M.TRAIN_LOSS]) != float(rows[1][M.TRAIN_LOSS])
    for row in rows:  # evaluated on the grid: equal to a fresh evaluation at cfg.dt
        assert float(row[M.TEST_ACCURACY]) == evals[int(row[M.EPOCH])][M.TEST_ACCURACY]
        assert float(row[M.TEST_LOSS]) == evals[int(row[M.EPOCH])][M.TEST_LOSS]
    # the same run in the seed's scheme trains differently from epoch 1 on
    fixed = resolve_config("mnist-count", **tiny, data_dir=str(data_dir), epochs=1, dt=dt,
                           out=str(tmp_path / "fixed"))
    monkeypatch.setattr(T, "encode_images", real)
    T.train(fixed, quiet=True)
    assert read_csv(tmp_path / "fixed" / "metrics.csv")[0][M.TRAIN_LOSS] != rows[0][M.TRAIN_LOSS]


@pytest.mark.slow
def test_anneal_run_resumes_exactly(data_dir, tmp_path):
    """A resumed run trains each later epoch at the time step of its own schedule."""
    base = dict(**{**TINY, "theta": [0.2, 0.4]}, data_dir=str(data_dir), dt=0.004,
                dt_mode="anneal", dt_warmup_epochs=2)
    resumed_equals_uninterrupted("mnist-count", base, tmp_path, 3)


def test_continuous_margin_trains_in_exact_time_on_a_shorter_horizon(data_dir, tmp_path):
    """Training steps run in exact time with every layer's t_max shortened by (L + 1) dt;
    evaluation, checkpoints and the model after training use the layers' own settings."""
    dt = 0.01
    cfg = resolve_config("mnist-count", **{**TINY, "theta": [0.2, 0.4]}, data_dir=str(data_dir),
                         epochs=1, dt=dt, dt_mode="continuous-margin", out=str(tmp_path / "run"))
    seen = []

    class Probe:
        def on_step(self, st):
            seen.append({(m.params.dt, round(m.params.t_max, 9)) for m in st.model.modules()
                         if hasattr(m, "params")})

        def on_epoch_end(self, st):
            seen.append({(m.params.dt, m.params.t_max) for m in st.model.modules()
                         if hasattr(m, "params")})

    T.train(cfg, quiet=True, callbacks=[Probe()])
    assert all(s == {(0.0, round(cfg.t_max - 3 * dt, 9))} for s in seen[:-1]) and len(seen) > 2
    assert seen[-1] == {(dt, cfg.t_max)}  # evaluated (and saved) as the grid network


def test_consistent_mode_trains_and_evaluates_the_grid_network_with_emitted_resets(
        data_dir, tmp_path):
    """dt_mode consistent: every training step and every evaluation runs the layers at dt
    with their resets at the emitted grid times, and a network rebuilt from the run's
    settings (checkpoint, export, benchmarks) is that network."""
    dt = 0.008
    tiny = {**TINY, "theta": [0.2, 0.4]}
    cfg = resolve_config("mnist-count", **tiny, data_dir=str(data_dir), epochs=1, dt=dt,
                         dt_mode="consistent", out=str(tmp_path / "run"))
    seen = []

    class Probe:
        def on_step(self, st):
            seen.append({(m.params.dt, m.params.reset_at) for m in st.model.modules()
                         if hasattr(m, "params")})

    T.train(cfg, quiet=True, callbacks=[Probe()])
    assert len(seen) > 2 and all(s == {(dt, "emitted")} for s in seen)
    ds = load_dataset("fashion-mnist", data_dir)
    model = build_model(cfg, ds.test_x[0].numel(), ds.n_classes)
    assert {m.params.reset_at for m in model.modules() if hasattr(m, "params")} == {"emitted"}
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    model.load_state_dict(ck["model"])
    row = read_csv(tmp_path / "run" / "metrics.csv")[0]
    got = T.evaluate(model, cfg, ds.test_x, ds.test_y, "cpu")
    assert float(row[M.TEST_ACCURACY]) == got[M.TEST_ACCURACY]
    assert float(row[M.TEST_LOSS]) == got[M.TEST_LOSS]
    # the same weights under the seed's resets are another network
    for m in model.modules():
        if hasattr(m, "params"):
            m.params = m.params.replace(reset_at="crossing")
    assert T.evaluate(model, cfg, ds.test_x, ds.test_y, "cpu")[M.TEST_LOSS] != got[M.TEST_LOSS]


def test_dither_shifts_are_uniform_in_one_step_and_reproducible():
    cfg = resolve_config("mnist-count", dt=0.01, dt_mode="dither", seed=3)
    s = T.dither_shifts(cfg, epoch=2, batch=5, n=4000)
    assert s.dtype == torch.float64 and s.shape == (4000,)
    assert float(s.min()) >= 0.0 and float(s.max()) < 0.01
    assert abs(float(s.mean()) - 0.005) < 0.0003  # uniform: mean dt / 2 (std of mean 4.6e-5)
    # drawn from (seed, epoch, batch, rank) only
    assert torch.equal(s, T.dither_shifts(cfg, epoch=2, batch=5, n=4000))
    for other in (dict(epoch=3, batch=5), dict(epoch=2, batch=6),
                  dict(epoch=2, batch=5, rank=1)):
        assert not torch.equal(s, T.dither_shifts(cfg, n=4000, **other))
    cfg4 = resolve_config("mnist-count", dt=0.01, dt_mode="dither", seed=4)
    assert not torch.equal(s, T.dither_shifts(cfg4, epoch=2, batch=5, n=4000))
    # the other modes move nothing
    fixed = resolve_config("mnist-count", dt=0.01)
    assert T.dither_shifts(fixed, epoch=1, batch=0, n=4) is None


@pytest.mark.parametrize("preset, shape", [("mnist-count", (784,)),
                                           ("mnist-conv", (1, 28, 28))])
def test_shifted_encoding_is_the_grid_of_the_moved_times(preset, shape):
    """With shifts the times are grid points: the first grid point after each exact time
    plus its image's shift; a zero shift gives the plain encoding bit for bit."""
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8, generator=g)
    dt = 0.004
    cfg = resolve_config(preset, dt=dt, dt_mode="dither")
    plain = T.encode_images(images, cfg, "cpu")
    assert torch.equal(T.encode_images(images, cfg, "cpu", shift=torch.zeros(6)), plain)
    shift = torch.tensor([0.0, 1e-4, 0.001, 0.002, 0.0039, 0.0039999], dtype=torch.float64)
    got = T.encode_images(images, cfg, "cpu", shift=shift)
    assert got.shape == (6, *shape, 1) and got.dtype == torch.float32
    exact = batsnn.ttfs_encode(images.reshape(6, -1).float(), t_window=cfg.t_window,
                               x_max=255.0).double()
    got = got.reshape(6, 784, 1).double()
    fin = torch.isfinite(exact)
    assert torch.equal(torch.isfinite(got), fin)
    moved = (exact + shift.reshape(-1, 1, 1))[fin]
    # plain arithmetic: the smallest multiple of dt strictly after the moved time
    k = torch.floor(moved / dt) + 1
    want = (k * dt).float().double()
    assert torch.equal(got[fin], want)
    # (within float32's rounding of the grid point)
    assert bool((got[fin] > moved - 1e-8).all()) and bool((got[fin] <= moved + dt + 1e-8).all())
    # the same as the plain grid of those moved times; never earlier than the plain encoding
    assert torch.equal(got[fin], batsnn.discretize(moved, dt).float().double())
    assert bool((got >= plain.reshape(6, 784, 1).double()).all())
    # in exact time a shift changes nothing (every mode trains as it evaluates)
    exact_cfg = resolve_config(preset, dt_mode="dither")
    assert torch.equal(T.encode_images(images, exact_cfg, "cpu", shift=shift),
                       T.encode_images(images, exact_cfg, "cpu"))


def test_a_moved_input_moves_every_spike_in_exact_time():
    """Why a shift dithers the grid: the network is the same at every time, so an input
    moved by s gives output spikes moved by s (up to float rounding), as long as they stay
    inside the horizon."""
    torch.manual_seed(0)
    model = build_model(resolve_config("mnist-count", hidden=[30], max_spikes=[6, 8],
                                       theta=[0.15, 0.3]), 784, 10)
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    cfg = resolve_config("mnist-count")
    x = T.encode_images(images, cfg, "cpu")
    s = 0.0031
    with torch.no_grad():
        a = model.forward_all(x)
        b = model.forward_all(batsnn.spikes.mark_valid((x.double() + s).float()))
    for la, lb in zip(a, b):
        early = torch.isfinite(la.times) & (la.times < cfg.t_max - 2 * s)
        assert int(early.sum()) > 0
        assert torch.allclose(lb.times[early].double(), la.times[early].double() + s,
                              atol=2e-5)


@pytest.mark.slow
def test_dither_trains_on_moved_inputs_and_evaluates_on_the_plain_grid(
        data_dir, tmp_path, monkeypatch):
    """Every training step encodes its batch with the batch's shifts (seed, epoch, batch);
    every evaluation encodes without them at dt; the run resumes exactly."""
    dt = 0.004
    tiny = {**TINY, "theta": [0.2, 0.4]}
    base = dict(**tiny, data_dir=str(data_dir), dt=dt, dt_mode="dither")
    cfg = resolve_config("mnist-count", **base, epochs=2, out=str(tmp_path / "run"))
    calls = []
    real = T.encode_images

    def spy(images, c, device, dt=..., shift=None):
        calls.append((images.shape[0], c.dt if dt is ... else dt,
                      None if shift is None else shift.clone()))
        return real(images, c, device, dt=dt, shift=shift)

    monkeypatch.setattr(T, "encode_images", spy)
    T.train(cfg, quiet=True)
    monkeypatch.setattr(T, "encode_images", real)
    train_calls = [c for c in calls if c[2] is not None]
    assert len(train_calls) == 2 * 60 // 10  # every step of both epochs
    assert {d for _, d, _ in calls} == {dt}
    expected = [T.dither_shifts(cfg, epoch=e, batch=b, n=10) for e in (1, 2) for b in range(6)]
    assert all(torch.equal(c[2], w) for c, w in zip(train_calls, expected))
    assert all(c[2] is None for c in calls if c[0] != 10)  # evaluations (batch 16): plain
    # resuming sees the same shifts; and dithering changes training
    rows = resumed_equals_uninterrupted("mnist-count", base, tmp_path / "resume", 2)
    fixed = resolve_config("mnist-count", **tiny, data_dir=str(data_dir), dt=dt, epochs=1,
                           out=str(tmp_path / "fixed"))
    T.train(fixed, quiet=True)
    assert read_csv(tmp_path / "fixed" / "metrics.csv")[0][M.TRAIN_LOSS] != rows[0][M.TRAIN_LOSS]


@pytest.mark.cuda
def test_dither_under_cuda_graphs_matches_eager_and_cpu(data_dir, tmp_path):
    """The batch's shifts are an input of the captured step: the graph trains as the
    kernel-by-kernel loop and as the CPU, up to float32 summation order."""
    base = dict(**{**TINY, "theta": [0.2, 0.4]}, data_dir=str(data_dir), epochs=2, dt=0.004,
                dt_mode="dither")
    graph_eager_and_cpu_agree("mnist-count", base, tmp_path)


def test_names_set_on_the_train_module_reach_the_runner(monkeypatch):
    """``batsnn.experiments.train`` gathers the runner's names; setting one there (as tests
    and users patch the runner) sets it where the runner looks it up, and undoing it puts
    the original back everywhere."""
    from batsnn.experiments import sources
    from batsnn.experiments.training import callbacks, evaluation, loop, run

    real_check, real_encode, real_eval = T.check_finite, T.encode_images, T.evaluate
    spy = lambda *a, **k: None  # noqa: E731
    monkeypatch.setattr(T, "check_finite", spy)
    monkeypatch.setattr(T, "encode_images", spy)
    monkeypatch.setattr(T, "evaluate", spy)
    assert loop.check_finite is spy and callbacks.check_finite is spy
    assert sources.encode_images is spy and evaluation.encode_images is spy
    assert run.evaluate is spy and evaluation.evaluate is spy
    monkeypatch.undo()
    assert loop.check_finite is real_check and callbacks.check_finite is real_check
    assert sources.encode_images is real_encode and evaluation.encode_images is real_encode
    assert run.evaluate is real_eval and T.evaluate is real_eval
    T.brand_new_name = 1  # a name the runner does not have stays here
    assert T.brand_new_name == 1 and not hasattr(loop, "brand_new_name")
    del T.brand_new_name


def test_the_names_of_the_one_module_runner_are_still_here():
    for name in ("EpochLog", "ProgressBar", "RunPlots", "RunRecorder", "TrainState",
                 "check_finite", "check_resumable", "encode_images", "epoch_order", "evaluate",
                 "fit", "loss_and_prediction", "network_params", "restore_checkpoint",
                 "seed_everything", "set_network_grid", "summary_of", "sync_run_files",
                 "train", "training_dt", "dither_shifts", "output_horizon", "epoch_line",
                 "DT_MODES", "training_margin"):
        assert name in T.__all__, name
        assert name == "DT_MODES" or callable(getattr(T, name)), name
    from batsnn.experiments.train import TrainState, fit, train  # noqa: F401


def test_plots_are_drawn_first_last_and_at_most_a_share_of_the_time(monkeypatch, tmp_path):
    """RunPlots draws after epoch 1, after the last epoch, after an epoch that stops
    training, and in between only once 1/share times the last drawing's cost has passed."""
    from batsnn.experiments import plots
    from batsnn.experiments.rundir import RunDir
    from batsnn.experiments.training import callbacks

    clock = [0.0]
    drawn = []
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: clock[0])

    def fake_draw(*args):
        clock[0] += 1.0  # each figure "takes" 1 s: a drawing of three takes 3 s
        drawn.append(state.epoch)

    for name in ("learning_curves", "spikes_per_layer", "raster"):
        monkeypatch.setattr(plots, name, fake_draw)
    state, *_ = tiny_problem()
    inputs = batsnn.ttfs_encode(torch.rand(2, 6))
    rp = callbacks.RunPlots(RunDir(tmp_path / "run"), inputs, torch.tensor([0, 1]),
                            last_epoch=6, share=0.5)
    seen = []
    for epoch, wait in ((1, 0.0), (2, 1.0), (3, 4.0), (4, 2.0), (5, 0.0), (6, 0.0)):
        state.epoch = epoch
        clock[0] += wait
        rp.on_epoch_end(state)
        seen.append(epoch in drawn)
    # 1: the first; then 3 s / 0.5 = 6 s must pass: 2 (1 s) and 3 (5 s) no, 4 (7 s) yes;
    # 5 (0 s after 4) no; 6: the last
    assert seen == [True, False, False, True, False, True]
    state.epoch, state.stop = 2, True
    rp.on_epoch_end(state)
    assert drawn[-1] == 2  # a stop draws
    every = callbacks.RunPlots(RunDir(tmp_path / "run2"), inputs, torch.tensor([0, 1]))
    state.stop = False
    assert every.due(state)
    every.on_epoch_end(state)
    assert every.due(state)  # without last_epoch: after every epoch
    for bad in (0, 1.5, True, "0.1"):
        with pytest.raises(ValueError, match="share"):
            callbacks.RunPlots(RunDir(tmp_path / "run3"), inputs, torch.tensor([0]), share=bad)
    for bad in ("10", 0, 2.0, True):
        with pytest.raises(ValueError, match="last_epoch"):
            callbacks.RunPlots(RunDir(tmp_path / "run3"), inputs, torch.tensor([0]),
                               last_epoch=bad)


def test_plots_show_the_last_epoch_when_a_later_callback_stops_training(monkeypatch, tmp_path):
    """finish() draws the last completed epoch if the plots do not show it, once."""
    from batsnn.experiments import plots
    from batsnn.experiments.rundir import RunDir
    from batsnn.experiments.training import callbacks

    clock = [0.0]
    drawn = []
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: clock[0])
    def fake_draw(*args):
        clock[0] += 1.0
        drawn.append(state.epoch)

    for name in ("learning_curves", "spikes_per_layer", "raster"):
        monkeypatch.setattr(plots, name, fake_draw)
    state, *_ = tiny_problem()
    rp = callbacks.RunPlots(RunDir(tmp_path / "run"), batsnn.ttfs_encode(torch.rand(2, 6)),
                            torch.tensor([0, 1]), last_epoch=10)
    rp.finish(state)
    assert drawn == []  # nothing trained: nothing to draw
    for epoch in (1, 2):
        state.epoch = epoch
        state.history.append({M.EPOCH: epoch})
        rp.on_epoch_end(state)
    assert drawn == [1, 1, 1]  # epoch 2 was not due (no time passed)
    state.epoch = 3  # an epoch abandoned from on_step: not in the history
    rp.finish(state)
    assert drawn[3:] == [2, 2, 2] and state.epoch == 3
    rp.finish(state)
    assert len(drawn) == 6
