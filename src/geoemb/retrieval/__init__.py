"""geoemb.retrieval."""
