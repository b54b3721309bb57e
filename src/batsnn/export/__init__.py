"""Export of batsnn networks to other formats; ``nir`` is imported only when used.

    from batsnn.export import save_nir, from_nir
    save_nir(model, "net.nir")          # batsnn -> NIR (HDF5)
    model = from_nir("net.nir")         # NIR -> batsnn

See :mod:`batsnn.export.nir` and docs/nir.md. This is library code: it never imports the
runner (:mod:`batsnn.experiments`); a trained run is exported by ``batsnn export``
(:func:`batsnn.experiments.runs.export_run`).
"""

from batsnn.export.nir import from_nir, save_nir, to_nir

__all__ = ["from_nir", "save_nir", "to_nir"]
