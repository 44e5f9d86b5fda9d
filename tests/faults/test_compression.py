"""Compression study as a hostile user feeds it: NaN/inf features, truncated or foreign caches,
pickled arrays, bad labels, a results_dir shared by runs on different data."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geoemb.compression import build
from geoemb.data.embedding_table import EmbeddingTableSource, load_features
from geoemb.errors import InputError
from geoemb.evaluation.compression import CompressionEvaluator
from geoemb.reporting.compression import aggregate
from geoemb.run.context import RunContext
from geoemb.utils.run_logger import RunLogger

pytestmark = pytest.mark.faults


class _Payload:
    """Unpickling this touches a file: proof that a feature file ran code."""

    def __init__(self, flag):
        self.flag = flag

    def __reduce__(self):
        return Path.touch, (Path(self.flag),)


def _table(tmp_path, enc="aef", **over):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.standard_normal((60, 8)).astype(np.float32),
              "y_train": rng.integers(0, 3, 60), "x_test": rng.standard_normal((20, 8)),
              "y_test": rng.integers(0, 3, 20)}  # fmt: skip
    arrays.update(over)
    path = tmp_path / "feats" / enc / "mean" / "standard.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return tmp_path / "feats", path


def _ev(tmp_path, fdir, **kw):
    args = dict(data=EmbeddingTableSource(path=str(fdir), encoders=["aef"]),
                configs=["int8", "binary"], probe={"linear": False}, bootstrap_resamples=49,
                spectra=False, results_dir=str(tmp_path / "sweep"), plots=False)  # fmt: skip
    args.update(kw)
    return CompressionEvaluator(**args)


def _ctx(path):
    return RunContext.local(path, logger=RunLogger(None))


@pytest.mark.parametrize("key", ["x_train", "x_test"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_named_with_file_array_and_row(tmp_path, key, bad):
    x = np.ones((60 if key == "x_train" else 20, 8), np.float32)
    x[11, 3] = bad
    fdir, path = _table(tmp_path, **{key: x})
    with pytest.raises(InputError, match=rf"standard\.npz: {key}: 1 row.*first: row 11"):
        _ev(tmp_path, fdir).run(_ctx(tmp_path / "job"))
    assert not (tmp_path / "sweep").exists()  # refused before any baseline, row or table


def test_float64_overflowing_float32_is_caught(tmp_path):
    x = np.ones((60, 8))
    x[5, 0] = 1e300  # finite in float64, inf once cast to float32
    fdir, _ = _table(tmp_path, x_train=x)
    with pytest.raises(InputError, match="first: row 5.*beyond float32 range"):
        load_features(fdir, "aef")


def test_truncated_foreign_and_pickled_feature_files(tmp_path):
    fdir, path = _table(tmp_path)
    full = path.read_bytes()
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(InputError, match=f"cannot read pooled-feature cache {path}"):
        load_features(fdir, "aef")
    path.write_text("x_train,y_train\n1,2\n")
    with pytest.raises(InputError, match="cannot read"):
        load_features(fdir, "aef")
    # an object array needs pickle to load: refused, never unpickled (data never executes)
    flag = tmp_path / "pwned"
    obj = np.empty(2, dtype=object)
    obj[:] = [_Payload(flag), "x"]
    _table(tmp_path, x_train=obj)
    with pytest.raises(InputError, match="cannot read"):
        load_features(fdir, "aef")
    assert not flag.exists()


@pytest.mark.parametrize(
    "over, match",
    [
        ({"y_train": np.full(60, 1.5)}, "y_train\\[0\\] = 1.5 is not an integer"),
        ({"y_test": -np.ones(20, int)}, "negative labels"),
        ({"y_test": np.zeros(19, int)}, "label counts"),
        ({"x_test": np.ones((20, 7))}, "widths differ"),
        ({"x_train": np.ones(60)}, "non-empty \\(N, D\\)"),
        ({"x_train": np.zeros((0, 8))}, "non-empty \\(N, D\\)"),
        ({"x_train": np.array([["a"] * 8] * 60)}, "float \\(or integer\\)"),
    ],
)
def test_malformed_tables_are_named(tmp_path, over, match):
    fdir, _ = _table(tmp_path, **over)
    with pytest.raises(InputError, match=match):
        load_features(fdir, "aef")


def test_missing_arrays_still_keyerror_and_inputerror(tmp_path):
    fdir, path = _table(tmp_path)
    np.savez(path, x_train=np.ones((3, 2)))
    with pytest.raises(KeyError, match="missing arrays") as e:
        load_features(fdir, "aef")
    assert isinstance(e.value, InputError)


@pytest.mark.parametrize("config", ["int8", "binary", "pca2+int4", "turboquant_mse_2", "pq_2x2"])
def test_compressors_refuse_non_finite_rows_at_fit_and_encode(config):
    x = np.random.default_rng(0).standard_normal((50, 4))
    c = build(config).fit(x)
    bad = x[:5].copy()
    bad[3, 1] = np.nan  # int8 used to encode NaN silently as code 0 (clip of NaN)
    with pytest.raises(InputError, match="first: row 3"):
        c.encode(bad)
    with pytest.raises(InputError, match="NaN or inf"):
        build(config).fit(np.where(np.arange(4) == 2, np.inf, x))
    assert c.encode(x[:2]).shape[0] == 2


def test_aggregate_of_a_corrupt_row_file_names_it(tmp_path):
    fdir, _ = _table(tmp_path)
    _ev(tmp_path, fdir).run(_ctx(tmp_path / "job"))
    rows = sorted((tmp_path / "sweep" / "rows").glob("*.csv"))
    rows[0].write_bytes(b"\x00\x01garbage\xff" * 3)
    with pytest.raises(InputError, match=rows[0].name):
        aggregate(tmp_path / "sweep")


def test_same_encoder_name_other_data_in_one_results_dir_is_refused(tmp_path):
    # two features dirs with the same encoder name (real vs re-pooled cache, say)
    fa, _ = _table(tmp_path / "a")
    fb, _ = _table(tmp_path / "b", x_train=np.random.default_rng(5).standard_normal((60, 8)))
    _ev(tmp_path, fa, configs=["int8", "binary"]).run(_ctx(tmp_path / "j0"))
    with pytest.raises(InputError, match="encoder 'aef' has rows computed on different data"):
        _ev(tmp_path, fb, configs=["int8"]).run(_ctx(tmp_path / "j1"))
    # results.csv still holds the last consistent table (data a), never a mix
    df = pd.read_csv(tmp_path / "sweep" / "results.csv")
    assert df["data_fingerprint"].nunique() == 1 and len(df) == 2
