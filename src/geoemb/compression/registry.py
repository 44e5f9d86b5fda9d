"""Registry of compressors and the ``build(config)`` parser.

Config grammar (case-insensitive, no spaces): ``[<reducer>+]<quantizer>`` or ``<reducer>`` alone.

Quantizers / rotations:
    ``float32`` ``fp16`` ``int8`` ``int4`` ``int3`` ``int2`` (``int<b>``, b in 1..8),
    ``binary`` ``binary_median`` ``binary_mean``, ``ternary`` ``ternary_twn``,
    ``pq_<M>x<bits>`` (FAISS IndexPQ), ``rotate_affine_int<b>`` (blog "TurboQuant"),
    ``rotate_sign`` (TerraBit turbo1), ``turboquant_mse_<b>`` ``turboquant_prod_<b>`` (paper),
    ``rabitq`` (FAISS, 1 bit).
Reducers: ``pca<k>`` ``svd<k>`` ``rp<k>`` ``topvar<k>`` ``randsel<k>`` (``pca_64`` and the blog's
``PCA(64)`` spellings are also accepted).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

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
    Reducer,
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

# name pattern -> (regex, factory(match, **kw) -> Compressor, description)
QUANTIZERS: dict[str, tuple[str, Callable[..., Compressor], str]] = {
    "float32": (r"float32|fp32", lambda m, **kw: Float32(), "identity baseline (4·D B)"),
    "fp16": (r"fp16|float16", lambda m, **kw: Float16(), "half precision (2·D B)"),
    "int<b>": (
        r"int([1-8])",
        lambda m, **kw: AffineQuantizer(int(m[1])),
        "per-dim min–max affine, b bits, MSB-first packed",
    ),
    "binary": (
        r"binary(?:_(zero|median|mean))?",
        lambda m, **kw: BinaryQuantizer(m[1] or "zero", **kw),
        "sign bits x > t (t = 0 / train median / train mean)",
    ),
    "ternary": (
        r"ternary(?:_(twn))?",
        lambda m, **kw: TernaryQuantizer("twn" if m[1] else "quantile"),
        "{-1,0,+1} at train 1/3,2/3 quantiles (or TWN), 2 bits/dim",
    ),
    "pq_<M>x<bits>": (
        r"pq_?(\d+)(?:x(\d+))?",
        lambda m, **kw: ProductQuantizer(int(m[1]), int(m[2] or 8), **kw),
        "FAISS IndexPQ, M sub-quantizers of nbits",
    ),
    "rotate_affine_int<b>": (
        r"rotate_affine(?:_int|_)?([1-8])",
        lambda m, **kw: RotateAffine(int(m[1]), **kw),
        "blog/TerraBit 'TurboQuant': Haar rotation + min–max affine",
    ),
    "rotate_sign": (
        r"rotate_sign",
        lambda m, **kw: RotateSign(**kw),
        "TerraBit turbo1: sign(x @ Q)",
    ),
    "turboquant_mse_<b>": (
        r"turboquant_mse_([1-8])",
        lambda m, **kw: TurboQuantMSE(int(m[1]), **kw),
        "paper TurboQuant_mse: rotation + fixed Lloyd–Max codebook + norm",
    ),
    "turboquant_prod_<b>": (
        r"turboquant_prod_([1-9])",
        lambda m, **kw: TurboQuantProd(int(m[1]), **kw),
        "paper TurboQuant_prod: (b-1)-bit mse + 1-bit QJL residual",
    ),
    "rabitq[_<b>]": (
        r"rabitq(?:_([1-9]))?",
        lambda m, **kw: RaBitQ(int(m[1] or 1), **kw),
        "FAISS IndexRaBitQ behind a random rotation (1 bit; multi-bit refused)",
    ),
}

REDUCERS: dict[str, tuple[str, type[Reducer], str]] = {
    "pca<k>": (r"pca_?(\d+)", PCAReducer, "PCA (centred), fit on train"),
    "svd<k>": (r"svd_?(\d+)", SVDReducer, "truncated SVD (no centring)"),
    "rp<k>": (r"rp_?(\d+)", RandomProjectionReducer, "Gaussian random projection"),
    "topvar<k>": (r"topvar_?(\d+)", TopVarianceSelector, "top-k train-variance dims"),
    "randsel<k>": (r"randsel_?(\d+)", RandomSubsetSelector, "k random dims"),
}

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
    return [*QUANTIZERS, *REDUCERS, "<reducer>+<quantizer>"]


def _unknown(config: str, part: str) -> ValueError:
    return ValueError(
        f"unknown compression config {config!r} (part {part!r}); expected "
        f"'[<reducer>+]<quantizer>' with quantizer in {list(QUANTIZERS)} and reducer in "
        f"{list(REDUCERS)}, e.g. 'int8', 'pca64+int8', 'pq_8x8', 'turboquant_mse_4'"
    )


def _filter_kw(factory: Callable, kw: dict) -> dict:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return kw
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return kw
    return {k: v for k, v in kw.items() if k in params}


def _make_quantizer(part: str, config: str, kw: dict) -> Compressor | None:
    for pattern, factory, _ in QUANTIZERS.values():
        m = re.fullmatch(pattern, part)
        if m:
            cls_kw = dict(kw)
            # drop kwargs the concrete class does not take (e.g. seed for int8)
            target = {
                "binary": BinaryQuantizer, "pq": ProductQuantizer, "rotate_affine": RotateAffine,
                "rotate_sign": RotateSign, "turboquant_mse": TurboQuantMSE,
                "turboquant_prod": TurboQuantProd, "rabitq": RaBitQ,
            }  # fmt: skip
            cls = next((c for p, c in target.items() if part.startswith(p)), None)
            cls_kw = _filter_kw(cls, cls_kw) if cls is not None else {}
            return factory(m, **cls_kw)
    return None


def _make_reducer(part: str, kw: dict) -> Reducer | None:
    for pattern, cls, _ in REDUCERS.values():
        m = re.fullmatch(pattern, part)
        if m:
            return cls(int(m[1]), **_filter_kw(cls, kw))
    return None


def build(config: str, **kw) -> Compressor:
    """Build an unfitted compressor from a config string (see module doc).

    Parameters
    ----------
    config : str
        e.g. ``"int8"``, ``"pca64+int8"``, ``"pq_8x8"``, ``"turboquant_mse_4"``.
    **kw
        Forwarded to constructors that accept them (``seed``, ``reconstruct``, ...).

    Raises
    ------
    ValueError
        Unknown or malformed config (the message lists the accepted patterns).
    """
    if not isinstance(config, str) or not config.strip():
        raise ValueError(f"compression config must be a non-empty string, got {config!r}")
    allowed = {"seed", "reconstruct", "store_norm"}
    bad = set(kw) - allowed
    if bad:
        raise ValueError(
            f"build({config!r}): unknown keyword(s) {sorted(bad)}; allowed {sorted(allowed)}"
        )
    name = re.sub(r"\((\d+)\)", r"\1", config.strip().lower().replace(" ", ""))  # PCA(64) -> pca64
    parts = name.split("+")
    if len(parts) > 2 or any(not p for p in parts):
        raise _unknown(config, name)
    if len(parts) == 2:
        red = _make_reducer(parts[0], kw)
        if red is None:
            raise _unknown(config, parts[0])
        q = _make_quantizer(parts[1], config, kw)
        if q is None:
            raise _unknown(config, parts[1])
        return Pipeline(red, q)  # canonical name '<reducer>+<quantizer>'
    q = _make_quantizer(name, config, kw)
    if q is not None:
        return q  # canonical .name, e.g. 'binary_zero' -> 'binary', 'pq8' -> 'pq_8x8'
    red = _make_reducer(name, kw)
    if red is not None:
        return red
    raise _unknown(config, name)


def output_dim(config: str, dim: int) -> int:
    """Dimension of the decoded feature space (``decode_features``) for input dimension ``dim``."""
    build(config)  # validate
    first = config.strip().lower().split("+")[0]
    for pattern, _, _ in REDUCERS.values():
        m = re.fullmatch(pattern, first)
        if m:
            if int(m[1]) > dim:
                raise ValueError(f"{config!r}: k={m[1]} exceeds input dimension {dim}")
            return int(m[1])
    return int(dim)


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
    q = config.strip().lower().split("+")[-1]
    table = [
        (r"float32|fp32", 32), (r"fp16|float16", 16), (r"int([1-8])", None),
        (r"binary.*|rotate_sign", 1), (r"ternary.*", 2), (r"rotate_affine(?:_int|_)?([1-8])", None),
        (r"turboquant_(?:mse|prod)_([1-9])", None), (r"(pca|svd|rp|topvar|randsel)_?\d+", 32),
    ]  # fmt: skip
    for pat, bits in table:
        m = re.fullmatch(pat, q)
        if m:
            return float(bits if bits is not None else m[m.lastindex])
    return None
