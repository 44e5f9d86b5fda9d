"""Config keys that were renamed: the old spelling stays in the yaml as a ``null`` tombstone, and a
run that sets it stops at once with an error naming the new key (instead of silently ignoring it or
failing with Hydra's "key not in struct")."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf, open_dict

from geoemb.errors import InputError

__all__ = ["RENAMED", "check_renamed"]

#: old dotted key -> what to write instead (filled as each workflow moves to the new spelling)
RENAMED: dict[str, str] = {}


def check_renamed(cfg: DictConfig) -> None:
    """Raise :class:`InputError` for every renamed key the config sets (non-null), then drop the
    ``null`` tombstones so that nothing passes them on to a constructor."""
    hits = []
    for old, new in RENAMED.items():
        if OmegaConf.select(cfg, old, default=None, throw_on_missing=False) is not None:
            hits.append(f"{old} was renamed: use {new}")
    if hits:
        raise InputError("; ".join(hits))
    for old in RENAMED:
        parent_key, _, leaf = old.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
        if isinstance(parent, DictConfig) and leaf in parent:
            with open_dict(parent):
                del parent[leaf]
