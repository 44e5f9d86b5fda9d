"""Runs under hostile conditions: two runs/sweeps started in the same second, kill -9'd writers,
unwritable or oddly named log directories."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from geoemb.errors import OutputError
from geoemb.run import resolvers
from geoemb.utils.io import atomic_write_text, writer_tag
from tests.faults.conftest import REPO, entry_env, start_entry

pytestmark = pytest.mark.faults

RUN_ID = re.compile(r"^\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-\d{3}_[0-9a-f]{6}$")
ODD = "odd dir ü 日本,x"  # spaces, unicode, a comma: must survive interpolation and the shell-less argv


def _compose(name: str, overrides: list[str], log_dir: Path):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            return compose(name, overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def test_composed_run_and_sweep_dirs_are_unique_and_stable(tmp_path, monkeypatch):
    """Regression: ``${now:%Y-%m-%d_%H-%M-%S}`` gave every run started in one second one dir."""
    base = tmp_path / ODD
    monkeypatch.setenv("GEOEMB_LOG_DIR", str(base))  # read when the dirs are resolved
    a = _compose("train", [], base)
    b = _compose("train", [], base)
    ra, rb = Path(a.hydra.run.dir), Path(b.hydra.run.dir)
    assert ra.parent == base / "train" / "default" and RUN_ID.match(ra.name), ra
    assert ra != rb and a.hydra.sweep.dir != b.hydra.sweep.dir
    assert a.hydra.run.dir == str(ra) and a.hydra.sweep.dir == a.hydra.sweep.dir  # cached
    assert Path(a.hydra.sweep.dir).parent == base / "train" / "default" / "multiruns"
    # what Hydra's load_sweep_config does for every job: copy the master config's resolver cache
    job = _compose("train", ["seed=3"], base)
    OmegaConf.copy_cache(from_config=a, to_config=job)
    assert job.hydra.sweep.dir == a.hydra.sweep.dir
    # infer.py's default output lives in the run dir, so two inferences never share prediction.tif
    kw = ["ckpt_path=m.ckpt", "input=x.tif", "paths.output_dir=${hydra:runtime.output_dir}"]
    i1, i2 = (_compose("infer", kw, base) for _ in range(2))
    assert i1.hydra.run.dir != i2.hydra.run.dir
    assert resolvers.make_run_id() != resolvers.make_run_id()


def test_unwritable_log_dir_is_one_clear_error(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=r"not_a_dir is a file"):
        resolvers.check_creatable(blocker / "logs" / "train")
    if os.path.isdir("/sys") and not os.access("/sys", os.W_OK):  # a read-only file system
        with pytest.raises(OutputError, match="not writable"):
            resolvers.check_creatable("/sys/geoemb-logs")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    if not os.access(ro, os.W_OK):  # (root may write anywhere)
        with pytest.raises(OutputError, match="ro is not writable"):
            resolvers.check_creatable(ro / "logs")
    resolvers.check_creatable(tmp_path / "new" / "deeper")  # creatable: fine, nothing created
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_unwritable_log_dir_through_the_entry_point(tmp_path):
    """One message naming the directory, no traceback of Hydra internals."""
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    p = start_entry("evaluate.py", [], entry_env(blocker / "logs"), frozen=False)
    out, _ = p.communicate(timeout=600)
    assert p.returncode != 0
    assert "cannot create run directory" in out and str(blocker) in out, out
    assert "Traceback" not in out, out


def _writer_script(target: Path, text: str) -> str:
    return textwrap.dedent(
        f"""
        import sys, time
        from geoemb.utils.io import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text({text!r}[:3])      # half written
            print(tmp, flush=True)
            sys.stdin.readline()              # wait to be killed, or told to finish
            tmp.write_text({text!r})
        """
    )


def _start_writer(target: Path, text: str) -> tuple[subprocess.Popen, Path]:
    p = subprocess.Popen(
        [sys.executable, "-c", _writer_script(target, text)],
        env=entry_env(target.parent),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    tmp = Path(p.stdout.readline().strip())
    assert tmp.exists() and tmp.parent == target.parent, tmp
    return p, tmp


def test_killed_writers_temp_is_cleaned_live_writers_temp_is_kept(tmp_path):
    target = tmp_path / "res ü.csv"
    atomic_write_text(target, "old")
    dead, dead_tmp = _start_writer(target, "never")
    os.kill(dead.pid, signal.SIGKILL)
    dead.wait(timeout=60)
    assert dead_tmp.exists() and target.read_text() == "old"  # nothing half-written under target
    live, live_tmp = _start_writer(target, "from the live writer")
    atomic_write_text(target, "mine")  # the next write of the same target
    assert not dead_tmp.exists(), "stale temp of the killed writer was not removed"
    assert live_tmp.exists(), "a live writer's temp file was removed"
    assert target.read_text() == "mine"
    live.stdin.write("go\n")
    live.stdin.flush()
    assert live.wait(timeout=60) == 0
    assert target.read_text() == "from the live writer"  # last rename wins, never a mix
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    # a temp file of this very process is never stale
    mine = tmp_path / f".{target.name}.{writer_tag()}.0123abcd.tmp.csv"
    mine.write_text("x")
    atomic_write_text(target, "again")
    assert mine.exists()


RSC_TINY = [
    "experiment=rsc_unet_r18",
    "model/net=tiny_cnn",
    "model.net.width=4",
    "model.net.depth=1",
    "logger=csv",
    "callbacks.rich_progress_bar=null",
    "callbacks.log_predictions=null",
    "trainer.max_epochs=1",
    "trainer.min_epochs=1",
    "trainer.accelerator=cpu",
    "data.synthetic=true",
    "data.synthetic_kwargs.size=32",
    "data.synthetic_kwargs.n_train=2",
    "data.synthetic_kwargs.n_val=1",
    "data.synthetic_kwargs.n_test=2",
    "data.batch_size=2",
    "data.num_workers=0",
]


@pytest.mark.slow
def test_two_train_runs_started_in_the_same_second(tmp_path):
    """Regression: same-second ``train.py`` runs shared a run dir (mixed checkpoints/config.yaml,
    a CSV-logger crash). Both now complete, each in its own directory -- and both generate the
    stand-in into one fresh data folder at once (content-keyed, atomic: one wins, both use it)."""
    data = tmp_path / "data"
    logs = tmp_path / ODD
    env = entry_env(logs)
    args = [*RSC_TINY, f"paths.data_dir={data}"]
    procs = [start_entry("train.py", [*args, f"seed={s}"], env) for s in (1, 2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n\n".join(o[-3000:] for o in outs)
    runs = sorted((logs / "train" / "rsc_unet_r18").iterdir())
    assert len(runs) == 2 and all(RUN_ID.match(r.name) for r in runs), runs
    assert runs[0].name[:23] == runs[1].name[:23]  # the same (frozen) millisecond
    seeds = set()
    for r in runs:
        assert (r / "checkpoints" / "last.ckpt").is_file()
        seeds.add(OmegaConf.load(r / "config.yaml").seed)
        metrics = list(r.rglob("metrics.csv"))
        assert len(metrics) == 1 and "test/dwr" in metrics[0].read_text()
    assert seeds == {1, 2}


@pytest.mark.slow
def test_two_sweeps_started_in_the_same_second(tmp_path):
    """Same-second multiruns (joblib and basic launcher) get separate sweep dirs; all jobs of one
    sweep share its sweep dir (the GeoPool results of both jobs land in it)."""
    import hydra

    from tests.helpers import compose_cfg

    data = tmp_path / "data"
    logs = tmp_path / "logs"
    args = [
        "-m",
        "experiment=geopool",
        "data.synthetic=true",
        "data.synthetic_kwargs.n_per_class=5",
        "evaluation.encoders=[aef]",
        "evaluation.methods=[mean],[max]",
        "evaluation.probe.linear=false",
        "evaluation.split_types=[standard]",
        "evaluation.progress=false",
        "logger=csv",
        f"paths.data_dir={data}",
    ]
    one = [a.split(",")[0] for a in args[1:]]  # the stand-in every job reads, generated up front
    cfg = compose_cfg("eval", one, tmp_path / "gen", data)
    hydra.utils.instantiate(cfg.evaluation, _convert_="partial").source.resolve()
    launchers = [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], []]
    procs = [start_entry("evaluate.py", [*args, *la], entry_env(logs)) for la in launchers]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n\n".join(o[-3000:] for o in outs)
    sweeps = sorted((logs / "evaluate" / "geopool" / "multiruns").iterdir())
    assert len(sweeps) == 2 and all(RUN_ID.match(s.name) for s in sweeps), sweeps
    for s in sweeps:
        assert (s / "multirun.yaml").is_file()
        assert sorted(p.name for p in s.iterdir() if p.name.isdigit()) == ["0", "1"]
        assert sorted(p.name for p in (s / "jobs").iterdir()) == ["aef__max.csv", "aef__mean.csv"]
    # the two sweeps logged their own dirs
    for o in outs:
        assert sum(str(s) in o for s in sweeps) == 1, o[-2000:]


def test_writer_start_time_distinguishes_reused_pids(tmp_path):
    """A temp file whose PID now belongs to another (later) process is stale; unknown start: kept."""
    target = tmp_path / "t.txt"
    me = writer_tag()
    host, pid, start = me.split("-")
    reused = (
        tmp_path / f".t.txt.{host}-{pid}-{int(start) + 1 if int(start) else 0}.deadbeef.tmp.txt"
    )
    other_host = tmp_path / f".t.txt.00000000-{pid}-0.deadbeef.tmp.txt"
    for p in (reused, other_host):
        p.write_text("x")
    atomic_write_text(target, "y")
    assert other_host.exists()
    assert reused.exists() == (int(start) == 0)  # without /proc the start time is unknown: kept


def test_no_network_fixture_blocks_outside_and_records(no_network):
    import socket
    import urllib.request

    with pytest.raises(OSError, match="blocked"):
        socket.create_connection(("example.com", 80), timeout=1)
    with pytest.raises(OSError):
        urllib.request.urlopen("http://93.184.216.34/", timeout=1)
    with socket.socket() as s, pytest.raises(OSError, match="blocked"):
        s.connect(("2001:db8::1" if s.family == socket.AF_INET6 else "93.184.216.35", 80))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(OSError, match="blocked"):
        s.sendto(b"x", ("8.8.8.8", 53))
    s.close()
    assert no_network.blocked == [
        "getaddrinfo example.com",
        "getaddrinfo 93.184.216.34",
        "connect 93.184.216.35",
        "sendto 8.8.8.8",
    ]


@pytest.mark.loopback
def test_no_network_fixture_allows_loopback(no_network):
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    with socket.create_connection(srv.getsockname(), timeout=5):
        pass
    srv.close()
    assert no_network.blocked == [] and no_network.loopback


def test_workflows_run_without_network(no_network, tmp_path):
    """A GeoPool evaluation and a short RSC training (fit + test, CSV logger, checkpoints) on the
    synthetic stand-ins try no connection at all — not even loopback."""
    import warnings

    from geoemb import tasks
    from tests.helpers import compose_cfg

    data = tmp_path / "data"
    geopool = compose_cfg(
        "eval",
        [
            "experiment=geopool",
            "data.synthetic=true",
            "data.synthetic_kwargs.n_per_class=5",
            "+data.synthetic_kwargs.size=16",
            "evaluation.encoders=[aef]",
            "evaluation.methods=[mean]",
            "evaluation.probe.linear=false",
            "evaluation.split_types=[standard]",
            "evaluation.progress=false",
            "logger=csv",
        ],
        tmp_path / "ev",
        data,
    )
    metrics = tasks.evaluate(geopool)
    assert metrics["test/knn_5_acc/standard/aef/mean"] > 0
    train = compose_cfg(
        "train",
        [*RSC_TINY, "+trainer.max_steps=1", "+trainer.limit_val_batches=1"],
        tmp_path / "tr",
        data,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = tasks.train(train)
    assert "test/dwr" in metrics
    assert (tmp_path / "tr" / "run" / "checkpoints" / "last.ckpt").is_file()
    assert no_network.blocked == [] and no_network.loopback == []
