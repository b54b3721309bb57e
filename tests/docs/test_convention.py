"""The docstring checker itself: it finds what it must find."""

import types

import pytest

from tests.docs import docstrings


def test_args_section_names():
    doc = """Summary.

    Args:
        a: first.
        b, c: shared text
            continued here: with a colon.
        *args: more.
        d (int): typed.

    Returns:
        e: not a parameter.
    """
    assert docstrings.args_section(doc) == ["a", "b", "c", "args", "d"]
    assert docstrings.args_section("No section.") is None


def _module_with(src: str) -> types.ModuleType:
    m = types.ModuleType("batsnn_fake")
    m.__doc__ = "fake"
    exec(src, m.__dict__)
    for v in vars(m).values():
        if hasattr(v, "__module__"):
            v.__module__ = m.__name__
    return m


def test_mismatch_and_missing_are_found(monkeypatch):
    m = _module_with('''
def good(x, y):
    """Fine.

    Args:
        x: one.
        y: two.
    """

def extra(x):
    """Lists a name the signature lacks.

    Args:
        x: one.
        z: none.
    """

def short(x, y):
    """Leaves out y.

    Args:
        x: one.
    """

def bare(x):
    pass

class Thing:
    """A class."""
    def method(self):
        pass
''')
    monkeypatch.setattr(docstrings, "public_modules", lambda: ["batsnn_fake"])
    monkeypatch.setattr(docstrings.importlib, "import_module", lambda name: m)
    found = docstrings.problems()
    heads = sorted(p.split(":", 1)[0] for p in found)
    assert heads == ["batsnn_fake.Thing.method", "batsnn_fake.bare", "batsnn_fake.extra",
                     "batsnn_fake.short"]
    assert docstrings.problems(frozenset({"batsnn_fake.bare", "batsnn_fake.Thing.method"})) \
        == [p for p in found if p.startswith(("batsnn_fake.extra", "batsnn_fake.short"))]


def test_missing_triton_skips_only_the_gpu_kernels(monkeypatch):
    def fake_import(name):
        err = ModuleNotFoundError("No module named 'triton'", name="triton")
        if name in ("batsnn.ops.lif.cuda.core", "batsnn.experiments.train"):
            raise err
        return _module_with("")

    monkeypatch.setattr(docstrings.importlib, "import_module", fake_import)
    monkeypatch.setattr(docstrings, "public_modules",
                        lambda: ["batsnn.ops.lif.cuda.core", "batsnn.nn"])
    assert [q for q, _, _ in docstrings.documented_objects()] == ["batsnn.nn"]
    monkeypatch.setattr(docstrings, "public_modules", lambda: ["batsnn.experiments.train"])
    with pytest.raises(ModuleNotFoundError):
        list(docstrings.documented_objects())
