"""``build-corpus --dask``: a worker process killed (SIGKILL) mid-task, and input partitions with
mixed schemas.

A killed worker → the build completes with files identical to the single-process build (Dask
retries the file's task; the parts it had completed are kept, the rest rewritten), or — retries
used up — one error naming the input file, no manifest (never a silently short corpus), and a
rerun resumes to the same corpus. A partition with another schema → one error naming it, before
any task. One 2-worker LocalCluster serves the whole module (the CLI connects to its address).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from geoemb.errors import InputError
from geoemb.retrieval.__main__ import main
from geoemb.retrieval.build_dask import DaskCorpusError
from geoemb.synthetic.retrieval_corpus import generate
from tests.faults.dask_kill import die_once_or_always, set_allowed_failures

pytestmark = [pytest.mark.faults, pytest.mark.slow]

DIM = 32


def _args(src: Path, out: Path, *extra: str) -> list[str]:
    return ["build-corpus", "--input", str(src), "--out", str(out), "--dim", str(DIM),
            "--precision", "1", "--batch-rows", "300", "--compact-rows", "700", "--quiet",
            *extra]  # fmt: skip


def _install_killer(marker: str | None) -> int:
    """On a worker: the second part its next file task writes kills the worker process
    (``SIGKILL``; the first part is complete on disk by then) — only the first time across all
    workers when ``marker`` is a path (an ``O_EXCL`` file), every time when ``None``. Workers
    restarted by their nanny are fresh processes (no killer)."""
    from geoemb.retrieval.build import CorpusBuilder

    real = CorpusBuilder.write_part
    calls = [0]

    def dying(self, part, batch, origin=None):
        calls[0] += 1
        if calls[0] >= 2:
            die_once_or_always(marker)
        return real(self, part, batch, origin)

    CorpusBuilder.write_part = dying
    return os.getpid()


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.glob("geohash=*/*.parquet"))}  # fmt: skip


@pytest.fixture(scope="module")
def env(tmp_path_factory, dask_local2):
    src = generate(tmp_path_factory.mktemp("in"), n=3000, dim=DIM, parts=3, seed=7)
    ref = tmp_path_factory.mktemp("ref") / "c"
    main(_args(src, ref))
    dask_local2.wait_for_workers(2, timeout=300)
    yield src, ref, dask_local2
    dask_local2.restart()  # the session's cluster goes on without this module's killers


def _same_corpus(out: Path, ref: Path) -> None:
    assert _files(out) == _files(ref)
    for name in ("manifest.parquet", "id_index.parquet"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name


def test_worker_killed_mid_file_task_build_equals_single_process(env, tmp_path):
    src, ref, client = env
    marker = str(tmp_path / "killed_once")
    pids = client.run(_install_killer, marker)
    assert len(set(pids.values())) == 2
    out = tmp_path / "c"
    main(_args(src, out, "--dask", client.scheduler.address))
    assert os.path.exists(marker)  # a worker really was killed mid-task
    assert set(client.run(os.getpid).values()) != set(pids.values())  # and replaced
    _same_corpus(out, ref)


def test_worker_killed_every_time_fails_naming_the_file_then_resumes(env, tmp_path):
    src, ref, client = env
    client.wait_for_workers(2)
    old = client.run_on_scheduler(set_allowed_failures, 0)
    try:
        client.run(_install_killer, None)
        out = tmp_path / "c"
        with pytest.raises(DaskCorpusError, match=r"writing input file .*part-0000\d\.parquet "
                           r"\(parts \d+\.\.\d+\) died too often"):  # fmt: skip
            main(_args(src, out, "--dask", client.scheduler.address))
        assert not (out / "manifest.parquet").exists()  # never a short corpus
        client.restart()  # fresh workers, no killer
    finally:
        client.run_on_scheduler(set_allowed_failures, old)
    main(_args(src, out, "--dask", client.scheduler.address))  # resumes
    _same_corpus(out, ref)


def _rewrite(f: Path, how: str) -> None:
    t = pq.read_table(f)
    if how == "width":
        emb = np.asarray(t["embedding"].combine_chunks().flatten()).reshape(t.num_rows, DIM)
        col = pa.FixedSizeListArray.from_arrays(pa.array(emb[:, :16].reshape(-1)), 16)
        t = t.set_column(t.schema.get_field_index("embedding"), "embedding", col)
    elif how == "missing":
        t = t.drop_columns(["bbox"])
    elif how == "type":
        t = t.set_column(t.schema.get_field_index("lon"), "lon", t["lon"].cast(pa.float32()))
    elif how == "id_string":
        t = t.set_column(t.schema.get_field_index("id"), "id", t["id"].cast(pa.string()))
    pq.write_table(t, f)


@pytest.mark.parametrize("how, what", [
    ("width", "'embedding' has width 16"),
    ("missing", "column 'bbox' only in .*part-00000.parquet"),
    ("type", "column 'lon' is float here, double in .*part-00000.parquet"),
    ("id_string", "column 'id' has type string; expected an integer"),
])  # fmt: skip
@pytest.mark.parametrize("dask", [True, False])
def test_mixed_schema_partition_is_named_before_any_task(env, tmp_path, how, what, dask):
    _, _, client = env
    src = generate(tmp_path / "in", n=900, dim=DIM, parts=3, seed=1)
    bad = src / "part-00002.parquet"
    _rewrite(bad, how)
    out = tmp_path / "c"
    extra = ("--dask", client.scheduler.address) if dask else ()
    with pytest.raises(InputError, match=rf"{bad.name}.*{what}|{what}.*{bad.name}") as e:
        main(_args(src, out, *extra))
    assert str(bad) in str(e.value) or str(bad.resolve()) in str(e.value)
    assert not list(out.glob("_parts/*.json"))  # refused before any part was written
    assert not (out / "manifest.parquet").exists()
