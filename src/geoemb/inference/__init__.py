"""geoemb.inference."""
