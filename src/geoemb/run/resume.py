"""Resume = uninterrupted: the config a resumed training run uses, or a refusal naming what differs.

A checkpoint written by ``train.py`` stores the resolved run config (``checkpoint["geoemb"]["config"]``).
Resuming takes the result-affecting part of it (:data:`RESUMED_KEYS`: ``model``, ``data``, ``seed``,
``monitor``, ``monitor_mode``), so ``python train.py ckpt_path=<run>/checkpoints/last.ckpt`` needs no
repeated overrides. Overrides given explicitly on the command line (``data.num_workers=4``,
``data.root=/new/place``) are applied on top; if one changes a result-affecting value -- anything in
``model``/``data``/``seed``/``monitor*`` except paths and loader plumbing (:func:`is_plumbing_key`) --
or the current ``trainer`` differs in a result-affecting setting (:data:`TRAINER_KEYS`), the resume
is refused with :class:`~geoemb.errors.ResumeMismatchError` naming every key and both values.
``allow_resume_mismatch=true`` turns the refusal into a warning (the run then is NOT the
uninterrupted one). ``trainer.max_epochs`` may grow: that is what resuming is for.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from geoemb.errors import ResumeMismatchError

log = logging.getLogger(__name__)

__all__ = [
    "RESUMED_KEYS",
    "TRAINER_KEYS",
    "cli_overrides",
    "diff_config",
    "is_plumbing_key",
    "prepare_resume",
    "resume_config",
]

RESUMED_KEYS = ("model", "data", "seed", "monitor", "monitor_mode")
"""Top-level config keys a resume takes from the checkpoint (explicit overrides on top)."""

TRAINER_KEYS = (
    "precision",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "limit_train_batches",
    "limit_val_batches",
    "val_check_interval",
    "check_val_every_n_epoch",
)
"""Trainer settings that change the trained weights; they must match the checkpoint's."""

_PLUMBING = {
    "num_workers",
    "pin_memory",
    "persistent_workers",
    "prefetch_factor",
    "stats_cache",
    "cache",
    "progress",
    "root",
    "path",
}
_MISSING = object()


def is_plumbing_key(key: str) -> bool:
    """True for keys that do not change results: paths (``root``, ``*_dir``, ``*_root``,
    ``*_path``, ``*_file``) and loader plumbing (``num_workers``, ``pin_memory``, caches)."""
    leaf = key.rsplit(".", 1)[-1]
    return leaf in _PLUMBING or leaf.endswith(("_root", "_dir", "_path", "_file"))


def cli_overrides() -> list[str] | None:
    """The overrides given on the command line of this Hydra job (``None`` outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except (ValueError, AttributeError):
        return None


def _override_keys(overrides: list[str]) -> list[tuple[str, bool]]:
    """``[(dotted key, deleted)]`` of the overrides that touch :data:`RESUMED_KEYS`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out = []
    for ov in OverridesParser.create().parse_overrides(overrides):
        key = (ov.package or ov.key_or_group).replace("/", ".")
        if key.split(".")[0] in RESUMED_KEYS:
            out.append((key, ov.is_delete()))
    return out


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: tree}


def diff_config(
    stored: dict[str, Any], current: dict[str, Any], keys: tuple[str, ...]
) -> list[str]:
    """``"key: checkpoint=<a> now=<b>"`` for every result-affecting leaf that differs."""
    a = _flatten({k: stored.get(k, _MISSING) for k in keys})
    b = _flatten({k: current.get(k, _MISSING) for k in keys})
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
        if va == vb or is_plumbing_key(key):
            continue
        show = [("<absent>" if v is _MISSING else repr(v)) for v in (va, vb)]
        out.append(f"{key}: checkpoint={show[0]} now={show[1]}")
    return out


def _set(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    for p in parts[:-1]:
        node = tree.get(p)
        if not isinstance(node, dict):
            node = tree[p] = {}
        tree = node
    if value is _MISSING:
        tree.pop(parts[-1], None)
    else:
        tree[parts[-1]] = copy.deepcopy(value)


def _select(tree: Any, key: str) -> Any:
    for p in key.split("."):
        if not isinstance(tree, dict) or p not in tree:
            return _MISSING
        tree = tree[p]
    return tree


def resume_config(
    cfg: DictConfig,
    stored: dict[str, Any] | None,
    ckpt_path: str,
    overrides: list[str] | None,
    allow_mismatch: bool = False,
) -> DictConfig:
    """The config a resumed run uses: the checkpoint's model/data/seed + explicit overrides.

    Parameters
    ----------
    cfg : the composed train config (with ``ckpt_path``).
    stored : the checkpoint's resolved run config (``checkpoint["geoemb"]["config"]``).
    ckpt_path : for messages.
    overrides : command-line overrides (:func:`cli_overrides`); ``None`` = unknown (a notebook
        call): then every result-affecting value of ``cfg`` counts as explicit.
    allow_mismatch : warn instead of raising.

    Raises
    ------
    ResumeMismatchError naming each differing key with both values.
    """
    if not isinstance(stored, dict):
        msg = (
            f"cannot verify the resume from {ckpt_path}: the checkpoint carries no geoemb run "
            "config (written outside geoemb's train task), so the resumed run may differ from the "
            "interrupted one. Pass allow_resume_mismatch=true to resume anyway."
        )
        if not allow_mismatch:
            raise ResumeMismatchError(msg)
        log.warning(msg)
        return cfg
    current = OmegaConf.to_container(cfg, resolve=True)
    effective = {k: copy.deepcopy(stored[k]) for k in RESUMED_KEYS if k in stored}
    if overrides is None:
        explicit = [(k, False) for k in RESUMED_KEYS if k in current]
    else:
        explicit = _override_keys(overrides)
    for key, deleted in explicit:
        _set(effective, key, _MISSING if deleted else _select(current, key))
    problems = diff_config(stored, effective, RESUMED_KEYS)
    trainer_now = {k: (current.get("trainer") or {}).get(k, _MISSING) for k in TRAINER_KEYS}
    trainer_then = {k: (stored.get("trainer") or {}).get(k, _MISSING) for k in TRAINER_KEYS}
    problems += diff_config({"trainer": trainer_then}, {"trainer": trainer_now}, ("trainer",))
    if problems:
        msg = (
            f"refusing to resume from {ckpt_path}: the run would not continue the interrupted one; "
            "these result-affecting settings differ from the checkpoint's:\n  "
            + "\n  ".join(problems)
            + "\nDrop those overrides (a resume takes model/data/seed from the checkpoint), start "
            "a new run without ckpt_path, or pass allow_resume_mismatch=true to resume anyway."
        )
        if not allow_mismatch:
            raise ResumeMismatchError(msg)
        log.warning("%s", msg)
    taken = diff_config(effective, current, RESUMED_KEYS)
    if taken:
        log.info("resume: taken from the checkpoint (not the composed config): %s", taken)
    out = cfg.copy()
    with open_dict(out):
        for key in RESUMED_KEYS:
            if key in effective:
                out[key] = (
                    OmegaConf.create(effective[key])
                    if isinstance(effective[key], dict)
                    else effective[key]
                )
    return out


def prepare_resume(cfg: DictConfig) -> tuple[DictConfig, dict[str, Any] | None]:
    """Read and check the checkpoint ``cfg.ckpt_path`` a training run resumes from.

    One read through the safe loader (``weights_only=True``; the ``_target_`` allowlist unless
    ``trust_checkpoint``), then :func:`resume_config` with this job's command-line overrides.

    Returns
    -------
    (the config the resumed run uses, the checkpoint dict) -- ``(cfg, None)`` when not resuming
    (no ``ckpt_path``, or ``train=false``: a test-only run reads it through Lightning).
    """
    from geoemb.run.checkpoints import read_checkpoint, verify_checkpoint

    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path or not cfg.get("train", True):
        return cfg, None
    ckpt = read_checkpoint(ckpt_path)
    verify_checkpoint(ckpt, ckpt_path, trust=bool(cfg.get("trust_checkpoint", False)))
    stored = (ckpt.get("geoemb") or {}).get("config")
    cfg = resume_config(
        cfg,
        stored,
        str(ckpt_path),
        cli_overrides(),
        allow_mismatch=bool(cfg.get("allow_resume_mismatch", False)),
    )
    return cfg, ckpt
