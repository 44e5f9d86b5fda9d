"""kNN and linear probes on pooled features, in torch (CPU or CUDA).

Reproduces the GeoPool probes (``reference/geopool.md`` section 7) with sklearn semantics:

* :func:`knn_classify`: ``KNeighborsClassifier(k, metric="cosine", algorithm="brute")`` with
  uniform weights on the raw features.  Cosine distance ``clip(1 - <x/|x|, y/|y|>, 0, 2)`` in
  the input precision (zero vectors stay zero, as ``sklearn.preprocessing.normalize``); the k
  nearest training points; the vote picks the smallest label among tied counts (sklearn's
  ``mode``).  Points *exactly* tied at the k-th distance: sklearn keeps the ones
  ``np.argpartition`` returns (not index order).  On CPU we compute the distances with the same
  numpy operations as sklearn and resolve such rows with ``np.argpartition`` too, so predictions
  are identical; on other devices ties go to the lower training index (and float32 rounding of
  a different GEMM can differ from sklearn's in the last bit).
* :func:`linear_probe`: ``StandardScaler`` fit on train, then multinomial L2 logistic regression
  minimising ``mean(CE) + ||W||^2 / (2 C n)`` (sklearn's objective; intercept unpenalised) with
  full-batch L-BFGS: on CPU sklearn's own SciPy L-BFGS-B driver and options around a fused numba
  loss (:mod:`geoemb.probes._logreg`), elsewhere ``torch.optim.LBFGS`` (strong Wolfe).
  ``C=None`` chooses C from ``Cs`` by ``cv``-fold stratified CV without shuffling (sklearn
  ``StratifiedKFold`` folds, accuracy, first best C), warm-starting along the C path like
  ``LogisticRegressionCV``, then refits on all of train from the folds' mean coefficients.
* :func:`classification_metrics`: accuracy, macro/weighted F1, macro precision/recall with
  sklearn's defaults (labels = union of true and predicted, zero_division -> 0).

Inputs may be numpy arrays or tensors; outputs are tensors on the device of ``x_train``.

One protocol for every workflow that probes features (GeoPool, compression):
:class:`ProbeConfig` holds the knobs under the same names everywhere (config node
``evaluation.probe: {knn_k, linear, C, Cs, cv, max_iter}``) and :func:`run_probes` runs them and
returns a :class:`ProbeResult` (predictions per probe, the chosen C, metrics when test labels are
given). The kNN and linear implementations live in :mod:`geoemb.probes.knn` and
:mod:`geoemb.probes.linear`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from geoemb.errors import InputError
from geoemb.probes.knn import knn_classify
from geoemb.probes.linear import (
    DEFAULT_CS,
    LinearProbeResult,
    linear_probe,
    standardize_fit,
    stratified_kfold_test_folds,
)
from geoemb.probes.metrics import classification_metrics

__all__ = [
    "DEFAULT_CS",
    "LinearProbeResult",
    "ProbeConfig",
    "ProbeResult",
    "classification_metrics",
    "knn_classify",
    "linear_probe",
    "run_probes",
    "standardize_fit",
    "stratified_kfold_test_folds",
]


def _ints(v: Any) -> tuple[int, ...]:
    if isinstance(v, str):
        v = [s for s in v.replace("[", "").replace("]", "").split(",") if s.strip()]
    if isinstance(v, int | np.integer):
        v = [v]
    return tuple(int(x) for x in v)


@dataclass(frozen=True)
class ProbeConfig:
    """The probe protocol: kNN (cosine, one run per ``k``) and the linear probe.

    Attributes
    ----------
    knn_k : tuple of int
        kNN neighbour counts (an int is one k); each gives a probe named ``knn_<k>``.
    linear : bool
        Also run the linear probe (named ``linear``).
    C : float or None
        Fixed inverse regularisation; ``None`` chooses it from ``Cs`` by ``cv``-fold CV.
    Cs : tuple of float
        Candidate C values (first best wins, as sklearn).
    cv : int
        Stratified CV folds (no shuffling, sklearn's layout).
    max_iter : int
        L-BFGS iteration cap (sklearn's ``max_iter``).
    seed : int
        Seeds torch's RNG for the linear probe (the solver itself is deterministic).
    """

    knn_k: tuple[int, ...] = (5,)
    linear: bool = True
    C: float | None = None
    Cs: tuple[float, ...] = DEFAULT_CS
    cv: int = 3
    max_iter: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        where = "evaluation.probe"
        try:
            knn_k = _ints(self.knn_k)
            cs = tuple(float(c) for c in self.Cs)
            c = None if self.C is None else float(self.C)
            cv, max_iter, seed = int(self.cv), int(self.max_iter), int(self.seed)
        except (TypeError, ValueError) as e:
            raise InputError(f"{where}: invalid value ({e}); expected knn_k: list of int, "
                             "C: float or null, Cs: list of float, cv/max_iter: int") from e  # fmt: skip
        if any(k < 1 for k in knn_k):
            raise InputError(f"{where}.knn_k must hold positive integers, got {list(knn_k)}")
        if not cs or any(not np.isfinite(v) or v <= 0 for v in cs):
            raise InputError(f"{where}.Cs must be a non-empty list of positive floats, got {cs}")
        if c is not None and (not np.isfinite(c) or c <= 0):
            raise InputError(f"{where}.C must be a positive float or null, got {c}")
        if cv < 2:
            raise InputError(f"{where}.cv must be >= 2, got {cv}")
        if max_iter < 1:
            raise InputError(f"{where}.max_iter must be >= 1, got {max_iter}")
        for name, value in (("knn_k", knn_k), ("Cs", cs), ("C", c), ("cv", cv),
                            ("max_iter", max_iter), ("seed", seed),
                            ("linear", bool(self.linear))):  # fmt: skip
            object.__setattr__(self, name, value)

    @classmethod
    def from_config(
        cls, node: ProbeConfig | Mapping[str, Any] | None = None, **override: Any
    ) -> ProbeConfig:
        """Build from a config node (``evaluation.probe``) plus keyword overrides (``seed=…``).

        Raises
        ------
        InputError
            A key that is not a probe knob (the message lists the valid ones).
        """
        if isinstance(node, ProbeConfig):
            values = asdict(node)
        else:
            values = dict(node or {})
        values.update(override)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(
                f"evaluation.probe: unknown key(s) {unknown}; valid: {sorted(known - {'seed'})}"
            )
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view (for protocol fingerprints and run records)."""
        d = asdict(self)
        d["knn_k"], d["Cs"] = list(self.knn_k), list(self.Cs)
        return d

    @property
    def names(self) -> list[str]:
        """Probe names in run order: ``knn_<k>`` for each k, then ``linear``."""
        return [f"knn_{k}" for k in self.knn_k] + (["linear"] if self.linear else [])


@dataclass
class ProbeResult:
    """What :func:`run_probes` returns.

    Attributes
    ----------
    preds : dict
        Probe name (``knn_<k>``, ``linear``) -> ``(N_test,)`` int64 predicted labels (numpy).
    C : float or None
        The C the linear probe used (``None`` without a linear probe).
    cv_scores : dict
        C -> mean CV accuracy (empty when C was fixed or no linear probe ran).
    metrics : dict
        Probe name -> :func:`classification_metrics` (empty when ``y_test`` was not given).
    seconds : dict
        Probe name -> wall time.
    """

    preds: dict[str, np.ndarray] = field(default_factory=dict)
    C: float | None = None
    cv_scores: dict[float, float] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _on(device: torch.device | str | None, *arrays: Any) -> tuple[Any, ...]:
    if device is None:
        return arrays
    dev = torch.device(device)
    return tuple(
        (torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a).to(dev)
        for a in arrays
    )


def run_probes(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any | None = None,
    cfg: ProbeConfig | None = None,
    device: torch.device | str | None = None,
) -> ProbeResult:
    """Run the probes of ``cfg`` (default :class:`ProbeConfig`) on one train/test split.

    Parameters
    ----------
    x_train : (N_train, F) array or tensor
    y_train : (N_train,) integer labels
    x_test : (N_test, F)
    y_test : (N_test,) integer labels, optional
        When given, :attr:`ProbeResult.metrics` holds each probe's metrics over the classes
        ``0..max(y_train ∪ y_test)``.
    cfg : ProbeConfig
    device : torch device, optional
        Where the probes run (inputs are moved there); ``None``: where the inputs are (numpy: CPU).

    Returns
    -------
    ProbeResult
    """
    cfg = cfg or ProbeConfig()
    xtr, ytr, xte = _on(device, x_train, y_train, x_test)
    out = ProbeResult()
    for k in cfg.knn_k:
        t0 = time.perf_counter()
        out.preds[f"knn_{k}"] = knn_classify(xtr, ytr, xte, k=k).cpu().numpy()
        out.seconds[f"knn_{k}"] = time.perf_counter() - t0
    if cfg.linear:
        t0 = time.perf_counter()
        res = linear_probe(xtr, ytr, xte, C=cfg.C, Cs=cfg.Cs, cv=cfg.cv, seed=cfg.seed,
                           max_iter=cfg.max_iter)  # fmt: skip
        out.preds["linear"] = res.preds.cpu().numpy()
        out.C, out.cv_scores = float(res.C), dict(res.cv_scores)
        out.seconds["linear"] = time.perf_counter() - t0
    if y_test is not None:
        yte = _numpy_labels(y_test)
        n_cls = int(max(yte.max(initial=0), _numpy_labels(y_train).max(initial=0))) + 1
        out.metrics = {
            name: classification_metrics(yte, pred, num_classes=n_cls)
            for name, pred in out.preds.items()
        }
    return out


def _numpy_labels(y: Any) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    return np.asarray(y, dtype=np.int64).reshape(-1)
