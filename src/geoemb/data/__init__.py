"""geoemb.data."""
