"""Fixtures and markers of the test suite (helpers live in :mod:`tests.helpers`)."""

import random

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def seed():
    """Seed every RNG the tests use; returns a fresh torch.Generator."""
    random.seed(0)
    torch.manual_seed(0)
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A tiny fake Fashion-MNIST in IDX files (60 train / 20 test images)."""
    from tests.experiments.test_data import write_fake_idx_dataset

    d = tmp_path_factory.mktemp("data")
    write_fake_idx_dataset(d, n_train=60, n_test=20)
    return d
