"""One registry shape for every named family: pooling methods, compressors, search backends,
segmentation nets, pooling heads, inference merge policies, embedding sources.

A :class:`Registry` maps a *name* to a builder plus metadata. Names are either exact keys
(``"mean"``, ``"hamming_numba"``) or parametric patterns whose groups become builder arguments
(``"pca_<k>"`` matches ``pca_64`` and builds with ``k=64``). Every other place in geoemb asks the
registry — for the builder, the output dimension, the list of valid names for ``--help`` and for
error messages — and never parses a name itself.

Examples
--------
>>> reg = Registry("pooling method")
>>> @reg.register("mean", output_dim=lambda D: D, description="per-band mean")
... def _mean(**kw):
...     return "mean-pooler"
>>> _ = reg.add("pca_<k>", lambda k: f"pca{k}", pattern=r"pca_(?P<k>\\d+)", output_dim=lambda D, k: k)
>>> reg.output_dim("pca_16", 64), reg.build("pca_16")
(16, 'pca16')
>>> "median" in reg
False
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from geoemb.errors import InputError

__all__ = ["Entry", "Registry", "Resolved", "UnknownNameError"]


class UnknownNameError(InputError, KeyError):
    """A name that no entry of a registry resolves; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def _default_parse(match: re.Match) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in match.groupdict().items():
        if value is not None and value.isdigit():
            out[key] = int(value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class Entry:
    """One registered name (or name pattern) and what it builds.

    Attributes
    ----------
    name : str
        The key users type (``"mean"``) or the pattern's label (``"pca_<k>"``).
    builder : callable
        ``builder(**params, **kwargs)`` returns the object (a function, a module, an index…).
    description : str
        One line for listings.
    pattern : re.Pattern or None
        Full-match pattern for parametric names; its named groups become ``params``.
    output_dim : callable or None
        ``output_dim(D, **params) -> int`` where the family has a feature dimension.
    aliases : tuple of str
        Other exact spellings resolving to this entry.
    meta : mapping
        Free family-specific metadata (``{"parametric": True}``, ``{"device": "cuda"}``…).
    """

    name: str
    builder: Callable[..., Any]
    description: str = ""
    pattern: re.Pattern | None = None
    output_dim: Callable[..., int] | None = None
    aliases: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    parse: Callable[[re.Match], dict[str, Any]] = _default_parse


@dataclass(frozen=True)
class Resolved:
    """A name resolved against a registry: the entry plus the parameters parsed from the name."""

    name: str
    entry: Entry
    params: Mapping[str, Any]

    def build(self, **kwargs: Any) -> Any:
        """Call the entry's builder with the parsed parameters and ``kwargs``."""
        return self.entry.builder(**self.params, **kwargs)

    def output_dim(self, D: int) -> int:
        """Feature dimension for input dimension ``D`` (``ValueError`` if the family has none)."""
        if self.entry.output_dim is None:
            raise ValueError(f"{self.name!r} has no output dimension")
        return int(self.entry.output_dim(D, **self.params))

    @property
    def meta(self) -> Mapping[str, Any]:
        return self.entry.meta


class Registry:
    """Name → builder mapping with metadata, parametric patterns and helpful errors.

    Parameters
    ----------
    family : str
        What the names are (``"pooling method"``): used in error messages and listings.
    case_sensitive : bool
        If False (default), names are matched lower-cased.
    """

    def __init__(self, family: str, case_sensitive: bool = False) -> None:
        self.family = family
        self.case_sensitive = case_sensitive
        self._exact: dict[str, Entry] = {}
        self._patterns: list[Entry] = []
        self._order: list[Entry] = []

    # ------------------------------------------------------------------ registration
    def _key(self, name: str) -> str:
        name = str(name).strip()
        return name if self.case_sensitive else name.lower()

    def add(
        self,
        name: str,
        builder: Callable[..., Any],
        *,
        pattern: str | None = None,
        description: str = "",
        output_dim: Callable[..., int] | None = None,
        aliases: tuple[str, ...] | list[str] = (),
        parse: Callable[[re.Match], dict[str, Any]] | None = None,
        **meta: Any,
    ) -> Entry:
        """Register ``name`` (or the pattern labelled ``name``) and return its entry."""
        flags = 0 if self.case_sensitive else re.IGNORECASE
        entry = Entry(
            name=name,
            builder=builder,
            description=description,
            pattern=re.compile(pattern, flags) if pattern else None,
            output_dim=output_dim,
            aliases=tuple(aliases),
            meta=dict(meta),
            parse=parse or _default_parse,
        )
        keys = [] if pattern else [name]
        keys += list(aliases)
        for key in keys:
            k = self._key(key)
            if k in self._exact:
                raise ValueError(f"{self.family} {key!r} is registered twice")
            self._exact[k] = entry
        if pattern:
            self._patterns.append(entry)
        self._order.append(entry)
        return entry

    def register(
        self, name: str, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of :meth:`add`; returns the decorated builder unchanged."""

        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.add(name, fn, **kwargs)
            return fn

        return deco

    # ------------------------------------------------------------------ lookup
    def resolve(self, name: str) -> Resolved:
        """Resolve ``name``; :class:`UnknownNameError` (listing valid names) if nothing matches."""
        key = self._key(name)
        entry = self._exact.get(key)
        if entry is not None:
            return Resolved(key, entry, {})
        for entry in self._patterns:
            m = entry.pattern.fullmatch(key)
            if m is not None:
                return Resolved(key, entry, entry.parse(m))
        raise UnknownNameError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        """``unknown <family> 'x'; valid: a, b, pca_<k>``."""
        return f"unknown {self.family} {name!r}; valid: {', '.join(self.names())}"

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.resolve(name)
        except UnknownNameError:
            return False
        return True

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def get(self, name: str) -> Entry:
        """The entry ``name`` resolves to."""
        return self.resolve(name).entry

    def build(self, name: str, **kwargs: Any) -> Any:
        """Resolve ``name`` and call its builder (parsed parameters + ``kwargs``)."""
        return self.resolve(name).build(**kwargs)

    def output_dim(self, name: str, D: int) -> int:
        """Feature dimension of ``name`` for input dimension ``D``."""
        return self.resolve(name).output_dim(D)

    def names(self, **meta: Any) -> list[str]:
        """Registered names and pattern labels in registration order, filtered by ``meta``."""
        return [e.name for e in self._order if all(e.meta.get(k) == v for k, v in meta.items())]

    def describe(self) -> str:
        """A two-column listing (name, description) for ``--help`` texts."""
        width = max((len(e.name) for e in self._order), default=0)
        return "\n".join(f"  {e.name:<{width}}  {e.description}".rstrip() for e in self._order)
