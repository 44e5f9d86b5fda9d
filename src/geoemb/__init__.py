"""geoemb: geospatial foundation-model embeddings and segmentation (Lightning + Hydra)."""

__version__ = "0.1.0"
