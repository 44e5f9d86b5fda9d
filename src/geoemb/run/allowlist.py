"""What geoemb agrees to build from a checkpoint: the ``_target_`` allowlist.

A checkpoint is data. Its hyperparameters and stored configs hold ``_target_`` strings that Hydra
would import and call (``{"_target_": "pathlib.Path.write_text", ...}`` writes a file). Before
anything from a checkpoint is built, :func:`check_tree` walks the trees that will be built and
accepts a ``_target_`` only when it resolves to

- a class defined in geoemb that is a ``torch.nn.Module``, ``LightningModule``,
  ``LightningDataModule`` or torchmetrics ``Metric`` (or a geoemb registry builder function);
- a ``torch.nn`` Module class, a ``torch.optim`` Optimizer, a ``torch.optim.lr_scheduler`` scheduler;
- a segmentation_models_pytorch / timm Module class, ``segmentation_models_pytorch.create_model`` or
  ``timm.create_model``;
- a torchmetrics ``Metric`` class or a ``kornia.augmentation`` Module class.

A target outside the packages ``geoemb torch segmentation_models_pytorch timm torchmetrics kornia`` is
refused without importing anything (importing a module can itself run code). Strings that OmegaConf
would resolve (``${...}``: ``oc.decode`` can build a new ``_target_`` after the check) are refused too,
as are malformed Hydra keys (``_target_`` that is not a dotted name, ``_args_`` that is not a list).
``_partial_``, ``_convert_`` and ``_recursive_`` are plain flags and always fine.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator
from typing import Any

__all__ = [
    "ALLOWED_PACKAGES",
    "BUILDER_FUNCTIONS",
    "check_class",
    "check_target",
    "check_tree",
    "iter_targets",
]

ALLOWED_PACKAGES = (
    "geoemb",
    "torch",
    "segmentation_models_pytorch",
    "timm",
    "torchmetrics",
    "kornia",
)
"""Top-level packages whose modules may be imported to resolve a checkpoint's ``_target_``."""

BUILDER_FUNCTIONS = (
    "timm.create_model",
    "segmentation_models_pytorch.create_model",
    "geoemb.segmentation.models.build_net",
    "geoemb.pooling.heads.build_head",
)
"""Functions (not classes) a checkpoint may name: model/registry builders that only build modules."""

SAFE_HYDRA_FLAGS = frozenset({"_partial_", "_convert_", "_recursive_"})
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_NN_HOMES = ("torch.nn.", "segmentation_models_pytorch.", "timm.", "kornia.augmentation.")


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p.rstrip(".") or module.startswith(p) for p in prefixes)


def _resolve(target: str) -> Any:
    """Import the longest module prefix of ``target`` (inside an allowed package) + getattr the rest."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - not a module (or one that fails to import)
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"no importable module in {target!r}")


def _kind_allowed(obj: Any) -> str | None:
    """Why a resolved class is allowed (``None``: it is not)."""
    import torch

    module = getattr(obj, "__module__", "") or ""
    if not inspect.isclass(obj):
        return None
    own = _in(module, ("geoemb.",))
    try:
        from lightning import LightningDataModule, LightningModule

        if own and issubclass(obj, LightningModule | LightningDataModule):
            return "geoemb Lightning class"
    except ImportError:  # pragma: no cover - lightning is a dependency
        pass
    if issubclass(obj, torch.nn.Module) and (own or _in(module, _NN_HOMES)):
        return "Module class"
    if issubclass(obj, torch.optim.Optimizer) and _in(module, ("torch.optim.",)):
        return "torch optimizer"
    sched = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    if issubclass(obj, sched) and _in(module, ("torch.optim.lr_scheduler",)):
        return "torch LR scheduler"
    try:
        from torchmetrics import Metric

        if issubclass(obj, Metric) and (own or _in(module, ("torchmetrics.",))):
            return "torchmetrics Metric"
    except ImportError:  # pragma: no cover
        pass
    return None


def _builder_objects() -> list[Any]:
    out = []
    for name in BUILDER_FUNCTIONS:
        try:
            out.append(_resolve(name))
        except (ImportError, AttributeError):  # optional package missing
            continue
    return out


def check_target(target: Any) -> str | None:
    """Return ``None`` if ``target`` may be built from a checkpoint, else the reason it may not.

    Parameters
    ----------
    target : the ``_target_`` value (expected: a dotted import path string).
    """
    if not isinstance(target, str) or not _DOTTED.match(target):
        return f"not a dotted import path: {target!r}"
    if target.split(".")[0] not in ALLOWED_PACKAGES:
        return f"package {target.split('.')[0]!r} is not allowed (not imported)"
    try:
        obj = _resolve(target)
    except Exception as err:  # noqa: BLE001 - any failure means: not buildable
        return f"cannot be resolved ({type(err).__name__}: {err})"
    if inspect.isclass(obj):
        return None if _kind_allowed(obj) else f"class {obj.__module__}.{obj.__qualname__}"
    if any(obj is b for b in _builder_objects()):
        return None
    return f"{type(obj).__name__} {getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"


def check_class(path: Any, base: type) -> str | None:
    """Like :func:`check_target` for a class path that must be a geoemb subclass of ``base``."""
    reason = check_target(path)
    if reason is not None:
        return reason
    obj = _resolve(path)
    if not (
        inspect.isclass(obj) and issubclass(obj, base) and _in(obj.__module__ or "", ("geoemb.",))
    ):
        return f"not a geoemb {base.__name__} subclass"
    return None


def iter_targets(tree: Any, prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """Yield ``(key_path, kind, value)`` for everything in ``tree`` the allowlist must judge.

    ``kind`` is ``"target"`` (a ``_target_`` value), ``"args"`` (an ``_args_`` that is not a list),
    or ``"interpolation"`` (a string or key OmegaConf would resolve).
    """
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if not isinstance(key, str):  # int keys (class maps): Hydra never interprets them
                yield from iter_targets(value, path)
                continue
            if "${" in key:
                yield path, "interpolation", key
            if key == "_target_":
                yield path, "target", value
            elif key == "_args_" and not isinstance(value, list | tuple):
                yield path, "args", value
            yield from iter_targets(value, path)
    elif isinstance(tree, list | tuple):
        for i, value in enumerate(tree):
            yield from iter_targets(value, f"{prefix}[{i}]")
    elif isinstance(tree, str) and "${" in tree:
        yield prefix, "interpolation", tree


def check_tree(tree: Any, prefix: str = "") -> list[str]:
    """Every problem in ``tree`` as ``"<key path>=<value!r> (<reason>)"``; empty list = buildable.

    Parameters
    ----------
    tree : plain dicts/lists/scalars (a checkpoint's hyperparameters or a stored config).
    prefix : key path of ``tree`` inside the checkpoint (e.g. ``"hyper_parameters"``).
    """
    problems = []
    for path, kind, value in iter_targets(tree, prefix):
        if kind == "target":
            reason = check_target(value)
        elif kind == "args":
            reason = "Hydra _args_ must be a list"
        else:
            reason = "OmegaConf interpolation: resolving it could build or read anything"
        if reason is not None:
            problems.append(f"{path}={value!r} ({reason})")
    return problems
