"""The compressor registry (:data:`COMPRESSORS`) and the ``build(config)`` entry point.

Config grammar (case-insensitive, no spaces): ``[<reducer>+]<quantizer>`` or ``<reducer>`` alone.

Quantizers / rotations:
    ``float32`` ``fp16`` ``int8`` ``int4`` ``int3`` ``int2`` (``int<b>``, b in 1..8),
    ``binary`` ``binary_median`` ``binary_mean``, ``ternary`` ``ternary_twn``,
    ``pq_<M>x<bits>`` (FAISS IndexPQ), ``rotate_affine_int<b>`` (blog "TurboQuant"),
    ``rotate_sign`` (TerraBit turbo1), ``turboquant_mse_<b>`` ``turboquant_prod_<b>`` (paper),
    ``rabitq`` (FAISS, 1 bit).
Reducers: ``pca<k>`` ``svd<k>`` ``rp<k>`` ``topvar<k>`` ``randsel<k>`` (``pca_64`` and the blog's
``PCA(64)`` spellings are also accepted).

Every name is resolved here and nowhere else: :data:`COMPRESSORS` is one
:class:`~geoemb.utils.registry.Registry` whose entries carry ``meta(kind="quantizer"|"reducer"|
"pipeline", bits=…)``; :func:`build`, :func:`output_dim`, :func:`nominal_bits`,
:func:`has_reducer` and :func:`infeasible_reason` answer every question other modules ask about a
config name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from geoemb.compression.base import Compressor, InfeasibleConfigError
from geoemb.compression.quantizers import (
    AffineQuantizer,
    BinaryQuantizer,
    Float16,
    Float32,
    ProductQuantizer,
    TernaryQuantizer,
)
from geoemb.compression.reducers import (
    PCAReducer,
    Pipeline,
    RandomProjectionReducer,
    RandomSubsetSelector,
    SVDReducer,
    TopVarianceSelector,
)
from geoemb.compression.rotations import (
    RaBitQ,
    RotateAffine,
    RotateSign,
    TurboQuantMSE,
    TurboQuantProd,
)
from geoemb.utils.registry import Registry, Resolved, UnknownNameError

__all__ = [
    "BLOG_CONFIGS",
    "COMPRESSORS",
    "available",
    "build",
    "canonical",
    "describe",
    "has_reducer",
    "infeasible_reason",
    "nominal_bits",
    "output_dim",
]

#: Keyword arguments :func:`build` forwards to the constructors that take them.
BUILD_KWARGS = ("seed", "reconstruct", "store_norm")

COMPRESSORS = Registry("compression config")

_Q = {"kind": "quantizer"}
_same_dim = {"output_dim": lambda D, **_: D}  # quantizers keep the (reduced) dimension
COMPRESSORS.add("float32", lambda **_: Float32(), aliases=("fp32",), bits=32,
                description="identity baseline (4·D B)", **_Q, **_same_dim)  # fmt: skip
COMPRESSORS.add("fp16", lambda **_: Float16(), aliases=("float16",), bits=16,
                description="half precision (2·D B)", **_Q, **_same_dim)  # fmt: skip
COMPRESSORS.add("int<b>", lambda b, **_: AffineQuantizer(b), pattern=r"int(?P<b>[1-8])",
                bits="b", description="per-dim min–max affine, b bits, MSB-first packed",
                **_Q, **_same_dim)  # fmt: skip
COMPRESSORS.add(
    "binary",
    lambda threshold=None, reconstruct="centroid", **_: BinaryQuantizer(
        threshold or "zero", reconstruct=reconstruct
    ),
    pattern=r"binary(?:_(?P<threshold>zero|median|mean))?",
    bits=1, description="sign bits x > t (t = 0 / train median / train mean)", **_Q, **_same_dim,
)  # fmt: skip
COMPRESSORS.add("ternary", lambda twn=None, **_: TernaryQuantizer("twn" if twn else "quantile"),
                pattern=r"ternary(?:_(?P<twn>twn))?", bits=2,
                description="{-1,0,+1} at train 1/3,2/3 quantiles (or TWN), 2 bits/dim",
                **_Q, **_same_dim)  # fmt: skip
COMPRESSORS.add("pq_<M>x<bits>",
                lambda m, nbits=None, seed=0, **_: ProductQuantizer(m, nbits or 8, seed=seed),
                pattern=r"pq_?(?P<m>\d+)(?:x(?P<nbits>\d+))?", bits=None,
                description="FAISS IndexPQ, M sub-quantizers of nbits", **_Q, **_same_dim)  # fmt: skip
COMPRESSORS.add("rotate_affine_int<b>", lambda b, seed=0, **_: RotateAffine(b, seed=seed),
                pattern=r"rotate_affine(?:_int|_)?(?P<b>[1-8])", bits="b",
                description="blog/TerraBit 'TurboQuant': Haar rotation + min–max affine",
                **_Q, **_same_dim)  # fmt: skip
COMPRESSORS.add("rotate_sign", lambda seed=0, **_: RotateSign(seed=seed), bits=1,
                description="TerraBit turbo1: sign(x @ Q)", **_Q, **_same_dim)  # fmt: skip
COMPRESSORS.add(
    "turboquant_mse_<b>",
    lambda b, seed=0, store_norm=True, **_: TurboQuantMSE(b, seed=seed, store_norm=store_norm),
    pattern=r"turboquant_mse_(?P<b>[1-8])", bits="b",
    description="paper TurboQuant_mse: rotation + fixed Lloyd–Max codebook + norm",
    **_Q, **_same_dim,
)  # fmt: skip
COMPRESSORS.add("turboquant_prod_<b>", lambda b, seed=0, **_: TurboQuantProd(b, seed=seed),
                pattern=r"turboquant_prod_(?P<b>[1-9])", bits="b",
                description="paper TurboQuant_prod: (b-1)-bit mse + 1-bit QJL residual",
                **_Q, **_same_dim)  # fmt: skip
COMPRESSORS.add("rabitq[_<b>]", lambda b=None, seed=0, **_: RaBitQ(b or 1, seed=seed),
                pattern=r"rabitq(?:_(?P<b>[1-9]))?", bits=None,
                description="FAISS IndexRaBitQ behind a random rotation (1 bit; multi-bit refused)",
                **_Q, **_same_dim)  # fmt: skip

_REDUCER_CLASSES = {
    "pca": (PCAReducer, "PCA (centred), fit on train"),
    "svd": (SVDReducer, "truncated SVD (no centring)"),
    "rp": (RandomProjectionReducer, "Gaussian random projection"),
    "topvar": (TopVarianceSelector, "top-k train-variance dims"),
    "randsel": (RandomSubsetSelector, "k random dims"),
}
for _kind, (_cls, _desc) in _REDUCER_CLASSES.items():
    COMPRESSORS.add(
        f"{_kind}<k>",
        lambda k, seed=0, _cls=_cls, **_: _cls(k, seed=seed),
        pattern=rf"{_kind}_?(?P<k>\d+)",
        output_dim=lambda D, k: k,
        kind="reducer",
        bits=32,
        description=_desc,
    )


def _pipeline_parts(match: re.Match) -> dict[str, Any]:
    """Resolve ``<reducer>+<quantizer>`` into its two entries (unknown parts raise)."""
    return {"reducer": _resolve_part(match["reducer"], "reducer"),
            "quantizer": _resolve_part(match["quantizer"], "quantizer")}  # fmt: skip


def _resolve_part(part: str, kind: str) -> Resolved:
    try:
        r = COMPRESSORS.resolve(part)
    except UnknownNameError:
        raise _unknown(part, part) from None
    if r.meta.get("kind") != kind:
        raise _unknown(part, part)
    return r


COMPRESSORS.add(
    "<reducer>+<quantizer>",
    lambda reducer, quantizer, **kw: Pipeline(reducer.build(**kw), quantizer.build(**kw)),
    pattern=r"(?P<reducer>[^+]+)\+(?P<quantizer>[^+]+)",
    parse=_pipeline_parts,
    output_dim=lambda D, reducer, quantizer: reducer.output_dim(D),
    kind="pipeline",
    description="a reducer then a quantizer on the reduced vectors, e.g. pca64+int8",
)

#: Configs of the blog's study, in table order (used as the default sweep).
BLOG_CONFIGS = [
    "float32", "fp16", "int8", "int4", "int2", "binary", "binary_median", "binary_mean",
    "ternary", "pq_8x8", "pca128+int8", "pca64+int8", "pca32+int8", "pca16+int4", "pca8+binary",
    "svd64+int8", "rp64+int8", "topvar64+int8", "randsel64+int8",
    "rotate_affine_int4", "rotate_affine_int2", "turboquant_mse_4", "turboquant_mse_2",
    "turboquant_prod_4", "rotate_sign", "rabitq",
]  # fmt: skip


def available() -> list[str]:
    """Human-readable list of accepted name patterns."""
    return COMPRESSORS.names()


def describe() -> str:
    """Two-column listing (pattern, description) for ``--help`` texts."""
    return COMPRESSORS.describe()


def _unknown(config: str, part: str) -> UnknownNameError:
    err = UnknownNameError(
        f"unknown compression config {config!r} (part {part!r}); expected "
        f"'[<reducer>+]<quantizer>' with quantizer in {COMPRESSORS.names(kind='quantizer')} and "
        f"reducer in {COMPRESSORS.names(kind='reducer')}, e.g. 'int8', 'pca64+int8', 'pq_8x8', "
        "'turboquant_mse_4'"
    )
    err.part = part  # the failing part, for the caller that knows the whole config
    return err


def canonical(config: str) -> str:
    """Lower-case, no spaces, ``PCA(64)`` -> ``pca64`` (the spelling the registry resolves)."""
    if not isinstance(config, str) or not config.strip():
        raise UnknownNameError(f"compression config must be a non-empty string, got {config!r}")
    return re.sub(r"\((\d+)\)", r"\1", config.strip().lower().replace(" ", ""))


def resolve(config: str) -> Resolved:
    """The registry entry ``config`` names (:class:`UnknownNameError` listing the grammar)."""
    name = canonical(config)
    try:
        return COMPRESSORS.resolve(name)
    except UnknownNameError as e:
        raise _unknown(config, getattr(e, "part", name)) from None


def build(config: str, **kw: Any) -> Compressor:
    """Build an unfitted compressor from a config string (see module doc).

    Parameters
    ----------
    config : str
        e.g. ``"int8"``, ``"pca64+int8"``, ``"pq_8x8"``, ``"turboquant_mse_4"``.
    **kw
        ``seed``, ``reconstruct``, ``store_norm``: forwarded to the constructors that take them.

    Raises
    ------
    ValueError
        Unknown or malformed config (an :class:`~geoemb.utils.registry.UnknownNameError` whose
        message lists the accepted patterns) or an unknown keyword.
    """
    bad = set(kw) - set(BUILD_KWARGS)
    if bad:
        raise ValueError(
            f"build({config!r}): unknown keyword(s) {sorted(bad)}; allowed {sorted(BUILD_KWARGS)}"
        )
    return resolve(config).build(**kw)


def _parts(config: str) -> tuple[Resolved | None, Resolved]:
    """``(reducer or None, last part)`` of a config."""
    r = resolve(config)
    if r.meta["kind"] == "pipeline":
        return r.params["reducer"], r.params["quantizer"]
    return (r, r) if r.meta["kind"] == "reducer" else (None, r)


def has_reducer(config: str) -> bool:
    """Whether ``config`` starts with a dimensionality reducer (``pca64``, ``pca64+int8``)."""
    return _parts(config)[0] is not None


def output_dim(config: str, dim: int) -> int:
    """Dimension of the decoded feature space (``decode_features``) for input dimension ``dim``."""
    out = resolve(config).output_dim(int(dim))
    if out > dim:
        raise ValueError(f"{config!r}: k={out} exceeds input dimension {dim}")
    return out


def infeasible_reason(config: str, n_rows: int, dim: int) -> str | None:
    """Why ``config`` cannot be fitted on ``n_rows`` training rows of dimension ``dim`` by
    construction (``None`` if it can), from :meth:`Compressor.check_feasible`.

    Only :class:`~geoemb.compression.base.InfeasibleConfigError` is turned into a reason; an
    unknown config raises as :func:`build` does.
    """
    try:
        build(config).check_feasible(n_rows, dim)
    except InfeasibleConfigError as e:
        return str(e)
    return None


def nominal_bits(config: str) -> float | None:
    """Bits per (reduced) dimension of the quantizer part, ``None`` where not per-dim (PQ, RaBitQ)."""
    _, last = _parts(config)
    bits = last.meta.get("bits")
    if isinstance(bits, str):  # the name's parameter (int<b>, turboquant_mse_<b>…)
        bits = last.params[bits]
    return None if bits is None else float(bits)


def meta(config: str) -> Mapping[str, Any]:
    """Registry metadata of ``config``'s entry (``kind``, ``bits``)."""
    return resolve(config).meta
