"""Streaming gridded inference: grid alignment, seams, merges, nodata, inputs, atomicity, memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from geoemb.inference import (
    RasterInputError,
    axis_starts,
    center_cuts,
    cosine_ramp_weights,
    open_source,
    predict_raster,
    recommended_stride,
    tile_grid,
)
from tests.inference.inference_helpers import (
    CRS,
    ConvNet,
    read_out,
    scene,
    single_pass,
    write_tif,
)


# -- tiling ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "length,tile,stride", [(517, 64, 48), (64, 64, 48), (30, 64, 48), (1000, 512, 448), (7, 3, 1)]
)
def test_axis_starts_cover_and_align(length, tile, stride):
    s = axis_starts(length, tile, stride)
    cover = np.zeros(max(length, tile), dtype=int)
    for a in s:
        cover[a : a + tile] += 1
    assert (cover[:length] >= 1).all()
    assert s[0] == 0 and (np.diff(s) <= stride).all() and (np.diff(s) > 0).all()
    if length >= tile:
        assert s[-1] + tile == length  # last tile flush with the far edge
    else:
        assert list(s) == [0]
    cuts = center_cuts(s, tile, length)
    assert cuts[0] == 0 and cuts[-1] == length and (np.diff(cuts) > 0).all()
    for k, a in enumerate(s):  # each kept region lies inside its tile
        assert a <= cuts[k] and cuts[k + 1] <= a + tile
    w = cosine_ramp_weights(s, tile, length)
    total = np.zeros(max(length, tile))
    for a, wk in zip(s, w, strict=True):
        total[a : a + tile] += wk
    two = cover[:length] <= 2  # partition of unity where at most two tiles meet
    np.testing.assert_allclose(total[:length][two], 1.0, atol=1e-6)
    assert (total[:length] > 0).all()


def test_tile_grid_and_stride_helper():
    assert recommended_stride(512, 64) == 448
    with pytest.raises(ValueError):
        recommended_stride(64, 64)
    g = tile_grid(100, 130, 64, 48)
    assert g[0] == (0, 0) and g[-1] == (36, 66) and len(g) == 2 * 3


# -- grid, format, seams ------------------------------------------------------------------------
SIZES = [(261, 397), (37, 45), (64, 100), (131, 49)]


@pytest.mark.parametrize("h,w", SIZES)
def test_output_grid_format_and_exact_seams(tmp_path, h, w):
    data = scene(h, w)
    src_path = write_tif(tmp_path / "scene.tif", data)
    net = ConvNet()
    tile, stride = 64, 48  # overlap 16 >= 2 * RF radius (3)
    out = tmp_path / "pred.tif"
    stats: dict = {}
    with open_source(src_path) as src:
        ret = predict_raster(
            src,
            net,
            out,
            num_classes=3,
            tile_size=tile,
            stride=stride,
            batch_size=5,
            block_size=32,
            progress=False,
            write_probabilities=True,
            stats=stats,
        )
    assert ret == out and out.exists()
    arr, prof = read_out(out)
    with rasterio.open(src_path) as s:
        assert prof["crs"] == s.crs
        assert prof["transform"] == s.transform
        assert (prof["width"], prof["height"]) == (s.width, s.height)
    assert prof["dtype"] == "uint8" and prof["nodata"] == 255 and prof["count"] == 4
    assert prof["tiled"] and prof["blockxsize"] == 32 and prof["blockysize"] == 32
    assert prof["compress"] == "deflate"
    # rasterio reports the effective factor (width / overview width): 15 for a 45 px wide 1/16
    assert len(prof["overviews"]) == 4 and prof["overviews"][:2] == [2, 4]
    if min(h, w) >= 256:
        assert prof["overviews"] == [2, 4, 8, 16]
    logits = single_pass(net, data, tile)
    np.testing.assert_array_equal(arr[0], logits.argmax(0).numpy())  # bit-exact class map
    ref = torch.softmax(logits, 0)
    # probability bands: quantised to 1/254 and scaled back by the band scale
    assert prof["scales"][1] == pytest.approx(1 / 254)
    np.testing.assert_allclose(arr[1:] / 254.0, ref.numpy(), atol=0.5 / 254 + 1e-6)
    assert stats["tiles"] == len(tile_grid(h, w, tile, stride))
    assert not list(tmp_path.glob(".pred*"))  # no temp leftovers


def test_default_block_size_512_and_no_overviews(tmp_path):
    data = scene(40, 50)
    p = write_tif(tmp_path / "s.tif", data)
    out = predict_raster(
        p,
        ConvNet(),
        tmp_path / "o.tif",
        num_classes=3,
        tile_size=32,
        stride=24,
        progress=False,
        overviews=(),
    )
    _, prof = read_out(out)
    assert prof["blockxsize"] == 512 and prof["blockysize"] == 512 and prof["overviews"] == []


@pytest.mark.parametrize("merge", ["center", "cosine"])
def test_column_stripes_match_single_stripe(tmp_path, merge):
    data = scene(150, 300, seed=3)
    p = write_tif(tmp_path / "s.tif", data)
    net = ConvNet(seed=2)
    kw = dict(
        num_classes=3,
        tile_size=48,
        stride=32,
        block_size=32,
        progress=False,
        write_probabilities=True,
        merge=merge,
    )
    s1, s2 = {}, {}
    a = predict_raster(p, net, tmp_path / "a.tif", stats=s1, **kw)
    b = predict_raster(p, net, tmp_path / "b.tif", stats=s2, max_buffer_mb=0.05, **kw)
    assert s1["stripes"] == 1 and s2["stripes"] >= 3
    np.testing.assert_array_equal(read_out(a)[0], read_out(b)[0])


def test_cosine_close_to_single_pass(tmp_path):
    h, w = 200, 260
    data = scene(h, w, seed=1)
    p = write_tif(tmp_path / "s.tif", data)
    net = ConvNet(seed=1)
    out = predict_raster(
        p,
        net,
        tmp_path / "o.tif",
        num_classes=3,
        tile_size=64,
        stride=40,
        merge="cosine",
        write_probabilities=True,
        progress=False,
        block_size=64,
    )
    arr, _ = read_out(out)
    ref = torch.softmax(single_pass(net, data, 64), 0)
    agree = (arr[0] == ref.argmax(0).numpy()).mean()
    assert agree > 0.995
    err = np.abs(arr[1:] / 254.0 - ref.numpy())
    assert err.mean() < 2e-3 and err.max() < 0.2
    # and the keep-centre merge differs from cosine somewhere only near ties (sanity: not identical
    # file content is allowed, but the argmax maps must agree almost everywhere)


def test_binary_sigmoid_and_uint16_widening(tmp_path):
    data = scene(40, 41, c=2)
    p = write_tif(tmp_path / "s.tif", data)
    net1 = ConvNet(c_in=2, k=1)
    out = predict_raster(
        p,
        net1,
        tmp_path / "b.tif",
        num_classes=1,
        tile_size=32,
        stride=24,
        progress=False,
        write_probabilities=True,
    )
    arr, prof = read_out(out)
    ref = torch.sigmoid(net1(torch.from_numpy(data.astype(np.float32))[None]))[0, 0].detach()
    np.testing.assert_array_equal(arr[0], (ref > 0.5).numpy().astype(np.uint8))
    assert prof["count"] == 2
    net300 = ConvNet(c_in=2, k=300)
    out = predict_raster(
        p, net300, tmp_path / "w.tif", num_classes=300, tile_size=32, stride=24, progress=False
    )
    arr, prof = read_out(out)
    assert prof["dtype"] == "uint16" and prof["nodata"] == 65535
    ref = net300(torch.from_numpy(data.astype(np.float32))[None])[0].argmax(0).numpy()
    np.testing.assert_array_equal(arr[0], ref)


# -- nodata ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("merge", ["center", "cosine"])
def test_nodata_propagated_and_empty_tiles_skipped(tmp_path, merge):
    h, w = 130, 170
    data = scene(h, w, seed=4)
    data[2, 10:20, 30:50] = 0  # nodata in one band only
    data[:, 60:, 100:] = 0  # everywhere-nodata corner (covers whole tiles)
    p = write_tif(tmp_path / "s.tif", data, nodata=0)
    calls = []

    def fn(x):
        calls.append(x.shape[0])
        return ConvNet()(x)

    stats = {}
    out = predict_raster(
        p,
        fn,
        tmp_path / "o.tif",
        num_classes=3,
        tile_size=32,
        stride=24,
        progress=False,
        merge=merge,
        write_probabilities=True,
        stats=stats,
    )
    arr, prof = read_out(out)
    invalid = (data == 0).any(axis=0)
    assert prof["nodata"] == 255
    assert (arr[:, invalid] == 255).all()
    assert (arr[0, ~invalid] < 3).all() and (arr[1:, ~invalid] <= 254).all()
    assert stats["tiles_skipped"] > 0 and sum(calls) == stats["tiles"] - stats["tiles_skipped"]


def test_source_valid_mask_and_boundless_read(tmp_path):
    data = scene(20, 30, c=3)
    data[1, 5, 7] = 0
    p = write_tif(tmp_path / "s.tif", data, nodata=0)
    with open_source(p) as src:
        x, v = src.read_with_mask((-2, -3, 10, 10))
        assert x.shape == (3, 10, 10) and x.dtype == np.float32
        np.testing.assert_array_equal(x[:, 3:, 2:], data[:, :7, :8].astype(np.float32))
        assert (x[:, :3] == 0).all() and not v[:3].any() and not v[:, :2].any()
        assert not v[3 + 5, 2 + 7] and v[3:, 2:].sum() == 7 * 8 - 1
        np.testing.assert_array_equal(src.valid_mask((25, 15, 10, 10))[:5, :5], True)
        assert not src.valid_mask((25, 15, 10, 10))[5:].any()
        np.testing.assert_array_equal(src.read((0, 0, 30, 20)), data.astype(np.float32))


# -- Sentinel-2 folder input --------------------------------------------------------------------
def write_s2_folder(folder: Path, h10: int, w10: int, suffix: bool, seed: int = 0) -> np.ndarray:
    """Per-band files, B11/B12 at 20 m; returns the nearest-upsampled 6-band stack at 10 m."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    stack = []
    for b in ["B02", "B03", "B04", "B08", "B11", "B12"]:
        name = f"T50HMK_20230815T022551_{b}" + (("_10m" if b < "B09" else "_20m") if suffix else "")
        if b in ("B11", "B12"):
            d20 = rng.integers(100, 5000, size=(1, h10 // 2, w10 // 2)).astype(np.uint16)
            write_tif(folder / f"{name}.tif", d20, res=20.0)
            stack.append(np.repeat(np.repeat(d20, 2, axis=1), 2, axis=2))
        else:
            d10 = rng.integers(100, 5000, size=(1, h10, w10)).astype(np.uint16)
            write_tif(folder / f"{name}.tif", d10)
            stack.append(d10)
    (folder / "T50HMK_20230815T022551_B02_10m.tif.aux.xml").write_text("<x/>")  # ignored sidecar
    return np.concatenate(stack)


@pytest.mark.parametrize("suffix", [True, False])
def test_sentinel2_folder_equals_stacked_geotiff(tmp_path, suffix):
    h, w = 90, 110
    stack = write_s2_folder(tmp_path / "s2", h, w, suffix)
    tif = write_tif(tmp_path / "stack.tif", stack)
    net = ConvNet()
    kw = dict(num_classes=3, tile_size=32, stride=24, progress=False, write_probabilities=True)
    with open_source(tmp_path / "s2", resampling="nearest") as src:
        assert src.count == 6 and src.band_names[-1] == "B12"
        assert (src.width, src.height) == (w, h) and src.transform.a == 10.0
        np.testing.assert_array_equal(src.read((0, 0, w, h)), stack.astype(np.float32))
        a = predict_raster(src, net, tmp_path / "a.tif", **kw)
    b = predict_raster(tif, net, tmp_path / "b.tif", **kw)
    np.testing.assert_array_equal(read_out(a)[0], read_out(b)[0])


def test_sentinel2_folder_bilinear_windows_match_full_read(tmp_path):
    h, w = 64, 80
    write_s2_folder(tmp_path / "s2", h, w, suffix=True)
    f20 = next((tmp_path / "s2").glob("*B11*"))
    with rasterio.open(f20) as ds:  # independent path: GDAL RasterIO resampling of the full band
        full = ds.read(1, out_shape=(h, w), resampling=rasterio.enums.Resampling.bilinear)
    with open_source(tmp_path / "s2") as src:
        got = np.concatenate([src.read((0, r, w, 16))[4] for r in range(0, h, 16)])
    # interior agrees with GDAL's full-band bilinear upsampling; windowing adds no seams
    np.testing.assert_allclose(got[2:-2, 2:-2], full[2:-2, 2:-2], atol=1.0)


# -- bad inputs -----------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors(tmp_path):
    data = scene(20, 20)
    nocrs = tmp_path / "nocrs.tif"
    with rasterio.open(
        nocrs, "w", driver="GTiff", dtype="uint16", count=6, width=20, height=20
    ) as d:
        d.write(data)
    with pytest.raises(RasterInputError, match=r"nocrs\.tif.*no CRS"):
        open_source(nocrs)
    good = write_tif(tmp_path / "good.tif", data)
    with pytest.raises(RasterInputError, match=r"good\.tif has 6 bands but the model expects 9"):
        open_source(good, expected_bands=9)
    with pytest.raises(RasterInputError, match=r"good\.tif has 6 bands"):
        open_source(good, bands=["B02", "B03"])
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00 this is not a tiff")
    with pytest.raises(RasterInputError, match=r"cannot read raster .*broken\.tif"):
        open_source(bad)
    with pytest.raises(RasterInputError, match="does not exist"):
        open_source(tmp_path / "nope.tif")
    write_s2_folder(tmp_path / "s2", 20, 20, suffix=True)
    next((tmp_path / "s2").glob("*B08*")).unlink()
    with pytest.raises(RasterInputError, match=r"missing Sentinel-2 band file\(s\) for \['B08'\]"):
        open_source(tmp_path / "s2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RasterInputError, match="no Sentinel-2 band files"):
        open_source(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"predict_fn must return .*\(2, 3, 16, 16\)"):
        predict_raster(
            good,
            lambda x: x[:, :2],
            tmp_path / "o.tif",
            num_classes=3,
            tile_size=16,
            stride=16,
            batch_size=2,
            progress=False,
        )
    assert not (tmp_path / "o.tif").exists()


def test_interrupted_write_leaves_no_file(tmp_path):
    p = write_tif(tmp_path / "s.tif", scene(100, 100))
    out = tmp_path / "o.tif"
    out_prev = tmp_path / "keep.tif"
    out_prev.write_bytes(b"old")
    n = {"calls": 0}

    def flaky(x):
        n["calls"] += 1
        if n["calls"] == 3:
            raise RuntimeError("boom mid-way")
        return ConvNet()(x)

    for target in (out, out_prev):
        n["calls"] = 0
        with pytest.raises(RuntimeError, match="boom"):
            predict_raster(
                p,
                flaky,
                target,
                num_classes=3,
                tile_size=32,
                stride=24,
                batch_size=2,
                block_size=16,
                progress=False,
            )
    assert not out.exists()
    assert out_prev.read_bytes() == b"old"  # an existing file is not clobbered by a failed run
    assert sorted(f.name for f in tmp_path.iterdir()) == ["keep.tif", "s.tif"]


# -- memory ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_peak_memory_does_not_grow_with_scene(tmp_path):
    def peak(n: int) -> int:
        rng = np.random.default_rng(0)
        p = tmp_path / f"s{n}.tif"
        prof = dict(
            driver="GTiff",
            dtype="uint16",
            count=2,
            width=n,
            height=n,
            crs=CRS,
            transform=from_origin(0, 0, 10, 10),
            tiled=True,
            blockxsize=256,
            blockysize=256,
        )
        with rasterio.open(p, "w", **prof) as dst:  # write in blocks: never hold the scene
            for r in range(0, n, 256):
                blk = rng.integers(0, 9000, size=(2, 256, n), dtype=np.uint16)
                dst.write(blk, window=rasterio.windows.Window(0, r, n, 256))
        conv = torch.nn.Conv2d(2, 2, 1)
        tracemalloc.start()
        with torch.inference_mode():
            predict_raster(
                p,
                conv,
                tmp_path / f"o{n}.tif",
                num_classes=2,
                tile_size=256,
                stride=224,
                batch_size=4,
                progress=False,
                max_buffer_mb=1,
                overviews=(2, 4),
            )
        _, pk = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return pk

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the op is trivial; avoid OpenMP spin on a shared box
    try:
        small, large = peak(1024), peak(4096)
    finally:
        torch.set_num_threads(threads)
    # 16x more pixels, (nearly) the same peak: bounded by tiles x batch + one stripe buffer
    assert large < 1.25 * small + 2**20, (small, large)
    assert large < 16 * 2**20


@pytest.mark.parametrize("h,w", [(1, 1), (5, 7), (2, 300), (37, 45), (600, 520)])
def test_overview_factors_for_tiny_scenes(tmp_path, h, w):
    """GDAL refuses overview levels that do not shrink (a 5x7 scene at 16x); they are dropped."""
    from geoemb.inference.writer import build_overviews, usable_overview_factors

    p = write_tif(tmp_path / "c.tif", np.zeros((1, h, w), dtype=np.uint8))
    kept = usable_overview_factors(w, h, (2, 4, 8, 16))
    build_overviews(p, (16, 2, 8, 4))
    with rasterio.open(p) as ds:
        sizes = [(ds.width, ds.height)]
        for f in kept:
            sizes.append((-(-w // f), -(-h // f)))
        assert len(ds.overviews(1)) == len(kept)
    assert all(a[0] > b[0] or a[1] > b[1] for a, b in zip(sizes, sizes[1:]))
    if min(h, w) >= 16:
        assert kept == [2, 4, 8, 16]
