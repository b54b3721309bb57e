"""Tests of batsnn.experiments, one file per module."""
