"""geoemb.analysis."""
