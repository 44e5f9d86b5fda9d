"""Embedding-table and embedding-corpus sources: real layouts, stand-ins, one clear error each."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from geoemb.data.embedding_corpus import EmbeddingCorpusSource
from geoemb.data.embedding_table import EUROSAT_CLASSES, EmbeddingTableSource, load_features
from geoemb.errors import DataNotFoundError, InputError
from geoemb.synthetic.embedding_table import generate as generate_tables
from geoemb.synthetic.retrieval_corpus import generate as generate_corpus
from geoemb.synthetic.retrieval_corpus import make_embeddings

SMALL = {"n_train": 40, "n_test": 12, "seed": 1}


# --------------------------------------------------------------------------- tables


def test_table_stand_in_is_the_generator_layout_read_back(tmp_path):
    src = EmbeddingTableSource(encoders="aef,tessera", synthetic=True, synthetic_root=tmp_path,
                               synthetic_kwargs=SMALL)  # fmt: skip
    assert src.encoders == ["aef", "tessera"] and src.data_source == "synthetic"
    tables = src.load()
    ref = generate_tables(tmp_path / "ref", {"aef": (64, 10), "tessera": (512, 6)}, **SMALL)
    for enc in ("aef", "tessera"):
        want = load_features(ref, enc)
        for k, v in want.items():
            np.testing.assert_array_equal(tables[enc][k], v)
    root = src.root()
    assert root.parent.parent == tmp_path  # <synthetic_root>/<content key>/embeddings
    stamp = (root / "aef" / "mean" / "standard.npz").stat().st_mtime_ns
    EmbeddingTableSource(encoders=["aef", "tessera"], synthetic=True, synthetic_root=tmp_path,
                         synthetic_kwargs=SMALL).load()  # fmt: skip
    assert (root / "aef" / "mean" / "standard.npz").stat().st_mtime_ns == stamp  # generated once
    other = EmbeddingTableSource(encoders=["aef", "tessera"], synthetic=True,
                                 synthetic_root=tmp_path, synthetic_kwargs={**SMALL, "seed": 2})  # fmt: skip
    assert other.root() != root  # other arguments: another stand-in


def test_table_real_and_errors(tmp_path):
    real = generate_tables(tmp_path / "real", {"aef": (8, 3)}, n_train=30, n_test=10)
    src = EmbeddingTableSource(path=real, encoders=["aef"], split="spatial")
    assert src.data_source == "real" and src.load()["aef"]["x_train"].shape == (30, 8)
    assert src.class_names(10) == list(EUROSAT_CLASSES) and src.class_names(3) == [
        "class0", "class1", "class2"
    ]  # fmt: skip
    assert EmbeddingTableSource(path=real, class_names=["a", "b", "c"]).class_names(2) == ["a", "b"]
    with pytest.raises(InputError, match="3 names for 4 classes"):
        EmbeddingTableSource(path=real, class_names=["a", "b", "c"]).class_names(4)
    with pytest.raises(DataNotFoundError, match=r"data\.path=.*nowhere.*experiment=geopool.*"
                       r"data\.synthetic=true"):  # fmt: skip
        EmbeddingTableSource(path=tmp_path / "nowhere").load()
    with pytest.raises(DataNotFoundError, match="data.path is not set.*data.synthetic=true"):
        EmbeddingTableSource(path=None).root()
    with pytest.raises(InputError, match=r"synthetic encoders \['mine'\] unknown"):
        EmbeddingTableSource(encoders=["mine"], synthetic=True, synthetic_root=tmp_path)
    with pytest.raises(InputError, match=r"data\.synthetic_kwargs: unknown key\(s\) \['n'\]"):
        EmbeddingTableSource(synthetic=True, synthetic_root=tmp_path, synthetic_kwargs={"n": 3})
    with pytest.raises(InputError, match="data.encoders is empty"):
        EmbeddingTableSource(path=real, encoders=[])


# --------------------------------------------------------------------------- corpus


def _parquet(path: Path, x: np.ndarray, ragged: bool = False, col: str = "embedding") -> Path:
    if ragged:
        arr = pa.array([list(r[: 3 if i == 2 else None]) for i, r in enumerate(x)])
    else:
        arr = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])
    pq.write_table(pa.table({"id": np.arange(len(x)), col: arr}), path)
    return path


def test_corpus_npy_parquet_file_and_folder_agree(tmp_path):
    x = np.random.default_rng(0).standard_normal((50, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "parts").mkdir()
    _parquet(tmp_path / "parts" / "b.parquet", x[30:])
    _parquet(tmp_path / "parts" / "a.parquet", x[:30])  # read in name order, not write order
    lists = pa.table({"embedding": pa.array([list(map(float, r)) for r in x])})
    pq.write_table(lists, tmp_path / "lists.parquet")  # variable-size list<double> column
    for p in ("x.npy", "parts", "parts/a.parquet", "lists.parquet"):
        got = EmbeddingCorpusSource(path=tmp_path / p).load()
        want = x[:30] if p == "parts/a.parquet" else x
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def test_corpus_stand_in_equals_the_generator(tmp_path):
    src = EmbeddingCorpusSource(synthetic=True, synthetic_root=tmp_path,
                                synthetic_kwargs={"n": 300, "dim": 16, "seed": 4})  # fmt: skip
    x = src.load()
    ref, _, _ = make_embeddings(300, 16, seed=4)
    np.testing.assert_array_equal(x, ref)
    assert src.data_source == "synthetic" and "n': 300" in src.describe()
    # the same Parquet parts `python -m geoemb.retrieval synth` writes
    parts = generate_corpus(tmp_path / "cli", n=300, dim=16, seed=4)
    np.testing.assert_array_equal(EmbeddingCorpusSource(path=parts).load(), ref)


def test_corpus_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"no file or folder .*missing\.npy \(data\.path="
                       r".*data\.synthetic=true"):  # fmt: skip
        EmbeddingCorpusSource(path=tmp_path / "missing.npy").load()
    with pytest.raises(DataNotFoundError, match="data.path is not set"):
        EmbeddingCorpusSource(path=None).load()
    x = np.ones((10, 4), np.float32)
    x[7, 1] = np.nan
    with pytest.raises(InputError, match=r"nan\.parquet.*first: row 7"):
        EmbeddingCorpusSource(path=_parquet(tmp_path / "nan.parquet", x)).load()
    x[7, 1] = 0.5
    with pytest.raises(InputError, match=r"no column 'embedding'.*vec"):
        EmbeddingCorpusSource(path=_parquet(tmp_path / "c.parquet", x, col="vec")).load()
    assert EmbeddingCorpusSource(path=tmp_path / "c.parquet", column="vec").load().shape == (10, 4)
    with pytest.raises(InputError, match="row 2 has 3 values, row 0 has 4"):
        EmbeddingCorpusSource(path=_parquet(tmp_path / "r.parquet", x, ragged=True)).load()
    (tmp_path / "t.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(InputError, match=r"cannot read Parquet file .*t\.parquet"):
        EmbeddingCorpusSource(path=tmp_path / "t.parquet").load()
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"holds no \*\.parquet files"):
        EmbeddingCorpusSource(path=tmp_path / "empty").load()
    with pytest.raises(InputError, match=r"unknown key\(s\) \['n_corpus'\]"):
        EmbeddingCorpusSource(synthetic=True, synthetic_kwargs={"n_corpus": 5})
