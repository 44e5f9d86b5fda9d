"""Chesapeake RSC loader (code/nodata mapping, bad inputs), synthetic generator, augmentation, loss."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import rasterio
import torch
from lightning import LightningModule
from scipy.ndimage import distance_transform_cdt

from geoemb.data.augment import (
    CUTOUT_PRESETS,
    FixedSquareCutout,
    RSCAugmentation,
    Scale,
    build_cutout,
)
from geoemb.data.chesapeake_rsc import ChesapeakeRSC, ChesapeakeRSCDataModule, remap_mask
from geoemb.data.source import MARKER
from geoemb.segmentation.losses import DistanceAwareCELoss, distance_weights
from geoemb.synthetic.chesapeake_rsc import MISSING_IDX, generate


@pytest.fixture(scope="module")
def syn_root(tmp_path_factory):
    """A stand-in with the planted fault: one train patch listed without its tifs."""
    return generate(
        tmp_path_factory.mktemp("rsc") / "ChesapeakeRSC",
        n_train=3, n_val=1, n_test=2, size=32, missing_patch=True,
    )  # fmt: skip


def test_remap_all_codes_exact():
    raw = np.array(list(range(13)) + [255, 254], np.uint8)
    two = remap_mask(raw, 2)
    three = remap_mask(raw, 3)
    exp2 = np.zeros(15, np.int64)
    exp2[[9, 12]] = 1
    exp3 = exp2.copy()
    exp3[12] = 2
    np.testing.assert_array_equal(two, exp2)
    np.testing.assert_array_equal(three, exp3)
    assert torch.equal(remap_mask(torch.from_numpy(raw), 3), torch.from_numpy(exp3))
    with pytest.raises(ValueError, match="num_classes"):
        remap_mask(raw, 4)


def test_generator_layout_and_profile(syn_root):
    assert (syn_root / "patches.gpkg").exists()
    for s in ("train", "val", "test"):
        assert (syn_root / f"{s}_idxs.txt").exists()
    with rasterio.open(syn_root / "data" / "0_image.tif") as src:
        assert src.count == 4 and src.dtypes[0] == "uint8" and src.nodata is None
        assert src.profile["compress"] == "lzw" and src.crs is not None and src.transform.a == 1.0
    with rasterio.open(syn_root / "data" / "0_mask.tif") as src:
        assert src.count == 1 and src.nodata == 255 and src.dtypes[0] == "uint8"
    codes = np.concatenate(
        [rasterio.open(p).read(1).ravel() for p in sorted((syn_root / "data").glob("*_mask.tif"))]
    )
    assert {9, 12} <= set(np.unique(codes).tolist())
    assert not (syn_root / "data" / f"{MISSING_IDX}_image.tif").exists()


def test_loader_maps_codes_and_skips_missing(syn_root):
    with pytest.warns(UserWarning, match="skipped 1 patch"):
        ds = ChesapeakeRSC(syn_root, "train", num_classes=2, patch_size=32)
    assert len(ds) == 3 and ds.n_missing == 1
    item = ds[1]
    with rasterio.open(syn_root / "data" / f"{ds.idxs[1]}_mask.tif") as src:
        raw = src.read(1)
    with rasterio.open(syn_root / "data" / f"{ds.idxs[1]}_image.tif") as src:
        img = src.read()
    np.testing.assert_array_equal(item["mask_3class"].numpy(), remap_mask(raw, 3))
    np.testing.assert_array_equal(item["mask"].numpy(), ((raw == 9) | (raw == 12)).astype(np.int64))
    np.testing.assert_array_equal(item["image"].numpy(), img.astype(np.float32))
    ds3 = ChesapeakeRSC(syn_root, "test", num_classes=3, patch_size=32)
    assert torch.equal(ds3[0]["mask"], ds3[0]["mask_3class"])


def test_default_stand_in_is_complete(tmp_path):
    """Regression: every synthetic run warned about the planted missing patch; it is opt-in now."""
    root = generate(tmp_path / "rsc", n_train=2, n_val=1, n_test=1, size=32)
    assert str(MISSING_IDX) not in (root / "train_idxs.txt").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "skipped N patch(es)" warning
        for split in ("train", "val", "test"):
            ds = ChesapeakeRSC(root, split, patch_size=32)
            assert ds.n_missing == 0 and len(ds) == {"train": 2, "val": 1, "test": 1}[split]


def test_tc_only_patch_has_canopy_but_no_road(syn_root):
    ds = ChesapeakeRSC(syn_root, "test", num_classes=3, patch_size=32)
    last = ds[len(ds) - 1]["mask_3class"]
    assert (last == 2).any() and not (last == 1).any()
    # other patches: canopy distances are finite and hand-checkable against scipy
    m = ds[0]["mask_3class"].numpy()
    if (m == 2).any() and (m == 1).any():
        d = distance_transform_cdt(m != 1, metric="taxicab")[m == 2]
        assert d.min() >= 1


def test_missing_real_data_is_one_error_with_a_working_hint(tmp_path):
    dm = ChesapeakeRSCDataModule(root=str(tmp_path / "ChesapeakeRSC"))
    with pytest.raises(FileNotFoundError, match="data.synthetic=true") as err:
        dm.prepare_data()
    msg = str(err.value)
    assert "Chesapeake RSC data not found" in msg and "huggingface-cli download" in msg
    (tmp_path / "ChesapeakeRSC" / "data").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"missing patches.gpkg, train_idxs.txt"):
        dm.check()


def test_synthetic_root_holding_real_data_is_refused_untouched(tmp_path, syn_root):
    """The source never writes into a folder it did not create (a checkpoint may name any path)."""
    real = tmp_path / "real"
    shutil.copytree(syn_root, real)
    before = sorted(p.relative_to(real) for p in real.rglob("*"))
    dm = ChesapeakeRSCDataModule(root=str(real), synthetic=True, synthetic_root=str(real))
    with pytest.raises(ValueError, match="refusing to generate into it"):
        dm.prepare_data()
    assert sorted(p.relative_to(real) for p in real.rglob("*")) == before


def test_bad_inputs(tmp_path, syn_root):
    with pytest.raises(FileNotFoundError, match="data.synthetic=true"):
        ChesapeakeRSC(tmp_path / "nope", "train")
    root = tmp_path / "copy"
    shutil.copytree(syn_root, root)
    (root / "val_idxs.txt").unlink()
    with pytest.raises(FileNotFoundError, match="val_idxs.txt"):
        ChesapeakeRSC(root, "val", patch_size=32)
    (root / "test_idxs.txt").write_text("0\nabc\n")
    with pytest.raises(ValueError, match="test_idxs.txt:2"):
        ChesapeakeRSC(root, "test", patch_size=32)
    with pytest.raises(ValueError, match="expected the patch size|expected patch size"):
        ChesapeakeRSC(root, "train", patch_size=512)[0]
    # a mask of the wrong size
    with rasterio.open(root / "data" / "0_mask.tif") as src:
        prof = src.profile
    prof.update(width=16, height=16, tiled=False)
    prof.pop("blockxsize", None), prof.pop("blockysize", None)
    with rasterio.open(root / "data" / "0_mask.tif", "w", **prof) as dst:
        dst.write(np.zeros((1, 16, 16), np.uint8))
    with pytest.raises(ValueError, match="0_mask.tif"):
        ChesapeakeRSC(root, "train", patch_size=None)[0]
    (root / "patches.gpkg").unlink()
    with pytest.raises(FileNotFoundError, match="patches.gpkg"):
        ChesapeakeRSC(root, "train")
    with pytest.raises(ValueError, match="split"):
        ChesapeakeRSC(syn_root, "trainval")


def test_datamodule_synthetic_generation(tmp_path):
    dm = ChesapeakeRSCDataModule(
        root=str(tmp_path / "ChesapeakeRSC"),
        synthetic=True,
        synthetic_kwargs={"n_train": 2, "n_val": 1, "n_test": 1, "size": 32},
        batch_size=2,
        augment={"cutout": "small"},
    )
    assert dm.data_source == "synthetic"
    dm.prepare_data()
    folder = dm.data_root
    assert (
        folder.parent == tmp_path / "synthetic" / "chesapeake_rsc" and (folder / MARKER).is_file()
    )
    stamp = (folder / "data" / "0_image.tif").stat().st_mtime_ns
    again = ChesapeakeRSCDataModule(
        root=str(tmp_path / "ChesapeakeRSC"),
        synthetic=True,
        synthetic_kwargs={"n_train": 2, "n_val": 1, "n_test": 1, "size": 32},
    )
    again.prepare_data()  # the same content-keyed stand-in: no rewrite
    assert again.data_root == folder
    assert (folder / "data" / "0_image.tif").stat().st_mtime_ns == stamp
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 4, 32, 32) and batch["mask_3class"].shape == (2, 32, 32)
    # detached from any Trainer: the hook is a no-op (no private Lightning attribute is faked)
    assert dm.trainer is None
    out = dm.on_after_batch_transfer({k: v.clone() for k, v in batch.items()}, 0)
    assert all(torch.equal(out[k], batch[k]) for k in batch)


class _Recorder(LightningModule):
    """A 1x1-conv segmenter that records every batch it sees, per stage."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Conv2d(4, 2, 1)
        self.seen: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
        self.train_losses: list[float] = []

    def _step(self, batch, stage):
        self.seen[stage].append({k: v.detach().clone() for k, v in batch.items()})
        loss = torch.nn.functional.cross_entropy(self.net(batch["image"] / 255.0), batch["mask"])
        if stage == "train":
            self.train_losses.append(loss.item())
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit_and_test(root, augment, seed=0):
    """Real ``Trainer.fit`` + ``Trainer.test`` on the stand-in; returns (module, dm, aug stages)."""
    from lightning import Trainer, seed_everything

    seed_everything(seed, verbose=False)
    dm = ChesapeakeRSCDataModule(root=str(root), patch_size=32, batch_size=2, augment=augment)
    stages = []
    if dm.augment is not None:
        real = dm.augment

        class _Spy(torch.nn.Module):
            def forward(self, image, masks):
                stages.append(dm.trainer.state.stage.value)
                return real(image, masks)

        dm.augment = _Spy()
    model = _Recorder()
    trainer = Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,
        default_root_dir=str(root.parent / "trainer"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=dm)
        trainer.test(model, datamodule=dm, verbose=False)
    return model, dm, stages


def _raw_items(dm, split):
    ds = dm.dataset(split)
    return {int(ds[i]["idx"]): ds[i] for i in range(len(ds))}


def _assert_untouched(seen, items):
    assert seen
    for b in seen:
        for j, idx in enumerate(b["idx"].tolist()):
            for k in ("image", "mask", "mask_3class"):
                assert torch.equal(b[k][j], items[idx][k]), (idx, k)


def test_augmentation_runs_in_real_fit_on_training_batches_only(syn_root):
    """Regression: the hook looked up ``self._trainer`` (never set by Lightning on a DataModule), so
    ``trainer.fit`` trained without rotation/flips/cutout and the cutout run equalled the baseline."""
    no_aug = {"rotation_degrees": 0, "flips": False, "cutout": None}
    cut = {"rotation_degrees": 0, "flips": False, "cutout": "square8"}
    m0, dm0, st0 = _fit_and_test(syn_root, no_aug)
    m1, dm1, st1 = _fit_and_test(syn_root, cut)
    n_train_batches = len(m1.seen["train"])
    assert n_train_batches == 4  # 3 patches, batch 2, 2 epochs
    # called once per training batch, never for sanity-check/validation/test batches
    assert st0 == ["train"] * n_train_batches and st1 == st0
    train_items = _raw_items(dm1, "train")
    for dm, m in ((dm0, m0), (dm1, m1)):
        _assert_untouched(m.seen["val"], _raw_items(dm, "val"))
        _assert_untouched(m.seen["test"], _raw_items(dm, "test"))
    _assert_untouched(m0.seen["train"], train_items)
    # cutout: some training pixels erased to 0, nothing else changed, labels untouched
    n_erased = 0
    for b in m1.seen["train"]:
        for j, idx in enumerate(b["idx"].tolist()):
            raw = train_items[idx]
            diff = b["image"][j] != raw["image"]
            assert (b["image"][j][diff] == 0).all()
            assert torch.equal(b["mask"][j], raw["mask"])
            n_erased += int(diff.any())
    assert n_erased > 0
    assert m0.train_losses != m1.train_losses
    # the reference geometry (rotation + flips) moves image and both masks together
    m2, dm2, st2 = _fit_and_test(syn_root, {"rotation_degrees": 90, "flips": True})
    assert st2 == ["train"] * n_train_batches
    moved = 0
    for b in m2.seen["train"]:
        assert torch.equal(b["mask"], b["mask_3class"].clamp(max=1))
        for j, idx in enumerate(b["idx"].tolist()):
            moved += int(not torch.equal(b["image"][j], train_items[idx]["image"]))
    assert moved > 0
    _assert_untouched(m2.seen["val"], _raw_items(dm2, "val"))


def test_augment_flip_consistency_and_cutout():
    torch.manual_seed(0)
    img = torch.arange(2 * 4 * 16 * 16, dtype=torch.float32).reshape(2, 4, 16, 16)
    mask = torch.randint(0, 3, (2, 16, 16))
    aug = RSCAugmentation(rotation_degrees=0, flips=True)
    for _ in range(4):
        out, m = aug(img, {"m": mask})
        # image channel 0 encodes position: the mask must follow the same permutation
        for b in range(2):
            pos = out[b, 0].long() - b * 4 * 256
            assert torch.equal(m["m"][b].flatten(), mask[b].flatten()[pos.flatten()])
    sq = FixedSquareCutout(size=5, p=1.0, count=1)
    z = sq(torch.ones(3, 2, 12, 12))
    assert ((z == 0).sum((1, 2, 3)) == 2 * 25).all()
    assert len(build_cutout("multi")) == 3 and CUTOUT_PRESETS["large"]["p"] == 0.75
    with pytest.raises(ValueError, match="cutout"):
        build_cutout("huge")
    aug = RSCAugmentation(rotation_degrees=0, flips=False, cutout="square8")
    _, m2 = aug(torch.ones(2, 4, 16, 16), {"m": mask})
    assert torch.equal(m2["m"], mask)  # cutout never touches the labels
    assert torch.allclose(Scale()(torch.full((1,), 255.0)), torch.ones(1))


def test_distance_weights_and_loss():
    t = torch.zeros(2, 9, 9, dtype=torch.long)
    t[0, 4, :3] = 1
    t[0, 4, 3:] = 2
    t[1, 2:5, 2:5] = 2  # no visible road
    w = distance_weights(t, alpha=0.5, mode="linear", max_weight=3.0, no_road_distance=10)
    d = distance_transform_cdt(t[0].numpy() != 1, metric="taxicab")
    exp = np.where(t[0].numpy() == 2, np.minimum(1 + 0.5 * d, 3.0), 1.0)
    np.testing.assert_allclose(w[0].numpy(), exp)
    assert torch.all(w[1][t[1] == 2] == 3.0) and torch.all(w[1][t[1] == 0] == 1.0)
    logits = torch.randn(2, 2, 9, 9, requires_grad=True)
    plain = DistanceAwareCELoss(alpha=0.0)(logits, t)
    ce = torch.nn.functional.cross_entropy(logits, t.clamp(max=1))
    assert plain.item() == pytest.approx(ce.item(), rel=1e-6)
    loss = DistanceAwareCELoss(alpha=0.5, connectivity_weight=1.0)(logits, t)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="mode"):
        DistanceAwareCELoss(mode="square")
    with pytest.raises(ValueError, match="logits"):
        DistanceAwareCELoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long))
