"""The run layer: the only code that knows Hydra's runtime.

``checkpoints`` (the one safe checkpoint loader), resolvers registered before Hydra composes a
config, and — per DESIGN.md — the instantiators and the ``RunContext`` handed to evaluators.
Everything below this layer (wiring, core) receives plain values, never ``HydraConfig``.
"""
