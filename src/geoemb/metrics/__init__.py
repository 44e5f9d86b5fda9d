"""geoemb.metrics: torchmetrics ``Metric`` objects (RSC road/canopy metrics, DWR, distance curves)."""

from geoemb.metrics.distance import NO_FEATURE, l1_distance_transform
from geoemb.metrics.rsc import (
    REFERENCE_MAX_DISTANCE,
    BackgroundPrecision,
    BackgroundRecall,
    DistanceBinnedRecall,
    DistanceWeightedRecall,
    RoadPrecision,
    RoadRecall,
    RSCConfusionMatrix,
    TCRecall,
    distance_curve_frame,
    reference_distance_bins,
    tc_distances,
    write_distance_curve_csv,
)

__all__ = [
    "NO_FEATURE",
    "REFERENCE_MAX_DISTANCE",
    "BackgroundPrecision",
    "BackgroundRecall",
    "DistanceBinnedRecall",
    "DistanceWeightedRecall",
    "RSCConfusionMatrix",
    "RoadPrecision",
    "RoadRecall",
    "TCRecall",
    "distance_curve_frame",
    "l1_distance_transform",
    "reference_distance_bins",
    "tc_distances",
    "write_distance_curve_csv",
]
