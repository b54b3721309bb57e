"""Every public module, function, class and method of batsnn has a docstring, and every
``Args:`` section names exactly the signature's parameters (the convention:
:mod:`tests.docs.docstrings`)."""

from tests.docs import docstrings


def test_public_api_documented():
    """No exceptions: every public name has a docstring and every Args section matches."""
    found = docstrings.problems()
    assert found == [], "\n".join(found)


def test_scope_covers_every_public_module():
    mods = docstrings.public_modules()
    for name in ("batsnn", "batsnn.nn", "batsnn.ops.lif.cpu.core", "batsnn.export.nir",
                 "batsnn.experiments.convergence.run", "batsnn.experiments.datasets.events"):
        assert name in mods
    assert not any(p.startswith("_") for m in mods for p in m.split("."))
