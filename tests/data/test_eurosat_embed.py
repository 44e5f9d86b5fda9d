"""EuroSAT-Embed loader + synthetic generator: formats, resampling, dequantisation, masks, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from geoemb.data import eurosat_embed as E
from geoemb.synthetic import eurosat_embed as S

ENCODERS = {"aef": (64, "uint8"), "olmoearth-nano": (128, "float32"), "tessera": (128, "uint8")}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors: one intra-op thread is much faster on the shared 2-core CI box (restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _write(path, arr, nodata=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    prof = dict(
        driver="GTiff", dtype=arr.dtype.name, count=arr.shape[0], height=arr.shape[1],
        width=arr.shape[2], crs="EPSG:32632", transform=from_origin(500000, 5000000, 10, 10),
        nodata=nodata,
    )  # fmt: skip
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(arr)


def test_layout_split_files_and_profiles(syn_root):
    for kind in ("eurosat", "eurosat-spatial"):
        names = {}
        for split in ("train", "val", "test"):
            lines = (syn_root / f"{kind}-{split}.txt").read_text().split()
            assert all(n.endswith(".jpg") for n in lines)
            names[split] = set(lines)
        assert not (names["train"] & names["test"]) and not (names["train"] & names["val"])
        assert sum(len(v) for v in names.values()) == 60
    assert (syn_root / S.MARKER).read_text().startswith("SYNTHETIC")
    # random and spatial test sets differ
    assert (syn_root / "eurosat-test.txt").read_text() != (
        syn_root / "eurosat-spatial-test.txt"
    ).read_text()
    for enc, (bands, dtype) in ENCODERS.items():
        with rasterio.open(syn_root / f"eurosat-{enc}/Forest/Forest_2.tif") as src:
            assert (src.count, src.dtypes[0], src.height, src.width) == (bands, dtype, 64, 64)
            assert src.profile["compress"].lower() == "zstd"
            assert src.crs.to_epsg() // 100 in (326, 327)
            assert abs(src.res[0] - 10) < 1e-6
            assert int(src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR", "2")) == (
                2 if dtype == "uint8" else 3
            )
        if enc == "aef":
            with rasterio.open(syn_root / f"eurosat-{enc}/Forest/Forest_2.tif") as src:
                assert src.read().max() <= 254


@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_dataset_reads_every_encoder(syn_root, encoder):
    bands = ENCODERS[encoder][0]
    ds = E.EuroSATEmbedDataset(syn_root, encoder, "train", "spatial")
    stems = [n[:-4] for n in (syn_root / "eurosat-spatial-train.txt").read_text().split()]
    assert ds.stems == stems and len(ds) == len(stems)
    item = ds[0]
    assert item["image"].shape == (bands, 64, 64) and item["image"].dtype == torch.float32
    assert (
        item["mask"].shape == (64, 64) and item["mask"].dtype == torch.bool and item["mask"].all()
    )
    assert item["label"].dtype == torch.long
    assert int(item["label"]) == E.CLASSES.index(stems[0].rsplit("_", 1)[0])
    assert ds.num_bands == bands
    assert list(E.CLASSES) == sorted(E.CLASSES)


@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_non_64_file_resampled_nearest(syn_root, encoder):
    path = syn_root / f"eurosat-{encoder}" / "AnnualCrop" / "AnnualCrop_1.tif"
    with rasterio.open(path) as src:
        assert (src.height, src.width) == S.ODD_SHAPE
        full = src.read().astype(np.float32)
    x, m = E.read_embedding(path, encoder)
    assert x.shape[1:] == (64, 64) and m.all()
    # oracle: GDAL nearest neighbour maps output row i to source row floor((i + 0.5) * 63 / 64)
    rows = np.floor((np.arange(64) + 0.5) * S.ODD_SHAPE[0] / 64).astype(int)
    np.testing.assert_array_equal(x, full[:, rows, :])


def test_dequantization_exact(syn_root):
    p = syn_root / "eurosat-aef/River/River_3.tif"
    with rasterio.open(p) as src:
        codes = src.read().astype(np.float64)
    q = codes - 127.0
    expect = np.sign(q) * (np.abs(q) / 127.5) ** 2
    raw, _ = E.read_embedding(p, "aef", "raw")
    deq, _ = E.read_embedding(p, "aef", "dequantized")
    np.testing.assert_array_equal(raw, codes.astype(np.float32))
    np.testing.assert_allclose(deq, expect, rtol=1e-6, atol=1e-9)
    assert deq.min() >= -((127 / 127.5) ** 2) - 1e-7 and deq.max() <= 1.0
    # codes 0, 127, 254 -> -(127/127.5)^2, 0, +(127/127.5)^2
    fmt = E.ENCODER_FORMATS["aef"][0]
    np.testing.assert_allclose(
        E.dequantize(np.array([0.0, 127.0, 254.0], np.float32), fmt),
        [-((127 / 127.5) ** 2), 0.0, (127 / 127.5) ** 2],
        rtol=1e-6,
    )
    t = syn_root / "eurosat-tessera/River/River_3.tif"
    with rasterio.open(t) as src:
        tcodes = src.read().astype(np.int16)
    tdeq, _ = E.read_embedding(t, "tessera", "dequantized")
    np.testing.assert_array_equal(tdeq, (tcodes - 128).astype(np.float32))
    o = syn_root / "eurosat-olmoearth-nano/River/River_3.tif"
    np.testing.assert_array_equal(
        E.read_embedding(o, "olmoearth-nano", "raw")[0],
        E.read_embedding(o, "olmoearth-nano", "dequantized")[0],
    )


def test_legacy_formats(syn_legacy):
    ds = E.EuroSATEmbedDataset(syn_legacy, "tessera", "test", "standard")
    item = ds[0]
    assert item["image"].shape == (512, 64, 64)  # 16x16 files resampled to 64x64
    ds2 = E.EuroSATEmbedDataset(syn_legacy, "olmoearth-tiny", "train", "spatial")
    assert ds2[0]["image"].shape == (192, 64, 64)
    with rasterio.open(syn_legacy / "eurosat-tessera/Forest/Forest_1.tif") as src:
        assert (src.count, src.dtypes[0], src.width) == (512, "float32", 16)


def test_mask_nan_and_nodata(tmp_path):
    arr = np.random.default_rng(0).normal(size=(128, 8, 8)).astype(np.float32)
    arr[:, 0, 0] = np.nan
    arr[5, 1, 1] = np.inf
    p = tmp_path / "nan.tif"
    _write(p, arr)
    x, m = E.read_embedding(p, "olmoearth-nano", size=None)
    assert x.shape == (128, 8, 8)
    assert not m[0, 0] and not m[1, 1] and m.sum() == 62
    assert np.isfinite(x).all() and (x[:, 0, 0] == 0).all()
    # declared nodata: a pixel is invalid when all its bands equal it
    codes = np.full((64, 4, 4), 100, np.uint8)
    codes[:, 2, 3] = 0
    codes[7, 0, 0] = 0  # one band equal to nodata only: still valid
    q = tmp_path / "nd.tif"
    _write(q, codes, nodata=0)
    x, m = E.read_embedding(q, "aef", size=None)
    assert not m[2, 3] and m[0, 0] and m.sum() == 15
    # all-nodata patch -> clear error naming the file
    _write(tmp_path / "all.tif", np.zeros((64, 4, 4), np.uint8), nodata=0)
    with pytest.raises(ValueError, match=r"all\.tif.*every pixel is nodata"):
        E.read_embedding(tmp_path / "all.tif", "aef")


def test_bad_inputs(tmp_path, syn_root):
    # band count contradicting the encoder
    bad = tmp_path / "bad.tif"
    _write(bad, np.zeros((32, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"bad\.tif.*32 bands of uint8 contradicts encoder 'aef'"):
        E.read_embedding(bad, "aef")
    with pytest.raises(ValueError, match="contradicts encoder 'tessera'"):
        E.read_embedding(bad, "tessera")
    # unreadable tif
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a tiff at all")
    with pytest.raises(OSError, match=r"cannot read EuroSAT-Embed GeoTIFF .*junk\.tif"):
        E.read_embedding(junk, "aef")
    # missing split file
    (tmp_path / "eurosat-aef").mkdir()
    with pytest.raises(
        FileNotFoundError, match=r"eurosat-spatial-train\.txt.*data\.synthetic=true"
    ):
        E.EuroSATEmbedDataset(tmp_path, "aef", "train", "spatial")
    # missing encoder directory / unknown encoder / bad values
    with pytest.raises(FileNotFoundError, match="eurosat-tessera"):
        E.EuroSATEmbedDataset(tmp_path, "tessera")
    with pytest.raises(ValueError, match="encoder='sentinel'"):
        E.EuroSATEmbedDataset(syn_root, "sentinel")
    with pytest.raises(ValueError, match="values='scaled'"):
        E.EuroSATEmbedDataset(syn_root, "aef", values="scaled")
    # split file naming a file that does not exist
    (tmp_path / "eurosat-train.txt").write_text("Forest_999.jpg\n")
    with pytest.raises(FileNotFoundError, match="Forest_999.tif"):
        E.EuroSATEmbedDataset(tmp_path, "aef", "train")
    (tmp_path / "eurosat-val.txt").write_text("Desert_1.jpg\n")
    with pytest.raises(ValueError, match=r"eurosat-val\.txt:1.*Desert_1"):
        E.EuroSATEmbedDataset(tmp_path, "aef", "val")


def test_ensure_generated_skips(tmp_path):
    """The evaluator-side helper (until the GeoPool evaluator reads ``data.source``)."""
    root = tmp_path / "syn"
    S.ensure_generated(root, n_per_class=5, encoders=("aef",))
    f = root / "eurosat-aef/Forest/Forest_1.tif"
    mtime = f.stat().st_mtime_ns
    S.ensure_generated(root, n_per_class=5, encoders=("aef",))
    assert f.stat().st_mtime_ns == mtime  # marker present -> skipped
    with pytest.raises(TypeError, match="unknown synthetic"):
        S.ensure_generated(root, n_per_clas=5)


def test_datamodule_stand_in_generated_once_keyed_and_read_back(tmp_path):
    from geoemb.data.source import MARKER

    kw = {"root": str(tmp_path / "real"), "encoder": "aef", "split": "spatial", "batch_size": 4,
          "synthetic": True, "synthetic_kwargs": {"n_per_class": 5}}  # fmt: skip
    dm = E.EuroSATEmbedDataModule(**kw)
    assert dm.data_source == "synthetic" and dm.source.data_source == "synthetic"
    folder = dm.check()
    assert folder.parent == tmp_path / "synthetic" / "eurosat_embed" and (folder / MARKER).is_file()
    assert dm.data_root == folder and E.is_synthetic(folder)
    f = folder / "eurosat-aef/Forest/Forest_1.tif"
    mtime = f.stat().st_mtime_ns
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b["image"].shape == (4, 64, 64, 64) and b["mask"].shape == (4, 64, 64)
    assert dm.num_bands == 64
    again = E.EuroSATEmbedDataModule(**kw)
    again.prepare_data()
    assert again.data_root == folder and f.stat().st_mtime_ns == mtime  # no regeneration
    # another encoder is another stand-in (keyed by the generator's arguments)
    other = E.EuroSATEmbedDataModule(**{**kw, "encoder": "olmoearth-nano"})
    assert other.source.synthetic_dir() != folder
    with pytest.raises(ValueError, match="unknown argument.*n_per_clas"):
        E.EuroSATEmbedDataModule(**{**kw, "synthetic_kwargs": {"n_per_clas": 5}}).check()


def test_missing_real_data_is_one_error_with_a_working_hint(tmp_path):
    missing = E.EuroSATEmbedDataModule(root=str(tmp_path / "nowhere"), encoder="aef")
    with pytest.raises(FileNotFoundError, match="data.synthetic=true") as err:
        missing.prepare_data()
    msg = str(err.value)
    assert "EuroSAT-Embed" in msg and "hf.co/datasets/isaaccorley/eurosat-embed" in msg
    assert str(tmp_path / "nowhere") in msg
    (tmp_path / "nowhere" / "eurosat-aef").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"missing eurosat-train\.txt"):
        missing.check()


def test_synthetic_root_holding_real_files_is_refused_untouched(tmp_path, syn_root):
    """Regression: ``synthetic_root`` (a config or checkpoint value) pointing at a real data root
    made the generator write its split files over the real ones."""
    real = tmp_path / "my_real_eurosat"
    real.mkdir()
    split = real / "eurosat-train.txt"
    split.write_text("Forest_1.jpg\n")
    dm = E.EuroSATEmbedDataModule(
        root=str(real), encoder="aef", synthetic=True, synthetic_root=str(real),
        synthetic_kwargs={"n_per_class": 5},
    )  # fmt: skip
    with pytest.raises(ValueError, match="refusing to generate into it"):
        dm.prepare_data()
    assert split.read_text() == "Forest_1.jpg\n" and sorted(os.listdir(real)) == [split.name]


def test_pool_dataset_streaming_matches_direct(syn_root):
    from geoemb.pooling import pool

    ds = E.EuroSATEmbedDataset(syn_root, "aef", "test", "standard")
    feats, y = E.pool_dataset(ds, ["mean", "stats"], batch_size=5, progress=False)
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    np.testing.assert_allclose(feats["stats"], pool(x, "stats").numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(feats["mean"], x.mean((2, 3)).numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(y, ds.labels)


def test_synthetic_signal_distributional_beats_mean(syn_root):
    """Planted signal: class pairs share means; std separates them (the paper's finding)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    def feats(split):
        ds = E.EuroSATEmbedDataset(syn_root, "olmoearth-nano", split, "standard")
        xs = [ds[i]["image"].numpy().reshape(128, -1) for i in range(len(ds))]
        return (
            np.stack([x.mean(1) for x in xs]),
            np.stack([np.concatenate([x.mean(1), x.std(1)]) for x in xs]),
            ds.labels,
        )

    mtr, str_, ytr = feats("train")
    mte, ste, yte = feats("test")

    def acc(a, b):
        s = StandardScaler().fit(a)
        return LogisticRegression(max_iter=2000).fit(s.transform(a), ytr).score(s.transform(b), yte)

    assert acc(str_, ste) > acc(mtr, mte)
    assert acc(str_, ste) > 0.5
