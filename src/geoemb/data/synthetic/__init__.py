"""geoemb.data.synthetic."""
