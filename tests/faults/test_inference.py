"""Fault injection for gridded inference: NaN/inf pixels, output == input, truncated and corrupt
GeoTIFFs, kill -9, concurrent runs, degenerate scenes and mismatched inputs.

Each test asserts a correct result or one clear geoemb error naming the file, with nothing written
under the output name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import geoemb
from geoemb.errors import GeoembError, InputError, OutputError
from geoemb.inference import RasterInputError, open_source, predict_raster
from tests.inference.inference_helpers import (
    ConvNet,
    GapNet,
    read_out,
    scene,
    single_pass,
    write_tif,
)

pytestmark = pytest.mark.faults

KW = dict(num_classes=3, progress=False)
CRS_ = "EPSG:32750"


class Recorder:
    """Wraps a net; records whether any input it saw was non-finite and how often it ran."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.net, self.calls, self.nonfinite = net, 0, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.nonfinite += int((~torch.isfinite(x)).sum())
        return self.net(x)


def leftovers(folder: Path, stem: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{stem}."))


# -- NaN / inf pixels ---------------------------------------------------------------------------
def float_scene_with_holes(h: int = 40, w: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """float32 scene with NaN / +inf / -inf in single bands; returns (data, invalid (h, w))."""
    data = scene(h, w).astype(np.float32)
    data[0, 3, 4] = np.nan
    data[2, 10, 11:14] = np.nan
    data[5, 20, 30] = np.inf
    data[1, 33, 7] = -np.inf
    data[:, 25:27, 40:43] = np.nan  # all bands
    return data, ~np.isfinite(data).all(axis=0)  # invalid if ANY band is non-finite


@pytest.mark.parametrize("declared", [None, "nan"])
@pytest.mark.parametrize("probs", [False, True])
def test_nonfinite_pixels_never_reach_model_and_become_nodata(tmp_path, declared, probs):
    data, invalid = float_scene_with_holes()
    nodata = float("nan") if declared else None
    p = write_tif(tmp_path / "s.tif", data, nodata=nodata)
    net = GapNet()
    fn = Recorder(net)
    out = predict_raster(
        p, fn, tmp_path / "o.tif", tile_size=64, stride=64, write_probabilities=probs, **KW
    )
    arr, prof = read_out(out)
    assert fn.calls == 1 and fn.nonfinite == 0  # the fill happened before the forward pass
    assert prof["nodata"] == 255
    np.testing.assert_array_equal(arr[:, invalid], 255)  # nodata exactly at non-finite pixels
    assert (arr[:, ~invalid] != 255).all()
    # oracle: the same single tile with the invalid pixels at 0 (the scene-edge padding value)
    ref = single_pass(net, np.where(invalid[None], 0.0, data).astype(np.float32), 64)
    np.testing.assert_array_equal(arr[0][~invalid], ref.argmax(0).numpy()[~invalid])
    assert len(np.unique(arr[0][~invalid])) > 1  # the oracle is not trivially class 0
    if probs:
        np.testing.assert_allclose(
            arr[1:, ~invalid] / 254.0, torch.softmax(ref, 0).numpy()[:, ~invalid], atol=0.003
        )


@pytest.mark.parametrize("merge", ["center", "cosine"])
def test_nonfinite_fill_leaks_no_more_than_declared_nodata(tmp_path, merge):
    """NaN pixels give bit-for-bit the result of the same pixels declared nodata (value 0)."""
    data, invalid = float_scene_with_holes(90, 110)
    a = write_tif(tmp_path / "nan.tif", data)
    zero = np.where(invalid[None], 0.0, data).astype(np.float32)
    b = write_tif(tmp_path / "zero.tif", zero, nodata=0)
    kw = dict(KW, tile_size=32, stride=24, merge=merge, write_probabilities=True)
    ra = read_out(predict_raster(a, ConvNet(), tmp_path / "a.tif", **kw))[0]
    rb = read_out(predict_raster(b, ConvNet(), tmp_path / "b.tif", **kw))[0]
    np.testing.assert_array_equal(ra, rb)
    np.testing.assert_array_equal(ra[:, invalid], 255)


def test_int_nodata_value_does_not_reach_model(tmp_path):
    """A declared nodata of -9999 is an invalid pixel like any other: the model sees 0."""
    data = scene(60, 70).astype(np.int16)
    data[:, 20:23, 30:34] = -9999
    data[4, 50, 5] = -9999
    a = write_tif(tmp_path / "a.tif", data, nodata=-9999)
    b = write_tif(tmp_path / "b.tif", np.where(data == -9999, 0, data).astype(np.int16), nodata=0)
    kw = dict(KW, tile_size=32, stride=24, write_probabilities=True)
    fn = Recorder(GapNet())
    ra = read_out(predict_raster(a, fn, tmp_path / "oa.tif", **kw))[0]
    rb = read_out(predict_raster(b, GapNet(), tmp_path / "ob.tif", **kw))[0]
    np.testing.assert_array_equal(ra, rb)
    assert (ra[:, (data == -9999).any(0)] == 255).all()


def test_float64_values_beyond_float32_are_invalid(tmp_path):
    data = scene(30, 30).astype(np.float64)
    data[1, 5, 6] = 1e300  # finite in the file, inf once read as float32
    fn = Recorder(ConvNet())
    p = write_tif(tmp_path / "s.tif", data)
    arr = read_out(predict_raster(p, fn, tmp_path / "o.tif", tile_size=32, stride=32, **KW))[0]
    assert fn.nonfinite == 0 and arr[0, 5, 6] == 255 and (arr[0] != 255).sum() == 30 * 30 - 1


@pytest.mark.parametrize("kind", ["nan", "nodata"])
def test_whole_scene_invalid_warns_and_writes_nodata(tmp_path, kind):
    if kind == "nan":
        p = write_tif(tmp_path / "s.tif", np.full((6, 30, 40), np.nan, dtype=np.float32))
    else:
        p = write_tif(tmp_path / "s.tif", np.zeros((6, 30, 40), dtype=np.uint16), nodata=0)
    fn = Recorder(ConvNet())
    with pytest.warns(UserWarning, match=r"s\.tif.*(nodata|non-finite)"):
        out = predict_raster(p, fn, tmp_path / "o.tif", tile_size=16, stride=16, **KW)
    assert fn.calls == 0 and (read_out(out)[0] == 255).all()


def test_model_returning_nan_on_valid_pixels_is_an_error(tmp_path):
    p = write_tif(tmp_path / "s.tif", scene(40, 40))

    def broken(x):
        y = ConvNet()(x)
        y[:, :, 5, 5] = float("nan")
        return y

    with pytest.raises(GeoembError, match=r"non-finite.*s\.tif"):
        predict_raster(p, broken, tmp_path / "o.tif", tile_size=32, stride=24, **KW)
    assert not (tmp_path / "o.tif").exists() and not leftovers(tmp_path, "o")


# -- output == input ----------------------------------------------------------------------------
def _refused(src, out, tmp_path, match):
    fn = Recorder(ConvNet())
    with pytest.raises(OutputError, match=match):
        predict_raster(src, fn, out, tile_size=16, stride=16, **KW)
    assert fn.calls == 0  # refused before any model work


@pytest.mark.parametrize("spelling", ["same", "relative", "dot", "dotdot", "symlink", "hardlink"])
def test_output_resolving_to_input_is_refused(tmp_path, monkeypatch, spelling):
    p = write_tif(tmp_path / "scene.tif", scene(20, 20))
    before = p.read_bytes()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    out = {
        "same": p,
        "relative": Path("scene.tif"),
        "dot": Path("./scene.tif"),
        "dotdot": Path("sub/../scene.tif"),
        "symlink": tmp_path / "link.tif",
        "hardlink": tmp_path / "hard.tif",
    }[spelling]
    if spelling == "symlink":
        out.symlink_to(p)
    if spelling == "hardlink":
        os.link(p, out)
    src = "scene.tif" if spelling == "relative" else p
    _refused(src, out, tmp_path, r"scene\.tif.*input")
    assert p.read_bytes() == before


def test_output_into_band_folder_is_refused(tmp_path):
    from tests.inference.test_inference import write_s2_folder

    folder = tmp_path / "s2"
    write_s2_folder(folder, 20, 20, suffix=True)
    band = next(folder.glob("*B08*"))
    before = band.read_bytes()
    _refused(folder, band, tmp_path, r"B08.*input")  # a band file
    link = tmp_path / "b.tif"
    link.symlink_to(band)
    _refused(folder, link, tmp_path, r"B08.*input")  # a symlink to one
    _refused(folder, folder / "T50HMK_20230815T022551_B05_10m.tif", tmp_path, "band")  # would
    assert band.read_bytes() == before  # be read as a band by the next run
    # any other name inside the folder is fine, and the folder still reads the same afterwards
    kw = dict(KW, tile_size=16, stride=16)
    a = predict_raster(folder, ConvNet(), folder / "prediction.tif", **kw)
    b = predict_raster(folder, ConvNet(), tmp_path / "again.tif", **kw)
    np.testing.assert_array_equal(read_out(a)[0], read_out(b)[0])


def test_output_directory_or_file_parent_refused_before_work(tmp_path):
    p = write_tif(tmp_path / "scene.tif", scene(20, 20))
    (tmp_path / "outdir").mkdir()
    _refused(p, tmp_path / "outdir", tmp_path, r"outdir.*existing directory")
    _refused(p, tmp_path / "scene.tif" / "o.tif", tmp_path, r"scene\.tif.*not a directory")


def test_output_onto_a_file_the_input_reads_is_refused(tmp_path):
    """A VRT input reads its source GeoTIFF: writing onto that source destroys the input too."""
    tif = write_tif(tmp_path / "data.tif", scene(20, 30))
    vrt = tmp_path / "scene.vrt"
    vrt.write_text(
        '<VRTDataset rasterXSize="30" rasterYSize="20"><SRS>EPSG:32750</SRS>'
        "<GeoTransform>300000,10,0,8000000,0,-10</GeoTransform>"
        + "".join(
            f'<VRTRasterBand dataType="UInt16" band="{b}"><SimpleSource>'
            '<SourceFilename relativeToVRT="1">data.tif</SourceFilename>'
            f"<SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
            for b in range(1, 7)
        )
        + "</VRTDataset>"
    )
    before = tif.read_bytes()
    _refused(vrt, tif, tmp_path, r"data\.tif.*input")
    assert tif.read_bytes() == before


def test_check_output_without_opening_the_source(tmp_path):
    from geoemb.inference import check_output

    p = write_tif(tmp_path / "scene.tif", scene(10, 10))
    with pytest.raises(OutputError, match="input"):
        check_output(tmp_path / "." / "scene.tif", p)
    with pytest.raises(OutputError, match="names a directory"):
        check_output(f"{tmp_path}/results/", p)
    assert check_output(tmp_path / "new" / "o.tif", p) == (tmp_path / "new" / "o.tif").resolve()


# -- truncated / corrupt GeoTIFFs ---------------------------------------------------------------
def _tiled(tmp_path: Path, **extra) -> Path:
    return write_tif(
        tmp_path / "full.tif",
        scene(100, 120),
        tiled=True,
        blockxsize=32,
        blockysize=32,
        compress="deflate",
        **extra,
    )


@pytest.mark.parametrize("layout", ["tiled", "strips"])
@pytest.mark.parametrize("cut", [8, 200, 0.05, 0.3, 0.7, 0.999])
@pytest.mark.timeout(60)
def test_truncated_geotiff_is_one_clear_error(tmp_path, layout, cut):
    full = (
        _tiled(tmp_path) if layout == "tiled" else write_tif(tmp_path / "full.tif", scene(100, 120))
    )
    b = full.read_bytes()
    n = cut if isinstance(cut, int) else int(len(b) * cut)
    t = tmp_path / "trunc.tif"
    t.write_bytes(b[:n])
    fn = Recorder(ConvNet())
    threads = threading.active_count()
    with pytest.raises(RasterInputError, match=r"trunc\.tif") as ei:
        predict_raster(t, fn, tmp_path / "o.tif", tile_size=32, stride=24, batch_size=2, **KW)
    assert fn.calls == 0, "a truncated file is found at open, before any model work"
    assert isinstance(ei.value, InputError)
    assert not (tmp_path / "o.tif").exists() and not leftovers(tmp_path, "o")
    assert threading.active_count() == threads


def _corrupt_block(path: Path, out: Path, bx: int, by: int) -> None:
    with rasterio.open(path) as ds:
        off = int(ds.get_tag_item(f"BLOCK_OFFSET_{bx}_{by}", "TIFF", bidx=1))
        size = int(ds.get_tag_item(f"BLOCK_SIZE_{bx}_{by}", "TIFF", bidx=1))
    b = bytearray(path.read_bytes())
    b[off + 4 : off + size - 4] = np.random.default_rng(0).bytes(size - 8)
    out.write_bytes(bytes(b))


@pytest.mark.parametrize("prefetch", [True, False])
@pytest.mark.timeout(60)
def test_corrupt_block_is_one_clear_error_naming_file_and_window(tmp_path, prefetch):
    bad = tmp_path / "bad.tif"
    _corrupt_block(_tiled(tmp_path), bad, 2, 2)  # block rows 64:96, cols 64:96
    fn = Recorder(ConvNet())
    threads = threading.active_count()
    with pytest.raises(RasterInputError, match=r"bad\.tif.*window.*rows") as ei:
        predict_raster(
            bad,
            fn,
            tmp_path / "o.tif",
            tile_size=32,
            stride=24,
            batch_size=2,
            prefetch=prefetch,
            **KW,
        )
    assert "IReadBlock" in str(ei.value) or "TIFFRead" in str(ei.value)  # GDAL's reason kept
    assert 0 < fn.calls  # found at read time, after some tiles ran
    assert not (tmp_path / "o.tif").exists() and not leftovers(tmp_path, "o")
    time.sleep(0.05)
    assert threading.active_count() == threads  # prefetch thread joined


def test_truncated_band_file_in_folder_names_that_file(tmp_path):
    from tests.inference.test_inference import write_s2_folder

    folder = tmp_path / "s2"
    write_s2_folder(folder, 64, 64, suffix=True)
    f = next(folder.glob("*B04*"))
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(RasterInputError, match=r"B04"):
        predict_raster(folder, ConvNet(), tmp_path / "o.tif", tile_size=32, stride=32, **KW)
    assert not (tmp_path / "o.tif").exists()


# -- degenerate and mismatched inputs -----------------------------------------------------------
@pytest.mark.parametrize("h,w", [(1, 1), (5, 7), (3, 40)])
def test_scene_smaller_than_tile(tmp_path, h, w):
    data = scene(h, w)
    p = write_tif(tmp_path / "s.tif", data)
    net = ConvNet()
    arr, prof = read_out(predict_raster(p, net, tmp_path / "o.tif", tile_size=32, stride=24, **KW))
    assert (prof["width"], prof["height"]) == (w, h)
    np.testing.assert_array_equal(arr[0], single_pass(net, data, 32).argmax(0).numpy())


def test_empty_file_and_zero_size_source(tmp_path):
    from geoemb.inference import RasterSource

    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(RasterInputError, match=r"empty\.tif"):
        predict_raster(tmp_path / "empty.tif", ConvNet(), tmp_path / "o.tif", **KW)

    class Empty(RasterSource):
        path, crs, width, height, count, nodata, band_names = Path("x"), CRS_, 0, 5, 6, None, []
        transform = rasterio.transform.from_origin(0, 0, 10, 10)
        profile = {}

    with pytest.raises(RasterInputError, match=r"x.*0x5"):
        predict_raster(Empty(), ConvNet(), tmp_path / "o.tif", **KW)
    assert not (tmp_path / "o.tif").exists()


def test_band_count_mismatch_is_an_input_error_before_work(tmp_path):
    p = write_tif(tmp_path / "one.tif", scene(20, 20, c=1))
    fn = Recorder(ConvNet(c_in=6))
    with pytest.raises(RasterInputError, match=r"one\.tif has 1 band.* expects 6"):
        predict_raster(p, fn, tmp_path / "o.tif", in_channels=6, **KW)
    with pytest.raises(InputError, match=r"one\.tif has 1 bands but the model expects 6"):
        open_source(p, expected_bands=6)
    assert fn.calls == 0


def test_complex_dtype_refused(tmp_path):
    data = (scene(10, 10, c=2) + 1j).astype(np.complex64)
    p = write_tif(tmp_path / "c.tif", data)
    with pytest.raises(RasterInputError, match=r"c\.tif.*complex64"):
        open_source(p)


@pytest.mark.parametrize("how", ["shifted", "crs", "smaller"])
def test_band_folder_with_mismatched_grids_refused(tmp_path, how):
    from tests.inference.test_inference import write_s2_folder

    folder = tmp_path / "s2"
    write_s2_folder(folder, 40, 40, suffix=True)
    f = next(folder.glob("*B03*"))
    data = rasterio.open(f).read()
    f.unlink()
    if how == "shifted":  # same size and CRS, 1 km east: half of B03 has no data on B02's grid
        with rasterio.open(
            f,
            "w",
            driver="GTiff",
            dtype="uint16",
            count=1,
            width=40,
            height=40,
            crs=CRS_,
            transform=rasterio.transform.from_origin(301000.0, 8000000.0, 10, 10),
        ) as d:
            d.write(data)
    elif how == "crs":
        write_tif(f, data, crs="EPSG:32633")
    else:
        write_tif(f, data[:, :30, :30])
    with pytest.raises(RasterInputError, match=r"B03.*(grid|CRS|bounds)"):
        open_source(folder)


def test_missing_band_in_folder(tmp_path):
    from tests.inference.test_inference import write_s2_folder

    write_s2_folder(tmp_path / "s2", 20, 20, suffix=False)
    next((tmp_path / "s2").glob("*B11*")).unlink()
    with pytest.raises(RasterInputError, match=r"missing Sentinel-2 band.*B11"):
        predict_raster(tmp_path / "s2", ConvNet(), tmp_path / "o.tif", **KW)


# -- kill -9 and concurrent runs ----------------------------------------------------------------
CHILD = r"""
import os, sys, time
import torch
import geoemb.inference.predict as P

scene, out, seed, mode, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
torch.manual_seed(seed)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                          torch.nn.Conv2d(4, 3, 3, padding=1))
calls = [0]

def fn(x):
    calls[0] += 1
    if mode == "tiles" and calls[0] == 8:
        print("PAUSED", flush=True)
        time.sleep(120)
    if mode == "slow":
        time.sleep(0.01)
    return net(x / 4000.0)

if mode == "overviews":
    orig = P.build_overviews
    def hang(path, factors):
        orig(path, factors)
        print("PAUSED", flush=True)  # complete temp file, not yet renamed
        time.sleep(120)
    P.build_overviews = hang
if go != "-":
    print("READY", flush=True)
while go != "-" and not os.path.exists(go):
    time.sleep(0.01)
P.predict_raster(scene, fn, out, num_classes=3, tile_size=32, stride=24, batch_size=4,
                 block_size=16, progress=False)
print("DONE", flush=True)
"""


def _child(tmp_path: Path, scene_p: Path, out: Path, seed: int, mode: str, go: str = "-"):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    src_dir = str(Path(geoemb.__file__).parents[1])
    env = dict(os.environ, PYTHONPATH=src_dir, OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(script), str(scene_p), str(out), str(seed), mode, go]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _reference(scene_p: Path, out: Path, seed: int) -> np.ndarray:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 3, padding=1)
    )
    predict_raster(
        scene_p,
        lambda x: net(x / 4000.0),
        out,
        num_classes=3,
        tile_size=32,
        stride=24,
        batch_size=4,
        block_size=16,
        progress=False,
    )
    return read_out(out)[0]


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", ["tiles", "overviews"])
def test_kill9_leaves_no_output_and_rerun_equals_uninterrupted(tmp_path, mode):
    scene_p = write_tif(tmp_path / "s.tif", scene(160, 200, c=3))
    out = tmp_path / "out" / "pred.tif"
    proc = _child(tmp_path, scene_p, out, 1, mode)
    line = proc.stdout.readline()
    assert line.strip() == "PAUSED", proc.stderr.read()
    assert [p for p in out.parent.iterdir() if p.name.startswith(".pred.")]  # mid-write
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert not out.exists()  # nothing under the final name
    ref = _reference(scene_p, tmp_path / "ref.tif", 1)
    rerun = _reference(scene_p, out, 1)  # rerun into the same folder, stale temp beside it
    np.testing.assert_array_equal(rerun, ref)
    assert out.read_bytes() == (tmp_path / "ref.tif").read_bytes()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_concurrent_runs_different_and_same_output(tmp_path):
    """Three runs at once: two into the same output (different models), one elsewhere."""
    scene_p = write_tif(tmp_path / "s.tif", scene(100, 120, c=3))
    refs = {s: _reference(scene_p, tmp_path / f"ref{s}.tif", s) for s in (1, 2)}
    assert not np.array_equal(refs[1], refs[2])
    go = tmp_path / "go"
    same, other = tmp_path / "same" / "p.tif", tmp_path / "other" / "p.tif"
    runs = [(same, 1), (same, 2), (other, 2)]
    procs = [_child(tmp_path, scene_p, o, s, "slow", str(go)) for o, s in runs]
    assert [p.stdout.readline().strip() for p in procs] == ["READY"] * 3
    go.write_text("")  # all three start together, once imported
    for p in procs:
        out, err = p.communicate(timeout=200)
        assert p.returncode == 0 and "DONE" in out, err
    np.testing.assert_array_equal(read_out(other)[0], refs[2])
    got = read_out(same)[0]  # one complete file from one of the two runs, never a mix
    assert np.array_equal(got, refs[1]) or np.array_equal(got, refs[2])
    assert not leftovers(same.parent, "p") and not leftovers(other.parent, "p")
