"""Export of batsnn networks to other formats; ``nir`` is imported only when used.

    from batsnn.export import save_nir, from_nir
    save_nir(model, "net.nir")          # batsnn -> NIR (HDF5)
    model = from_nir("net.nir")         # NIR -> batsnn

See :mod:`batsnn.export.nir` and docs/nir.md.
"""

from batsnn.export.cli import export_run
from batsnn.export.nir import from_nir, save_nir, to_nir

__all__ = ["export_run", "from_nir", "save_nir", "to_nir"]
