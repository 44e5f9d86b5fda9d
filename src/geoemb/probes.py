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
  full-batch L-BFGS (strong Wolfe).  ``C=None`` chooses C from ``Cs`` by ``cv``-fold stratified
  CV without shuffling (sklearn ``StratifiedKFold`` folds, accuracy, first best C), warm-starting
  along the C path like ``LogisticRegressionCV``, then refits on all of train.
* :func:`classification_metrics`: accuracy, macro/weighted F1, macro precision/recall with
  sklearn's defaults (labels = union of true and predicted, zero_division -> 0).

Inputs may be numpy arrays or tensors; outputs are tensors on the device of ``x_train``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

DEFAULT_CS: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------
def _features(a, name: str, device: torch.device | None = None) -> Tensor:
    if isinstance(a, np.ndarray):
        a = torch.from_numpy(np.ascontiguousarray(a))
    if not isinstance(a, Tensor):
        raise TypeError(f"probes: {name} must be a numpy array or torch tensor, got {type(a)}")
    if a.ndim != 2:
        raise ValueError(f"probes: {name} must have shape (N, F), got {tuple(a.shape)}")
    if a.dtype != torch.float64:
        a = a.to(torch.float32)
    if device is not None:
        a = a.to(device)
    return a


def _labels(a, name: str, n: int, device: torch.device) -> Tensor:
    if isinstance(a, np.ndarray):
        a = torch.from_numpy(np.ascontiguousarray(a))
    if not isinstance(a, Tensor):
        raise TypeError(f"probes: {name} must be a numpy array or torch tensor, got {type(a)}")
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"probes: {name} must have shape ({n},), got {tuple(a.shape)}")
    if a.is_floating_point():
        raise ValueError(f"probes: {name} must hold integer class labels, got {a.dtype}")
    return a.to(device=device, dtype=torch.long)


def _check_same_width(x_train: Tensor, x_test: Tensor) -> None:
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"probes: x_test has {x_test.shape[1]} features but x_train has {x_train.shape[1]}"
        )


# ----------------------------------------------------------------------------------------------
# kNN
# ----------------------------------------------------------------------------------------------
def _np_normalize(x: np.ndarray) -> np.ndarray:
    """Row-normalise like ``sklearn.preprocessing.normalize`` (zero rows stay zero)."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms == 0.0] = 1.0
    return x / norms[:, np.newaxis]


def _normalize_rows(x: Tensor) -> Tensor:
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x / torch.where(norm == 0, torch.ones_like(norm), norm)


def knn_classify(
    x_train,
    y_train,
    x_test,
    k: int = 5,
    batch_size: int = 4096,
    backend: str = "auto",
) -> Tensor:
    """Cosine kNN classification with uniform votes (sklearn brute-force semantics).

    Parameters
    ----------
    x_train : (N_train, F) array/tensor
    y_train : (N_train,) integer labels
    x_test : (N_test, F)
    k : int
        Number of neighbours.
    batch_size : int
        Test rows per similarity block (memory ~ batch_size * N_train).
    backend : {"auto", "numpy", "torch"}
        ``auto``: numpy distances (bit-identical to sklearn) on CPU, torch elsewhere.

    Returns
    -------
    LongTensor (N_test,) predicted labels, on x_train's device.
    """
    xtr = _features(x_train, "x_train")
    dev = xtr.device
    xte = _features(x_test, "x_test", dev).to(xtr.dtype)
    _check_same_width(xtr, xte)
    ytr = _labels(y_train, "y_train", xtr.shape[0], dev)
    if not 1 <= k <= xtr.shape[0]:
        raise ValueError(f"knn_classify: k must be in [1, N_train={xtr.shape[0]}], got {k}")
    classes, y_enc = torch.unique(ytr, sorted=True, return_inverse=True)
    n_cls = classes.numel()
    # non-finite features -> 0, as the reference's sanitize_features
    xtr = torch.nan_to_num(xtr, nan=0.0, posinf=0.0, neginf=0.0)
    xte = torch.nan_to_num(xte, nan=0.0, posinf=0.0, neginf=0.0)
    if backend not in ("auto", "numpy", "torch"):
        raise ValueError(f"knn_classify: backend must be auto|numpy|torch, got {backend!r}")
    if backend == "numpy" and dev.type != "cpu":
        raise ValueError("knn_classify: backend='numpy' needs CPU tensors")
    on_cpu = dev.type == "cpu" and backend != "torch"
    tr_n = _np_normalize(xtr.numpy()) if on_cpu else _normalize_rows(xtr)
    preds = []
    for s in range(0, xte.shape[0], batch_size):
        if on_cpu:
            # the same float32/float64 numpy operations as sklearn's cosine_distances, so that
            # distances (and hence exact ties) are bit-identical to the anchor's
            dn = _np_normalize(xte[s : s + batch_size].numpy()) @ tr_n.T
            dn *= -1
            dn += 1
            np.clip(dn, 0, 2, out=dn)
            dist = torch.from_numpy(dn)
        else:
            q = _normalize_rows(xte[s : s + batch_size])
            dist = torch.mm(q, tr_n.T)
            dist.neg_().add_(1.0).clamp_(0.0, 2.0)  # sklearn cosine_distances
        kth_vals, idx = torch.topk(dist, k, dim=1, largest=False)
        kth = kth_vals[:, -1:]
        n_le = (dist <= kth).sum(1)
        tie_rows = torch.nonzero(n_le > k).flatten()
        if tie_rows.numel():
            if on_cpu:
                # several points at the k-th distance: pick them as sklearn does
                # (np.argpartition on the distance row, row by row independent)
                rows = tie_rows.numpy()
                part = np.argpartition(dn[rows], k - 1, axis=1)[:, :k]
                idx[tie_rows] = torch.from_numpy(part).to(idx.dtype)
            else:
                # keep all strictly closer points, then the lowest training indices among ties
                d = dist[tie_rows]
                t = kth[tie_rows]
                closer = d < t
                ties = d == t
                need = k - closer.sum(1, keepdim=True)
                sel = closer | (ties & (torch.cumsum(ties, dim=1) <= need))
                idx[tie_rows] = torch.nonzero(sel)[:, 1].reshape(-1, k).to(idx.dtype)
        votes = torch.zeros((dist.shape[0], n_cls), dtype=torch.float32, device=dev)
        votes.scatter_add_(1, y_enc[idx], torch.ones_like(idx, dtype=torch.float32))
        preds.append(classes[votes.argmax(dim=1)])  # first max = smallest label
    if not preds:
        return torch.empty(0, dtype=torch.long, device=dev)
    return torch.cat(preds)


# ----------------------------------------------------------------------------------------------
# linear probe
# ----------------------------------------------------------------------------------------------
@dataclass
class LinearProbeResult:
    """Result of :func:`linear_probe`.

    Attributes
    ----------
    preds : LongTensor (N_test,) predicted labels
    C : float  the C used for the final fit
    cv_scores : dict C -> mean CV accuracy (empty when C was fixed)
    coef : Tensor (n_classes, F) on standardized features
    intercept : Tensor (n_classes,)
    classes : LongTensor (n_classes,)
    mean, scale : Tensor (F,) the StandardScaler parameters
    n_iter : int  L-BFGS iterations of the final fit
    """

    preds: Tensor
    C: float
    cv_scores: dict[float, float] = field(default_factory=dict)
    coef: Tensor | None = None
    intercept: Tensor | None = None
    classes: Tensor | None = None
    mean: Tensor | None = None
    scale: Tensor | None = None
    n_iter: int = 0

    def decision_function(self, x) -> Tensor:
        """Logits (N, n_classes) for raw (unstandardized) features x (N, F)."""
        xt = _features(x, "x", self.coef.device).to(self.coef.dtype)
        return ((xt - self.mean) / self.scale) @ self.coef.T + self.intercept

    def predict(self, x) -> Tensor:
        """Predicted labels for raw features x (N, F)."""
        return self.classes[self.decision_function(x).argmax(1)]


def standardize_fit(x: Tensor) -> tuple[Tensor, Tensor]:
    """StandardScaler parameters: mean and population std, near-zero std replaced by 1."""
    mean = x.mean(0)
    var = ((x - mean) ** 2).mean(0)
    scale = var.sqrt()
    eps = 10 * torch.finfo(x.dtype).eps
    scale = torch.where(scale < eps, torch.ones_like(scale), scale)
    return mean, scale


def stratified_kfold_test_folds(y: np.ndarray, n_splits: int) -> np.ndarray:
    """Fold id of every sample, as ``StratifiedKFold(n_splits, shuffle=False)`` assigns them.

    Classes are numbered by first appearance; samples sorted by class are dealt round-robin to
    folds, and each class's fold ids are then laid out in order over that class's samples.
    """
    y = np.asarray(y)
    _, first_idx, inv = np.unique(y, return_index=True, return_inverse=True)
    order_of_appearance = np.argsort(np.argsort(first_idx, kind="stable"), kind="stable")
    y_enc = order_of_appearance[inv]
    n_classes = int(y_enc.max()) + 1
    counts = np.bincount(y_enc, minlength=n_classes)
    if n_splits > counts.max():
        raise ValueError(
            f"linear_probe: cv={n_splits} folds but the largest class has {counts.max()} samples"
        )
    y_sorted = np.sort(y_enc)
    alloc = np.stack(
        [np.bincount(y_sorted[i::n_splits], minlength=n_classes) for i in range(n_splits)]
    )  # (n_splits, n_classes)
    folds = np.empty(len(y), dtype=np.int64)
    for c in range(n_classes):
        folds[y_enc == c] = np.repeat(np.arange(n_splits), alloc[:, c])
    return folds


def _fit_logreg(
    x: Tensor,
    y: Tensor,
    n_classes: int,
    C: float,
    max_iter: int,
    tol: float,
    init: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, int]:
    """Multinomial L2 logistic regression by full-batch L-BFGS; returns W (K, F), b (K,), iters."""
    n, f = x.shape
    if init is None:
        w = torch.zeros((n_classes, f), dtype=x.dtype, device=x.device)
        b = torch.zeros(n_classes, dtype=x.dtype, device=x.device)
    else:
        w, b = (t.detach().clone() for t in init)
    w.requires_grad_(True)
    b.requires_grad_(True)
    lam = 1.0 / (C * n)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        max_eval=int(max_iter * 1.25) + 20,
        tolerance_grad=tol,
        tolerance_change=1e-12,
        history_size=10,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad(set_to_none=False)
        logits = torch.addmm(b, x, w.T)
        loss = F.cross_entropy(logits, y) + 0.5 * lam * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    state = opt.state[opt._params[0]]
    return w.detach(), b.detach(), int(state.get("n_iter", 0))


def linear_probe(
    x_train,
    y_train,
    x_test,
    C: float | None = None,
    Cs: Sequence[float] = DEFAULT_CS,
    cv: int = 3,
    seed: int = 0,
    max_iter: int = 1000,
    tol: float = 1e-4,
) -> LinearProbeResult:
    """Standardize + multinomial L2 logistic regression, C fixed or chosen by stratified CV.

    Parameters
    ----------
    x_train : (N_train, F); y_train : (N_train,) integer labels; x_test : (N_test, F)
    C : float, optional
        Fixed inverse regularisation strength; ``None`` selects it from ``Cs`` by CV.
    Cs : sequence of float
        Candidate C values (ties go to the first best, as sklearn).
    cv : int
        Stratified folds (no shuffling, sklearn's fold layout).
    seed : int
        Sets torch's RNG for reproducibility (the solver itself is deterministic).
    max_iter, tol : L-BFGS iteration cap and gradient tolerance (sklearn's ``max_iter``,
        ``tol``).

    Returns
    -------
    LinearProbeResult
    """
    torch.manual_seed(seed)
    xtr = _features(x_train, "x_train")
    dev = xtr.device
    xte = _features(x_test, "x_test", dev).to(xtr.dtype)
    _check_same_width(xtr, xte)
    ytr = _labels(y_train, "y_train", xtr.shape[0], dev)
    classes, y_enc = torch.unique(ytr, sorted=True, return_inverse=True)
    k = classes.numel()
    if k < 2:
        raise ValueError(f"linear_probe: y_train needs at least 2 classes, got {k}")
    # non-finite features -> 0, as the reference's sanitize_features
    xtr = torch.nan_to_num(xtr, nan=0.0, posinf=0.0, neginf=0.0)
    xte = torch.nan_to_num(xte, nan=0.0, posinf=0.0, neginf=0.0)
    mean, scale = standardize_fit(xtr)
    xs = (xtr - mean) / scale
    xts = (xte - mean) / scale

    cv_scores: dict[float, float] = {}
    if C is None:
        cs = [float(c) for c in Cs]
        if not cs:
            raise ValueError("linear_probe: Cs is empty")
        folds = torch.from_numpy(stratified_kfold_test_folds(ytr.cpu().numpy(), cv)).to(dev)
        scores = np.zeros((cv, len(cs)))
        for fold in range(cv):
            te = folds == fold
            tr = ~te
            init = None
            for j, c in enumerate(cs):
                w, b, _ = _fit_logreg(xs[tr], y_enc[tr], k, c, max_iter, tol, init)
                init = (w, b)  # warm start along the C path
                pred = torch.addmm(b, xs[te], w.T).argmax(1)
                scores[fold, j] = float((pred == y_enc[te]).to(torch.float64).mean())
        mean_scores = scores.mean(0)
        best = int(np.argmax(mean_scores))
        cv_scores = {c: float(s) for c, s in zip(cs, mean_scores, strict=True)}
        C = cs[best]
    w, b, n_iter = _fit_logreg(xs, y_enc, k, float(C), max_iter, tol)
    preds = classes[torch.addmm(b, xts, w.T).argmax(1)]
    return LinearProbeResult(
        preds=preds,
        C=float(C),
        cv_scores=cv_scores,
        coef=w,
        intercept=b,
        classes=classes,
        mean=mean,
        scale=scale,
        n_iter=n_iter,
    )


# ----------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------
def classification_metrics(y_true, y_pred, num_classes: int | None = None) -> dict[str, float]:
    """Accuracy, macro/weighted F1, macro precision and recall (sklearn semantics).

    Parameters
    ----------
    y_true, y_pred : (N,) integer labels (array or tensor)
    num_classes : int, optional
        If given, labels ``0..num_classes-1`` are all averaged over (absent classes score 0);
        otherwise the union of labels in ``y_true`` and ``y_pred`` (sklearn's default).

    Returns
    -------
    dict with keys accuracy, f1_macro, f1_weighted, precision_macro, recall_macro (floats).
    """
    yt = torch.as_tensor(np.asarray(y_true) if not isinstance(y_true, Tensor) else y_true)
    yp = torch.as_tensor(np.asarray(y_pred) if not isinstance(y_pred, Tensor) else y_pred)
    yt = yt.detach().cpu().long().reshape(-1)
    yp = yp.detach().cpu().long().reshape(-1)
    if yt.shape != yp.shape:
        raise ValueError(
            f"classification_metrics: y_true has {yt.numel()} labels, y_pred {yp.numel()}"
        )
    if yt.numel() == 0:
        raise ValueError("classification_metrics: empty label arrays")
    if num_classes is None:
        labels = torch.unique(torch.cat([yt, yp]), sorted=True)
    else:
        labels = torch.arange(num_classes)
        if (
            (yt.min() < 0)
            or (yt.max() >= num_classes)
            or (yp.min() < 0)
            or (yp.max() >= num_classes)
        ):
            raise ValueError(
                f"classification_metrics: labels outside 0..{num_classes - 1} with num_classes set"
            )
    t_idx = torch.searchsorted(labels, yt)
    p_idx = torch.searchsorted(labels, yp)
    n_l = labels.numel()
    cm = torch.bincount(t_idx * n_l + p_idx, minlength=n_l * n_l).reshape(n_l, n_l).double()
    tp = cm.diag()
    support = cm.sum(1)
    pred_count = cm.sum(0)

    def safe_div(a: Tensor, b: Tensor) -> Tensor:
        return torch.where(b > 0, a / b.clamp_min(1e-300), torch.zeros_like(a))

    precision = safe_div(tp, pred_count)
    recall = safe_div(tp, support)
    f1 = safe_div(2 * tp, 2 * tp + (pred_count - tp) + (support - tp))
    total = support.sum()
    return {
        "accuracy": float(tp.sum() / yt.numel()),
        "f1_macro": float(f1.mean()),
        "f1_weighted": float((f1 * support).sum() / total) if total > 0 else 0.0,
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
    }


__all__ = [
    "DEFAULT_CS",
    "LinearProbeResult",
    "classification_metrics",
    "knn_classify",
    "linear_probe",
    "standardize_fit",
    "stratified_kfold_test_folds",
]
