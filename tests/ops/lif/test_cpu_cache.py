"""The CPU kernels' on-disk cache is invalidated by an edit anywhere in the package."""

import shutil

import pytest

from batsnn.ops.lif.cpu import cache, conv, dense, events, rf

KERNELS = [dense.forward_kernel, dense.backward_kernel, conv.forward_kernel,
           conv.backward_kernel, rf.count_entries, rf.fill_entries, events.build_events,
           events.count_spikes, events._radix_argsort]


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.__name__)
def test_kernels_are_cached_with_the_package_stamp(kernel):
    locator = kernel._cache._impl.locator
    assert isinstance(locator, cache.PackageStampLocator)
    assert locator.get_source_stamp()[1] == cache._package_hash()


def test_package_stamp_follows_the_core(tmp_path, monkeypatch):
    """The drivers inline core.py: editing it alone must change every kernel's stamp."""
    copy = tmp_path / "cpu"
    shutil.copytree(cache._HERE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "_HERE", str(copy))
    before = cache._package_hash()
    with open(copy / "core.py", "a") as f:
        f.write("\n# edited\n")
    assert cache._package_hash() != before
