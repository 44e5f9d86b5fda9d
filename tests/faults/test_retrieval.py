"""Retrieval as a hostile user drives it: NaN/inf and truncated embedding files for the evaluator,
non-finite ROIs and points, unparsable polygons, absurd raster resolutions and k."""

import numpy as np
import pytest

from geoemb.compression.bitpack import pack_bits
from geoemb.data.embedding_corpus import EmbeddingCorpusSource
from geoemb.errors import InputError
from geoemb.evaluation.retrieval import RetrievalEvaluator
from geoemb.retrieval import CorpusBuilder, CorpusStore, exemplar_query, score_raster
from geoemb.retrieval.store import split_antimeridian
from geoemb.run.context import RunContext
from geoemb.utils.run_logger import RunLogger

pytestmark = pytest.mark.faults


def _ev(path, **kw):
    args = dict(data=EmbeddingCorpusSource(path=str(path)), n_queries=10, ks=(1, 10),
                methods=("binary", "int8"), backends=("hamming_numpy",), metrics=("l2",))  # fmt: skip
    args.update(kw)
    return RetrievalEvaluator(**args)


def _ctx(path):
    return RunContext.local(path, logger=RunLogger(None))


def _emb(n=300, d=16):
    return np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_evaluator_non_finite_rows_fail_the_run_naming_file_and_row(tmp_path, bad, dtype):
    x = _emb().astype(dtype)
    x[201, 3] = bad
    np.save(tmp_path / "emb.npy", x)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"emb\.npy: 1 row\(s\) contain NaN/inf \(first: row 201"):
        _ev(tmp_path / "emb.npy").run(_ctx(out))
    assert not out.exists() or not any(out.iterdir())  # no table with error cells


def test_evaluator_truncated_and_foreign_files(tmp_path):
    np.save(tmp_path / "emb.npy", _emb())
    raw = (tmp_path / "emb.npy").read_bytes()
    (tmp_path / "emb.npy").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(InputError, match="emb.npy: cannot read it as a .npy"):
        _ev(tmp_path / "emb.npy").run(_ctx(tmp_path / "o"))
    np.savez(tmp_path / "emb.npz", x=_emb())
    with pytest.raises(InputError, match="is an .npz archive"):
        _ev(tmp_path / "emb.npz").run(_ctx(tmp_path / "o"))
    (tmp_path / "emb.txt").write_text("1 2 3\n")
    with pytest.raises(InputError, match="cannot read"):
        _ev(tmp_path / "emb.txt").run(_ctx(tmp_path / "o"))
    obj = np.empty((3, 2), dtype=object)
    np.save(tmp_path / "obj.npy", obj, allow_pickle=True)  # loading needs pickle: refused
    with pytest.raises(InputError, match="cannot read"):
        _ev(tmp_path / "obj.npy").run(_ctx(tmp_path / "o"))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("c")
    rng = np.random.default_rng(1)
    n = 200
    batch = {"id": np.arange(n), "lon": rng.uniform(-30, 30, n), "lat": rng.uniform(-20, 20, n),
             "code": pack_bits(rng.random((n, 24)) < 0.5)}  # fmt: skip
    CorpusBuilder(root, dim=24, geohash_precision=1).build([batch], progress=False)
    return CorpusStore(root)


def test_non_finite_rois_points_and_bad_polygons(store):
    for box in [(np.nan, 0, 1, 1), (0, 0, np.inf, 1)]:
        with pytest.raises(InputError, match="must be finite"):
            store.read(bbox=box)
        with pytest.raises(InputError, match="must be finite"):
            split_antimeridian(box)
    with pytest.raises(InputError, match="must be finite"):
        store.lookup_point(np.nan, 0.0)
    for wkt in ("POLYGON ((0 0, 1", "not wkt at all", "POLYGON EMPTY"):
        with pytest.raises(InputError, match="polygon"):
            store.read(polygon=wkt)
    with pytest.raises(InputError, match="must be finite"):
        exemplar_query(store, positives=[(np.inf, 0.0)])


def test_absurd_views_and_rasters_are_refused(store):
    some = int(store.read()["id"][0].as_py())
    for k in (0, -3):
        with pytest.raises(InputError, match="k must be a positive integer"):
            exemplar_query(store, positive_ids=[some], k=k)
    with pytest.raises(InputError, match="threshold must be finite"):
        exemplar_query(store, positive_ids=[some], view="threshold", threshold=np.nan)
    lon, lat, s = np.array([0.0, 10.0]), np.array([0.0, 5.0]), np.array([1.0, 2.0])
    for res in (0.0, -1.0, np.nan):
        with pytest.raises(InputError, match="resolution must be a positive"):
            score_raster(lon, lat, s, res)
    with pytest.raises(InputError, match="exceeds 250,000,000 cells"):
        score_raster(lon, lat, s, 1e-6, bounds=(-180, -90, 180, 90))
    grid, _ = score_raster(lon, lat, s, 5.0)
    assert grid.shape == (2, 3) and np.nansum(grid) == 3.0
