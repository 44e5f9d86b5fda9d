"""EuroSAT-Embed fixtures (shared with the other GeoPool test packages)."""

from tests.eurosat_fixtures import (  # noqa: F401  (pytest fixtures)
    _one_torch_thread_auto,
    one_torch_thread,
    syn_root,
)
