"""The one safe checkpoint loader: every checkpoint geoemb reads goes through this module.

- :func:`read_checkpoint` -- ``torch.load(weights_only=True)`` (never ``False``, also not with
  ``trust_checkpoint``), with every failure turned into one :class:`~geoemb.errors.CheckpointError`
  ``"cannot read checkpoint <path>: <reason>"`` (missing file, directory, truncated or foreign file);
  a pickle that carries code (a ``__reduce__`` payload, any non-plain global) is refused with
  :class:`~geoemb.errors.UntrustedCheckpointError` before it runs.
- :func:`verify_checkpoint` -- the ``_target_`` allowlist (:mod:`geoemb.run.allowlist`) over every tree
  that will be built (``hyper_parameters``, ``datamodule_hyper_parameters``, ``geoemb.module_class``,
  ``geoemb.data`` and the stored ``model``/``data`` configs a resume takes over).
  ``trust_checkpoint=True`` skips it for a user's own files.
- :func:`load_checkpoint` / :func:`load_module` / :func:`load_checkpoint_meta` -- rebuild the
  LightningModule from ONE read of the file (constructor from the hyperparameters +
  ``load_state_dict``).
- :class:`SafeCheckpointIO` -- the Lightning ``CheckpointIO`` plugin that makes ``Trainer.fit/test``
  read through the same loader (and reuse a checkpoint already read for a resume).
"""

from __future__ import annotations

import inspect
import logging
import os
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning import LightningModule
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from geoemb.errors import CheckpointError, UntrustedCheckpointError
from geoemb.run.allowlist import check_class, check_tree

log = logging.getLogger(__name__)

__all__ = [
    "BUILT_CONFIG_KEYS",
    "LoadedCheckpoint",
    "SafeCheckpointIO",
    "build_module",
    "install_safe_io",
    "load_checkpoint",
    "load_checkpoint_meta",
    "load_module",
    "read_checkpoint",
    "verify_checkpoint",
]

BUILT_CONFIG_KEYS = ("model", "data")
"""Parts of a checkpoint's stored run config (``geoemb.config``) that a resume builds."""

TRUST_HINT = (
    "If this is your own checkpoint and you trust its contents, pass trust_checkpoint=true "
    "(the allowlist is then skipped; loading stays weights_only=True)."
)


def _refused_global(err: BaseException) -> str | None:
    """``"GLOBAL io.open"`` if torch's weights-only unpickler refused a global, else ``None``."""
    if not isinstance(err, pickle.UnpicklingError):
        return None
    m = re.search(r"Unsupported global: (GLOBAL [\w.]+)", str(err))
    if m:
        return m.group(1)
    return "a non-plain global" if "not an allowed global" in str(err) else None


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``.

    Parameters
    ----------
    path : the checkpoint file.
    map_location : passed to ``torch.load`` (default: every tensor on the CPU).

    Returns
    -------
    The checkpoint dict (plain containers, tensors, numbers, strings).

    Raises
    ------
    CheckpointError ``"cannot read checkpoint <path>: <reason>"`` for a missing path, a directory, a
    truncated or non-checkpoint file, or content that is not a dict; UntrustedCheckpointError when
    the pickle holds anything but plain data (it is refused before it can run).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"cannot read checkpoint {p}: no such file")
    if p.is_dir():
        raise CheckpointError(f"cannot read checkpoint {p}: it is a directory, not a .ckpt file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"cannot read checkpoint {p}: the file is empty")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = _refused_global(err)
        if refused:
            raise UntrustedCheckpointError(
                f"cannot read checkpoint {p}: it holds pickled Python objects beyond plain data "
                f"({refused}); geoemb loads checkpoints with weights_only=True "
                "and never runs code from a file (trust_checkpoint does not change this). "
                "Re-save it as plain tensors/dicts if it is yours."
            ) from None
        raise CheckpointError(f"cannot read checkpoint {p}: {_reason(err, p)}") from err
    except Exception as err:  # noqa: BLE001 - torch raises RuntimeError/OSError/EOFError/...
        raise CheckpointError(f"cannot read checkpoint {p}: {_reason(err, p)}") from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f"cannot read checkpoint {p}: it holds a {type(ckpt).__name__}, not a checkpoint dict"
        )
    return ckpt


def _reason(err: BaseException, path: Path) -> str:
    """A user-facing reason for a failed ``torch.load`` (no torch internals like ``Errno 22``)."""
    text = " ".join(str(err).split())
    size = path.stat().st_size
    if (
        isinstance(err, OSError | EOFError | pickle.UnpicklingError)
        or "zip archive" in text
        or "central directory" in text
        or "magic number" in text
    ):
        return (
            f"the file ({size} bytes) is truncated or is not a torch checkpoint "
            f"(torch.load: {type(err).__name__}); a run killed while saving leaves such a file -- "
            "use another checkpoint of the run"
        )
    return f"{type(err).__name__}: {text[:300]}"


def verify_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike, trust: bool = False) -> None:
    """Check every ``_target_`` a checkpoint would have built against the allowlist.

    Walks ``hyper_parameters``, ``datamodule_hyper_parameters``, ``geoemb.data``,
    ``geoemb.config.{model,data}`` (nested targets, ``_args_`` and interpolations included) and
    checks that ``geoemb.module_class`` is a geoemb LightningModule.

    Raises
    ------
    UntrustedCheckpointError naming the checkpoint, every offending key path (e.g.
    ``hyper_parameters.loss._target_='pathlib.Path.write_text'``) and the opt-out.
    """
    if trust:
        return
    problems: list[str] = []
    for key in ("hyper_parameters", "datamodule_hyper_parameters"):
        problems += check_tree(ckpt.get(key), key)
    meta = ckpt.get("geoemb")
    if isinstance(meta, dict):
        if meta.get("module_class") is not None:
            reason = check_class(meta["module_class"], LightningModule)
            if reason is not None:
                problems.append(f"geoemb.module_class={meta['module_class']!r} ({reason})")
        problems += check_tree(meta.get("data"), "geoemb.data")
        config = meta.get("config")
        if isinstance(config, dict):
            for key in BUILT_CONFIG_KEYS:
                problems += check_tree(config.get(key), f"geoemb.config.{key}")
    elif meta is not None:
        problems.append(f"geoemb={type(meta).__name__} (expected a dict)")
    if problems:
        more = f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""
        raise UntrustedCheckpointError(
            f"checkpoint {path} asks to build something outside geoemb's allowlist{more}: "
            + "; ".join(problems[:10])
            + ". Only geoemb's own classes and registry builders, torch.nn modules, torch.optim "
            "optimizers and LR schedulers, segmentation_models_pytorch/timm models, torchmetrics "
            "metrics and kornia augmentations are built from checkpoints. " + TRUST_HINT
        )


@dataclass
class LoadedCheckpoint:
    """A rebuilt module and the checkpoint's ``geoemb`` metadata block."""

    path: Path
    module: LightningModule
    meta: dict[str, Any]


def _meta(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    meta = ckpt.get("geoemb")
    if not isinstance(meta, dict) or "module_class" not in meta:
        raise CheckpointError(
            f"checkpoint {path} has no 'geoemb' metadata block: it was not written by geoemb's "
            "train task (RunMetadata callback); pass model=... and data=... explicitly"
        )
    return meta


def _import_class(path: str) -> type:
    import hydra

    return hydra.utils.get_class(path)


def build_module(ckpt: dict[str, Any], path: str | os.PathLike, cls: type) -> LightningModule:
    """Construct ``cls`` from the checkpoint's hyperparameters and load its ``state_dict``.

    What ``cls.load_from_checkpoint`` does, on a checkpoint already read (no second read).
    """
    if "state_dict" not in ckpt:
        raise CheckpointError(f"cannot read checkpoint {path}: it has no 'state_dict'")
    hparams = dict(ckpt.get(cls.CHECKPOINT_HYPER_PARAMS_KEY) or {})
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        hparams = {k: v for k, v in hparams.items() if k in params}
    try:
        module = cls(**hparams)
        module.on_load_checkpoint(ckpt)
        module.load_state_dict(ckpt["state_dict"], strict=True)
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - a foreign/mismatched checkpoint
        raise CheckpointError(
            f"cannot rebuild {cls.__name__} from checkpoint {path}: {type(err).__name__}: "
            f"{' '.join(str(err).split())[:500]}"
        ) from err
    return module


def load_checkpoint(
    ckpt_path: str | os.PathLike, trust_checkpoint: bool = False, map_location: Any = "cpu"
) -> LoadedCheckpoint:
    """Read ``ckpt_path`` once, check it against the allowlist and rebuild its LightningModule.

    Parameters
    ----------
    ckpt_path : a checkpoint written by ``train.py`` (it carries ``checkpoint["geoemb"]``).
    trust_checkpoint : skip the ``_target_`` allowlist (for a user's own files).
    map_location : where tensors are loaded (the module is built on the CPU either way).
    """
    path = Path(ckpt_path).expanduser()
    ckpt = read_checkpoint(path, map_location=map_location)
    meta = _meta(ckpt, path)
    verify_checkpoint(ckpt, path, trust=trust_checkpoint)
    cls = _import_class(str(meta["module_class"]))
    if not (isinstance(cls, type) and issubclass(cls, LightningModule)):
        raise CheckpointError(f"checkpoint {path}: {meta['module_class']} is not a LightningModule")
    return LoadedCheckpoint(path, build_module(ckpt, path, cls), meta)


def load_module(
    ckpt_path: str | os.PathLike, trust_checkpoint: bool = False, map_location: Any = "cpu"
) -> LightningModule:
    """Rebuild the LightningModule stored in ``ckpt_path`` (no other arguments needed)."""
    return load_checkpoint(ckpt_path, trust_checkpoint, map_location).module


def load_checkpoint_meta(
    ckpt_path: str | os.PathLike, trust_checkpoint: bool = False
) -> dict[str, Any]:
    """The checkpoint's ``geoemb`` block (module class, data config, run config), checked.

    Prefer :func:`load_checkpoint` when the module is needed too (one read instead of two).
    """
    path = Path(ckpt_path).expanduser()
    ckpt = read_checkpoint(path)
    meta = _meta(ckpt, path)
    verify_checkpoint(ckpt, path, trust=trust_checkpoint)
    return meta


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning ``CheckpointIO`` whose loads go through :func:`read_checkpoint` + the allowlist.

    ``Trainer.fit(ckpt_path=...)`` and ``Trainer.test(ckpt_path=...)`` read checkpoints through the
    strategy's ``checkpoint_io``; with this plugin they use ``weights_only=True`` whatever they are
    asked, give geoemb's errors, and reuse a checkpoint already read for a resume
    (:meth:`preload`) instead of reading the file a second time.
    """

    def __init__(self, trust_checkpoint: bool = False) -> None:
        super().__init__()
        self.trust_checkpoint = bool(trust_checkpoint)
        self._preloaded: dict[str, dict[str, Any]] = {}
        #: called with each checkpoint dict before it is written (the run's metadata callback
        #: completes checkpoints that Lightning saved without calling callbacks: weights-only ones)
        self.before_save: Callable[[dict[str, Any]], None] | None = None

    def preload(self, path: str | os.PathLike, ckpt: dict[str, Any]) -> None:
        """Hand over a checkpoint dict already read (and verified) for ``path`` (used once)."""
        self._preloaded[os.path.abspath(os.fspath(path))] = ckpt

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        """Write atomically (temporary file beside ``path``, renamed when complete).

        A run killed while saving keeps its previous ``last.ckpt`` intact instead of a truncated one.
        """
        if self.before_save is not None:
            self.before_save(checkpoint)
        if storage_options is not None or "://" in os.fspath(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        from geoemb.utils.io import atomic_path

        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        return None

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        key = os.path.abspath(os.fspath(path))
        if key in self._preloaded:
            return self._preloaded.pop(key)
        ckpt = read_checkpoint(path, map_location="cpu" if map_location is None else map_location)
        verify_checkpoint(ckpt, path, trust=self.trust_checkpoint)
        return ckpt


def install_safe_io(trainer: Any, trust_checkpoint: bool = False) -> SafeCheckpointIO:
    """Make ``trainer`` read every checkpoint through :class:`SafeCheckpointIO`; returns it."""
    io = SafeCheckpointIO(trust_checkpoint)
    trainer.strategy.checkpoint_io = io
    return io


def ensure_last_epoch_checkpoint(callbacks: list) -> list:
    """Make ``save_last=True`` mean "``last.ckpt`` holds the last epoch" again (Lightning >= 2.6).

    Since Lightning 2.6 a monitoring ``ModelCheckpoint`` writes ``last.ckpt`` only when it also
    writes a top-k checkpoint, so with ``save_top_k: 1`` ``last.ckpt`` is a copy of the best epoch
    and a resume from it replays every later epoch. For each such callback this turns its
    ``save_last`` off and appends a ``ModelCheckpoint(monitor=None, filename="last")`` on the same
    ``dirpath`` that rewrites ``last.ckpt`` after every epoch (atomically, via
    :class:`SafeCheckpointIO`). The best checkpoint and ``trainer.checkpoint_callback`` stay as
    configured. Returns ``callbacks`` (modified in place).
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    extra = []
    for cb in callbacks:
        if type(cb) is ModelCheckpoint and cb.save_last is True and cb.monitor is not None:
            cb.save_last = False
            extra.append(
                ModelCheckpoint(
                    dirpath=cb.dirpath,
                    filename=ModelCheckpoint.CHECKPOINT_NAME_LAST,
                    monitor=None,
                    save_top_k=1,
                    every_n_epochs=1,
                    enable_version_counter=False,
                    save_on_train_epoch_end=cb._save_on_train_epoch_end,
                )
            )
    callbacks.extend(extra)
    return callbacks
