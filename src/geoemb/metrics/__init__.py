"""geoemb.metrics."""
