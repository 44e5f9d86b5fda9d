"""Embedding compression: quantizers, reducers, rotations, bit packing."""
