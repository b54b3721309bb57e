"""The convergence experiment (model.md section 5): single-spike against multi-spike training
from a grid of weight initialisations.

Two samples of four inputs, one spike each (sample 0 at ``(0, 0, 1, 2)`` s, label 0; sample
1 at ``(0, 0, 2, 1)`` s, label 1), one LIF layer of 4 inputs and 2 outputs (``tau_s`` 1 s,
``theta`` 1, ``delta_theta = theta``, ``t_max`` 10 s). Two variants:

* ``multi``: up to 10 spikes per neuron, spike-count loss with targets 10 (label neuron) and
  0 (the other), prediction by the most spikes;
* ``single``: one spike per neuron, TTFS softmax cross-entropy (``tau_loss`` 0.1 s),
  prediction by the earliest spike.

Each network starts from weights drawn from ``N(mean, std)`` and is trained for ``epochs``
epochs of full-batch plain gradient descent (``torch.optim.SGD``, lr 0.1, the gradient
averaged over the two samples). The accuracy is measured on the weights before each update
and once after the last one (``epochs + 1`` measurements, the initial weights included); a
run's score is its best accuracy over these, and it *converges* when that is 100%.

All networks of a chunk of grid cells are trained together as one wide layer (see
:func:`train_grouped`): each network's loss only depends on its own two output neurons, so
the gradient of the summed loss with respect to its rows is its own gradient, and plain SGD
on the stacked weight equals plain SGD on each network.

A run directory holds ``parts/part-NNNNN.json`` (one per finished chunk: the settings that
determine its result, and each cell's per-run outcomes), and, once every cell is done,
``convergence.csv``, the heat maps ``convergence_multi.png``, ``convergence_single.png``,
``convergence_difference.png`` and ``convergence_grid.png`` (the three side by side),
``report.md`` and ``config.json`` (written first, marking the directory as a batsnn
convergence run). Running the same command again continues a stopped run (finished cells
are skipped); finished parts made with other settings, malformed part files and directories
holding other files are refused.

With ``dt``, ``reset_at`` (``crossing`` or ``emitted``) chooses where a spike's reset applies;
it is one of the settings each part records. The size of an experiment is checked before
anything is allocated: at most :data:`~.config.MAX_GRID_VALUES` values per grid axis,
:data:`~.config.MAX_NETWORKS` networks in all and :data:`~.config.MAX_CHUNK_VALUES`
accuracy values or spike times per chunk.

The modules, by job: :mod:`.config` (settings, grid, limits), :mod:`.data` (the two samples,
initial weights), :mod:`.train` (grouped training), :mod:`.parts` (part files),
:mod:`.run` (the run), :mod:`.report` (``report.md``), :mod:`.heatmaps`, :mod:`.cli` (the
subcommand).
"""

from batsnn.experiments.common import SettingsMismatch
from batsnn.experiments.convergence.cli import add_parser, main
from batsnn.experiments.convergence.config import (CSV_COLUMNS, INPUT_TIMES, LABELS, VARIANTS,
                                                   ConvergenceConfig, parse_grid)
from batsnn.experiments.convergence.data import cell_generator, experiment_data, initial_weights
from batsnn.experiments.convergence.heatmaps import plot_heatmaps
from batsnn.experiments.convergence.run import ConvergenceResults, run_convergence
from batsnn.experiments.convergence.train import (GroupedRun, train_grouped, variant_loss,
                                                  variant_predict)

__all__ = ["CSV_COLUMNS", "ConvergenceConfig", "ConvergenceResults", "GroupedRun",
           "INPUT_TIMES", "LABELS", "SettingsMismatch", "VARIANTS", "add_parser",
           "cell_generator", "experiment_data", "initial_weights", "main", "parse_grid",
           "plot_heatmaps", "run_convergence", "train_grouped", "variant_loss",
           "variant_predict"]
