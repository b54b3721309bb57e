"""The dataset tests live in tests/experiments/test_data.py (mirroring batsnn.experiments.data).

This module only keeps the name ``write_fake_idx_dataset`` importable as ``test_data``, where
tests/conftest.py's ``data_dir`` fixture imports it from.
"""

from experiments.test_data import write_fake_idx_dataset

__all__ = ["write_fake_idx_dataset"]
