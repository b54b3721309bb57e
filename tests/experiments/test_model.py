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
      {"type": "conv3d", "channels": 4}], ValueError,
     "network layer 1 (conv3d): unknown layer type 'conv3d'; known: conv2d, delay, flatten, "
     "linear, pool2d, recurrent"),
    ([{"type": "conv2d", "channels": 4, "theta": 0.2, "max_spikes": 3}], ValueError,
     "network layer 0 (conv2d): missing kernel"),
    ([{"type": "conv2d", "channels": 0, "kernel": 3, "theta": 0.2, "max_spikes": 3}],
     ValueError, "network layer 0 (conv2d): channels must be an int >= 1, got 0"),
    ([{"type": "conv2d", "channels": 2, "kernel": [3, 0], "theta": 0.2, "max_spikes": 3}],
     ValueError, "network layer 0 (conv2d): kernel must be >= 1, got (3, 0)"),
    ([{"type": "conv2d", "channels": 2, "kernel": 3, "stride": 0, "theta": 0.2,
       "max_spikes": 3}], ValueError, "network layer 0 (conv2d): stride must be >= 1"),
    ([{"type": "conv2d", "channels": 2, "kernel": 3, "theta": -1, "max_spikes": 3}],
     ValueError, "network layer 0 (conv2d): theta must be > 0"),
    ([{"type": "pool2d", "kernel": 0}], ValueError,
     "network layer 0 (pool2d): kernel must be an int >= 1, got 0"),
    ([{"type": "flatten", "dims": 2}], ValueError, "network layer 0 (flatten): unknown key(s) "
     "dims"),
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


CONV = [{"type": "conv2d", "channels": 3, "kernel": 3, "theta": 0.05, "max_spikes": 2},
        {"type": "pool2d"},
        {"type": "conv2d", "channels": 4, "kernel": [2, 3], "stride": [1, 2], "padding": 1,
         "theta": 0.1, "max_spikes": 3, "delta_theta": 0.05, "init": [-0.5, 1.0]},
        {"type": "pool2d", "kernel": 2},
        {"type": "flatten"},
        {"type": "linear", "features": 6, "theta": 0.1, "max_spikes": 4},
        {"type": "linear", "theta": 0.2, "max_spikes": 5}]


def test_conv_description_builds_and_shapes_propagate():
    from batsnn.nn import Flatten, LIFConv2d, SpikePool2d

    shape = Mo.network_input_shape(CONV, 100)
    assert shape == (1, 10, 10) and Mo.network_input_shape(CONV[-2:], 100) == (100,)
    shapes = Mo.layer_shapes(CONV, shape, 3)
    assert shapes == [(3, 8, 8), (3, 4, 4), (4, 5, 2), (4, 2, 1), (8,), (6,), (3,)]
    torch.manual_seed(0)
    net = Mo.build_network(CONV, shape, 3, tau_s=0.05, t_max=0.2, dt=None)
    assert [type(m) for m in net] == [LIFConv2d, SpikePool2d, LIFConv2d, SpikePool2d, Flatten,
                                      LIFLinear, LIFLinear]
    c2 = net[2]
    assert (c2.kernel_size, c2.stride, c2.padding) == ((2, 3), (1, 2), (1, 1))
    assert c2.params == batsnn.LIFParams(tau_s=0.05, theta=0.1, delta_theta=0.05, max_spikes=3,
                                         t_max=0.2)
    assert c2.init == (-0.5, 1.0) and float(c2.weight.detach().min()) >= -0.5
    x = batsnn.ttfs_encode(torch.rand(2, 100)).reshape(2, *shape, 1).double()
    net = net.double()
    outs = net.forward_all(x)
    assert [tuple(o.counts.shape[1:]) for o in outs] == [s for s in shapes if s != (8,)]


def test_conv_shape_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"network layer 0 \(conv2d\): conv2d needs maps"):
        Mo.layer_shapes(CONV, (100,), 3)
    with pytest.raises(ValueError, match=r"network layer 0 \(conv2d\): kernel \(3, 3\) with "
                                         r"padding \(0, 0\) does not fit the 2x2 input maps"):
        Mo.layer_shapes(CONV, (1, 2, 2), 3)
    with pytest.raises(ValueError, match=r"network layer 3 \(pool2d\): kernel 2 is larger "
                                         r"than the 2x1 maps"):
        Mo.layer_shapes(CONV, (1, 4, 4), 3)
    with pytest.raises(ValueError, match=r"network layer 4 \(linear\): linear needs a flat "
                                         "input"):
        Mo.layer_shapes(CONV[:4] + CONV[5:], (1, 10, 10), 3)
    with pytest.raises(ValueError, match="takes square images, got 90 pixels"):
        Mo.network_input_shape(CONV, 90)
    with pytest.raises(ValueError, match=r"network layer 1 \(pool2d\): a pool2d layer cannot "
                                         "be the last"):
        Mo.layer_shapes(CONV[:2], (1, 10, 10), 3)


@pytest.mark.parametrize("name, dataset", [("mnist-conv", "mnist"),
                                           ("fmnist-conv", "fashion-mnist")])
def test_conv_presets_build(name, dataset):
    cfg = resolve_config(name)
    assert cfg.dataset == dataset and cfg.augment == "elastic" and cfg.batch_size == 20
    net = Mo.build_model(cfg, 784, 10)
    shapes = Mo.layer_shapes(cfg.network, (1, 28, 28), 10)
    assert shapes == [(15, 24, 24), (15, 12, 12), (40, 8, 8), (40, 4, 4), (640,), (300,), (10,)]
    convs = [m for m in net if hasattr(m, "theta")]
    assert [m.theta for m in convs] == [0.04, 0.8, 0.6, 0.3]
    assert [m.max_spikes for m in convs] == [1, 3, 10, 30]
    assert all(m.delta_theta == m.theta and m.tau_s == 0.13 and m.t_max == 0.2
               and m.init == (-1.0, 1.0) for m in convs)
    assert (cfg.target_true, cfg.target_false, cfg.lr, cfg.lr_decay, cfg.lr_decay_every,
            cfg.lr_min) == (30, 3, 0.003, 0.5, 10, 1e-4)


def test_weights_are_counted_from_the_shapes_and_bounded_below_without_them():
    conv = resolve_config("mnist-conv").network
    n = Mo.network_weights(conv, (1, 28, 28), 10)
    built = Mo.build_network(conv, (1, 28, 28), 10)
    assert n == sum(p.numel() for p in built.parameters())
    assert Mo.min_weights(conv, 10) <= n
    dense = resolve_config("fmnist-count").network
    assert Mo.network_weights(dense, (784,), 10) == 784 * 400 + 400 * 400 + 400 * 10
    assert Mo.min_weights(dense, 10) == 400 + 400 * 400 + 400 * 10


def test_a_network_that_cannot_fit_is_refused_in_every_path_before_allocation(monkeypatch,
                                                                              tmp_path):
    """build_model, check_fits, the validation of settings (from a file, from a dict as a
    run's config or a checkpoint's settings) all estimate the weights first."""
    from batsnn.experiments import config as C

    cfg = resolve_config("mnist-count", hidden=[100])
    weights = 784 * 100 + 100 * 10
    monkeypatch.setattr(Mo, "device_memory", lambda device: 4 * weights - 1)
    built = []
    monkeypatch.setattr(Mo, "LIFLinear", lambda *a, **k: built.append(a) or LIFLinear(*a, **k))
    with pytest.raises(Mo.NetworkTooLarge, match=f"the network's {weights:,} weights need "
                       "about 0.0 GiB but cpu has 0.0 GiB in all: lower the layer sizes"):
        Mo.build_model(cfg, 784, 10)
    assert built == []
    with pytest.raises(MemoryError, match="with their gradients and Adam's moments"):
        Mo.check_fits(cfg, 784, 10, "cpu", 1)
    monkeypatch.setattr(Mo, "device_memory", lambda device: 4 * weights)
    with pytest.raises(MemoryError, match="with their gradients and Adam's moments"):
        Mo.check_fits(cfg, 784, 10, "cpu", 1)  # four copies: weights, gradients, moments
    # settings: the lower bound 1 x 100 + 100 x 10 (the input is not known yet)
    monkeypatch.setattr(Mo, "device_memory", lambda device: 4 * (100 + 100 * 10) - 1)
    f = tmp_path / "c.json"
    f.write_text('{"hidden": [100]}')
    with pytest.raises(ValueError, match=f"config file '{f}': the network's 1,100 weights"):
        C.resolve_config("mnist-count", file=f)
    with pytest.raises(ValueError, match="the network's 1,100 weights"):
        C.config_from_dict(cfg.to_dict())
    with pytest.raises(ValueError, match="the network's 1,100 weights"):
        resolve_config("mnist-count", hidden=[100])
    monkeypatch.setattr(Mo, "device_memory", lambda device: 4 * (100 + 100 * 10))
    assert C.config_from_dict(cfg.to_dict()) == cfg
    monkeypatch.setattr(Mo, "device_memory", lambda device: 4 * weights)
    Mo.build_model(cfg, 784, 10)
    assert built == [(784, 100), (100, 10)]  # the layers are built once the weights fit


def test_huge_integers_and_escapes_in_layer_specs_are_named():
    big = 10**30
    spec = {"type": "linear", "features": 4, "theta": 1.0, "max_spikes": big}
    with pytest.raises(ValueError, match=r"network layer 0: max_spikes must be at "
                       "most 9223372036854775807 in size"):
        Mo.check_network([spec, {"type": "linear", "theta": 1.0, "max_spikes": 1}])
    spec = {"type": "conv2d", "channels": 2, "kernel": [3, big], "theta": 1.0, "max_spikes": 1}
    with pytest.raises(ValueError, match=r"network layer 0: kernel must be at most"):
        Mo.check_network([spec])
    with pytest.raises(ValueError, match="network layer 0: type must be at most"):
        Mo.check_network([{"type": 10**5000}])  # an int too long to print is not printed
    with pytest.raises(ValueError, match=r"network layer 0 \(\\x1b\[1m\): unknown layer type "
                       r"'\\x1b\[1m'"):
        Mo.check_network([{"type": "\x1b[1m"}])


def test_delay_layers_build_learn_and_count():
    """``delay`` layers: a SpikeDelay per position with its bounds, the shape kept, one
    parameter per channel counted; delays start in ``init``; the gradient reaches them."""
    from batsnn.nn import SpikeDelay

    layers = [{"type": "delay", "init": [0.0, 0.01], "max_delay": 0.02},
              {"type": "linear", "features": 6, "theta": 0.002, "max_spikes": 4},
              {"type": "delay"},
              {"type": "linear", "theta": 0.002, "max_spikes": 4}]
    assert Mo.layer_shapes(layers, (5,), 3) == [(5,), (6,), (6,), (3,)]
    torch.manual_seed(0)
    net = Mo.build_network(layers, (5,), 3, tau_s=0.01, t_max=0.2, init=(0.0, 1.0))
    d0, d1 = net[0], net[2]
    assert isinstance(d0, SpikeDelay) and isinstance(d1, SpikeDelay)
    assert (d0.channels, d0.max_delay, d1.channels, d1.max_delay) == (5, 0.02, 6, math.inf)
    start = d0.delay.detach().clone()
    assert 0 <= float(start.min()) and 0 < float(start.max()) <= 0.01
    assert torch.equal(d1.delay.detach(), torch.zeros(6))
    assert Mo.network_weights(layers, (5,), 3) == sum(p.numel() for p in net.parameters())
    assert Mo.min_weights(layers, 3) <= Mo.network_weights(layers, (5,), 3)
    x = torch.rand(4, 5, 1) * 0.02
    outs = net.forward_all(batsnn.SpikeTrains(x, torch.ones(4, 5, dtype=torch.int64)))
    assert len(outs) == 2  # the delays have no spikes of their own
    assert outs[0].counts.sum() > 0
    sum(o.times[o.times.isfinite()].sum() for o in outs).backward()
    assert d0.delay.grad is not None and d0.delay.grad.abs().sum() > 0


@pytest.mark.parametrize("spec, words", [
    ({"type": "delay", "init": [-0.01, 0.0]}, "init must lie in [0, max_delay = inf]"),
    ({"type": "delay", "init": [0, 0.5], "max_delay": 0.1},
     "init must lie in [0, max_delay = 0.1]"),
    ({"type": "delay", "max_delay": 0}, "max_delay must be a number > 0"),
    ({"type": "delay", "max_delay": float("nan")}, "max_delay must be a number > 0"),
    ({"type": "delay", "max_delay": True}, "max_delay must be a number > 0"),
    ({"type": "delay", "init": [0.02, 0.01]}, "init must be [low, high] with low <= high"),
    ({"type": "delay", "delays": 3}, "unknown key"),
])
def test_bad_delay_specs_name_the_layer_and_key(spec, words):
    layers = [spec, {"type": "linear", "theta": 0.1, "max_spikes": 2}]
    with pytest.raises(ValueError) as e:
        Mo.check_network(layers)
    assert "network layer 0 (delay)" in str(e.value) and words in str(e.value), str(e.value)


def test_a_delay_layer_cannot_end_the_network():
    with pytest.raises(ValueError, match=r"network layer 1 \(delay\): a delay layer cannot "
                                         "be the last layer"):
        Mo.layer_shapes([{"type": "linear", "features": 3, "theta": 0.1, "max_spikes": 2},
                         {"type": "delay"}], (4,), 3)


def test_recurrent_layers_build_and_count():
    """``recurrent`` layers: a LIFRecurrent with the spec's neuron, its recurrent range and
    self connections; its input and recurrent weights counted; the bound below holds."""
    from batsnn.nn import LIFRecurrent

    layers = [{"type": "recurrent", "features": 6, "theta": 0.3, "max_spikes": 4,
               "recurrent_init": [-0.1, 0.2], "self_connections": False},
              {"type": "recurrent", "theta": 0.5, "max_spikes": 3, "tau_s": 0.2}]
    assert Mo.layer_shapes(layers, (5,), 3) == [(6,), (3,)]
    net = Mo.build_network(layers, (5,), 3, tau_s=0.1, t_max=2.0, dt=0.01)
    r0, r1 = net
    assert isinstance(r0, LIFRecurrent) and isinstance(r1, LIFRecurrent)
    assert (r0.in_features, r0.out_features, r0.self_connections) == (5, 6, False)
    assert (r1.in_features, r1.out_features, r1.self_connections) == (6, 3, True)
    assert r0.params.theta == 0.3 and r0.params.dt == 0.01 and r1.params.tau_s == 0.2
    assert r0.recurrent_init == (-0.1, 0.2) and r1.recurrent_init == (-0.5, 0.5)
    assert torch.equal(torch.diagonal(r0.recurrent_weight.detach()), torch.zeros(6))
    assert Mo.network_weights(layers, (5,), 3) == 5 * 6 + 6 * 6 + 6 * 3 + 3 * 3
    assert Mo.min_weights(layers, 3) == 1 * 6 + 6 * 6 + 6 * 3 + 3 * 3
    x = torch.rand(4, 5, 1)
    out = net(batsnn.SpikeTrains(x, torch.ones(4, 5, dtype=torch.int64)))
    assert out.times.shape == (4, 3, 3)


@pytest.mark.parametrize("spec, words", [
    ({"type": "recurrent", "features": 4, "theta": 0.3, "max_spikes": 2,
      "recurrent_init": [1, 0]}, "init must be [low, high] with low <= high"),
    ({"type": "recurrent", "features": 4, "theta": 0.3, "max_spikes": 2,
      "self_connections": "no"}, "self_connections must be true or false, got 'no'"),
    ({"type": "recurrent", "features": 0, "theta": 0.3, "max_spikes": 2},
     "features must be an int >= 1"),
    ({"type": "recurrent", "features": 4, "theta": -1.0, "max_spikes": 2}, "theta"),
    ({"type": "recurrent", "features": 4, "theta": 0.3, "max_spikes": 2, "delays": 1},
     "unknown key"),
])
def test_bad_recurrent_specs_name_the_layer_and_key(spec, words):
    with pytest.raises((ValueError, TypeError)) as e:
        Mo.check_network([spec, {"type": "linear", "theta": 0.1, "max_spikes": 2}])
    assert "network layer 0 (recurrent)" in str(e.value) and words in str(e.value), str(e.value)


def test_a_network_with_host_kernels_is_not_graphed():
    """A CUDA graph is recorded only where every layer has GPU kernels: the recurrent
    layer's run on the host, so its networks step eagerly on a GPU."""
    from batsnn.experiments.training.run import uses_cuda_graph

    cfg = resolve_config("shd")
    dense = Mo.build_network(cfg.network, (700,), 20)
    rec = Mo.build_network(resolve_config("shd-rec").network, (700,), 20)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert uses_cuda_graph(cfg, cuda, dense) and not uses_cuda_graph(cfg, cuda, rec)
    assert not uses_cuda_graph(cfg, cpu, dense)
    assert not uses_cuda_graph(resolve_config("shd", cuda_graph=False), cuda, dense)
