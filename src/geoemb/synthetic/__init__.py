"""geoemb.synthetic."""
