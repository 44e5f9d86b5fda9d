"""Shared utilities: atomic output, tables, bit packing, water metrics, net factory."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import jaccard_score

from geoemb.compression.bitpack import pack_bits, padding_mask, unpack_bits
from geoemb.metrics.water import PerBatchMeanIoU, PerBatchMeanOA
from geoemb.reporting.tables import to_latex, to_markdown, write_table
from geoemb.segmentation import build_net
from geoemb.utils.io import atomic_path, atomic_write_text


def test_atomic_path_success_and_failure(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "hello")
    assert target.read_text() == "hello"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            assert tmp.suffix == ".txt" and tmp.parent == target.parent
            raise RuntimeError("interrupted")
    assert target.read_text() == "hello", "an interrupted write must not replace the target"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"], "no temp file left"


def test_atomic_path_fsyncs_file_then_renames_then_fsyncs_dir(tmp_path, monkeypatch):
    """Regression: the temp file was renamed without fsync (a power loss could leave an empty or
    partial file under the final name) and the directory entry was never made durable."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(a, b):
        events.append(("replace", str(a), str(b)))
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "o.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"x" * 10)
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    assert events[0][1] == str(tmp) and events[1][1:] == (str(tmp), str(target))
    assert events[2][1] == str(tmp_path)
    assert target.read_bytes() == b"x" * 10


def test_atomic_path_refuses_unusable_targets_before_the_work(tmp_path):
    from geoemb.errors import OutputError

    ran = []
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError, match="is an existing directory"):
        with atomic_path(tmp_path / "d"):
            ran.append(1)
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="cannot create output directory"):
        with atomic_path(tmp_path / "f" / "out.tif"):
            ran.append(1)
    assert ran == []
    with pytest.raises(OutputError, match="nothing was written"):
        with atomic_path(tmp_path / "empty.txt"):
            pass
    assert not (tmp_path / "empty.txt").exists()


@pytest.mark.parametrize("name", ["a b ü 日本.tif", "[x]*?.csv", "n" * 250 + ".txt"])
def test_atomic_path_odd_names(tmp_path, name):
    target = tmp_path / name
    atomic_write_text(target, "ok")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            (tmp.parent / (tmp.name + ".aux.xml")).write_text("sidecar")
            raise RuntimeError
    assert target.read_text() == "ok"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_atomic_path_removes_only_dead_writers_temps(tmp_path):
    import subprocess
    import sys

    from geoemb.utils.io import remove_stale_temps, writer_tag

    target = tmp_path / "out.tif"
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(p.stdout)  # exited: its PID is free (reuse within this test is negligible)
    host = writer_tag().split("-")[0]
    dead = tmp_path / f".out.tif.{host}-{dead_pid}-0.0123abcd.tmp.tif"
    dead_side = tmp_path / (dead.name + ".aux.xml")
    alive = tmp_path / f".out.tif.{writer_tag(os.getppid())}.0123abcd.tmp.tif"
    foreign = tmp_path / f".out.tif.ffffffff-{dead_pid}-0.0123abcd.tmp.tif"  # another host
    other_target = tmp_path / f".out.tiff.{host}-{dead_pid}-0.0123abcd.tmp.tiff"
    legacy = tmp_path / ".out.k2j3h4.tmp.tif"  # unknown writer: never guessed at
    for f in (dead, dead_side, alive, foreign, other_target, legacy):
        f.write_text("x")
    assert sorted(remove_stale_temps(target)) == sorted([dead, dead_side])
    assert all(f.exists() for f in (alive, foreign, other_target, legacy))


def test_write_table_three_formats(tmp_path):
    df = pd.DataFrame({"method": ["mean", "cov_x"], "acc": [91.234, float("nan")]})
    paths = write_table(df, tmp_path / "t", caption="a_b")
    assert pd.read_csv(paths["csv"]).shape == (2, 2)
    md = paths["md"].read_text().splitlines()
    assert md[0] == "| method | acc |" and md[2] == "| mean | 91.23 |" and md[3] == "| cov_x |  |"
    tex = to_latex(df)
    assert r"cov\_x & -- \\" in tex and r"\toprule" in tex
    assert to_markdown(df).count("\n") == 4


@pytest.mark.parametrize("dim", [1, 7, 8, 13, 64, 1023])
def test_bitpack_matches_numpy(dim):
    rng = np.random.default_rng(dim)
    bits = rng.integers(0, 2, size=(5, dim))
    codes = pack_bits(bits)
    np.testing.assert_array_equal(codes, np.packbits(bits.astype(np.uint8), axis=1))
    np.testing.assert_array_equal(unpack_bits(codes, dim), bits)
    mask = padding_mask(dim)
    assert int(np.unpackbits(mask).sum()) == dim
    with pytest.raises(ValueError, match="bytes per row"):
        unpack_bits(codes, dim + 8)


def test_tutorial_per_batch_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    oa, iou = PerBatchMeanOA(), PerBatchMeanIoU()
    ref_oa, ref_iou = [], []
    for i in range(5):
        y = rng.integers(0, 2, size=(2, 8, 8))
        p = rng.integers(0, 2, size=(2, 8, 8))
        if i == 3:  # a batch with no water anywhere: zero_division=1
            y[:] = 0
            p[:] = 0
        oa.update(torch.from_numpy(p), torch.from_numpy(y))
        iou.update(torch.from_numpy(p), torch.from_numpy(y))
        ref_oa.append(np.count_nonzero(y == p) / y.size)
        ref_iou.append(jaccard_score(y.flatten(), p.flatten(), zero_division=1.0))
    assert float(oa.compute()) == pytest.approx(np.mean(ref_oa), abs=1e-6)
    assert float(iou.compute()) == pytest.approx(np.mean(ref_iou), abs=1e-6)


@pytest.mark.parametrize(
    "name", ["deeplabv3_resnet50", "unet_resnet18", "segformer_mit_b0", "tiny_cnn"]
)
def test_build_net_shapes(name):
    net = build_net(name, in_channels=9, num_classes=3).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 9, 64, 64))
    assert out.shape == (1, 3, 64, 64)


def test_deeplab_has_tutorial_conv1():
    net = build_net("deeplabv3_resnet50", in_channels=9, num_classes=2)
    conv = net.model.backbone.conv1
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.bias) == (
        9,
        64,
        (7, 7),
        (2, 2),
        None,
    )


def test_unknown_net_is_clear():
    with pytest.raises(ValueError, match="unknown segmentation net 'nope'"):
        build_net("nope", 3, 2)


def test_per_batch_metrics_ignore_index_match_sklearn_on_valid_pixels():
    rng = np.random.default_rng(1)
    oa, iou = PerBatchMeanOA(ignore_index=255), PerBatchMeanIoU(ignore_index=255)
    ref_oa, ref_iou = [], []
    for _ in range(4):
        y = rng.integers(0, 2, size=(2, 8, 8))
        y[:, :3] = 255  # warp-fill rows
        p = rng.integers(0, 2, size=(2, 8, 8))
        oa.update(torch.from_numpy(p), torch.from_numpy(y))
        iou.update(torch.from_numpy(p), torch.from_numpy(y))
        v = y != 255
        ref_oa.append(np.mean(y[v] == p[v]))
        ref_iou.append(jaccard_score(y[v], p[v], zero_division=1.0))
    all_fill = torch.full((1, 4, 4), 255)
    oa.update(torch.zeros(1, 4, 4, dtype=torch.long), all_fill)  # no valid pixel: batch skipped
    assert float(oa.compute()) == pytest.approx(np.mean(ref_oa), abs=1e-6)
    assert float(iou.compute()) == pytest.approx(np.mean(ref_iou), abs=1e-6)
