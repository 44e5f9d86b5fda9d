"""CLI: ``python -m geoemb.retrieval {synth,build-corpus,query,exemplar,bench}`` (``geoemb retrieval``).

:func:`build_parser` adds the sub-commands to a parser (``geoemb retrieval …`` or stand-alone),
:func:`dispatch` runs parsed arguments, :func:`main`/:func:`run` parse a command line.

Examples::

    python -m geoemb.retrieval synth --out data/synthetic/retrieval_corpus --n 20000 --dim 128
    python -m geoemb.retrieval build-corpus --input data/synthetic/retrieval_corpus \
        --out data/corpus --precision 2 --dim 128
    python -m geoemb.retrieval query --corpus data/corpus --bbox 170 -10 -170 10 --id 42 --k 10
    python -m geoemb.retrieval exemplar --corpus data/corpus --bbox -20 -20 40 40 \
        --pos-id 3 --neg-id 4 --combine mean --view topk --k 50 --out results.parquet

Exemplars are corpus rows: by id (``--pos-id/--neg-id``) or by a LON,LAT point inside a row's
footprint (``--pos/--neg``; negative values work as is, ``--neg -5,1``, or as ``--neg=-5,1``).
A geoemb error (bad input, resume with other arguments, a build already running) prints one line
and exits with status 2.
    python -m geoemb.retrieval bench --quick
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from geoemb.compression import build as build_compressor
from geoemb.errors import GeoembError, InputError, OutputError
from geoemb.retrieval.build import CorpusBuilder
from geoemb.retrieval.build_dask import build_on_dask
from geoemb.retrieval.exemplar import (
    exemplar_query,
    export_geoparquet,
    score_raster,
    write_score_raster,
)
from geoemb.retrieval.inputs import (
    check_rows,
    fsl_to_numpy,
    input_identity,
    iter_parquet_parts,
    table_input,
    table_parts,
    table_width,
)
from geoemb.retrieval.store import CorpusStore
from geoemb.synthetic.retrieval_corpus import generate
from geoemb.utils.dask import dask_client

__all__ = ["build_parser", "dispatch", "main", "run"]


def _point(s: str) -> tuple[float, float]:
    try:
        lon, lat = (float(v) for v in s.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected LON,LAT, got {s!r}") from e
    if not (math.isfinite(lon) and math.isfinite(lat)) or abs(lon) > 180 or abs(lat) > 90:
        raise argparse.ArgumentTypeError(f"expected finite LON,LAT within ±180, ±90, got {s!r}")
    return lon, lat


_POINT_OPTS = ("--pos", "--neg", "--point")
_NUMBER_PAIR = re.compile(r"^-[\d.]+(e-?\d+)?,\s*-?[\d.]+(e-?\d+)?$", re.IGNORECASE)


def _join_negative_points(argv: list[str]) -> list[str]:
    """``--neg -5,1`` → ``--neg=-5,1``: argparse would read ``-5,1`` as an unknown option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _POINT_OPTS and i + 1 < len(argv) and _NUMBER_PAIR.match(argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def _roi_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", required=True, help="corpus root (with manifest.parquet)")
    p.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"),
                   help="ROI box (W > E crosses the antimeridian)")  # fmt: skip
    p.add_argument("--polygon", help="ROI polygon as WKT")
    p.add_argument("--engine", default="pyarrow", choices=["pyarrow", "duckdb"])
    p.add_argument("--out", help="write ranked results as GeoParquet 1.1")


def cmd_synth(a: argparse.Namespace) -> None:
    root = generate(a.out, n=a.n, dim=a.dim, parts=a.parts, seed=a.seed)
    print(f"wrote synthetic float32 corpus to {root}")


def _input_files(spec: str) -> list[str]:
    src = Path(spec)
    paths = sorted(glob.glob(str(src / "*.parquet"))) if src.is_dir() else sorted(glob.glob(spec))
    if not paths:
        raise InputError(f"build-corpus: no Parquet files found at {spec}")
    return paths


def _check_width(path: str, dim: int, quantizer: str) -> None:
    """The code/embedding column width must fit ``--dim`` (checked on the footer, no data read)."""
    schema = pq.read_schema(path)
    for col, want in (
        ("code", (dim + 7) // 8),
        ("embedding", dim if quantizer == "binary" else None),
    ):
        if col in schema.names:
            t = schema.field(col).type
            if not pa.types.is_fixed_size_list(t):
                raise InputError(f"{path}: column {col!r} must be a FixedSizeList, got {t}")
            if want is not None and t.list_size != want:
                raise InputError(
                    f"{path}: column {col!r} has width {t.list_size} but --dim {dim} needs {want}"
                    + (
                        " (binary codes have one bit per embedding dimension)"
                        if col == "embedding"
                        else ""
                    )
                )
            return


def cmd_build(a: argparse.Namespace) -> None:
    for name, v, lo in (("--batch-rows", a.batch_rows, 1), ("--max-rows", a.max_rows, 1),
                        ("--dim", a.dim, 1), ("--fit-rows", a.fit_rows, 1),
                        ("--compact-rows", a.compact_rows, 0)):  # fmt: skip
        if v < lo:
            raise InputError(f"build-corpus: {name} must be >= {lo}, got {v}")
    table = table_input(a.input, a.source, a.embedding_column)
    paths = [str(f) for f in table.files] if table else _input_files(a.input)
    if table is not None and a.dask:
        raise InputError(
            "build-corpus: --dask reads corpus-layout Parquet inputs (id, lon, lat, embedding); "
            f"{a.input} is a {table.product.name} table: run it without --dask"
        )
    out = Path(a.out).resolve()
    if table is not None and Path(a.input).is_dir() and out.is_relative_to(Path(a.input).resolve()):
        raise OutputError(f"build-corpus: --out {a.out} is inside the input table {a.input}")
    for f in paths:
        if out == Path(f).resolve().parent:  # its manifest.parquet would become an input
            raise OutputError(
                f"build-corpus: --out {a.out} is the folder of the input file {f}; write the "
                "corpus elsewhere"
            )
    # every input's footer is read (truncated files fail here, before any work) and identified
    inputs = [input_identity(p) for p in paths]
    if table is not None:  # every footer checked (schema, CRS, partitions) before any work
        width = table_width(table)
        if a.quantizer == "binary" and width != a.dim:
            raise InputError(f"{a.input}: embeddings have width {width} but --dim {a.dim} needs "
                             f"{a.dim} (binary codes have one bit per embedding dimension)")  # fmt: skip
    for f in paths if table is None else ():
        _check_width(f, a.dim, a.quantizer)
    total_rows = sum(d["rows"] for d in inputs)
    source = {"inputs": inputs, "batch_rows": int(a.batch_rows), "embedding_column": "embedding",
              "quantizer": a.quantizer}  # fmt: skip
    if table is not None:
        source.update(table=table.product.name, embedding_column=table.check()["embedding"])
    if a.quantizer != "binary":
        source["fit_rows"] = int(a.fit_rows)
    encoder, quant = None, {"method": "binary", "threshold": 0.0, "bits": 1}
    if a.quantizer != "binary":
        comp = build_compressor(a.quantizer)
        sample = (
            table.sample(a.fit_rows)
            if table is not None
            else fsl_to_numpy(
                pq.read_table(paths[0], columns=["embedding"])["embedding"], np.float32
            )[: a.fit_rows]
        )
        check_rows({"embedding": sample, "lon": [], "lat": []},
                   lambda i: f"{paths[0]} row {i} (quantizer fit sample)")  # fmt: skip
        comp.fit(sample)
        encoder = comp.encode
        quant = {"method": comp.name, "bytes_per_vector": comp.bytes_per_vector,
                 "fit_rows": int(len(sample)), "fit_file": Path(paths[0]).name}  # fmt: skip
    builder = CorpusBuilder(a.out, dim=a.dim, geohash_precision=a.precision,
                            max_rows_per_shard=a.max_rows, quantization=quant,
                            model=json.loads(a.model), encoder=encoder, source=source,
                            compact_rows=a.compact_rows)  # fmt: skip
    with dask_client(a.dask) as client:
        if client is None:
            manifest = builder.build(
                table_parts(table, a.batch_rows, with_input=True)
                if table is not None
                else iter_parquet_parts(
                    paths, batch_rows=a.batch_rows, with_input=True, validate=False
                ),
                progress=not a.quiet,
                expected_rows=total_rows,
            )
        else:
            builder.progress = not a.quiet
            manifest = build_on_dask(builder, inputs, a.batch_rows, client, total_rows)
    info = json.loads(pq.read_schema(manifest).metadata[b"geoemb:manifest"])
    print(f"manifest {manifest}: {info['n_rows']} rows in {info['n_shards']} shards")


def cmd_query(a: argparse.Namespace) -> None:
    store = CorpusStore(a.corpus, engine=a.engine)
    if a.id is not None:
        rows = store.lookup_ids([a.id])
        if rows.num_rows == 0:
            raise InputError(f"query: id {a.id} is not in the corpus {a.corpus}")
    elif a.point is not None:
        rows = store.lookup_point(*a.point)
        if rows.num_rows == 0:
            raise InputError(
                f"query: no row of the corpus {a.corpus} covers the point {a.point} "
                f"(corpus extent {_extent(store)})"
            )
    else:
        raise InputError("query: give --id or --point for the query vector")
    knobs = {k: v for k, v in (("nprobe", a.nprobe), ("ef_search", a.ef_search))
             if v is not None and a.backend in ("binary_ivf", "binary_hnsw")}  # fmt: skip
    res = store.search(store.codes(rows), a.k + 1, bbox=a.bbox, polygon=a.polygon,
                       backend=a.backend, ann_params=knobs)  # fmt: skip
    qid = rows["id"][0].as_py()
    res = res.filter(np.asarray(res["id"]) != qid).slice(0, a.k)
    print(res.select(["rank", "id", "distance", "lon", "lat"]).to_pandas().to_string(index=False))
    if a.out:
        export_geoparquet(res, a.out)
        print(f"wrote {a.out}")


def _extent(store) -> str:
    m = store.manifest
    if m.num_rows == 0:
        return "empty"
    w, s = pc.min(m["xmin"]).as_py(), pc.min(m["ymin"]).as_py()
    e, n = pc.max(m["xmax"]).as_py(), pc.max(m["ymax"]).as_py()
    return f"W={w:.4g} S={s:.4g} E={e:.4g} N={n:.4g}"


def cmd_exemplar(a: argparse.Namespace) -> None:
    store = CorpusStore(a.corpus, engine=a.engine)
    res = exemplar_query(store, positives=a.pos or [], negatives=a.neg or [],
                         positive_ids=a.pos_id or [], negative_ids=a.neg_id or [], bbox=a.bbox,
                         polygon=a.polygon, combine=a.combine, invert=a.invert, view=a.view,
                         k=a.k, threshold=a.threshold)  # fmt: skip
    print(f"{res.num_rows} rows")
    print(
        res.select(["rank", "id", "score", "lon", "lat"])
        .slice(0, 20)
        .to_pandas()
        .to_string(index=False)
    )
    if a.out:
        export_geoparquet(res, a.out)
        print(f"wrote {a.out}")
    if a.raster:
        grid, transform = score_raster(res["lon"].to_numpy(), res["lat"].to_numpy(),
                                       res["score"].to_numpy(), a.resolution)  # fmt: skip
        write_score_raster(a.raster, grid, transform)
        print(f"wrote {a.raster} ({grid.shape[0]}x{grid.shape[1]})")


def cmd_bench(a: argparse.Namespace) -> None:
    script = Path(__file__).resolve().parents[3] / "benchmarks" / "retrieval.py"
    if not script.exists():
        sys.exit(f"bench: {script} not found (run from a source checkout)")
    sys.argv = [str(script), *a.rest]
    runpy.run_path(str(script), run_name="__main__")


def build_parser(
    subparsers: argparse._SubParsersAction | None = None,
) -> argparse.ArgumentParser | None:
    """Add ``synth``, ``build-corpus``, ``query``, ``exemplar`` and ``bench`` to ``subparsers``
    (``geoemb retrieval``; returns ``None``), or build and return the stand-alone
    ``python -m geoemb.retrieval`` parser. A caller parsing a command line itself should pass it
    through :func:`_join_negative_points` first (``--neg -5,1``)."""
    ap = None
    if subparsers is None:
        ap = argparse.ArgumentParser(prog="geoemb retrieval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        subparsers = ap.add_subparsers(dest="cmd", required=True)
    sub = subparsers

    p = sub.add_parser("synth", help="write the synthetic float32 input corpus")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--parts", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_synth)

    p = sub.add_parser("build-corpus", help="quantize + shard a float corpus into geohash Parquet")
    p.add_argument("--input", required=True, help="directory or glob of input Parquet files")
    p.add_argument("--source", default="auto",
                   help="input layout: auto | corpus (id, lon, lat, embedding) | clay | majortom | "
                        "geoparquet (geoemb.sources.TABLES)")  # fmt: skip
    p.add_argument("--embedding-column", default=None, help="embedding column of a table input")
    p.add_argument("--out", required=True)
    p.add_argument("--dim", type=int, required=True, help="code bits (= embedding dim for binary)")
    p.add_argument("--precision", type=int, default=3, help="geohash precision of the partitions")
    p.add_argument("--max-rows", type=int, default=5000, help="rows per shard file")
    p.add_argument("--batch-rows", type=int, default=65536, help="rows per streamed input part")
    p.add_argument("--quantizer", default="binary", help="geoemb.compression config (1-bit codes)")
    p.add_argument("--fit-rows", type=int, default=50000)
    p.add_argument("--model", default="{}", help="model metadata JSON for the footer")
    p.add_argument("--compact-rows", type=int, default=1_000_000,
                   help="compact each geohash cell into files of at most this many rows "
                   "(0: keep one shard per input part and cell)")  # fmt: skip
    p.add_argument(
        "--dask",
        default=None,
        help="run on Dask: local, local:N or a scheduler address (default: this process)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_build)

    p = sub.add_parser("query", help="Hamming top-k of one corpus row within an ROI")
    _roi_args(p)
    p.add_argument("--id", type=int)
    p.add_argument("--point", type=_point, help="LON,LAT of the query chip")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--backend", default=None,
                   help="search backend; binary_ivf / binary_hnsw use the ANN index saved beside "
                   "the corpus (built on first use)")  # fmt: skip
    p.add_argument("--nprobe", type=int, help="binary_ivf: cells scanned per query")
    p.add_argument("--ef-search", type=int, help="binary_hnsw: candidate list per query")
    p.set_defaults(fn=cmd_query)

    p = sub.add_parser("exemplar", help="positive/negative exemplar query within an ROI")
    _roi_args(p)
    p.add_argument("--pos", type=_point, action="append", help="positive exemplar LON,LAT")
    p.add_argument("--neg", type=_point, action="append", help="negative exemplar LON,LAT")
    p.add_argument("--pos-id", type=int, action="append")
    p.add_argument("--neg-id", type=int, action="append")
    p.add_argument("--combine", default="mean", choices=["mean", "and", "or", "xor", "majority"])
    p.add_argument("--invert", action="store_true")
    p.add_argument("--view", default="topk", choices=["topk", "threshold", "full"])
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--threshold", type=float)
    p.add_argument("--raster", help="also write the score raster (GeoTIFF)")
    p.add_argument("--resolution", type=float, default=0.5, help="raster cell size in degrees")
    p.set_defaults(fn=cmd_exemplar)

    p = sub.add_parser("bench", help="run benchmarks/retrieval.py (args passed through)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_bench)
    return ap


def dispatch(args: argparse.Namespace) -> int:
    """Run parsed arguments (a ``fn`` set by :func:`build_parser`)."""
    args.fn(args)
    return 0


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (negative ``--neg -5,1`` points kept) and run the command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    dispatch(build_parser().parse_args(_join_negative_points(argv)))


def run(argv: list[str] | None = None) -> int:
    """:func:`main` for the command line: a geoemb error is one line on stderr and exit code 2."""
    try:
        main(argv)
    except GeoembError as e:
        print(f"python -m geoemb.retrieval: error: {e}", file=sys.stderr)
        return 2
    return 0
