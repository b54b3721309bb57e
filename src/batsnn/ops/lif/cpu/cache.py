"""Cache freshness of the CPU kernels: one stamp for the whole package.

numba's on-disk cache (``cache=True``) is keyed by the source file of the compiled function
only, yet the drivers inline the neuron core from :mod:`.core`: an edit there would leave
stale machine code in the cache. Importing this module makes the cache of every function
defined in this package carry the content hash of all of the package's source files, so
that an edit to any of them recompiles every kernel once. Functions outside the package keep
numba's usual locators.
"""

from __future__ import annotations

import hashlib
import os

from numba.core import caching

_HERE = os.path.dirname(os.path.abspath(__file__))
# CacheImpl in current numba, _CacheImpl in older releases
_IMPL = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)


def _package_hash() -> bytes:
    h = hashlib.sha256()
    for name in sorted(os.listdir(_HERE)):
        if name.endswith(".py"):
            with open(os.path.join(_HERE, name), "rb") as f:
                h.update(name.encode() + b"\0" + f.read())
    return h.digest()


class PackageStampLocator(caching._CacheLocator):
    """The locator numba would pick for a function of this package, with the package's
    source hash in place of the function's file stamp.

    Args:
        inner: numba's own locator for the function (a ``_CacheLocator``), to which the
            cache directory and the disambiguator are left.
    """

    def __init__(self, inner):
        self._inner = inner

    def ensure_cache_path(self):
        """Create the cache directory (numba's own locator's) and check that a file can be
        written there; ``OSError`` when it cannot."""
        self._inner.ensure_cache_path()

    def get_cache_path(self):
        """The directory the function is cached in: numba's own locator's."""
        return self._inner.get_cache_path()

    def get_disambiguator(self):
        """The string that tells apart functions of the same name: numba's own
        locator's."""
        return self._inner.get_disambiguator()

    def get_source_stamp(self):
        """The freshness stamp the cache is checked against: numba's own stamp of the
        function's file paired with the SHA-256 digest of every ``.py`` file of this
        package (names and contents), so that an edit to any of them invalidates the
        cache."""
        return (self._inner.get_source_stamp(), _package_hash())

    @classmethod
    def from_function(cls, py_func, py_file):
        """The locator of ``py_func`` when it is defined in this package, else ``None``
        (numba then tries its other locators).

        Args:
            py_func: the Python function being compiled.
            py_file: the file it is defined in.

        Returns:
            A :class:`PackageStampLocator` wrapping the first of numba's other locators
            that takes the function, or ``None`` (outside the package, or none takes it).
        """
        if os.path.dirname(os.path.abspath(py_file)) != _HERE:
            return None
        for other in _IMPL._locator_classes:
            if other is not cls:
                inner = other.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner)
        return None


if _IMPL is not None and PackageStampLocator not in _IMPL._locator_classes:
    _IMPL._locator_classes.insert(0, PackageStampLocator)
