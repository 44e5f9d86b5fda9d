"""CLI: ``python -m geoemb.retrieval {synth,build-corpus,query,exemplar,bench}``.

Examples::

    python -m geoemb.retrieval synth --out data/synthetic/retrieval_corpus --n 20000 --dim 128
    python -m geoemb.retrieval build-corpus --input data/synthetic/retrieval_corpus \
        --out data/corpus --precision 2 --dim 128
    python -m geoemb.retrieval query --corpus data/corpus --bbox 170 -10 -170 10 --id 42 --k 10
    python -m geoemb.retrieval exemplar --corpus data/corpus --bbox -20 -20 40 40 \
        --pos 10.5,3.2 --neg -5,1 --combine mean --view topk --k 50 --out results.parquet
    python -m geoemb.retrieval bench --quick
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import numpy as np


def _point(s: str) -> tuple[float, float]:
    try:
        lon, lat = (float(v) for v in s.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected LON,LAT, got {s!r}") from e
    return lon, lat


def _roi_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", required=True, help="corpus root (with manifest.parquet)")
    p.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"),
                   help="ROI box (W > E crosses the antimeridian)")  # fmt: skip
    p.add_argument("--polygon", help="ROI polygon as WKT")
    p.add_argument("--engine", default="pyarrow", choices=["pyarrow", "duckdb"])
    p.add_argument("--out", help="write ranked results as GeoParquet 1.1")


def cmd_synth(a: argparse.Namespace) -> None:
    from geoemb.data.synthetic.retrieval_corpus import generate

    root = generate(a.out, n=a.n, dim=a.dim, parts=a.parts, seed=a.seed)
    print(f"wrote synthetic float32 corpus to {root}")


def cmd_build(a: argparse.Namespace) -> None:
    from geoemb.retrieval.store import CorpusBuilder, iter_parquet_parts

    src = Path(a.input)
    paths = (
        sorted(glob.glob(str(src / "*.parquet"))) if src.is_dir() else sorted(glob.glob(a.input))
    )
    if not paths:
        sys.exit(f"build-corpus: no Parquet files found at {a.input}")
    encoder, quant = None, {"method": "binary", "threshold": 0.0, "bits": 1}
    if a.quantizer != "binary":
        import pyarrow.parquet as pq

        from geoemb.compression import build as build_compressor
        from geoemb.retrieval.store import fsl_to_numpy

        comp = build_compressor(a.quantizer)
        sample = fsl_to_numpy(
            pq.read_table(paths[0], columns=["embedding"])["embedding"], np.float32
        )
        comp.fit(sample[: a.fit_rows])
        encoder = comp.encode
        quant = {"method": comp.name, "bytes_per_vector": comp.bytes_per_vector,
                 "fit_rows": int(min(a.fit_rows, len(sample))), "fit_file": Path(paths[0]).name}  # fmt: skip
    builder = CorpusBuilder(a.out, dim=a.dim, geohash_precision=a.precision,
                            max_rows_per_shard=a.max_rows, quantization=quant,
                            model=json.loads(a.model), encoder=encoder)  # fmt: skip
    manifest = builder.build(
        iter_parquet_parts(paths, batch_rows=a.batch_rows), progress=not a.quiet
    )
    import pyarrow.parquet as pq

    info = json.loads(pq.read_schema(manifest).metadata[b"geoemb:manifest"])
    print(f"manifest {manifest}: {info['n_rows']} rows in {info['n_shards']} shards")


def cmd_query(a: argparse.Namespace) -> None:
    from geoemb.retrieval.exemplar import export_geoparquet
    from geoemb.retrieval.store import CorpusStore

    store = CorpusStore(a.corpus, engine=a.engine)
    if a.id is not None:
        rows = store.lookup_ids([a.id])
    elif a.point is not None:
        rows = store.lookup_point(*a.point)
    else:
        sys.exit("query: give --id or --point for the query vector")
    if rows.num_rows == 0:
        sys.exit("query: the query location/id is not in the corpus")
    res = store.search(
        store.codes(rows), a.k + 1, bbox=a.bbox, polygon=a.polygon, backend=a.backend
    )
    qid = rows["id"][0].as_py()
    res = res.filter(np.asarray(res["id"]) != qid).slice(0, a.k)
    print(res.select(["rank", "id", "distance", "lon", "lat"]).to_pandas().to_string(index=False))
    if a.out:
        export_geoparquet(res, a.out)
        print(f"wrote {a.out}")


def cmd_exemplar(a: argparse.Namespace) -> None:
    from geoemb.retrieval.exemplar import (
        exemplar_query,
        export_geoparquet,
        score_raster,
        write_score_raster,
    )
    from geoemb.retrieval.store import CorpusStore

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
    import runpy

    script = Path(__file__).resolve().parents[3] / "benchmarks" / "retrieval.py"
    if not script.exists():
        sys.exit(f"bench: {script} not found (run from a source checkout)")
    sys.argv = [str(script), *a.rest]
    runpy.run_path(str(script), run_name="__main__")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m geoemb.retrieval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("synth", help="write the synthetic float32 input corpus")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--parts", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_synth)

    p = sub.add_parser("build-corpus", help="quantize + shard a float corpus into geohash Parquet")
    p.add_argument("--input", required=True, help="directory or glob of input Parquet files")
    p.add_argument("--out", required=True)
    p.add_argument("--dim", type=int, required=True, help="code bits (= embedding dim for binary)")
    p.add_argument("--precision", type=int, default=3, help="geohash precision of the partitions")
    p.add_argument("--max-rows", type=int, default=5000, help="rows per shard file")
    p.add_argument("--batch-rows", type=int, default=65536, help="rows per streamed input part")
    p.add_argument("--quantizer", default="binary", help="geoemb.compression config (1-bit codes)")
    p.add_argument("--fit-rows", type=int, default=50000)
    p.add_argument("--model", default="{}", help="model metadata JSON for the footer")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_build)

    p = sub.add_parser("query", help="Hamming top-k of one corpus row within an ROI")
    _roi_args(p)
    p.add_argument("--id", type=int)
    p.add_argument("--point", type=_point, help="LON,LAT of the query chip")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--backend", default=None)
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

    a = ap.parse_args(argv)
    a.fn(a)


if __name__ == "__main__":
    main()
