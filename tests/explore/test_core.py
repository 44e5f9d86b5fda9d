"""Explorer internals against independent oracles: the library store, sklearn PCA, pyproj."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from PIL import Image

from geoemb.compression.bitpack import unpack_bits
from geoemb.explore.basemap import Basemap, fit_pca_colors, sample_shards
from geoemb.explore.index import CorpusIndex, runs
from geoemb.explore.query import fast_top_k
from geoemb.explore.render import draw, merc_y, project, tile_bounds
from geoemb.retrieval.exemplar import top_k_view
from geoemb.retrieval.store import CorpusStore


def _boxes(rng, n, lon=(0, 20), lat=(40, 50)):
    out = []
    for _ in range(n):
        w, e = np.sort(rng.uniform(*lon, 2))
        s, nn = np.sort(rng.uniform(*lat, 2))
        out.append((float(w), float(s), float(e), float(nn)))
    return out


# ---------------------------------------------------------------- index vs library store


def test_prune_and_rows_equal_library(small_corpus):
    idx, store = CorpusIndex(small_corpus), CorpusStore(small_corpus)
    rng = np.random.default_rng(0)
    for box in _boxes(rng, 12) + [(5.0, 45.0, 5.0, 45.0), (-50.0, -10.0, -40.0, 0.0)]:
        lib = set(store.prune(bbox=box)["path"].to_pylist())
        assert {idx.paths[i] for i in idx.prune(box)} == lib
        rows = idx.rows(box)
        want = store.read(bbox=box, columns=["id", "code"])
        order = np.argsort(rows.ids)
        np.testing.assert_array_equal(rows.ids[order], want["id"].to_numpy())
        np.testing.assert_array_equal(rows.codes[order], store.codes(want))


def test_rows_across_antimeridian_equal_library(antimeridian_corpus):
    idx, store = CorpusIndex(antimeridian_corpus), CorpusStore(antimeridian_corpus)
    for box in [(178.0, -3.0, -178.0, 3.0), (179.9, -5.0, -179.9, 5.0), (-180.0, -1, 180.0, 1)]:
        got = np.sort(idx.rows(box).ids)
        np.testing.assert_array_equal(got, store.read(bbox=box, columns=["id"])["id"].to_numpy())
        assert len(got)


def test_lookup_point_and_id_equal_library(small_corpus):
    idx, store = CorpusIndex(small_corpus), CorpusStore(small_corpus)
    rng = np.random.default_rng(1)
    for lon, lat in zip(rng.uniform(0, 20, 30), rng.uniform(40, 50, 30)):
        got, lib = idx.lookup_point(lon, lat), store.lookup_point(lon, lat)
        assert list(got.ids) == lib["id"].to_pylist()
    for i in (0, 17, 2999):  # no hint, not all shards loaded: the library's id scan
        r = idx.lookup_id(i)
        assert list(r.ids) == [i]
        np.testing.assert_array_equal(r.codes, store.codes(store.lookup_ids([i])))
    assert len(idx.lookup_id(123456)) == 0
    idx.preload()  # now from memory
    assert list(idx.lookup_id(2999).ids) == [2999] and len(idx.lookup_id(-5)) == 0


def test_runs():
    assert runs(np.array([], np.int64)) == []
    assert runs(np.array([2, 3, 4, 7, 9, 10])) == [(2, 5), (7, 8), (9, 11)]


def test_memory_limit_refuses_before_reading(small_corpus):
    with pytest.raises(ValueError, match="memory limit"):
        CorpusIndex(small_corpus, max_bytes=1000)


# ---------------------------------------------------------------- ranking


@pytest.mark.parametrize("seed", range(6))
def test_fast_top_k_equals_library_top_k_view(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    scores = rng.integers(0, 6, n).astype(np.float64) / 2  # heavy ties
    ids = rng.permutation(10 * n)[:n]
    exclude = list(rng.choice(ids, min(3, n), replace=False))
    for k in (1, 5, 50, n, n + 10):
        np.testing.assert_array_equal(fast_top_k(scores, ids, k, exclude),
                                      top_k_view(scores, ids, k, exclude))  # fmt: skip


# ---------------------------------------------------------------- PCA basemap


def test_pca_equals_sklearn():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    latent = rng.standard_normal((2000, 3)) * [3.0, 2.0, 1.0]
    bits = (latent @ rng.standard_normal((3, 48)) + 0.5 * rng.standard_normal((2000, 48))) > 0
    m = fit_pca_colors(bits.astype(np.uint8))
    ref = PCA(3).fit(bits.astype(np.float64))
    for c, r in zip(m.components, ref.components_):
        assert abs(abs(float(c @ r)) - 1) < 1e-8  # same axis up to sign
    assert m.components[np.arange(3), np.abs(m.components).argmax(1)].min() > 0  # sign rule
    np.testing.assert_allclose(np.abs((bits - m.mean) @ m.components.T),
                               np.abs(ref.transform(bits.astype(np.float64))), atol=1e-8)  # fmt: skip


def test_sample_shards_spread():
    rows = np.array([5] * 100 + [0] * 5 + [5] * 100)
    sel = sample_shards(rows, 100)
    assert rows[sel].sum() >= 100 and sel.min() < 20 and sel.max() > 185
    assert (rows[sel] > 0).all()
    np.testing.assert_array_equal(sample_shards(rows, 10_000), np.nonzero(rows)[0])


def test_basemap_cache_keyed_by_manifest(small_corpus, tmp_path, monkeypatch, caplog):
    import shutil

    from geoemb.retrieval.store import write_manifest

    idx = CorpusIndex(small_corpus)
    first = Basemap(idx, cache_root=tmp_path)
    assert (tmp_path / idx.manifest_sha256 / "basemap.npz").is_file()
    monkeypatch.setattr(Basemap, "fit", lambda self: pytest.fail("refitted despite a cache"))
    again = Basemap(CorpusIndex(small_corpus), cache_root=tmp_path)
    np.testing.assert_array_equal(again.model.components, first.model.components)
    monkeypatch.undo()
    # corrupt cache → refit (with a warning), never a crash or a stale model
    (tmp_path / idx.manifest_sha256 / "basemap.npz").write_bytes(b"PK\x03\x04garbage")
    with caplog.at_level(logging.WARNING):
        fixed = Basemap(CorpusIndex(small_corpus), cache_root=tmp_path)
    assert "refitting" in caplog.text
    np.testing.assert_allclose(fixed.model.components, first.model.components)
    # a rebuilt corpus (one shard dropped) has another manifest hash → another cache directory
    copy = tmp_path / "copy"
    shutil.copytree(small_corpus, copy, ignore=shutil.ignore_patterns("_explore"))
    marker = sorted((copy / "_parts").glob("part-*.json"))[-1]
    marker.unlink()
    write_manifest(copy)
    idx2 = CorpusIndex(copy)
    assert idx2.manifest_sha256 != idx.manifest_sha256
    Basemap(idx2, cache_root=tmp_path)
    assert (tmp_path / idx2.manifest_sha256 / "basemap.npz").is_file()


def test_tile_pixel_is_row_pca_colour(small_corpus, tmp_path):
    idx = CorpusIndex(small_corpus)
    bm = Basemap(idx, cache_root=tmp_path)
    store = CorpusStore(small_corpus)
    t = store.read(bbox=(0, 40, 20, 50))
    lon, lat, codes = t["lon"].to_numpy(), t["lat"].to_numpy(), store.codes(t)
    # a row far (> 0.3°) from every other centroid: its footprint's centre pixel is its own colour
    d = np.hypot(lon[:, None] - lon[None], lat[:, None] - lat[None]) + np.eye(len(lon)) * 99
    i = int(np.argmax(d.min(1)))
    z = 9
    n = 2**z
    x = int((lon[i] + 180) / 360 * n)
    y = int((1 - merc_y(lat[i]) / np.pi) / 2 * n)
    img = np.asarray(Image.open(io.BytesIO(bm.tile(z, x, y))).convert("RGBA"))
    w, s, e, nn = tile_bounds(z, x, y)
    px = int((lon[i] - w) / (e - w) * 256)
    py = int((merc_y(nn) - merc_y(lat[i])) / (merc_y(nn) - merc_y(s)) * 256)
    want = bm.model.rgb(codes[i : i + 1])[0]
    assert img[py, px, 3] == 255
    np.testing.assert_array_equal(img[py, px, :3], want)
    # the PCA colour itself: sklearn-independent check of the projection on unpacked bits
    bits = unpack_bits(codes[i : i + 1], idx.dim).astype(np.float64)
    p = (bits - bm.model.mean) @ bm.model.components.T
    exp = np.rint(np.clip((p - bm.model.lo) / (bm.model.hi - bm.model.lo), 0, 1) * 255)
    np.testing.assert_allclose(want, exp[0], atol=1)


def test_tile_disk_cache_survives_corruption(small_corpus, tmp_path):
    bm = Basemap(CorpusIndex(small_corpus), cache_root=tmp_path)
    good = bm.tile(5, 16, 11)
    path = bm.cache_dir / "tiles-v2" / "5" / "16" / "11.png"
    assert path.read_bytes() == good
    path.write_bytes(good[:100])  # truncated by a crash / disk full
    fresh = Basemap(CorpusIndex(small_corpus), cache_root=tmp_path)
    assert fresh.tile(5, 16, 11) == good


# ---------------------------------------------------------------- projection and drawing


def test_tile_bounds_and_mercator_match_pyproj():
    from pyproj import Transformer

    assert tile_bounds(0, 0, 0) == pytest.approx((-180, -85.0511287798, 180, 85.0511287798))
    assert tile_bounds(1, 1, 0) == pytest.approx((0, 0, 180, 85.0511287798))
    tr = Transformer.from_crs(4326, 3857, always_xy=True)
    lat = np.array([-80.0, -33.3, 0.0, 12.5, 60.0, 85.0])
    _, ym = tr.transform(np.zeros_like(lat), lat)
    np.testing.assert_allclose(merc_y(lat) * 6378137.0, ym, rtol=1e-9, atol=1e-6)
    # pixel edges of a footprint in a view equal pyproj's mercator metres, linearly scaled
    view, width, height = (-10.0, 30.0, 30.0, 60.0), 400, 300
    box = np.array([[0.0, 40.0, 1.0, 41.0]])
    x0, y0, x1, y1 = project(box, view, width, height)
    (vx0, vx1), (vy0, vy1) = tr.transform([view[0], view[2]], [view[1], view[3]])
    (bx0, bx1), (by0, by1) = tr.transform([0.0, 1.0], [40.0, 41.0])
    np.testing.assert_allclose([x0[0], x1[0]], (np.array([bx0, bx1]) - vx0) / (vx1 - vx0) * width)
    np.testing.assert_allclose([y0[0], y1[0]], (vy1 - np.array([by1, by0])) / (vy1 - vy0) * height)


def test_draw_rectangles_points_and_reducers():
    view = (0.0, -1.0, 10.0, 1.0)  # ~linear near the equator
    w, h = 100, 20
    # one big footprint (a block of pixels) and a sub-pixel point inside it with a lower value
    rows = np.array([[2.0, -0.5, 3.0, 0.5], [2.55, 0.0, 2.55, 0.0]])
    g = draw(rows, np.array([5.0, 1.0]), view, w, h, reduce="min", min_px=1)[..., 0]
    filled = ~np.isnan(g)
    ys, xs = np.nonzero(filled)
    assert xs.min() == 20 and xs.max() == 29  # 2°..3° → pixels 20..29
    assert (g[filled] >= 1).all() and np.nanmin(g) == 1 and (g == 5).sum() == filled.sum() - 1
    mean = draw(rows, np.array([5.0, 1.0]), view, w, h, reduce="mean", min_px=1)[..., 0]
    assert np.nanmin(mean) == pytest.approx(3.0)  # the shared pixel averages 5 and 1
    # min_px spreads sub-pixel rows into visible blocks
    pt = draw(rows[1:], np.array([1.0]), view, w, h, min_px=3)
    assert (~np.isnan(pt[..., 0])).sum() == 9
    # a view across the antimeridian draws rows on both sides
    am = draw(np.array([[179.0, 0.0, 179.0, 0.0], [-179.0, 0.0, -179.0, 0.0]]), np.ones(2),
              (170.0, -5.0, -170.0, 5.0), 200, 50, min_px=1)[..., 0]  # fmt: skip
    assert set(np.nonzero(~np.isnan(am))[1]) == {90, 110}


@pytest.mark.parametrize("dim", [61, 64, 512])
def test_fused_scores_bit_identical_to_library(dim):
    from geoemb.compression.bitpack import pack_bits
    from geoemb.explore.kernels import exemplar_scores as fused
    from geoemb.retrieval.exemplar import exemplar_scores as library

    rng = np.random.default_rng(dim)
    cand = pack_bits(rng.random((2000, dim)) < 0.5)
    for combine in ("mean", "and", "or", "xor", "majority"):
        for invert in (False, True):
            for n_pos, n_neg in ((1, 0), (3, 0), (2, 1), (5, 3)):
                pos, neg = cand[:n_pos], cand[100 : 100 + n_neg]
                a = library(cand, pos, dim, neg, combine, invert)
                b = fused(cand, pos, dim, neg, combine, invert)
                assert a.dtype == b.dtype and np.array_equal(a, b), (combine, invert, n_pos)
    strided = np.asfortranarray(cand)  # non-contiguous input takes the copying path
    np.testing.assert_array_equal(fused(strided, cand[:2], dim), library(cand, cand[:2], dim))
    with pytest.raises(ValueError, match="at least one positive"):
        fused(cand, cand[:0], dim)
