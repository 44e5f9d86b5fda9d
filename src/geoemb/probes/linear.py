"""Linear probe: StandardScaler + multinomial L2 logistic regression by L-BFGS, C by stratified
CV (sklearn ``LogisticRegressionCV`` semantics; see :mod:`geoemb.probes`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from geoemb.probes._inputs import _check_same_width, _features, _labels

__all__ = [
    "DEFAULT_CS",
    "LinearProbeResult",
    "linear_probe",
    "standardize_fit",
    "stratified_kfold_test_folds",
]

DEFAULT_CS: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


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


def _cv_path_torch(xs, y_enc, folds, k, cs, cv, max_iter, tol):
    """Torch L-BFGS over folds x Cs: (scores (cv, len(cs)), coefs[fold][j] = (W, b))."""
    scores = np.zeros((cv, len(cs)))
    coefs = []
    for fold in range(cv):
        te = folds == fold
        tr = ~te
        init = None
        path = []
        for j, c in enumerate(cs):
            w, b, _ = _fit_logreg(xs[tr], y_enc[tr], k, c, max_iter, tol, init)
            init = (w, b)  # warm start along the C path
            path.append(init)
            pred = torch.addmm(b, xs[te], w.T).argmax(1)
            scores[fold, j] = float((pred == y_enc[te]).to(torch.float64).mean())
        coefs.append(path)
    return scores, coefs


def _cv_path_cpu(xs, y_enc, folds, k, cs, cv, max_iter, tol):
    """SciPy L-BFGS-B over folds x Cs: (scores (cv, len(cs)), paths (cv, len(cs), k*F + k))."""
    from geoemb.probes._logreg import fit_logreg_cpu  # numba, compiled/cached on first use

    f = xs.shape[1]
    scores = np.zeros((cv, len(cs)))
    paths = np.zeros((cv, len(cs), k * f + k))
    for fold in range(cv):
        te = folds == fold
        xtr, ytr = np.ascontiguousarray(xs[~te]), y_enc[~te]
        xte, yte = xs[te], y_enc[te]
        w = None
        for j, c in enumerate(cs):
            w, _ = fit_logreg_cpu(xtr, ytr, k, c, max_iter, tol, w)  # warm start along the path
            paths[fold, j] = w
            logits = xte @ w[: k * f].reshape(k, f).T + w[k * f :]
            scores[fold, j] = float((logits.argmax(1) == yte).mean())
    return scores, paths


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
    solver: str = "auto",
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
    solver : {"auto", "scipy", "torch"}
        ``"scipy"``: sklearn's own L-BFGS-B driver around a fused float64 loss (numba) and BLAS
        GEMMs in the features' precision (CPU only; :mod:`geoemb.probes._logreg`).
        ``"torch"``: ``torch.optim.LBFGS`` (strong Wolfe) with autograd, on the features' device.
        ``"auto"``: scipy for CPU features, torch otherwise. Both minimise the same objective
        (same optimum within ``tol``); the refit after CV starts, as sklearn's, from the mean
        of the folds' coefficients at the chosen C.

    Returns
    -------
    LinearProbeResult
    """
    if solver not in ("auto", "scipy", "torch"):
        raise ValueError(f"linear_probe: solver must be 'auto', 'scipy' or 'torch', got {solver!r}")
    torch.manual_seed(seed)
    xtr = _features(x_train, "x_train")
    dev = xtr.device
    if solver == "auto":
        solver = "scipy" if dev.type == "cpu" else "torch"
    elif solver == "scipy" and dev.type != "cpu":
        raise ValueError(f"linear_probe: solver='scipy' needs CPU features, got device {dev}")
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
    f = xs.shape[1]

    cv_scores: dict[float, float] = {}
    init = None
    if C is None:
        cs = [float(c) for c in Cs]
        if not cs:
            raise ValueError("linear_probe: Cs is empty")
        folds_np = stratified_kfold_test_folds(ytr.cpu().numpy(), cv)
        if solver == "scipy":
            scores, paths = _cv_path_cpu(
                xs.numpy(), y_enc.numpy(), folds_np, k, cs, cv, max_iter, tol
            )
        else:
            folds = torch.from_numpy(folds_np).to(dev)
            scores, coefs = _cv_path_torch(xs, y_enc, folds, k, cs, cv, max_iter, tol)
        mean_scores = scores.mean(0)
        best = int(np.argmax(mean_scores))
        cv_scores = {c: float(s) for c, s in zip(cs, mean_scores, strict=True)}
        C = cs[best]
        # refit from the mean of the folds' coefficients at the chosen C (sklearn's coef_init)
        if solver == "scipy":
            init = paths[:, best].mean(0)
        else:
            init = tuple(torch.stack([p[best][i] for p in coefs]).mean(0) for i in (0, 1))
    if solver == "scipy":
        from geoemb.probes._logreg import fit_logreg_cpu

        wv, n_iter = fit_logreg_cpu(
            np.ascontiguousarray(xs.numpy()), y_enc.numpy(), k, float(C), max_iter, tol, init
        )
        w = torch.from_numpy(wv[: k * f].reshape(k, f).copy()).to(xs.dtype)
        b = torch.from_numpy(wv[k * f :].copy()).to(xs.dtype)
        logits = xts.numpy() @ wv[: k * f].reshape(k, f).T + wv[k * f :]
        preds = classes[torch.from_numpy(logits.argmax(1))]
    else:
        w, b, n_iter = _fit_logreg(xs, y_enc, k, float(C), max_iter, tol, init)
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
