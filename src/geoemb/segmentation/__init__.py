"""Segmentation: net factory, LightningModule, losses."""

from geoemb.segmentation.models import NETS, build_net

__all__ = ["NETS", "build_net"]
