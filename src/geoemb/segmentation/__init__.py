"""geoemb.segmentation."""
