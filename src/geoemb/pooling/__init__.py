"""geoemb.pooling."""
