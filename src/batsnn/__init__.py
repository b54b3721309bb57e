"""batsnn: exact multi-spike training of spiking neural networks (BATS) in PyTorch."""

__version__ = "0.1.0"

from batsnn import functional, losses, nn  # noqa: E402
from batsnn.encoding import discretize, ttfs_encode  # noqa: E402
from batsnn.functional import lif_conv2d, lif_linear, lif_recurrent, spike_pool2d  # noqa: E402
from batsnn.params import LIFParams  # noqa: E402
from batsnn.spikes import SpikeTrains  # noqa: E402

__all__ = ["LIFParams", "SpikeTrains", "__version__", "discretize", "functional", "lif_conv2d",
           "lif_linear", "lif_recurrent", "losses", "nn", "spike_pool2d", "ttfs_encode"]
