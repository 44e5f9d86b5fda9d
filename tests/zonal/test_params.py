"""Parameter objects: each knob is defined once — the CLI, the evaluator yaml and zonal_stats agree."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest
from omegaconf import OmegaConf

from geoemb.errors import InputError
from geoemb.zonal import (
    CensusAnalysis,
    PoolingSpec,
    RasterInputs,
    ZonalFilters,
    default_workers,
    zonal_stats,
)
from geoemb.zonal.cli import build_parser, run
from geoemb.zonal.params import split_knobs
from geoemb.zonal.sources import DECODES, DECODINGS, TileMeta, check_decode, decode_values
from tests.helpers import CONF_DIR


def _defaults(cls):
    return {f.name: f.default for f in dataclasses.fields(cls)}


@pytest.mark.parametrize(
    "node, cls", [("pooling", PoolingSpec), ("filters", ZonalFilters), ("analysis", CensusAnalysis)]
)
def test_evaluator_yaml_spells_the_dataclass_defaults(node, cls):
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "evaluation" / "zonal_stats.yaml"))
    assert cfg[node] == _defaults(cls)  # same keys, same defaults: nothing drifts


def test_cli_defaults_are_the_dataclass_defaults(tmp_path):
    args = build_parser().parse_args(["stats", "p.gpkg", "--tiles", "t.tif", "-o", "o.parquet"])
    f, p, r = ZonalFilters(), PoolingSpec(), RasterInputs()
    assert (args.land_column, args.max_land_km2, not args.keep_water, args.bbox) == (
        f.land_column, f.max_land_km2, f.drop_zero_land, f.bbox)  # fmt: skip
    assert (args.method, args.all_touched, args.workers, args.chunk_size) == (
        p.method, p.all_touched, p.num_workers, p.chunk_size)  # fmt: skip
    assert (args.decode, args.nodata, args.path_column) == (r.decode, r.nodata, r.path_column)
    a = CensusAnalysis()
    ev = build_parser().parse_args(["evaluate", "f.parquet", "-o", "out"])
    assert (ev.pca_k, ev.n_pcs, ev.folds) == (a.pca_k, a.n_pcs, a.n_splits)


def test_cli_mounts_under_a_top_level_command():
    top = argparse.ArgumentParser(prog="geoemb")
    sub = top.add_subparsers(dest="cmd", required=True)
    build_parser(sub)
    args = top.parse_args(["zonal", "pca-rgb", "f.parquet", "-o", "x.tif", "--resolution", "5"])
    assert args.cmd == "zonal" and args.zonal_cmd == "pca-rgb" and args.fn is run
    own = argparse.ArgumentParser(prog="x")
    assert build_parser(own) is own
    assert own.parse_args(["synthetic", "root"]).zonal_cmd == "synthetic"


def test_parameter_checks():
    with pytest.raises(InputError, match="bbox"):
        ZonalFilters(bbox=[1, 2, 3])
    with pytest.raises(InputError, match="W < E"):
        ZonalFilters(bbox=[10, 0, 5, 1])
    with pytest.raises(InputError, match="max_land_km2"):
        ZonalFilters(max_land_km2=0)
    assert ZonalFilters(land_column="none").land_column is None
    assert ZonalFilters(bbox=[-1, -2, 3, 4]).bbox == (-1.0, -2.0, 3.0, 4.0)
    with pytest.raises(InputError, match="num_workers"):
        PoolingSpec(num_workers=0)
    with pytest.raises(InputError, match="chunk_size"):
        PoolingSpec(chunk_size=0)
    assert PoolingSpec().workers == default_workers() and PoolingSpec(num_workers=3).workers == 3
    with pytest.raises(InputError, match="n_splits"):
        CensusAnalysis(n_splits=1)
    with pytest.raises(InputError, match="rgb_resolution"):
        CensusAnalysis(rgb_resolution=0)
    with pytest.raises(InputError, match="unknown value decode"):
        RasterInputs(decode="q127")
    with pytest.raises(InputError, match=r"evaluation\.filters: unknown key\(s\) \['max_land'\]"):
        ZonalFilters.from_config({"max_land": 3}, "evaluation.filters")
    assert PoolingSpec.from_config({"method": "stats"}).method == "stats"
    with pytest.raises(TypeError, match="unexpected keyword"):
        split_knobs({"methd": "mean"})
    r, f, p = split_knobs({"method": "stats", "bbox": (0, 0, 1, 1), "decode": "aef"})
    assert (p.method, f.bbox, r.decode) == ("stats", (0.0, 0.0, 1.0, 1.0), "aef")


def test_objects_and_flat_knobs_give_the_same_features(two_zone):
    tiles = list(two_zone["tiles"].values())
    flat = zonal_stats(two_zone["polygons"], tiles=tiles, method="stats", land_column=None,
                       progress=False, num_workers=1)  # fmt: skip
    objs = zonal_stats(
        two_zone["polygons"],
        RasterInputs(tiles=tiles),
        ZonalFilters(land_column=None),
        PoolingSpec(method="stats", progress=False, num_workers=1),
    )
    cols = flat.attrs["zonal"]["feature_columns"]
    np.testing.assert_array_equal(flat[cols].to_numpy(), objs[cols].to_numpy())
    assert flat.attrs["zonal"]["data_source"] == "real"  # hand-made tiles carry no stand-in tag
    # a flat knob overrides the object's field
    over = zonal_stats(two_zone["polygons"], RasterInputs(tiles=tiles), method="mean",
                       land_column=None, progress=False)  # fmt: skip
    assert over.attrs["zonal"]["method"] == "mean"


def test_value_decodes_are_one_registry():
    assert DECODINGS == ("raw", "aef", "aef_power", "linear_127", "aef_uint8")
    assert "AlphaEarth" in DECODES.describe()
    x = np.array([[0, 127, 254]], dtype=np.uint8)
    np.testing.assert_allclose(
        decode_values(x, "AEF", "uint8"), [[-((127 / 127.5) ** 2), 0, (127 / 127.5) ** 2]]
    )
    with pytest.raises(InputError, match="unknown value decode 'q'; valid: raw, aef, aef_power"):
        decode_values(x, "q", "uint8")
    meta = TileMeta("t.tif", None, None, 1, 1, 1, "float32", None)
    check_decode("raw", meta)
    with pytest.raises(
        InputError, match="decode='aef' expects uint8/int8 codes; tile t.tif is float32"
    ):
        check_decode("aef", meta)
