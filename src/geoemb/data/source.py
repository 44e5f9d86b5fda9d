"""``DataSource``: the one object that owns *real vs synthetic* for a dataset.

Every DataModule and every evaluator asks its source for the folder to read; the source either
checks that the real dataset is there (and otherwise raises one :class:`DataNotFoundError` that
says where to get it *and* how to run on the stand-in) or generates the synthetic stand-in once,
in exactly the real on-disk layout, and returns that folder. The same switch everywhere:
``data.synthetic=true``; the same tag everywhere: :attr:`DataSource.data_source`.

The stand-in is a cache of its generator's output, so it is keyed by content: it lives in
``<synthetic_root>/<key>/`` where ``key`` hashes the generator, its version and its arguments.
Generation goes to a temporary folder renamed into place when complete, so an interrupted
generation leaves nothing half-written and two runs generating the same stand-in at once both end
up reading one complete copy.

Plain Python: no Hydra, no Lightning (usable from notebooks and the core).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoemb.errors import DataNotFoundError

__all__ = ["MARKER", "DataSource", "synthetic_key"]

#: Written last into a generated stand-in: generator id, version and arguments.
MARKER = ".geoemb_synthetic.json"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def synthetic_key(generator: Callable[..., Any], version: int, kwargs: Mapping[str, Any]) -> str:
    """Short content key of a stand-in: hash of generator id, version and arguments."""
    ident = f"{generator.__module__}.{getattr(generator, '__qualname__', generator)}"
    blob = json.dumps({"generator": ident, "version": version, "kwargs": _jsonable(kwargs)})
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class DataSource:
    """Where a dataset lives, real or synthetic.

    Parameters
    ----------
    name : str
        Human name used in messages (``"Earth Surface Water"``).
    root : path
        Folder of the real dataset.
    synthetic : bool
        Use the synthetic stand-in instead of ``root``.
    synthetic_root : path, optional
        Parent folder of generated stand-ins (default ``<root>/../synthetic/<root name>``).
    synthetic_kwargs : dict
        Arguments of ``generator``.
    generator : callable, optional
        ``generator(folder, **synthetic_kwargs)`` writes the stand-in into ``folder`` in the real
        layout. ``None``: this dataset has no stand-in.
    check : callable, optional
        ``check(root) -> None`` if ``root`` holds the dataset, else a short description of what is
        missing. Default: ``root`` must be an existing folder.
    download_hint : str
        How to get the real data (URL + where to extract it), quoted in the not-found error.
    version : int
        Bump when the generator's output changes, so old stand-ins are not reused.
    """

    name: str
    root: str | os.PathLike
    synthetic: bool = False
    synthetic_root: str | os.PathLike | None = None
    synthetic_kwargs: Mapping[str, Any] = field(default_factory=dict)
    generator: Callable[..., Any] | None = None
    check: Callable[[Path], str | None] | None = None
    download_hint: str = ""
    version: int = 1

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.synthetic = bool(self.synthetic)
        if self.synthetic_root is None:
            self.synthetic_root = self.root.parent / "synthetic" / self.root.name
        self.synthetic_root = Path(self.synthetic_root)
        self.synthetic_kwargs = dict(self.synthetic_kwargs or {})

    # ------------------------------------------------------------------ tags
    @property
    def data_source(self) -> str:
        """``"synthetic"`` or ``"real"``: every run, table, figure and raster is tagged with it."""
        return "synthetic" if self.synthetic else "real"

    @property
    def tags(self) -> list[str]:
        """Run tags (``["data_source=synthetic"]`` for the stand-in)."""
        return ["data_source=synthetic"] if self.synthetic else []

    # ------------------------------------------------------------------ resolution
    def synthetic_dir(self) -> Path:
        """The folder the stand-in for the current arguments lives in (content-keyed)."""
        if self.generator is None:
            raise DataNotFoundError(f"{self.name} has no synthetic stand-in")
        key = synthetic_key(self.generator, self.version, self.synthetic_kwargs)
        return Path(self.synthetic_root) / key

    def resolve(self) -> Path:
        """The folder to read: the real root (checked) or the stand-in (generated once)."""
        if self.synthetic:
            return self.ensure_synthetic()
        missing = self._missing(Path(self.root))
        if missing is not None:
            raise self.not_found(missing)
        return Path(self.root)

    def _missing(self, root: Path) -> str | None:
        if self.check is not None:
            return self.check(root)
        return None if root.is_dir() else f"no folder {root}"

    def not_found(self, missing: str) -> DataNotFoundError:
        """The one error for missing real data: what is missing, how to get it, the stand-in."""
        hint = f" {self.download_hint.strip()}" if self.download_hint else ""
        stand_in = (
            " Or run on the synthetic stand-in: data.synthetic=true."
            if self.generator is not None
            else ""
        )
        return DataNotFoundError(
            f"{self.name} data not found: {missing} (data.root={self.root}).{hint}{stand_in}"
        )

    def ensure_synthetic(self) -> Path:
        """Generate the stand-in once (atomically) and return its folder."""
        target = self.synthetic_dir()
        if (target / MARKER).is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        try:
            self.generator(tmp, **self.synthetic_kwargs)
            marker = {
                "generator": f"{self.generator.__module__}.{self.generator.__qualname__}",
                "version": self.version,
                "kwargs": _jsonable(self.synthetic_kwargs),
            }
            (tmp / MARKER).write_text(json.dumps(marker, indent=1))
            if target.exists() and not (target / MARKER).is_file():
                shutil.rmtree(target)  # a half stand-in from an older, non-atomic writer
            try:
                os.replace(tmp, target)
            except OSError:
                if not (target / MARKER).is_file():  # not a lost race: a real error
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target
