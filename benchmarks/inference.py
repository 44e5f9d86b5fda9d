"""Streaming gridded inference vs the TorchGeo tutorial's in-memory stitching.

Writes a synthetic 6-band uint16 scene (block by block, never held in memory), then runs, each in
its own subprocess so peak RSS is measured per approach (``ru_maxrss`` of that process):

* ``geoemb``: :func:`geoemb.inference.predict_raster` (windowed reads, prefetch thread, keep-centre
  merge, block-aligned windowed writes, overviews) on the full scene (``--size``, default
  10980 = a Sentinel-2 tile) and on the comparison scene (``--compare-size``);
* ``tutorial``: torchgeo ``RasterDataset`` + ``GridGeoSampler(size=512, stride=448)`` +
  ``DataLoader(collate_fn=stack_samples)``, predictions argmax-ed and pasted into a full-scene
  numpy array, then written as a tiled/deflate GeoTIFF with overviews (the ESW tutorial §3.4) on the
  comparison scene;
* ``baseline``: imports + model only (the RSS floor of both).

The model is a small random CNN (conv3x3 6->16, conv3x3 16->16, conv1x1 16->2 with ReLUs). Its own
forward time on the same chips is measured inside each run by wrapping ``predict_fn``; overhead =
wall time - forward time (everything else: reads, batching, merging, writes, overviews).

    python benchmarks/inference.py            # full 10980^2 scene + 2048^2 side by side
    python benchmarks/inference.py --quick    # 2048^2 + 1024^2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_scene(path: Path, size: int, bands: int = 6, block: int = 512, seed: int = 0) -> Path:
    """6-band uint16 reflectance x 1e4 scene, tiled 512, written block row by block row."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    prof = dict(
        driver="GTiff",
        dtype="uint16",
        count=bands,
        width=size,
        height=size,
        crs="EPSG:32723",
        transform=from_origin(600000.0, 7500000.0, 10.0, 10.0),
        tiled=True,
        blockxsize=block,
        blockysize=block,
        nodata=0,
        BIGTIFF="IF_SAFER",
    )
    xs = np.arange(size, dtype=np.float32)
    tmp = path.with_suffix(".part.tif")
    with rasterio.open(tmp, "w", **prof) as dst:
        for r in range(0, size, block):
            h = min(block, size - r)
            ys = np.arange(r, r + h, dtype=np.float32)[:, None]
            water = (np.sin(xs / 173.0) + np.cos(ys / 97.0)) > 1.1  # rivers/lakes-like blobs
            arr = rng.integers(300, 3000, size=(bands, h, size), dtype=np.uint16)
            arr[3:, water] //= 8  # water: dark NIR/SWIR
            dst.write(arr, window=Window(0, r, size, h))
    os.replace(tmp, path)
    return path


def build_model():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(6, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 2, 1),
    ).eval()


class Timed:
    """Wraps the model's forward (incl. /1e4 preprocessing) and accumulates its time."""

    def __init__(self, model) -> None:
        self.model, self.seconds, self.calls = model, 0.0, 0

    def __call__(self, x):
        t0 = time.perf_counter()
        y = self.model(x / 10000.0)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return y


def worker_geoemb(scene: Path, out: Path, a) -> dict:
    import torch

    from geoemb.inference import predict_raster

    fn = Timed(build_model())
    stats: dict = {}
    t0 = time.perf_counter()
    with torch.inference_mode():
        predict_raster(
            scene,
            fn,
            out,
            num_classes=2,
            tile_size=a.tile,
            stride=a.stride,
            batch_size=a.batch,
            progress=False,
            stats=stats,
        )
    wall = time.perf_counter() - t0
    # model_s = the wrapped forward alone; stats["model_s"] also counts argmax + host copy
    return {
        **stats,
        "pipeline_model_s": stats["model_s"],
        "wall_s": wall,
        "model_s": fn.seconds,
        "tiles": int(stats["tiles"]),
    }


def worker_tutorial(scene: Path, out: Path, a) -> dict:
    """The ESW tutorial's approach (§3.4): torchgeo grid sampling, stitch in memory, write."""
    import rasterio
    import torch
    from rasterio.enums import Resampling
    from torch.utils.data import DataLoader
    from torchgeo.datasets import RasterDataset, stack_samples
    from torchgeo.samplers import GridGeoSampler, Units

    fn = Timed(build_model())
    t0 = time.perf_counter()
    with rasterio.open(scene) as src:
        prof, (H, W), tr = src.profile, src.shape, src.transform
    ds = RasterDataset(paths=[str(scene)], res=10.0)
    sampler = GridGeoSampler(ds, size=a.tile, stride=a.stride, units=Units.PIXELS)
    dl = DataLoader(ds, sampler=sampler, batch_size=a.batch, collate_fn=stack_samples)
    full = np.zeros((H, W), dtype=np.uint8)
    res = tr.a
    n = 0
    with torch.inference_mode():
        for batch in dl:
            pred = fn(batch["image"]).argmax(dim=1).numpy().astype(np.uint8)
            for p, (xs, ys, _) in zip(pred, batch["bounds"], strict=True):
                col = int(round((xs.start - tr.c) / res))
                row = int(round((tr.f - ys.stop) / res))
                r0, c0 = max(row, 0), max(col, 0)
                r1, c1 = min(row + a.tile, H), min(col + a.tile, W)
                full[r0:r1, c0:c1] = p[r0 - row : r1 - row, c0 - col : c1 - col]
                n += 1
    prof.update(
        dtype="uint8",
        count=1,
        compress="deflate",
        tiled=True,
        blockxsize=512,
        blockysize=512,
        nodata=None,
    )
    with rasterio.open(out, "w", **prof) as dst:
        dst.write(full, 1)
    with rasterio.open(out, "r+") as dst:
        dst.build_overviews([2, 4, 8, 16], Resampling.nearest)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "model_s": fn.seconds, "tiles": n}


def worker_baseline_geoemb(scene: Path, out: Path, a) -> dict:
    import torch  # noqa: F401

    import geoemb.inference  # noqa: F401

    build_model()
    return {"wall_s": 0.0, "model_s": 0.0, "tiles": 0}


def worker_baseline_torchgeo(scene: Path, out: Path, a) -> dict:
    import torch  # noqa: F401
    import torchgeo.datasets  # noqa: F401
    import torchgeo.samplers  # noqa: F401

    build_model()
    return {"wall_s": 0.0, "model_s": 0.0, "tiles": 0}


WORKERS = {
    "geoemb": worker_geoemb,
    "tutorial": worker_tutorial,
    "baseline_geoemb": worker_baseline_geoemb,
    "baseline_torchgeo": worker_baseline_torchgeo,
}


def run_worker(kind: str, scene: Path, out: Path, a) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--scene",
        str(scene),
        "--out",
        str(out),
        "--tile",
        str(a.tile),
        "--stride",
        str(a.stride),
        "--batch",
        str(a.batch),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"{kind} worker failed:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def agreement(a: Path, b: Path) -> float:
    import rasterio

    with rasterio.open(a) as x, rasterio.open(b) as y:
        return float((x.read(1) == y.read(1)).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=10980, help="full scene side (pixels)")
    p.add_argument("--compare-size", type=int, default=2048, help="side-by-side scene side")
    p.add_argument("--quick", action="store_true", help="--size 2048 --compare-size 1024")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--stride", type=int, default=448)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workdir", type=Path, default=None, help="keeps scenes between runs")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--scene", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()

    if a.worker:
        r = WORKERS[a.worker](a.scene, a.out, a)
        r["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(r))
        return

    if a.quick:
        a.size, a.compare_size = 2048, 1024
    work = a.workdir or Path(tempfile.mkdtemp(prefix="geoemb_bench_inf_"))
    work.mkdir(parents=True, exist_ok=True)
    import torch

    print(
        f"# torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
        f"tile {a.tile}/{a.stride}, batch {a.batch}, workdir {work}",
        flush=True,
    )
    rows = []
    for kind, what in (
        ("baseline_geoemb", "torch + geoemb.inference"),
        ("baseline_torchgeo", "torch + torchgeo"),
    ):
        rows.append(
            (
                f"RSS floor: imports ({what}) + model",
                "-",
                run_worker(kind, work / "none.tif", work / "none_out.tif", a),
            )
        )
    t0 = time.perf_counter()
    cmp_scene = make_scene(work / f"scene_{a.compare_size}.tif", a.compare_size)
    print(f"# wrote {cmp_scene.name} in {time.perf_counter() - t0:.1f}s", flush=True)
    g = run_worker("geoemb", cmp_scene, work / "geoemb_cmp.tif", a)
    rows.append(("geoemb streaming", f"{a.compare_size}^2", g))
    print(f"# {rows[-1]}", flush=True)
    t = run_worker("tutorial", cmp_scene, work / "tutorial_cmp.tif", a)
    rows.append(("tutorial (torchgeo grid + in-memory stitch)", f"{a.compare_size}^2", t))
    print(f"# {rows[-1]}", flush=True)
    agree = agreement(work / "geoemb_cmp.tif", work / "tutorial_cmp.tif")
    if a.size != a.compare_size:
        t0 = time.perf_counter()
        big = make_scene(work / f"scene_{a.size}.tif", a.size)
        print(f"# wrote {big.name} in {time.perf_counter() - t0:.1f}s", flush=True)
        rows.append(
            (
                "geoemb streaming",
                f"{a.size}^2",
                run_worker("geoemb", big, work / "geoemb_big.tif", a),
            )
        )

    head = "| approach | scene | tiles | wall s | model fwd s | overhead s | overhead % of model | peak RSS MB |"
    print("\n" + head + "\n|---|---|---|---|---|---|---|---|")
    for name, size, r in rows:
        ov = r["wall_s"] - r["model_s"]
        pct = f"{100 * ov / r['model_s']:.1f}" if r["model_s"] else "-"
        print(
            f"| {name} | {size} | {r['tiles']} | {r['wall_s']:.1f} | {r['model_s']:.1f} | "
            f"{ov:.1f} | {pct} | {r['maxrss_mb']:.0f} |"
        )
    print(
        f"\ntutorial / geoemb at {a.compare_size}^2: wall x{t['wall_s'] / g['wall_s']:.2f}, "
        f"peak RSS x{t['maxrss_mb'] / g['maxrss_mb']:.2f}; class-map agreement {agree:.4f} "
        "(differences = the tutorial's overwrite stitching at tile seams)"
    )
    last = rows[-1][2]
    if "read_s" in last:
        print(
            "geoemb breakdown (largest scene): "
            + ", ".join(
                f"{k} {last[k]:.1f}"
                for k in (
                    "read_s",
                    "model_s",
                    "pipeline_model_s",
                    "merge_s",
                    "write_s",
                    "overview_s",
                )
                if k in last
            )
            + " (read_s = time the model loop waited for the prefetch thread; model_s = forward "
            "alone; pipeline_model_s = forward + argmax + device->host copy)"
        )


if __name__ == "__main__":
    main()
