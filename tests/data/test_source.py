"""DataSource: one owner of real vs synthetic, content-keyed atomic stand-ins, clear not-found."""

import os
import threading
from pathlib import Path

import pytest

from geoemb.data.source import MARKER, DataSource
from geoemb.errors import DataNotFoundError, InputError

CALLS: list[Path] = []


def _gen(folder: Path, n: int = 2, fail: bool = False) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True)
    CALLS.append(folder)
    for i in range(n):
        (folder / f"f{i}.txt").write_text(str(i))
        if fail and i == 0:
            raise RuntimeError("generator died")


def test_real_missing_names_root_hint_and_stand_in(tmp_path):
    src = DataSource("Toy", tmp_path / "toy", generator=_gen, download_hint="Get it at X.")
    with pytest.raises(DataNotFoundError) as e:
        src.resolve()
    msg = str(e.value)
    assert "Toy data not found" in msg and str(tmp_path / "toy") in msg
    assert "Get it at X." in msg and "data.synthetic=true" in msg
    (tmp_path / "toy").mkdir()
    assert src.resolve() == tmp_path / "toy" and src.data_source == "real" and src.tags == []


def test_custom_check_message(tmp_path):
    src = DataSource("Toy", tmp_path, check=lambda r: None if (r / "a").exists() else "no a/")
    with pytest.raises(DataNotFoundError, match="no a/"):
        src.resolve()


def test_synthetic_generated_once_keyed_by_arguments(tmp_path):
    CALLS.clear()
    a = DataSource("Toy", tmp_path / "toy", synthetic=True, generator=_gen)
    first = a.resolve()
    assert (first / MARKER).is_file() and sorted(p.name for p in first.glob("f*")) == [
        "f0.txt",
        "f1.txt",
    ]
    assert a.resolve() == first and len(CALLS) == 1  # cached
    b = DataSource(
        "Toy", tmp_path / "toy", synthetic=True, generator=_gen, synthetic_kwargs={"n": 3}
    )
    assert b.resolve() != first and len(list(b.resolve().glob("f*"))) == 3  # other args: other dir
    assert a.data_source == "synthetic" and a.tags == ["data_source=synthetic"]
    assert first.parent == tmp_path / "synthetic" / "toy"


def test_interrupted_generation_leaves_nothing(tmp_path):
    src = DataSource("Toy", tmp_path / "toy", synthetic=True, generator=_gen,
                     synthetic_kwargs={"fail": True})  # fmt: skip
    with pytest.raises(RuntimeError):
        src.resolve()
    parent = tmp_path / "synthetic" / "toy"
    assert not parent.exists() or os.listdir(parent) == []


def test_concurrent_generation_one_complete_copy(tmp_path):
    src = DataSource("Toy", tmp_path / "toy", synthetic=True, generator=_gen)
    out, errors = [], []

    def go():
        try:
            out.append(src.resolve())
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(set(out)) == 1
    assert [p.name for p in (tmp_path / "synthetic" / "toy").iterdir()] == [out[0].name]


def test_key_binds_defaults_and_refuses_unknown_arguments(tmp_path):
    def src(**kw):
        return DataSource("Toy", tmp_path / "toy", synthetic=True, generator=_gen,
                          synthetic_kwargs=kw)  # fmt: skip

    assert src().synthetic_dir() == src(n=2).synthetic_dir() == src(n=2, fail=False).synthetic_dir()
    assert src(n=3).synthetic_dir() != src().synthetic_dir()
    with pytest.raises(InputError, match=r"unknown argument\(s\) \['m'\].*\['n', 'fail'\]"):
        src(m=1).resolve()


def test_foreign_synthetic_root_is_refused_and_untouched(tmp_path):
    """``synthetic_root`` may come from a config or a checkpoint: a folder geoemb did not write
    (real data) is never generated into."""
    CALLS.clear()
    real = tmp_path / "real"
    real.mkdir()
    (real / "scene.tif").write_bytes(b"real data")
    src = DataSource("Toy", real, synthetic=True, generator=_gen, synthetic_root=real)
    with pytest.raises(InputError, match="refusing to generate into it"):
        src.resolve()
    assert CALLS == [] and os.listdir(real) == ["scene.tif"]
    assert (real / "scene.tif").read_bytes() == b"real data"
    # a folder an older geoemb generator wrote (its marker at the top) is geoemb's
    (real / ".complete").write_text("")
    legacy = DataSource("Toy", real, synthetic=True, generator=_gen, synthetic_root=real,
                        legacy_markers=(".complete",))  # fmt: skip
    assert legacy.resolve().parent == real and (real / "scene.tif").read_bytes() == b"real data"


def test_incomplete_target_is_never_overwritten(tmp_path):
    src = DataSource("Toy", tmp_path / "toy", synthetic=True, generator=_gen)
    target = src.synthetic_dir()
    target.mkdir(parents=True)
    assert src.resolve() == target and (target / MARKER).is_file()  # an empty folder is reused
    (target / MARKER).unlink()
    with pytest.raises(InputError, match="without the .* completion marker; refusing"):
        src.resolve()
    assert sorted(p.name for p in target.iterdir()) == ["f0.txt", "f1.txt"]
