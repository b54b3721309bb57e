"""Hostile inputs to the library's public functions and classes (params, nn, functional,
spikes, encoding, losses, metrics): each call works or raises a named ValueError/TypeError."""

import math

import numpy as np
import pytest
import torch

import batsnn
from batsnn import LIFParams
from batsnn.encoding import discretize, ttfs_encode
from batsnn.functional import lif_conv2d, lif_linear, spike_flatten, spike_pool2d
from batsnn.losses import (count_predict, spike_count_class_loss, spike_count_loss,
                           spike_time_loss, ttfs_cross_entropy, ttfs_predict)
from batsnn.metrics import (EvalStats, decision_times, label_spike_share, layer_activity,
                            prediction_by, spike_train_error)
from batsnn.nn import Flatten, LIFConv2d, LIFLinear, SpikePool2d
from batsnn.spikes import SpikeTrains, check_spike_times
from tests.hostile.harness import LibCase, check_lib

INF, NAN = math.inf, math.nan
KW = dict(tau_s=0.05, theta=0.01, max_spikes=3)


def _x(b=2, n=3, dtype=torch.float64):
    return torch.arange(b * n, dtype=dtype).reshape(b, n, 1) * 0.01


def _w(o=4, n=3, dtype=torch.float64):
    return torch.linspace(0.1, 0.3, o * n, dtype=dtype).reshape(o, n)


def _maps(counts_delta=0):
    t = torch.full((1, 1, 2, 2, 2), INF, dtype=torch.float64)
    t[0, 0, 0, 0, 0] = 0.01
    c = torch.isfinite(t).sum(-1)
    c[0, 0, 1, 1] += counts_delta
    return t, c


def _out(b=2, n=3, s=4):
    t = torch.full((b, n, s), INF, dtype=torch.float64)
    t[:, :, 0] = 0.02
    return t, torch.ones(b, n, dtype=torch.int64)


def _same(expected):
    """An ``after`` check: the result's spikes are those of ``expected``."""
    def check(r):
        assert torch.equal(r.times.detach(), expected.times)
        assert torch.equal(r.counts, expected.counts)
    return check


def _layer(**kw):
    return lambda: LIFLinear(3, 4, **{**KW, **kw})


CASES = [
    # --- wrong types where tensors are expected
    LibCase("lif-input-list", lambda: lif_linear([[[0.0]]], _w(1, 1), **KW), (TypeError,),
            ("input_times", "list")),
    LibCase("lif-input-none", lambda: lif_linear(None, _w(), **KW), (TypeError,),
            ("input_times", "NoneType")),
    LibCase("lif-weight-numpy", lambda: lif_linear(_x(), _w().numpy(), **KW), (TypeError,),
            ("weight", "ndarray")),
    LibCase("flatten-list", lambda: spike_flatten([[1.0]], [[1]]), (TypeError,),
            ("times", "list")),
    LibCase("flatten-none", lambda: spike_flatten(None, None), (TypeError,),
            ("times", "NoneType")),
    LibCase("flatten-counts-list", lambda: spike_flatten(_out()[0], [1, 1]), (TypeError,),
            ("counts", "list")),
    LibCase("flatten-counts-float", lambda: spike_flatten(*_out()[:1], _out()[1].double()),
            (TypeError,), ("counts", "float64")),
    LibCase("pool-counts-list", lambda: spike_pool2d(_maps()[0], [[1]]), (TypeError,),
            ("counts", "list")),
    LibCase("discretize-list", lambda: discretize([0.1], 0.01), (TypeError,), ("times", "list")),
    LibCase("discretize-int", lambda: discretize(torch.tensor([1]), 0.01), (TypeError,),
            ("times", "int64")),
    LibCase("ttfs-list", lambda: ttfs_encode([[0.5]]), (TypeError,), ("x", "list")),
    LibCase("loss-times-list", lambda: spike_count_loss([[[0.0]]], *_out()[1:], _out()[1]),
            (TypeError,), ("times", "list")),
    LibCase("loss-targets-list", lambda: spike_count_loss(*_out(), [[1.0]]), (TypeError,),
            ("targets", "list")),
    LibCase("class-labels-list", lambda: spike_count_class_loss(*_out(), [0, 1]),
            (TypeError,), ("labels", "list")),
    LibCase("time-loss-target-list", lambda: spike_time_loss(_out()[0], [0.0]), (TypeError,),
            ("target_times", "list")),
    LibCase("ce-times-list", lambda: ttfs_cross_entropy([0.1], torch.tensor([0])),
            (TypeError,), ("times", "list")),
    LibCase("predict-list", lambda: count_predict([3, 1]), (TypeError,), ("counts", "list")),
    LibCase("ttfs-predict-none", lambda: ttfs_predict(None), (TypeError,), ("times",)),
    LibCase("metrics-activity-list", lambda: layer_activity([1, 2]), (TypeError,),
            ("counts", "list")),
    LibCase("metrics-decision-list", lambda: decision_times([1.0], [1], "count"),
            (TypeError,), ("times", "list")),
    LibCase("metrics-prediction-list", lambda: prediction_by([1.0], 0.1, "count"),
            (TypeError,), ("times", "list")),
    LibCase("metrics-share-labels-list",
            lambda: label_spike_share(_out()[0], [0, 1], 1.0, 0.1), (TypeError,),
            ("labels", "list")),
    # --- wrong dtypes
    LibCase("layer-dtype-int64", _layer(dtype=torch.int64), (TypeError,),
            ("dtype", "torch.int64")),
    LibCase("layer-dtype-float16", _layer(dtype=torch.float16), (TypeError,),
            ("dtype", "float16")),
    LibCase("layer-dtype-str", _layer(dtype="float32"), (TypeError,), ("dtype", "'float32'")),
    LibCase("conv-dtype-int32",
            lambda: LIFConv2d(1, 2, 3, dtype=torch.int32, **KW), (TypeError,), ("dtype",)),
    LibCase("ttfs-dtype-int64", lambda: ttfs_encode(torch.rand(2, 3), dtype=torch.int64),
            (TypeError,), ("dtype", "int64")),
    LibCase("ttfs-dtype-uint8", lambda: ttfs_encode(torch.rand(2, 3), dtype=torch.uint8),
            (TypeError,), ("dtype", "uint8")),
    LibCase("ttfs-dtype-str", lambda: ttfs_encode(torch.rand(2, 3), dtype="x"),
            (TypeError,), ("dtype", "'x'")),
    LibCase("loss-counts-float", lambda: spike_count_loss(_out()[0], _out()[1].float(),
                                                          _out()[1]),
            (TypeError,), ("counts", "float32")),
    LibCase("loss-times-int", lambda: spike_count_loss(_out()[1][..., None], *_out()[1:],
                                                       _out()[1]),
            (TypeError,), ("times", "int64")),
    LibCase("pool-counts-float", lambda: spike_pool2d(_maps()[0], _maps()[1].double()),
            (TypeError,), ("counts", "float64")),
    # --- bools where ints or numbers are expected
    LibCase("params-max-spikes-bool", lambda: LIFParams(tau_s=0.1, theta=0.1, max_spikes=True),
            (TypeError,), ("max_spikes", "True")),
    LibCase("params-tau-bool", lambda: LIFParams(tau_s=True, theta=0.1, max_spikes=1),
            (TypeError,), ("tau_s", "True")),
    LibCase("params-np-bool", lambda: LIFParams(tau_s=0.1, theta=0.1,
                                                max_spikes=np.bool_(True)),
            (TypeError,), ("max_spikes",)),
    LibCase("layer-in-features-bool", lambda: LIFLinear(True, 2, **KW), (ValueError,),
            ("in_features", "True")),
    LibCase("conv-stride-bool", lambda: LIFConv2d(1, 2, 3, stride=True, **KW), (TypeError,),
            ("stride", "True")),
    LibCase("pool-kernel-bool", lambda: SpikePool2d(True), (ValueError,), ("kernel_size",)),
    LibCase("ttfs-validate-str", lambda: ttfs_encode(torch.rand(2, 3), validate="no"),
            (TypeError,), ("validate", "'no'")),
    LibCase("class-target-bool",
            lambda: spike_count_class_loss(*_out(), torch.tensor([0, 1]), target_true=True),
            (TypeError,), ("target_true", "True")),
    LibCase("ce-tau-loss-str", lambda: ttfs_cross_entropy(_out()[0], torch.tensor([0, 1]),
                                                          tau_loss="a"),
            (TypeError,), ("tau_loss", "'a'")),
    # --- numpy scalars and numpy ints: accepted
    LibCase("layer-numpy-sizes", lambda: LIFLinear(np.int64(3), np.int32(2), **KW), (),
            after=lambda m: m.weight.shape == (2, 3) or pytest.fail(str(m.weight.shape))),
    LibCase("pool-module-numpy-k", lambda: SpikePool2d(np.int64(2)), (),
            after=lambda m: type(m.kernel_size) is int or pytest.fail("not an int")),
    LibCase("pool-numpy-k", lambda: spike_pool2d(*_maps(), np.int64(2)), (),
            after=lambda r: r.counts.shape == (1, 1, 1, 1) or pytest.fail("shape")),
    LibCase("lif-numpy-params", lambda: lif_linear(_x(), _w(), tau_s=np.float32(0.05),
                                                   theta=np.float64(0.01),
                                                   max_spikes=np.int64(3)),
            (), after=_same(lif_linear(_x(), _w(), tau_s=float(np.float32(0.05)),
                                       theta=0.01, max_spikes=3))),
    LibCase("ce-numpy-t-max", lambda: ttfs_cross_entropy(*_out()[:1], torch.tensor([0, 1]),
                                                         t_max=np.float64(1.0)),
            (), after=lambda v: math.isfinite(float(v)) or pytest.fail(str(v))),
    # --- 0-d tensors
    LibCase("params-0d-theta", lambda: LIFParams(tau_s=0.1, theta=torch.tensor(0.1),
                                                 max_spikes=1),
            (TypeError,), ("theta", "tensor")),
    LibCase("lif-0d-input", lambda: lif_linear(torch.tensor(0.1), _w(), **KW), (ValueError,),
            ("input_times", "shape ()")),
    LibCase("flatten-0d", lambda: spike_flatten(torch.tensor(1.0), torch.tensor(1)),
            (ValueError,), ("times", "()")),
    LibCase("ttfs-0d", lambda: ttfs_encode(torch.tensor(0.5)), (ValueError,), ("x", "()")),
    LibCase("predict-0d", lambda: count_predict(torch.tensor(1)), (ValueError,),
            ("counts", "()")),
    # --- empty tensors: work
    LibCase("lif-empty-batch", lambda: lif_linear(_x()[:0], _w(), **KW), (),
            after=lambda r: r.times.shape == (0, 4, 3) or pytest.fail(str(r.times.shape))),
    LibCase("lif-empty-slots", lambda: lif_linear(_x()[..., :0], _w(), **KW), (),
            after=lambda r: int(r.counts.sum()) == 0 or pytest.fail("spikes from nothing")),
    LibCase("lif-no-outputs", lambda: lif_linear(_x(), _w()[:0], **KW), (),
            after=lambda r: r.counts.shape == (2, 0) or pytest.fail(str(r.counts.shape))),
    LibCase("ttfs-empty-batch", lambda: ttfs_encode(torch.rand(0, 3)), (),
            after=lambda t: t.shape == (0, 3, 1) or pytest.fail(str(t.shape))),
    LibCase("loss-empty-batch", lambda: spike_count_loss(*(v[:0] for v in _out()),
                                                         _out()[1][:0].double(),
                                                         reduction="sum"),
            (), after=lambda v: float(v) == 0.0 or pytest.fail(str(v))),
    # --- wrong devices
    LibCase("lif-weight-meta", lambda: lif_linear(_x(), _w().to("meta"), **KW), (ValueError,),
            ("weight", "meta")),
    LibCase("lif-input-meta", lambda: lif_linear(_x().to("meta"), _w().to("meta"), **KW),
            (ValueError,), ("input_times", "meta")),
    LibCase("pool-meta", lambda: spike_pool2d(*(v.to("meta") for v in _maps())),
            (ValueError,), ("times", "meta")),
    LibCase("pool-counts-meta", lambda: spike_pool2d(_maps()[0], _maps()[1].to("meta")),
            (ValueError,), ("counts", "meta")),
    LibCase("loss-counts-meta", lambda: spike_count_loss(_out()[0], _out()[1].to("meta"),
                                                         _out()[1]),
            (ValueError,), ("counts", "meta")),
    LibCase("loss-labels-meta",
            lambda: spike_count_class_loss(*_out(), torch.tensor([0, 1], device="meta")),
            (ValueError,), ("labels", "meta")),
    LibCase("time-loss-target-meta",
            lambda: spike_time_loss(_out()[0], _out()[0].to("meta")),
            (ValueError,), ("target_times", "meta")),
    LibCase("ttfs-meta", lambda: ttfs_encode(torch.rand(2, 3, device="meta")), (ValueError,),
            ("x", "meta")),
    LibCase("layer-device-bogus", _layer(device="nope"), (ValueError,), ("device", "'nope'")),
    # --- requires_grad and non-contiguous inputs: work, same results
    LibCase("lif-requires-grad", lambda: lif_linear(_x().requires_grad_(), _w(), **KW), (),
            after=_same(lif_linear(_x(), _w(), **KW))),
    LibCase("lif-non-contiguous",
            lambda: lif_linear(_x().transpose(0, 1).contiguous().transpose(0, 1),
                               _w().t().contiguous().t(), **KW),
            (), after=_same(lif_linear(_x(), _w(), **KW))),
    LibCase("ttfs-requires-grad", lambda: ttfs_encode(torch.rand(2, 3).requires_grad_()), (),
            after=lambda t: t.shape == (2, 3, 1) or pytest.fail(str(t.shape))),
    LibCase("pool-non-contiguous",
            lambda: spike_pool2d(_maps()[0].transpose(2, 3), _maps()[1].transpose(2, 3)), (),
            after=lambda r: int(r.counts.sum()) == 1 or pytest.fail(str(r.counts))),
    # --- int overflow and sizes beyond the supported ones
    LibCase("params-max-spikes-2**63", lambda: LIFParams(tau_s=0.1, theta=0.1,
                                                         max_spikes=2**63),
            (ValueError,), ("max_spikes", "9223372036854775808", "2**31 - 1")),
    LibCase("lif-max-spikes-2**31", lambda: lif_linear(_x(), _w(), tau_s=0.1, theta=0.1,
                                                       max_spikes=2**31),
            (ValueError,), ("max_spikes", "2147483648")),
    LibCase("layer-in-features-2**63", lambda: LIFLinear(2**63, 2, **KW), (ValueError,),
            ("in_features", "9223372036854775808")),
    LibCase("conv-kernel-2**63", lambda: LIFConv2d(1, 1, 2**63, **KW), (ValueError,),
            ("kernel_size", "9223372036854775808")),
    LibCase("conv-padding-2**62", lambda: lif_conv2d(torch.zeros(1, 1, 4, 4, 1),
                                                     torch.zeros(1, 1, 2, 2),
                                                     padding=2**62, **KW),
            (ValueError,), ("padding", "4611686018427387904")),
    LibCase("pool-kernel-2**63", lambda: spike_pool2d(*_maps(), 2**63), (ValueError,),
            ("kernel_size", "9223372036854775808")),
    # --- NaN and infinity
    LibCase("init-nan", _layer(init=(NAN, 1.0)), (ValueError,), ("init", "nan")),
    LibCase("init-inf", _layer(init=(0.0, INF)), (ValueError,), ("init", "inf")),
    LibCase("lif-weight-nan", lambda: lif_linear(_x(), _w() * NAN, **KW), (ValueError,),
            ("weight", "NaN")),
    LibCase("lif-weight-inf", lambda: lif_linear(_x(), _w() * INF, **KW), (ValueError,),
            ("weight", "infinite")),
    LibCase("lif-tau-inf", lambda: lif_linear(_x(), _w(), tau_s=INF, theta=0.1, max_spikes=1),
            (ValueError,), ("tau_s", "inf")),
    LibCase("lif-input-neg-inf", lambda: lif_linear(-_x() - INF, _w(), **KW), (ValueError,),
            ("input_times", "-inf")),
    LibCase("discretize-nan", lambda: discretize(torch.tensor([0.1, NAN]), 0.01),
            (ValueError,), ("times[1]", "nan")),
    LibCase("discretize-neg-inf", lambda: discretize(torch.tensor([-INF]), 0.01),
            (ValueError,), ("times[0]", "-inf")),
    LibCase("loss-targets-nan", lambda: spike_count_loss(*_out(), torch.full((2, 3), NAN)),
            (ValueError,), ("targets", "nan")),
    LibCase("loss-targets-inf", lambda: spike_count_loss(*_out(), torch.full((2, 3), INF)),
            (ValueError,), ("targets", "inf")),
    LibCase("class-target-nan",
            lambda: spike_count_class_loss(*_out(), torch.tensor([0, 1]), target_false=NAN),
            (ValueError,), ("target_false", "nan")),
    LibCase("time-loss-target-nan", lambda: spike_time_loss(_out()[0], _out()[0] * NAN),
            (ValueError,), ("target_times", "nan")),
    LibCase("ce-tau-inf", lambda: ttfs_cross_entropy(_out()[0], torch.tensor([0, 1]),
                                                     tau_loss=INF),
            (ValueError,), ("tau_loss", "inf")),
    LibCase("metrics-share-t-nan",
            lambda: label_spike_share(_out()[0], torch.tensor([0, 1]), 1.0, NAN),
            (ValueError,), ("t", "nan")),
    # --- values accepted without a check before: negative, inconsistent, out of order
    LibCase("init-reversed", _layer(init=(1, 0)), (ValueError,), ("init", "(1, 0)")),
    LibCase("init-not-a-pair", _layer(init=3), (TypeError,), ("init", "3")),
    LibCase("init-strings", _layer(init=("a", "b")), (TypeError,), ("init",)),
    LibCase("init-beyond-float32", _layer(init=(-3e38, 3e38), dtype=torch.float32),
            (ValueError,), ("init", "float32")),
    LibCase("pool-counts-disagree", lambda: spike_pool2d(*_maps(counts_delta=1)),
            (ValueError,), ("counts", "disagree", "counts[0, 0, 1, 1] = 1")),
    LibCase("pool-counts-negative", lambda: spike_pool2d(*_maps(counts_delta=-1)),
            (ValueError,), ("counts", "-1")),
    LibCase("discretize-negative", lambda: discretize(torch.tensor([0.0, -1.0]), 0.01),
            (ValueError,), ("times[1]", "-1.0")),
    LibCase("discretize-negative-f32",
            lambda: discretize(torch.tensor([[0.5, -0.02]], dtype=torch.float32), 0.01),
            (ValueError,), ("times[0, 1]",)),
    LibCase("discretize-rounding-below-zero",
            lambda: discretize(torch.tensor([-1e-300], dtype=torch.float64), 0.01), (),
            after=lambda t: float(t[0]) == 0.0 or pytest.fail(str(t))),
    LibCase("loss-targets-negative", lambda: spike_count_loss(*_out(), -torch.ones(2, 3)),
            (ValueError,), ("targets", "-1.0")),
    LibCase("loss-int-targets-negative",
            lambda: spike_count_loss(*_out(), -torch.ones(2, 3, dtype=torch.int64)),
            (ValueError,), ("targets", "-1")),
    LibCase("loss-counts-negative", lambda: spike_count_loss(_out()[0], -_out()[1],
                                                             _out()[1]),
            (ValueError,), ("counts", "-1")),
    LibCase("loss-counts-beyond-slots", lambda: spike_count_loss(_out()[0], _out()[1] * 5,
                                                                 _out()[1]),
            (ValueError,), ("counts", "S=4", "5")),
    LibCase("class-target-negative",
            lambda: spike_count_class_loss(*_out(), torch.tensor([0, 1]), target_true=-1),
            (ValueError,), ("target_true", "-1")),
    LibCase("time-loss-target-negative",
            lambda: spike_time_loss(_out()[0], -_out()[0].nan_to_num(posinf=1.0)),
            (ValueError,), ("target_times", "-")),
    LibCase("loss-reduction", lambda: spike_time_loss(*_out()[:1], _out()[0],
                                                      reduction=None),
            (ValueError,), ("reduction", "None")),
    # --- extreme values beyond the supported ranges (docs/model.md section 7)
    LibCase("weight-1e16", lambda: lif_linear(_x(), _w() * 1e16, tau_s=0.05, theta=0.2,
                                              max_spikes=3),
            (ValueError,), ("weight", "magnitude", "batsnn supports")),
    LibCase("weight-1e18-negative", lambda: lif_linear(_x(), -_w() * 1e18, tau_s=0.05,
                                                       theta=0.2, max_spikes=3),
            (ValueError,), ("weight", "3e+17")),
    LibCase("theta-1e-100", lambda: lif_linear(_x(), _w(), tau_s=0.05, theta=1e-100,
                                               max_spikes=3),
            (ValueError,), ("theta=1e-100", "[1e-12, 1e+12]")),
    LibCase("tau-1e16", lambda: LIFLinear(3, 4, tau_s=1e16, theta=0.1, max_spikes=3),
            (ValueError,), ("tau_s=1e+16", "[1e-09, 1e+06]")),
    LibCase("tau-1e308", lambda: LIFParams(tau_s=1e308, theta=0.1, max_spikes=3),
            (ValueError,), ("tau_s=1e+308",)),
    LibCase("delta-theta-1e-300", lambda: LIFParams(tau_s=0.1, theta=0.1, max_spikes=3,
                                                    delta_theta=1e-300),
            (ValueError,), ("delta_theta",)),
    LibCase("conv-weight-1e16",
            lambda: lif_conv2d(torch.zeros(1, 1, 3, 3, 1), torch.full((1, 1, 2, 2), 1e16),
                               tau_s=0.05, theta=0.2, max_spikes=2),
            (ValueError,), ("weight", "magnitude")),
    LibCase("weight-at-the-bound", lambda: lif_linear(
        _x(), torch.full((1, 3), LIFParams(**KW).max_weight, dtype=torch.float64), **KW),
        (), after=lambda r: int(r.counts.sum()) == 2 * KW["max_spikes"]
        or pytest.fail(str(r.counts))),
]


# the spikes of a burst (preamble of the range findings): two neurons, two spikes each
_A_X = torch.tensor([[[0.01], [0.02], [0.03]]], dtype=torch.float64)
_A_W = torch.full((2, 3), 2.0, dtype=torch.float64)
_A = dict(tau_s=0.13, theta=0.2, max_spikes=5)
# an output layer: neuron 0 spiked once, neuron 1 twice
_B_T = torch.tensor([[[0.01, INF], [0.02, 0.03]]])
_B_C = torch.tensor([[1, 2]])


def _counts(expected):
    """An ``after`` check: the result's counts are ``expected``."""
    def check(r):
        assert r.counts.tolist() == expected, r.counts.tolist()
    return check


def _equal(expected):
    def check(r):
        assert r == expected, r
    return check


CASES += [
    # --- dt: a time step so small that grid indices are not exact integers
    LibCase("dt-subnormal", lambda: lif_linear(_A_X, _A_W, **_A, dt=1e-320), (ValueError,),
            ("dt=1e-320", "tau_s=0.13", "1.3e-10")),
    LibCase("dt-1e-12", lambda: lif_linear(_A_X, _A_W, **_A, dt=1e-12), (ValueError,),
            ("dt=1e-12", "[1e-09, 4.5e+06] * tau_s")),
    LibCase("dt-below-ratio", lambda: LIFParams(**_A, dt=0.99e-9 * 0.13), (ValueError,),
            ("dt=", "tau_s=0.13")),
    LibCase("dt-above-ratio", lambda: LIFParams(**_A, dt=4.6e6 * 0.13), (ValueError,),
            ("dt=", "585000")),
    LibCase("dt-layer-module", lambda: LIFLinear(3, 2, **_A, dt=1e-300), (ValueError,),
            ("dt=1e-300",)),
    LibCase("dt-at-the-lower-bound", lambda: lif_linear(_A_X, _A_W, **_A, dt=1e-9 * 0.13), (),
            after=_counts([[2, 2]])),
    LibCase("dt-none", lambda: lif_linear(_A_X, _A_W, **_A, dt=None), (),
            after=_counts([[2, 2]])),
    LibCase("discretize-dt-subnormal", lambda: discretize(torch.tensor([0.1]), 1e-320),
            (ValueError,), ("dt=1e-320", "[1e-18, 4.5e+12]")),
    LibCase("discretize-dt-huge", lambda: discretize(torch.tensor([0.1]), 1e300),
            (ValueError,), ("dt=1e+300",)),
    LibCase("discretize-index-2-53", lambda: discretize(
        torch.tensor([[0.01, 1e3, INF]], dtype=torch.float64), 1e-13), (ValueError,),
        ("times", "1000.0", "2**53", "dt=1e-13")),
    LibCase("discretize-index-float32", lambda: discretize(torch.tensor([1e30]), 1e-9),
            (ValueError,), ("times", "2**53")),
    LibCase("discretize-index-below", lambda: discretize(
        torch.tensor([1e3, INF], dtype=torch.float64), 1e-12), (),
        after=lambda r: r[1] == INF and r[0] > 1e3 or pytest.fail(str(r))),
    LibCase("ttfs-dt-subnormal", lambda: ttfs_encode(torch.rand(2, 3), dt=1e-320),
            (ValueError,), ("dt=1e-320",)),
    LibCase("ttfs-dt-index", lambda: ttfs_encode(torch.rand(2, 3), t_window=1e6, dt=1e-12),
            (ValueError,), ("t_window=1000000.0", "2**53")),
    LibCase("ttfs-dt-bound-ok", lambda: ttfs_encode(torch.full((1, 1), 0.5), t_window=1e-3,
                                                      dt=1e-18), (),
            after=lambda r: r.item() > 0 or pytest.fail(str(r))),
    # --- input times beyond 4.5e6 tau_s
    LibCase("times-1e15", lambda: lif_linear(_A_X + 1e15, _A_W, **_A), (ValueError,),
            ("input_times[0, 0, 0]", "1000000000000000.0", "4.5e+06 * tau_s", "585000")),
    LibCase("times-1e30-float32", lambda: lif_linear((_A_X + 1e30).float(), _A_W.float(),
                                                     **_A), (ValueError,),
            ("input_times", "4.5e+06 * tau_s")),
    LibCase("times-one-late-spike", lambda: lif_linear(
        torch.tensor([[[0.01, 6e5], [0.02, INF], [0.03, INF]]], dtype=torch.float64), _A_W,
        **_A), (ValueError,), ("input_times[0, 0, 1]",)),
    LibCase("times-conv-1e15", lambda: lif_conv2d(
        torch.full((1, 1, 2, 2, 1), 1e15), torch.ones(1, 1, 2, 2), **_A), (ValueError,),
        ("input_times[0, 0, 0, 0, 0]", "4.5e+06")),
    LibCase("times-module", lambda: LIFLinear(3, 2, **_A, dtype=torch.float64)(_A_X + 1e15),
            (ValueError,), ("input_times",)),
    LibCase("times-at-the-bound", lambda: lif_linear(
        torch.tensor([[[0.01], [0.02], [4.5e6 * 0.13]]], dtype=torch.float64), _A_W, **_A),
        (), after=lambda r: int(r.counts.sum()) >= 2 or pytest.fail(str(r.counts))),
    # --- loss targets beyond the dtype's range
    LibCase("class-target-1e308", lambda: spike_count_class_loss(
        _B_T, _B_C, torch.tensor([0]), target_true=1e308, target_false=3), (ValueError,),
        ("target_true=1e+308", "float32")),
    LibCase("class-target-false-1e20", lambda: spike_count_class_loss(
        _B_T, _B_C, torch.tensor([0]), target_false=1e20), (ValueError,),
        ("target_false=1e+20", "float32")),
    LibCase("class-target-1e160-float64", lambda: spike_count_class_loss(
        _B_T.double(), _B_C, torch.tensor([0]), target_true=1e160), (ValueError,),
        ("target_true", "float64")),
    LibCase("class-target-1e19-float64", lambda: spike_count_class_loss(
        _B_T.double(), _B_C, torch.tensor([0]), target_true=1e19), (),
        after=lambda r: math.isfinite(r.item()) or pytest.fail(str(r))),
    LibCase("count-targets-1e300", lambda: spike_count_loss(
        _B_T, _B_C, torch.tensor([[1e300, 1.0]], dtype=torch.float64)), (ValueError,),
        ("targets[0, 0]", "1e+300", "float32")),
    LibCase("count-targets-1e20-float32", lambda: spike_count_loss(
        _B_T, _B_C, torch.tensor([[1.0, 1e20]])), (ValueError,), ("targets[0, 1]", "float32")),
    LibCase("count-targets-int-2-62", lambda: spike_count_loss(
        _B_T, _B_C, torch.tensor([[2**62, 1]])), (),
        after=lambda r: math.isfinite(r.item()) or pytest.fail(str(r))),
    LibCase("time-targets-1e308", lambda: spike_time_loss(
        _B_T, torch.full((1, 2, 2), 1e308, dtype=torch.float64)), (ValueError,),
        ("target_times[0, 0, 0]", "1e+308", "float32")),
    LibCase("time-targets-1e200-float64", lambda: spike_time_loss(
        _B_T.double(), torch.full((1, 2, 2), 1e200, dtype=torch.float64)), (ValueError,),
        ("target_times", "float64")),
    LibCase("time-targets-float64-for-float32", lambda: spike_time_loss(
        _B_T, torch.full((1, 2, 2), 0.5, dtype=torch.float64)), (),
        after=lambda r: r.dtype == torch.float32 or pytest.fail(str(r.dtype))),
    # --- tau_loss
    LibCase("ce-tau-loss-1e-300", lambda: ttfs_cross_entropy(
        _B_T, torch.tensor([0]), tau_loss=1e-300), (ValueError,),
        ("tau_loss=1e-300", "[1e-09, 1e+06]")),
    LibCase("ce-tau-loss-1e-12", lambda: ttfs_cross_entropy(
        _B_T, torch.tensor([0]), tau_loss=1e-12), (ValueError,), ("tau_loss",)),
    LibCase("ce-tau-loss-1e300", lambda: ttfs_cross_entropy(
        _B_T, torch.tensor([0]), tau_loss=1e300), (ValueError,), ("tau_loss=1e+300",)),
    LibCase("ce-times-overflow", lambda: ttfs_cross_entropy(
        torch.tensor([[[1e30], [3e38]]]), torch.tensor([0]), tau_loss=1e-3), (ValueError,),
        ("times", "tau_loss=0.001", "float32")),
    LibCase("ce-tau-loss-at-the-bound", lambda: ttfs_cross_entropy(
        _B_T, torch.tensor([0]), tau_loss=1e-9), (),
        after=lambda r: math.isfinite(r.item()) or pytest.fail(str(r))),
    # --- counts that disagree with times
    LibCase("count-loss-counts-disagree", lambda: spike_count_loss(
        _B_T, torch.tensor([[2, 2]]), torch.tensor([[1.0, 1.0]])), (ValueError,),
        ("counts[0, 0] = 2", "holds 1 finite")),
    LibCase("count-loss-counts-too-few", lambda: spike_count_loss(
        _B_T, torch.tensor([[1, 1]]), torch.tensor([[1.0, 1.0]])), (ValueError,),
        ("counts[0, 1] = 1", "holds 2 finite")),
    LibCase("class-loss-counts-zero", lambda: spike_count_class_loss(
        _B_T, torch.tensor([[0, 0]]), torch.tensor([1])), (ValueError,),
        ("counts[0, 0] = 0",)),
    LibCase("class-loss-counts-agree", lambda: spike_count_class_loss(
        _B_T, _B_C, torch.tensor([1]), target_true=2, target_false=1), (),
        after=lambda r: r.item() == 0.0 or pytest.fail(str(r))),
    # --- layer_activity: negative or fractional counts
    LibCase("activity-negative", lambda: layer_activity(torch.tensor([[-1, 2]])),
            (ValueError,), ("counts[0, 0] = -1", ">= 0")),
    LibCase("activity-negative-last", lambda: layer_activity(torch.tensor([[1, 2], [3, -4]])),
            (ValueError,), ("counts[1, 1] = -4",)),
    LibCase("activity-fraction", lambda: layer_activity(torch.tensor([[1.5, 2]])),
            (TypeError,), ("counts", "float32")),
    LibCase("activity-bool", lambda: layer_activity(torch.tensor([[True, False]])),
            (TypeError,), ("counts", "bool")),
    LibCase("activity-ok", lambda: layer_activity(torch.tensor([[0, 2], [1, 0]])), (),
            after=lambda r: r[0] == 3.0 and r[1].tolist() == [True, True]
            or pytest.fail(str(r))),
    # --- spike_train_error: pairs, shapes and kinds
    LibCase("train-error-shapes", lambda: spike_train_error((_B_T, _B_C),
                                                            (_B_T[:, :1], _B_C[:, :1])),
            (ValueError,), ("differ in shape", "(1, 2, 2)", "(1, 1, 2)")),
    LibCase("train-error-int", lambda: spike_train_error((_B_T, _B_C), 3), (TypeError,),
            ("disc", "int")),
    LibCase("train-error-triple", lambda: spike_train_error((_B_T, _B_C, _B_C),
                                                            (_B_T, _B_C)),
            (TypeError,), ("cont", "tuple of 3")),
    LibCase("train-error-counts-list", lambda: spike_train_error((_B_T, [1, 2]),
                                                                 (_B_T, _B_C)),
            (TypeError,), ("cont counts", "list")),
    LibCase("train-error-counts-disagree", lambda: spike_train_error((_B_T, _B_C),
                                                                     (_B_T, _B_C + 1)),
            (ValueError,), ("disc counts", "disagree")),
    LibCase("train-error-times-nan", lambda: spike_train_error(
        (torch.full((1, 2, 2), NAN), _B_C), (_B_T, _B_C)), (ValueError,),
        ("cont times", "NaN")),
    LibCase("eval-stats-target-str", lambda: EvalStats(None, "count", "a"), (TypeError,),
            ("target", "'a'")),
    LibCase("eval-stats-target-nan", lambda: EvalStats(None, "count", NAN), (ValueError,),
            ("target", "nan")),
    LibCase("eval-stats-target-zero", lambda: EvalStats(None, "count", 0), (ValueError,),
            ("target", "> 0")),
    LibCase("train-error-pairs", lambda: spike_train_error((_B_T, _B_C), (_B_T, _B_C)), (),
            after=lambda r: r["matched_spikes"] == 3 and r["mse_ms2"] == 0.0
            or pytest.fail(str(r))),
    LibCase("train-error-spike-trains", lambda: spike_train_error(
        SpikeTrains(_B_T, _B_C), SpikeTrains(_B_T + 0.001, _B_C)), (),
        after=lambda r: abs(r["rmse_ms"] - 1.0) < 1e-3 or pytest.fail(str(r))),
]


def test_library_table():
    check_lib(CASES)


def test_the_spike_checks_take_no_list():
    with pytest.raises(TypeError, match="maps must be a torch.Tensor, got list"):
        check_spike_times("maps", [[0.0]])


def test_modules_pass_lists_to_a_named_error():
    with pytest.raises(TypeError, match="SpikeTrains, got list"):
        Flatten()([1.0])
    with pytest.raises(TypeError, match="input_times must be a torch.Tensor, got list"):
        LIFLinear(3, 4, **KW)([1.0])
    assert batsnn.LIFParams is LIFParams
