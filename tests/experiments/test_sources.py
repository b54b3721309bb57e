"""batsnn.experiments.sources: the image source gives what the runner encoded before (sizes,
spike times, labels, augmentation draws), and the training step, the loop and evaluation
take any data source, here one whose samples already are spike times."""

import pytest
import torch

from batsnn import metrics as M
from batsnn.encoding import discretize
from batsnn.experiments import train as T
from batsnn.experiments.config import resolve_config
from batsnn.experiments.data import load_dataset
from batsnn.experiments.distributed import Shard
from batsnn.experiments.model import build_model
from batsnn.experiments.sources import DataSource, ImageSource, Split, encode_images, open_source
from batsnn.experiments.training.evaluation import evaluate
from batsnn.experiments.training.grid import TrainingGrid
from batsnn.experiments.training.loop import TrainState, fit
from batsnn.experiments.training.step import TrainStep
from batsnn.spikes import mark_valid


def test_image_source_is_the_encoded_dataset(data_dir):
    cfg = resolve_config("mnist-conv", dataset="fashion-mnist", data_dir=str(data_dir),
                         train_samples=30, test_samples=12, dt=0.004)
    src = open_source(cfg)
    ds = load_dataset("fashion-mnist", data_dir)
    assert isinstance(src, ImageSource)
    assert (src.n_train, src.n_test, src.n_classes, src.n_inputs) == (30, 12, 10, 784)
    assert src.input_shape == (1, 28, 28) and src.origin == ds.source
    idx = torch.tensor([4, 0, 29])
    assert torch.equal(src.inputs("train", idx, "cpu", dt=0.004),
                       encode_images(ds.train_x[idx], cfg, "cpu"))
    assert torch.equal(src.inputs("test", slice(2, 5), "cpu", dt=None),
                       encode_images(ds.test_x[2:5], cfg, "cpu", dt=None))
    shift = torch.tensor([0.001, 0.002, 0.0])
    assert torch.equal(src.inputs("train", idx, "cpu", dt=0.004, shift=shift),
                       encode_images(ds.train_x[idx], cfg, "cpu", shift=shift))
    assert torch.equal(src.labels("train", idx), ds.train_y[idx])
    # augmentation: one draw per (seed, epoch, batch), applied to every image of the batch
    draw = src.batch_draw(epoch=2, batch=3)
    assert torch.equal(draw, T.batch_grid("elastic", seed=cfg.seed, epoch=2, batch=3))
    assert not torch.equal(draw, src.batch_draw(epoch=2, batch=4))
    assert torch.equal(src.inputs("train", idx, "cpu", dt=0.004, draw=draw),
                       encode_images(T.deform_by_grid(ds.train_x[idx], draw), cfg, "cpu"))
    plain = open_source(resolve_config("mnist-count", dataset="fashion-mnist",
                                       data_dir=str(data_dir)))
    assert plain.batch_draw(epoch=1, batch=0) is None and plain.input_shape == (784,)


def test_splits_are_views_of_rows(data_dir):
    src = open_source(resolve_config("mnist-count", dataset="fashion-mnist",
                                     data_dir=str(data_dir)))
    ds = load_dataset("fashion-mnist", data_dir)
    test = src.split("test")
    assert isinstance(test, Split) and len(test) == 20
    part = src.split("test", slice(5, 15))[2:4]
    assert part.rows.tolist() == [7, 8] and torch.equal(part.labels, ds.test_y[7:9])
    assert torch.equal(part.inputs("cpu", None), encode_images(ds.test_x[7:9], src.cfg, "cpu",
                                                               dt=None))
    with pytest.raises(MemoryError, match="lower the layer sizes"):
        open_source(resolve_config("mnist-count", dataset="fashion-mnist",
                                   data_dir=str(data_dir), hidden=[10**8])).check_fits(
            "cpu", 10)


class SpikeTimes(DataSource):
    """Samples that already are spike times: 12 input neurons, one spike each, the class
    deciding which half spikes early."""

    def __init__(self, n_train=24, n_test=8):
        g = torch.Generator().manual_seed(5)
        self.n_classes, self.n_inputs, self.input_shape, self.origin = 2, 12, (12,), "memory"
        self.y = {s: torch.randint(0, 2, (n,), generator=g)
                  for s, n in (("train", n_train), ("test", n_test))}
        self.t = {}
        for s, y in self.y.items():
            t = 0.05 + 0.04 * torch.rand(len(y), 12, generator=g)
            early = torch.arange(12).expand(len(y), 12) // 6 == y[:, None]
            self.t[s] = torch.where(early, t - 0.045, t).unsqueeze(-1)
        self.asked = []

    def size(self, split):
        return len(self.y[split])

    def inputs(self, split, idx, device, *, dt, shift=None, draw=None):
        self.asked.append((split, dt, shift is not None))
        t = self.t[split][idx]
        return mark_valid(t if not dt else discretize(t, dt))

    def labels(self, split, idx, device=None):
        return self.y[split][idx]

    def check_fits(self, device, batch_size):
        pass


def test_the_step_loop_and_evaluation_take_any_source():
    cfg = resolve_config("mnist-count", hidden=[8], theta=[0.2, 0.05], max_spikes=[4, 6],
                         init=[-0.2, 1.0], batch_size=6, eval_batch_size=5, dt=0.004,
                         dt_mode="finetune", dt_warmup_epochs=1, target_true=4,
                         target_false=1)
    src = SpikeTimes()
    with pytest.raises(TypeError):
        DataSource()  # the interface is abstract
    torch.manual_seed(0)
    model = build_model(cfg, src.n_inputs, src.n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    state = TrainState(model, opt, "cpu", config=cfg)
    grid = TrainingGrid(model, cfg)
    step = TrainStep(state, model, src, grid)
    test = src.split("test")

    def batches(epoch):
        order = torch.randperm(src.n_train, generator=torch.Generator().manual_seed(epoch))
        return [Shard(order[i:i + 6], 1.0, 6, True) for i in range(0, 24, 6)]

    fit(state, epochs=2, batches=batches, step=step, callbacks=[grid],
        evaluate=lambda st: evaluate(st.model, cfg, test, test.labels, "cpu"))
    assert [r[M.EPOCH] for r in state.history] == [1, 2] and state.step == 8
    assert state.history[0][M.TRAIN_LOSS] != state.history[1][M.TRAIN_LOSS]
    # epoch 1 trained in exact time, epoch 2 on the grid; every evaluation on the grid
    train_dts = [dt for s, dt, _ in src.asked if s == "train"]
    assert train_dts == [None] * 4 + [0.004] * 4
    assert {dt for s, dt, _ in src.asked if s == "test"} == {0.004}
    assert not any(shifted for *_, shifted in src.asked)
    again = evaluate(model, cfg, test, test.labels, "cpu")
    assert again[M.TEST_LOSS] == state.history[-1][M.TEST_LOSS]
