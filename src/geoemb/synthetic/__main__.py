"""``geoemb synthetic <dataset> OUT_DIR``: write a synthetic stand-in in a dataset's real layout.

The same generators the DataModules and evaluators call when ``data.synthetic=true`` (there the
result is cached under ``paths.data_dir`` by content key); here the user picks the folder, e.g. to
open the files in QGIS or to point a real-data config at them. Generators never overwrite: the
folder must not hold a dataset yet.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from geoemb.synthetic import (
    chesapeake_rsc,
    earth_surface_water,
    eurosat_embed,
    retrieval_corpus,
    zonal,
)

__all__ = ["DATASETS", "build_parser", "main"]

# name -> (generator, one-line description); each takes (root, seed=...) and writes the real layout
DATASETS: dict[str, tuple[Callable[..., Path], str]] = {
    "earth_surface_water": (
        earth_surface_water.generate,
        "Sentinel-2 scenes + water masks (dset-s2/{tra,val}_{scene,truth}/*.tif)",
    ),
    "chesapeake_rsc": (chesapeake_rsc.generate, "NAIP-like 4-band chips + 7-class labels"),
    "eurosat_embed": (
        eurosat_embed.generate,
        "EuroSAT-Embed per-patch embedding GeoTIFFs (aef, olmoearth-nano, tessera)",
    ),
    "retrieval_corpus": (
        retrieval_corpus.generate,
        "chip embeddings + footprints as Parquet parts (input of `geoemb retrieval build-corpus`)",
    ),
    "zonal": (zonal.generate, "AEF-like tiles, their index and census-block polygons"),
}


def build_parser(prog: str = "geoemb synthetic") -> argparse.ArgumentParser:
    """The ``geoemb synthetic`` options."""
    ap = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n")[0],
        epilog="datasets:\n" + "\n".join(f"  {k:<20} {d}" for k, (_, d) in DATASETS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("dataset", choices=sorted(DATASETS), metavar="dataset",
                    help="which dataset layout (listed below)")  # fmt: skip
    ap.add_argument("out_dir", type=Path, help="a new folder (never overwritten)")
    ap.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Write the stand-in and print where it is; exit status."""
    args = build_parser().parse_args(argv)
    gen, _ = DATASETS[args.dataset]
    out = gen(args.out_dir, seed=args.seed)
    print(f"{args.dataset}: wrote a synthetic stand-in under {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
