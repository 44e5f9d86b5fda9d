"""Name-based pairing and clear errors for bad Earth Surface Water inputs."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from geoemb.data.earth_surface_water import (
    DATASET_URL,
    SCENE_REGEX,
    TRUTH_REGEX,
    EarthSurfaceWater,
    EarthSurfaceWaterDataModule,
    ESWDataError,
    ESWNotFoundError,
    pair_split,
    resolve_dset_dir,
    scene_name_for,
    truth_name_for,
)
from geoemb.synthetic.earth_surface_water import write_scene_geotiff


def test_truth_name_rule_reference_examples():
    assert (
        truth_name_for("S2A_L2A_20190125_N0211_R034_6Bands_S1.tif")
        == "S2A_L2A_20190125_N0211_R034_S1_Truth.tif"
    )
    assert (
        truth_name_for("S2A_L2A_20190817_N0213_R089_6Bands_S4.tif")
        == "S2A_L2A_20190817_N0213_R089_S4_Truth.tif"
    )
    for name in [
        "S2B_L2A_20190225_N0211_R117_6Bands_S1.tif",
        "S2A_L2A_20190817_N0213_R089_6Bands_S12.tif",
    ]:
        assert re.match(SCENE_REGEX, name)
        assert re.match(TRUTH_REGEX, truth_name_for(name))
        assert scene_name_for(truth_name_for(name)) == name
        # the "equivalent rule" of the reference: parts[:-2] + parts[-1] + _Truth
        parts = name[:-4].split("_")
        assert truth_name_for(name) == "_".join(parts[:-2]) + "_" + parts[-1] + "_Truth.tif"


def _touch_layout(dset: Path, scene_names: list[str], truth_names: list[str]) -> None:
    for d in ("tra_scene", "tra_truth", "val_scene", "val_truth"):
        (dset / d).mkdir(parents=True, exist_ok=True)
    for n in scene_names:
        (dset / "tra_scene" / n).write_bytes(b"")
    for n in truth_names:
        (dset / "tra_truth" / n).write_bytes(b"")


def test_pairing_by_name_not_sorted_order(tmp_path):
    """S1 / S10 sort differently as scenes ('.' < '0') and truths ('_' > '0'): zip(sorted) mispairs."""
    scenes = [
        "S2A_L2A_20190817_N0213_R089_6Bands_S1.tif",
        "S2A_L2A_20190817_N0213_R089_6Bands_S10.tif",
        "S2B_L2A_20190225_N0211_R117_6Bands_S2.tif",
        "S2A_L2A_20190125_N0211_R034_6Bands_S3.tif",
    ]
    truths = [truth_name_for(n) for n in scenes]
    assert [truth_name_for(s) for s in sorted(scenes)] != sorted(truths)  # sorted-zip would fail
    rng = random.Random(0)
    rng.shuffle(scenes)
    rng.shuffle(truths)
    _touch_layout(tmp_path / "dset-s2", scenes, truths)
    (tmp_path / "dset-s2" / "tra_scene" / ".tmpfile.tmp.tif").write_bytes(b"")  # hidden: ignored
    pairs = pair_split(tmp_path / "dset-s2", "train")
    assert len(pairs) == 4
    for s, t in pairs:
        assert t.name == truth_name_for(s.name)
        assert s.parent.name == "tra_scene" and t.parent.name == "tra_truth"


def test_scene_without_truth_and_truth_without_scene(tmp_path):
    scenes = [
        "S2A_L2A_20190125_N0211_R034_6Bands_S1.tif",
        "S2A_L2A_20190125_N0211_R034_6Bands_S2.tif",
    ]
    truths = [
        "S2A_L2A_20190125_N0211_R034_S1_Truth.tif",
        "S2B_L2A_20190303_N0211_R065_S1_Truth.tif",
    ]
    _touch_layout(tmp_path / "dset-s2", scenes, truths)
    with pytest.raises(ESWDataError) as err:
        pair_split(tmp_path / "dset-s2", "train")
    msg = str(err.value)
    # both directions, each naming the file and the expected partner
    assert "S2A_L2A_20190125_N0211_R034_6Bands_S2.tif has no truth" in msg
    assert "S2A_L2A_20190125_N0211_R034_S2_Truth.tif" in msg
    assert "S2B_L2A_20190303_N0211_R065_S1_Truth.tif has no scene" in msg
    assert "S2B_L2A_20190303_N0211_R065_6Bands_S1.tif" in msg


def test_name_outside_grammar(tmp_path):
    _touch_layout(tmp_path / "dset-s2", ["my_scene.tif"], [])
    with pytest.raises(
        ESWDataError, match="my_scene.tif: name does not follow the ESW scene grammar"
    ):
        pair_split(tmp_path / "dset-s2", "train")


def test_missing_data_dir_says_where_to_get_it(tmp_path):
    for root in (tmp_path / "nope", tmp_path):
        with pytest.raises(ESWNotFoundError) as err:
            resolve_dset_dir(root)
        msg = str(err.value)
        assert DATASET_URL in msg and "data.synthetic=true" in msg and str(root) in msg
    dm = EarthSurfaceWaterDataModule(root=str(tmp_path / "nope"))
    with pytest.raises(ESWNotFoundError, match="data.synthetic=true"):
        dm.prepare_data()


def test_missing_split_folder(esw_copy):
    shutil.rmtree(esw_copy / "dset-s2" / "val_truth")
    with pytest.raises(ESWNotFoundError, match="val_truth"):
        pair_split(esw_copy / "dset-s2", "val")


def test_root_may_point_at_dset_s2(esw_root):
    assert resolve_dset_dir(esw_root) == resolve_dset_dir(esw_root / "dset-s2")
    ds = EarthSurfaceWater(esw_root / "dset-s2", "val")
    assert len(ds) == 2


def _first_pair(root: Path) -> tuple[Path, Path]:
    return pair_split(root / "dset-s2", "train")[0]


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_scene_without_crs(esw_copy):
    scene, _ = _first_pair(esw_copy)
    with rasterio.open(scene) as src:
        data = src.read()
    scene.unlink()
    with rasterio.open(
        scene,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=6,
        dtype="uint16",
    ) as dst:
        dst.write(data)
    with pytest.raises(ESWDataError) as err:
        EarthSurfaceWater(esw_copy, "train")
    assert str(scene) in str(err.value) and "no georeferencing" in str(err.value)


def test_wrong_band_count_scene_and_truth(esw_copy):
    scene, truth = _first_pair(esw_copy)
    with rasterio.open(scene) as src:
        prof, data = src.profile, src.read()
    prof.update(count=5)
    with rasterio.open(scene, "w", **prof) as dst:
        dst.write(data[:5])
    with pytest.raises(ESWDataError) as err:
        EarthSurfaceWater(esw_copy, "train")
    assert str(scene) in str(err.value) and "5 band(s); expected 6" in str(err.value)

    with rasterio.open(scene, "w", **{**prof, "count": 6}) as dst:
        dst.write(data)
    with rasterio.open(truth) as src:
        tprof, t = src.profile, src.read()
    with rasterio.open(truth, "w", **{**tprof, "count": 2}) as dst:
        dst.write(np.concatenate([t, t]))
    with pytest.raises(ESWDataError, match=r"Truth\.tif has 2 band\(s\); expected 1"):
        EarthSurfaceWater(esw_copy, "train")


def test_unreadable_file(esw_copy):
    _, truth = _first_pair(esw_copy)
    truth.write_bytes(b"this is not a GeoTIFF" * 10)
    with pytest.raises(ESWDataError) as err:
        EarthSurfaceWater(esw_copy, "train")
    assert "cannot read truth" in str(err.value) and str(truth) in str(err.value)


def test_scene_truth_grid_mismatch(esw_copy):
    scene, truth = _first_pair(esw_copy)
    with rasterio.open(truth) as src:
        prof, t = src.profile, src.read()
    prof["transform"] = prof["transform"] @ Affine.translation(5, 0)
    with rasterio.open(truth, "w", **prof) as dst:
        dst.write(t)
    with pytest.raises(ESWDataError, match="not on the same grid"):
        EarthSurfaceWater(esw_copy, "train")


def test_mask_scene_name_mismatch_in_datamodule(esw_copy):
    _, truth = _first_pair(esw_copy)
    truth.rename(truth.with_name(truth.name.replace("_S1_", "_S9_")))
    dm = EarthSurfaceWaterDataModule(root=str(esw_copy), patch_size=64)
    with pytest.raises(ESWDataError, match="has no truth"):
        dm.setup("fit")


def test_scene_smaller_than_chip_is_clear_error(esw_root):
    dm = EarthSurfaceWaterDataModule(root=str(esw_root), patch_size=512, stats_cache=False)
    with pytest.raises(ESWDataError) as err:
        dm.setup("fit")
    msg = str(err.value)
    assert "smaller than the 512x512 px chip" in msg and "patch_size" in msg
    assert "S2A_L2A_20190125_N0211_R034_6Bands_S1.tif" in msg


def test_small_scene_named_among_large(tmp_path):
    """Only the too-small scene is named (one tiny scene among normal ones)."""
    dset = tmp_path / "dset-s2"
    for split, zone, y0 in (("tra", 32633, 4_985_000.0), ("val", 32750, 6_470_000.0)):
        for k, size in ((1, 200), (2, 60)):
            name = f"S2A_L2A_20190125_N0211_R034_6Bands_S{k}.tif"
            write_scene_geotiff(
                dset / f"{split}_scene" / name,
                size,
                crs=f"EPSG:{zone}",
                origin=(400_000.0 + k * 5000, y0),
                seed=k,
                mask_path=dset / f"{split}_truth" / truth_name_for(name),
            )
    with pytest.raises(ESWDataError) as err:
        EarthSurfaceWater(tmp_path, "train", min_size_px=128)
    assert "_S2.tif" in str(err.value) and "_S1.tif" not in str(err.value)
