"""Every public module, function, class and method of batsnn has a docstring, and every
``Args:`` section names exactly the signature's parameters (the convention:
:mod:`tests.docs.docstrings`)."""

from tests.docs import docstrings

# Names in modules whose code is maintained apart from the documentation (the training
# loop and the DDP launcher) that have no docstring yet; listed so that the test still
# fails on any NEW undocumented public name. Remove a name once it is documented.
KNOWN_MISSING = frozenset({
    "batsnn.experiments.distributed.ReduceTrainCounters.on_train_end",
    "batsnn.experiments.train.EpochLog.on_epoch_end",
    "batsnn.experiments.train.ProgressBar.on_epoch_start",
    "batsnn.experiments.train.ProgressBar.on_step",
    "batsnn.experiments.train.ProgressBar.on_epoch_end",
    "batsnn.experiments.train.RunPlots.on_epoch_end",
    "batsnn.experiments.train.RunRecorder.on_epoch_end",
    "batsnn.ops.lif.cpu.cache.PackageStampLocator.ensure_cache_path",
})
# Args sections there that leave out a parameter (same reason).
KNOWN_MISMATCH = frozenset({
    "batsnn.experiments.distributed.check_launch",
})


def test_public_api_documented():
    found = docstrings.problems(KNOWN_MISSING)
    left = [p for p in found if p.split(":", 1)[0] not in KNOWN_MISMATCH]
    assert left == [], "\n".join(left)


def test_known_gaps_still_exist():
    """A listed gap that was filled is taken off the lists (they only shrink)."""
    found = {p.split(":", 1)[0] for p in docstrings.problems()}
    assert KNOWN_MISSING | KNOWN_MISMATCH <= found, sorted((KNOWN_MISSING | KNOWN_MISMATCH) - found)


def test_scope_covers_every_public_module():
    mods = docstrings.public_modules()
    for name in ("batsnn", "batsnn.nn", "batsnn.ops.lif.cpu.core", "batsnn.export.nir",
                 "batsnn.experiments.convergence.run", "batsnn.experiments.datasets.events"):
        assert name in mods
    assert not any(p.startswith("_") for m in mods for p in m.split("."))
