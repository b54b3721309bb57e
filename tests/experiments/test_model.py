"""batsnn.experiments.model: networks from layer descriptions."""

import math

import pytest
import torch

import batsnn
from batsnn.experiments import model as Mo
from batsnn.experiments.config import resolve_config
from batsnn.nn import LIFLinear


def test_description_builds_lif_linear_layers_with_their_params():
    layers = [{"type": "linear", "features": 6, "theta": 0.2, "max_spikes": 4},
              {"type": "linear", "features": 5, "theta": 0.3, "max_spikes": 2,
               "delta_theta": 0.1, "tau_s": 0.05, "t_max": 0.5, "init": [0.0, 0.5]},
              {"type": "linear", "theta": 1.1, "max_spikes": 7}]
    torch.manual_seed(3)
    net = Mo.build_network(layers, (9,), 3, tau_s=0.13, t_max=0.2, init=(-1.0, 1.0),
                           dt=0.001)
    assert [type(m) for m in net] == [LIFLinear] * 3
    assert [(m.in_features, m.out_features) for m in net] == [(9, 6), (6, 5), (5, 3)]
    assert net[0].params == batsnn.LIFParams(tau_s=0.13, theta=0.2, max_spikes=4, t_max=0.2,
                                             dt=0.001)
    assert net[1].params == batsnn.LIFParams(tau_s=0.05, theta=0.3, delta_theta=0.1,
                                             max_spikes=2, t_max=0.5, dt=0.001)
    assert net[2].params.theta == 1.1 and net[2].params.delta_theta == 1.1
    w1 = net[1].weight.detach()
    assert 0.0 <= float(w1.min()) and float(w1.max()) <= 0.5
    # weights come from the torch RNG in layer order, as hand-made layers would
    torch.manual_seed(3)
    ref = [LIFLinear(9, 6, tau_s=0.13, theta=0.2, max_spikes=4),
           LIFLinear(6, 5, tau_s=0.05, theta=0.3, max_spikes=2, init=(0.0, 0.5)),
           LIFLinear(5, 3, tau_s=0.13, theta=1.1, max_spikes=7)]
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(net, ref))
    out = net(batsnn.ttfs_encode(torch.rand(4, 9)))
    assert out.times.shape == (4, 3, 7)
    assert Mo.layer_shapes(layers, (9,), 3) == [(6,), (5,), (3,)]


@pytest.mark.parametrize("name, n_in, n_classes, sizes", [
    ("mnist-count", 784, 10, [800, 10]), ("emnist-count", 784, 47, [800, 47]),
    ("fmnist-count", 784, 10, [400, 400, 10]), ("mnist-ttfs", 784, 10, [800, 10])])
def test_presets_build(name, n_in, n_classes, sizes):
    cfg = resolve_config(name)
    net = Mo.build_model(cfg, n_in, n_classes)
    assert [m.out_features for m in net] == sizes
    assert [m.theta for m in net] == [s["theta"] for s in cfg.network]
    assert all(m.tau_s == cfg.tau_s and m.t_max == cfg.t_max and m.init == tuple(cfg.init)
               for m in net)


@pytest.mark.parametrize("layers, error, words", [
    ([{"type": "linear", "features": 8, "theta": 0.2, "max_spikes": 3},
      {"type": "conv2d", "channels": 4}], ValueError,
     "network layer 1 (conv2d): unknown layer type 'conv2d'; known: linear"),
    ([{"theta": 0.2}], ValueError, "network layer 0 (None): unknown layer type None"),
    ([{"type": "linear", "theta": 0.2}], ValueError,
     "network layer 0 (linear): missing max_spikes"),
    ([{"type": "linear", "theta": 0.2, "max_spikes": 3, "bias": True}], ValueError,
     "network layer 0 (linear): unknown key(s) bias"),
    ([{"type": "linear", "theta": 0.2, "max_spikes": 0}], ValueError,
     "network layer 0 (linear): max_spikes must be >= 1"),
    ([{"type": "linear", "theta": "high", "max_spikes": 3}], TypeError,
     "network layer 0 (linear): theta must be a real number"),
    ([{"type": "linear", "features": 0, "theta": 0.2, "max_spikes": 3}], ValueError,
     "network layer 0 (linear): features must be an int >= 1"),
    ([{"type": "linear", "theta": 0.2, "max_spikes": 3, "init": [1]}], ValueError,
     "network layer 0 (linear): init must be [low, high]"),
    ([], ValueError, "network must have at least one layer"),
    ({"type": "linear"}, TypeError, "network must be a list of layer specs"),
    (["linear"], TypeError, "network layer 0: a layer spec must be a dict"),
])
def test_bad_descriptions_name_the_layer(layers, error, words):
    with pytest.raises(error) as e:
        Mo.check_network(layers)
    assert words in str(e.value)


def test_shape_errors_name_the_layer():
    hidden_without_size = [{"type": "linear", "theta": 0.2, "max_spikes": 3},
                           {"type": "linear", "theta": 0.2, "max_spikes": 3}]
    with pytest.raises(ValueError, match=r"network layer 0 \(linear\): features is required "
                                         "except in the last layer"):
        Mo.build_network(hidden_without_size, (5,), 2)
    wrong_classes = [{"type": "linear", "features": 4, "theta": 0.2, "max_spikes": 3}]
    with pytest.raises(ValueError, match=r"network layer 0 \(linear\): the last layer has "
                                         "features 4 but the dataset has 3 classes"):
        Mo.layer_shapes(wrong_classes, (5,), 3)
    with pytest.raises(ValueError, match="linear needs a flat input"):
        Mo.layer_shapes([{"type": "linear", "theta": 0.2, "max_spikes": 3}], (1, 5, 5), 3)


def test_register_a_layer_type():
    """New layer types (conv2d, pool2d, flatten, ...) plug in by name."""

    class Flatten(torch.nn.Module):
        def forward(self, x):
            return batsnn.SpikeTrains(x.times.flatten(1, -2), x.counts.flatten(1))

    flatten = Mo.LayerType(
        name="test-flatten", required=frozenset(), optional=frozenset(),
        out_shape=lambda spec, shape, ctx: (math.prod(shape),),
        build=lambda spec, shape, ctx: Flatten())
    Mo.register_layer_type(flatten)
    try:
        layers = [{"type": "test-flatten"}, {"type": "linear", "theta": 0.3, "max_spikes": 2}]
        assert Mo.layer_shapes(layers, (2, 3), 4) == [(6,), (4,)]
        net = Mo.build_network(layers, (2, 3), 4)
        x = batsnn.ttfs_encode(torch.rand(5, 6)).reshape(5, 2, 3, 1)
        inp = batsnn.SpikeTrains(x, torch.isfinite(x).sum(-1))
        assert net(inp).times.shape == (5, 4, 2)
        with pytest.raises(ValueError, match="unknown key"):
            Mo.check_network([{"type": "test-flatten", "dims": 2}])
    finally:
        del Mo.LAYER_TYPES["test-flatten"]
    with pytest.raises(TypeError, match="must be a LayerType"):
        Mo.register_layer_type({"name": "x"})


def test_dense_network_and_its_summary_are_inverse():
    layers = Mo.dense_network([30, 20], [0.1, 0.2, 0.3], [1, 2, 3])
    assert Mo.network_summary(layers) == {"hidden": [30, 20], "theta": [0.1, 0.2, 0.3],
                                          "max_spikes": [1, 2, 3]}
    assert Mo.network_summary(layers[:1] + [{"type": "other"}]) is None
    with pytest.raises(ValueError, match="max_spikes needs one value per layer"):
        Mo.dense_network([30], [0.1, 0.2], [1])
