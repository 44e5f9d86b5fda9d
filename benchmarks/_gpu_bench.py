"""Driver of ``benchmarks/gpu.sh``: every GPU benchmark, one table (see gpu.sh for usage).

Sections (each isolated: a failure becomes a row saying why, the others still run):

* ``pooling``: geoemb ``pool``/``pool_many`` on the GPU vs the per-method numpy reference of
  ``benchmarks/pooling.py`` (geopool's code paths) on the host CPU, per patch. Target >= 50x.
* ``hamming``: ``hamming_gemm`` / ``hamming_torch`` on the GPU vs the CPU ``hamming_numba`` kernel
  and vs TerraBit's GPU harness (``np.unpackbits`` -> fp16 {0,1} -> ``torch.cdist`` + ``topk`` in
  query batches of 256, corpus copied to the GPU inside the timed region; 164 QPS published on an
  RTX 3090 for 1M x 1024 bits).
* ``float``: ``float_torch`` on the GPU vs TerraBit's float ``torch.cdist`` harness (1,322 QPS
  published on an RTX 3090 for 1M x 1024 float), same machine, same data.
* ``dwr``: DWR + distance curve metrics on the GPU vs the ChesapeakeRSC notebook's cv2 path on CPU
  (``benchmarks/rsc_metrics.py``; numbers must be identical). Target >= 10x.
* ``inference``: segmentation net forward throughput (U-Net-R18 if segmentation_models_pytorch is
  importable, else torchvision DeepLabV3-R50, else geoemb's tiny CNN), fp32 and bf16 autocast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
import traceback
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
for p in (str(SRC), str(ROOT / "benchmarks")):
    if p not in sys.path:
        sys.path.insert(0, p)

ROWS: list[dict] = []
NOTES: list[str] = []
FAILED: list[str] = []


def add(section, workload, geo, anchor="", ratio=None, target="", note="") -> None:
    ROWS.append(
        dict(section=section, workload=workload, geoemb=geo, anchor=anchor, ratio=ratio,
             target=target, note=note)
    )  # fmt: skip


def core(name: str):
    """Import a geoemb core module from src/; if a package ``__init__`` pulls in a dependency this
    machine lacks (e.g. shapely via geoemb.retrieval.store), register that package bare (its
    ``__path__`` only) and import just the module."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        first = err
    for pkg in ("geoemb.retrieval", "geoemb.compression", "geoemb.segmentation"):
        mod = sys.modules.get(pkg)
        if mod is None or getattr(mod, "__file__", None) is None:
            stub = types.ModuleType(pkg)
            stub.__path__ = [str(SRC.joinpath(*pkg.split(".")))]
            sys.modules[pkg] = stub
    mod = importlib.import_module(name)
    NOTES.append(f"{name}: imported without its package __init__ ({first})")
    return mod


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev: torch.device, repeat: int = 3, warmup: int = 1) -> tuple[float, object]:
    """Median seconds of ``repeat`` synchronised calls after ``warmup`` untimed ones."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeat):
        sync(dev)
        t0 = time.perf_counter()
        out = fn()
        sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def has(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return False
    return True


# ------------------------------------------------------------------------------------ sections
def bench_pooling(a, dev: torch.device) -> None:
    pool_mod = core("geoemb.pooling")
    from pooling import ref_pool

    n, n_ref, d, s = a.pool_n, a.pool_ref_n, 64, a.pool_size
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randint(0, 255, (n, d, s, s), generator=gen, device=dev).float()
    xn = np.ascontiguousarray(x[:n_ref].permute(0, 2, 3, 1).cpu().numpy())
    fit = x[: min(n, 256)]
    states = {
        "pca_64": pool_mod.fit_parametric("pca_64", fit),
        "bovw_128": pool_mod.fit_parametric("bovw_128", fit, seed=42),
    }
    pca = (states["pca_64"].mean.cpu().numpy(), states["pca_64"].components.cpu().numpy())
    cen = states["bovw_128"].centroids.cpu().numpy()
    tot_ref = 0.0
    for m in pool_mod.ALL_METHODS:
        t_ref, ref = timed(
            lambda m=m: ref_pool(xn, m, pca=pca, centroids=cen), torch.device("cpu"), 1, 0
        )
        tot_ref += t_ref
        t_gpu, _ = timed(lambda m=m: pool_mod.pool(x, m, state=states.get(m)), dev, a.repeat)
        got = pool_mod.pool(x[:n_ref], m, state=states.get(m)).cpu().numpy()
        err = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12))
        ratio = (t_ref / n_ref) / (t_gpu / n)
        add("pooling D=64", m, f"{n / t_gpu:,.0f} patch/s", f"{n_ref / t_ref:,.0f} patch/s",
            ratio, ">= 50x", f"max rel err vs numpy {err:.1e}")  # fmt: skip
    t_all, _ = timed(
        lambda: pool_mod.pool_many(x, pool_mod.ALL_METHODS, states=states), dev, a.repeat
    )
    add("pooling D=64", "all 13 together (pool_many)", f"{n / t_all:,.0f} patch/s",
        f"{n_ref / tot_ref:,.0f} patch/s", (tot_ref / n_ref) / (t_all / n), ">= 50x",
        f"GPU N={n}, numpy N={n_ref} ({os.cpu_count()} host cores, numpy default threads)")  # fmt: skip


def _cdist_knn(corpus_host: torch.Tensor, q: torch.Tensor, k: int, dev: torch.device, dtype):
    """TerraBit's GPU harness: corpus to the GPU inside the timed region, cdist + topk per 256."""
    c = corpus_host.to(dev, dtype)
    out = []
    for s in range(0, len(q), 256):
        dist = torch.cdist(q[s : s + 256].to(dev, dtype), c)
        out.append(torch.topk(dist, k, largest=False).indices)
    return torch.cat(out)


def bench_hamming(a, dev: torch.device) -> None:
    search = core("geoemb.retrieval.search")
    n, nbytes, nq, k = a.ham_n, a.bits // 8, a.nq, 10
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    q = rng.integers(0, 256, (nq, nbytes), dtype=np.uint8)
    ref_d = None
    if has("numba"):
        idx = search.build_index("hamming_numba", codes)
        nq_cpu = min(nq, a.nq_cpu)
        t, (ref_d, _) = timed(lambda: idx.search(q[:nq_cpu], k), torch.device("cpu"), 1)
        cpu_qps = nq_cpu / t
        add("hamming", f"hamming_numba CPU {n:,}x{a.bits}b k={k}", f"{cpu_qps:,.0f} QPS",
            note=f"{os.cpu_count()} host cores, {nq_cpu} queries")  # fmt: skip
    else:
        cpu_qps = None
        NOTES.append("numba missing: no CPU Hamming baseline")
    unpacked = torch.from_numpy(np.unpackbits(codes, axis=1))  # TerraBit: {0,1} on the host
    qf = torch.from_numpy(np.unpackbits(q, axis=1))
    dtype = torch.float16 if dev.type == "cuda" else torch.float32  # TerraBit: fp16 {0,1}
    try:
        t_anchor, _ = timed(lambda: _cdist_knn(unpacked, qf, k, dev, dtype), dev, 1)
    except RuntimeError as err:  # a torch without half cdist: same harness in float32
        NOTES.append(f"hamming anchor: fp16 cdist failed ({err}); float32 instead")
        dtype = torch.float32
        t_anchor, _ = timed(lambda: _cdist_knn(unpacked, qf, k, dev, dtype), dev, 1)
    anchor_qps = nq / t_anchor
    add("hamming", "TerraBit harness: unpack + cdist (+H2D)", f"{anchor_qps:,.0f} QPS", "164 QPS (RTX 3090)",
        anchor_qps / 164, note="same machine, same codes")  # fmt: skip
    for name in ("hamming_gemm", "hamming_torch"):
        idx = search.build_index(name, codes, device=dev)
        t, (d, _) = timed(lambda idx=idx: idx.search(q, k), dev, a.repeat)
        qps = nq / t
        same = (
            ""
            if ref_d is None
            else f"distances = numba: {bool(np.array_equal(np.asarray(d)[: len(ref_d)], ref_d))}"
        )
        add("hamming", f"{name} {dev.type} {n:,}x{a.bits}b k={k}", f"{qps:,.0f} QPS",
            f"{anchor_qps:,.0f} QPS (TerraBit harness here)", qps / anchor_qps,
            "> anchor", same + ("" if cpu_qps is None else f"; {qps / cpu_qps:.1f}x CPU numba"))  # fmt: skip


def bench_float(a, dev: torch.device) -> None:
    search = core("geoemb.retrieval.search")
    n, dim, nq, k = a.float_n, a.float_d, a.nq, 10
    gen = torch.Generator(device=dev).manual_seed(1)
    xs = torch.randn(n, dim, generator=gen, device=dev)
    qs = torch.randn(nq, dim, generator=gen, device=dev)
    host = xs.cpu()
    t_anchor, ids_anchor = timed(lambda: _cdist_knn(host, qs, k, dev, torch.float32), dev, 1)
    t_anchor_res, _ = timed(lambda: _cdist_knn(xs, qs, k, dev, torch.float32), dev, 1)
    idx = search.build_index("float_torch", xs, metric="l2", device=dev)
    t, (_, ids) = timed(lambda: idx.search(qs, k), dev, a.repeat)
    agree = float((ids.cpu()[:, 0] == ids_anchor.cpu()[:, 0]).float().mean())
    qps = nq / t
    add("float search", f"float_torch {dev.type} {n:,}x{dim} L2 k={k}", f"{qps:,.0f} QPS",
        f"{nq / t_anchor:,.0f} QPS (cdist+H2D here); 1,322 (RTX 3090)", qps / (nq / t_anchor),
        "> anchor", f"cdist without H2D {nq / t_anchor_res:,.0f} QPS; top-1 agreement {agree:.3f}")  # fmt: skip


def bench_dwr(a, dev: torch.device) -> None:
    core("geoemb.metrics")
    import rsc_metrics

    for resident in (True, False):
        r = rsc_metrics.run(a.dwr_n, a.dwr_size, a.dwr_batch, str(dev), a.repeat, resident=resident)
        ref_name, t_ref = r["rows"][0][0], r["rows"][0][1]
        for name, t, dwr, _, ratio in r["rows"][1:]:
            add("dwr", f"{r['n']}x{r['size']}^2 masks: {name}", f"{r['n'] / t:,.0f} patch/s",
                f"{r['n'] / t_ref:,.0f} patch/s (notebook, CPU)", ratio, ">= 10x",
                f"identical numbers: {r['identical']}; DWR {dwr:.6f}"
                + ("" if resident or dev.type == "cpu" else "; int64 masks+preds copied H2D in the timed loop"))  # fmt: skip
        if not r["identical"]:
            raise RuntimeError(f"DWR/curve differ from the reference ({ref_name})")
        if dev.type == "cpu":
            break


def bench_inference(a, dev: torch.device) -> None:
    models = core("geoemb.segmentation.models")
    for name in ("unet_resnet18", "deeplabv3_resnet50", "tiny_cnn"):
        try:
            net = models.build_net(name, in_channels=4, num_classes=2)
            break
        except ImportError as err:
            NOTES.append(f"inference: {name} unavailable ({err})")
    net = net.to(dev).eval()
    bs, s = a.infer_batch, a.infer_size
    x = torch.rand(bs, 4, s, s, device=dev)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    for label, ctx in (("fp32", None), ("bf16 autocast", torch.bfloat16)):

        def fwd(ctx=ctx):
            with torch.inference_mode(), torch.autocast(dev.type, dtype=ctx or torch.float32,
                                                         enabled=ctx is not None):  # fmt: skip
                return net(x).argmax(1)

        t, _ = timed(fwd, dev, a.repeat, warmup=2)
        add("inference", f"{name} {label} batch {bs}x4x{s}x{s}", f"{bs / t:,.1f} patch/s",
            "126 patch/s (RSC notebook eval loop, U-Net-R18, incl. I/O; GPU unknown)",
            note=f"{bs * s * s / t / 1e6:,.0f} Mpx/s")  # fmt: skip


SECTIONS = {
    "pooling": bench_pooling,
    "hamming": bench_hamming,
    "float": bench_float,
    "dwr": bench_dwr,
    "inference": bench_inference,
}


def table() -> str:
    lines = [
        "| section | workload | geoemb | anchor | ratio | target | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in ROWS:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.1f}x"
        lines.append(
            f"| {r['section']} | {r['workload']} | {r['geoemb']} | {r['anchor']} | {ratio} | "
            f"{r['target']} | {r['note']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "gpu_out"))
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (only with --tiny)")
    ap.add_argument("--tiny", action="store_true", help="seconds-long sizes (smoke test)")
    ap.add_argument("--only", nargs="*", choices=sorted(SECTIONS), help="run these sections only")
    a = ap.parse_args(argv)
    full = dict(pool_n=2048, pool_ref_n=48, pool_size=64, ham_n=1_000_000, bits=1024, nq=1024,
                nq_cpu=256, float_n=1_000_000, float_d=1024, dwr_n=256, dwr_size=512,
                dwr_batch=32, infer_batch=32, infer_size=512, repeat=3)  # fmt: skip
    tiny = dict(pool_n=64, pool_ref_n=3, pool_size=8, ham_n=3000, bits=256, nq=8, nq_cpu=8,
                float_n=2000, float_d=32, dwr_n=4, dwr_size=48, dwr_batch=2, infer_batch=2,
                infer_size=32, repeat=1)  # fmt: skip
    for key, val in (tiny if a.tiny else full).items():
        setattr(a, key, val)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            f"no CUDA device: torch {torch.__version__} (CUDA build {torch.version.cuda}) sees no "
            f"GPU (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); nothing "
            "benchmarked. Run on a GPU machine, or `--tiny --device cpu` for a smoke test."
        )
        return 2
    if a.device == "cpu" and not a.tiny:
        print("--device cpu is a smoke test only: add --tiny")
        return 2
    dev = torch.device(a.device)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    header = (
        f"# geoemb GPU benchmarks ({'tiny smoke run' if a.tiny else 'full'}): {name}; torch "
        f"{torch.__version__}; {os.cpu_count()} host cores; numba {has('numba')}, cv2 "
        f"{has('cv2')}, torchmetrics {has('torchmetrics')}, smp {has('segmentation_models_pytorch')}"
    )
    print(header, flush=True)
    t_start = time.perf_counter()
    for sec in a.only or list(SECTIONS):
        t0 = time.perf_counter()
        try:
            SECTIONS[sec](a, dev)
            status = "ok"
        except Exception as err:  # noqa: BLE001 - one section's failure must not hide the others
            FAILED.append(sec)
            status = f"FAILED: {type(err).__name__}: {err}"
            add(sec, "(section failed)", "", note=f"{type(err).__name__}: {err}"[:300])
            traceback.print_exc()
        finally:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        print(f"[{sec}] {time.perf_counter() - t0:.1f} s, {status}", flush=True)
    total = time.perf_counter() - t_start
    md = "\n".join([header, "", table(), "", f"total {total:.0f} s"] + [f"- {n}" for n in NOTES])
    print("\n" + md)
    (out / "gpu_bench.md").write_text(md + "\n")
    (out / "gpu_bench.json").write_text(
        json.dumps(
            {"header": header, "rows": ROWS, "notes": NOTES, "failed": FAILED, "total_s": total},
            indent=1,
            default=str,
        )  # fmt: skip
    )
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
