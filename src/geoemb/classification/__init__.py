"""Patch classification from embedding rasters: learnable pooling head + linear classifier."""

from geoemb.classification.module import PoolingClassifier

__all__ = ["PoolingClassifier"]
