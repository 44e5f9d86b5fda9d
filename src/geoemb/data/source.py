"""``DataSource``: the one object that owns *real vs synthetic* for a dataset.

Every DataModule and every evaluator asks its source for the folder to read; the source either
checks that the real dataset is there (and otherwise raises one :class:`DataNotFoundError` that
says where to get it *and* how to run on the stand-in) or generates the synthetic stand-in once,
in exactly the real on-disk layout, and returns that folder. The same switch everywhere:
``data.synthetic=true``; the same tag everywhere: :attr:`DataSource.data_source`.

The stand-in is a cache of its generator's output, so it is keyed by content: it lives in
``<synthetic_root>/<key>/`` where ``key`` hashes the generator, its version and its arguments
(bound to the generator's signature, so defaults spelled out or left out give one key, and an
unknown argument is one clear error). Generation goes to a temporary folder beside the target
(:func:`geoemb.utils.io.atomic_path`) renamed into place when complete, so an interrupted
generation leaves nothing half-written (a killed generator's temporary folder is removed by the
next one) and two runs generating the same stand-in at once both end up reading one complete copy.

A source never deletes or overwrites a folder it did not write: ``synthetic_root`` must be new,
empty, or hold geoemb stand-ins (a config or checkpoint pointing it at real data is refused), and a
target folder without the completion marker is never removed unless empty.

Plain Python: no Hydra, no Lightning (usable from notebooks and the core).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoemb.errors import DataNotFoundError, InputError, OutputError
from geoemb.utils.io import atomic_path

__all__ = ["MARKER", "STAND_IN_HINT", "DataSource", "bind_generator_kwargs", "synthetic_key"]

#: The sentence every "data not found" message ends with when a stand-in exists.
STAND_IN_HINT = "Or run on the synthetic stand-in: data.synthetic=true."
_KEY = re.compile(r"^[0-9a-f]{12}$")
_KEY_TMP = re.compile(r"^\.[0-9a-f]{12}\..*\.tmp$")

#: Written last into a generated stand-in: generator id, version and arguments.
MARKER = ".geoemb_synthetic.json"


def _jsonable(obj: Any) -> Any:
    """Plain JSON-able copy: mappings (incl. OmegaConf) -> dicts with sorted str keys, sequences
    (tuples, lists, ListConfig) -> lists, paths -> str."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, Sequence) and not isinstance(obj, str | bytes):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _ident(generator: Callable[..., Any]) -> str:
    return f"{generator.__module__}.{getattr(generator, '__qualname__', generator)}"


def bind_generator_kwargs(
    generator: Callable[..., Any], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """``kwargs`` completed with the generator's defaults (its first parameter is the folder).

    Raises
    ------
    InputError naming the unknown argument(s) and the valid ones.
    """
    try:
        params = list(inspect.signature(generator).parameters.values())[1:]
    except (TypeError, ValueError):  # no signature (builtin): take the arguments as given
        return dict(kwargs)
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return dict(kwargs)
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise InputError(
            f"data.synthetic_kwargs: unknown argument(s) {unknown} for {_ident(generator)}; "
            f"expected some of {names}"
        )
    out = {p.name: p.default for p in params if p.name in names and p.default is not p.empty}
    out.update(kwargs)
    return out


def synthetic_key(generator: Callable[..., Any], version: int, kwargs: Mapping[str, Any]) -> str:
    """Short content key of a stand-in: hash of generator id, version and (bound) arguments."""
    kwargs = bind_generator_kwargs(generator, kwargs)
    blob = json.dumps(
        {"generator": _ident(generator), "version": version, "kwargs": _jsonable(kwargs)}
    )
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
    error : type
        :class:`DataNotFoundError` subclass raised for missing real data (a dataset's own class).
    legacy_markers : tuple of str
        File names an older geoemb generator wrote at the top of ``synthetic_root`` (before
        stand-ins were content-keyed): such a folder is geoemb's and may receive keyed stand-ins.
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
    error: type[DataNotFoundError] = DataNotFoundError
    legacy_markers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.synthetic = bool(self.synthetic)
        if self.synthetic_root is None:
            self.synthetic_root = self.root.parent / "synthetic" / self.root.name
        self.synthetic_root = Path(self.synthetic_root)
        # plain containers: OmegaConf values from a Hydra config hash and pickle like any other
        self.synthetic_kwargs = _jsonable(dict(self.synthetic_kwargs or {}))

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
        stand_in = f" {STAND_IN_HINT}" if self.generator is not None else ""
        return self.error(
            f"{self.name} data not found: {missing} (data.root={self.root}).{hint}{stand_in}"
        )

    def is_generated(self) -> bool:
        """True if the stand-in for the current arguments is complete on disk."""
        return (self.synthetic_dir() / MARKER).is_file()

    def _check_synthetic_root(self) -> None:
        """Refuse a ``synthetic_root`` that holds anything geoemb did not write (e.g. real data)."""
        parent = Path(self.synthetic_root)
        if not parent.exists():
            return
        if not parent.is_dir():
            raise InputError(f"data.synthetic_root={parent} is a file; expected a folder")
        names = [p.name for p in parent.iterdir()]
        ours = any(
            (_KEY.match(n) and (parent / n).is_dir())
            or _KEY_TMP.match(n)
            or n in self.legacy_markers
            for n in names
        )
        if names and not ours:
            raise InputError(
                f"data.synthetic_root={parent} exists and was not written by geoemb's synthetic "
                f"generator (no content-keyed stand-in folder inside; found "
                f"{', '.join(sorted(names)[:5])}{' …' if len(names) > 5 else ''}); refusing to generate "
                f"into it (it may hold real data). Point data.synthetic_root at a new or empty "
                f"folder."
            )

    def ensure_synthetic(self) -> Path:
        """Generate the stand-in once (atomically) and return its folder.

        Raises
        ------
        InputError if ``synthetic_root`` holds something geoemb did not write, or the target
        folder exists, is not empty and has no completion marker (never overwritten).
        """
        target = self.synthetic_dir()
        if (target / MARKER).is_file():
            return target
        self._check_synthetic_root()
        if target.is_dir():
            if any(target.iterdir()):
                raise InputError(
                    f"{target} exists without the {MARKER} completion marker; refusing to "
                    f"overwrite it. Remove it (it is not a complete stand-in) or point "
                    f"data.synthetic_root elsewhere."
                )
            try:
                target.rmdir()
            except OSError:  # filled by a concurrent generator meanwhile: checked below
                pass
        kwargs = bind_generator_kwargs(self.generator, self.synthetic_kwargs)
        marker = {"generator": _ident(self.generator), "version": self.version,
                  "kwargs": _jsonable(kwargs)}  # fmt: skip
        try:
            with atomic_path(target, suffix="") as tmp:
                self.generator(tmp, **self.synthetic_kwargs)
                (Path(tmp) / MARKER).write_text(json.dumps(marker, indent=1))
        except (OSError, OutputError):
            if not (target / MARKER).is_file():  # not a lost race: a real error
                raise
        return target
