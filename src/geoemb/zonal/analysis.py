"""Census-style evaluation of per-polygon embedding features (the blog's Step 3).

- OLS, in-sample R² of each continuous target on the full features and on PCA-k features;
- stratified 5-fold logistic-regression accuracy (mean ± std over folds) for a binary target,
  against the majority-class baseline;
- Pearson correlation of the first PCs with the targets;
and :func:`evaluate_census`, which reads a features file and runs all of it. The Markdown report
and its plots are made by :mod:`geoemb.reporting.zonal`.
"""

from __future__ import annotations

import dataclasses

import geopandas as gpd
import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from geoemb.errors import InputError
from geoemb.zonal.output import read_features
from geoemb.zonal.params import CensusAnalysis
from geoemb.zonal.sources import PathLike

#: Continuous targets derived from TIGER/Line block attributes (names as the blog's table).
CENSUS_TARGETS = (
    "log_land_area",
    "urban",
    "log_population",
    "water_fraction",
    "pop_density",
    "housing_density",
    "population",
    "housing_units",
)


def census_targets(
    df: pd.DataFrame,
    pop: str = "POP20",
    housing: str = "HOUSING20",
    aland: str = "ALAND20",
    awater: str = "AWATER20",
    urban: str = "UR20",
    urban_value: str = "U",
) -> pd.DataFrame:
    """Derive the blog's census variables from block attributes.

    ``log_land_area = ln(ALAND20)`` (m²; non-positive -> NaN), ``urban = [UR20 == "U"]``,
    ``log_population = ln(1 + POP20)`` (blocks with zero population are common),
    ``water_fraction = AWATER20 / (ALAND20 + AWATER20)``, ``pop_density = POP20 / land km²``,
    ``housing_density = HOUSING20 / land km²``, and the raw counts. Missing columns give no target.
    """
    out = pd.DataFrame(index=df.index)

    def num(c: str) -> pd.Series:
        return pd.to_numeric(df[c], errors="coerce").astype(float)

    has = set(df.columns)
    if aland in has:
        land = num(aland)
        out["log_land_area"] = np.log(land.where(land > 0))
        land_km2 = (land / 1e6).where(land > 0)
    if urban in has:
        out["urban"] = (df[urban].astype(str).str.strip() == urban_value).astype(float)
    if pop in has:
        out["log_population"] = np.log1p(num(pop))
    if aland in has and awater in has:
        tot = num(aland) + num(awater)
        out["water_fraction"] = num(awater) / tot.where(tot > 0)
    if pop in has and aland in has:
        out["pop_density"] = num(pop) / land_km2
    if housing in has and aland in has:
        out["housing_density"] = num(housing) / land_km2
    if pop in has:
        out["population"] = num(pop)
    if housing in has:
        out["housing_units"] = num(housing)
    return out


def ols_r2(X: np.ndarray, y: np.ndarray) -> float:
    """In-sample R² of ordinary least squares with intercept (``lstsq`` on centred data).

    Parameters
    ----------
    X : (N, F) features; y : (N,) target.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    Xc = X - X.mean(axis=0)
    yc = y - y.mean()
    sst = float(yc @ yc)
    if sst == 0:
        return float("nan")
    beta, *_ = np.linalg.lstsq(Xc, yc, rcond=None)
    resid = yc - Xc @ beta
    return 1.0 - float(resid @ resid) / sst


def majority_baseline(y: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent class."""
    _, counts = np.unique(np.asarray(y), return_counts=True)
    return float(counts.max() / counts.sum())


def cv_logistic_accuracy(
    X: np.ndarray,
    y: np.ndarray,
    n_splits: int = 5,
    seed: int = 0,
    C: float = 1.0,
    max_iter: int = 2000,
    standardize: bool = True,
) -> tuple[float, float, np.ndarray]:
    """Stratified k-fold accuracy of a logistic regression (StandardScaler -> LogisticRegression).

    Returns ``(mean, std (ddof=0), per-fold accuracies)``; folds are
    ``StratifiedKFold(n_splits, shuffle=True, random_state=seed)``.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    scores = []
    for tr, te in StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(X, y):
        xtr, xte = X[tr], X[te]
        if standardize:
            sc = StandardScaler().fit(xtr)
            xtr, xte = sc.transform(xtr), sc.transform(xte)
        clf = LogisticRegression(C=C, max_iter=max_iter).fit(xtr, y[tr])
        scores.append(float((clf.predict(xte) == y[te]).mean()))
    s = np.asarray(scores)
    return float(s.mean()), float(s.std()), s


def pca_scores(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """First ``k`` principal-component scores (N, k) and explained-variance ratios (k,)."""
    k = min(k, X.shape[1], X.shape[0])
    pca = PCA(n_components=k).fit(X)
    return pca.transform(X), pca.explained_variance_ratio_


def pc_correlations(Z: np.ndarray, targets: pd.DataFrame, n_pcs: int = 5) -> pd.DataFrame:
    """Pearson r of each of the first ``n_pcs`` PC scores with each target (NaN rows skipped)."""
    rows = []
    for name in targets.columns:
        y = targets[name].to_numpy(dtype=float)
        row = {"variable": name}
        for j in range(min(n_pcs, Z.shape[1])):
            ok = np.isfinite(y) & np.isfinite(Z[:, j])
            r = np.corrcoef(Z[ok, j], y[ok])[0, 1] if ok.sum() > 2 and y[ok].std() > 0 else np.nan
            row[f"PC{j + 1}"] = float(r)
        rows.append(row)
    return pd.DataFrame(rows)


@dataclasses.dataclass
class ZonalEvaluation:
    """Tables and scalar metrics of :func:`evaluate_features`."""

    r2: pd.DataFrame  # variable, r2_full, r2_pca
    classification: pd.DataFrame  # task, baseline, acc_full, std_full, acc_pca, std_pca
    correlations: pd.DataFrame  # variable, PC1..PC5
    metrics: dict[str, float]
    pca_k: int
    pca_explained: float
    n: int
    scores: np.ndarray  # (N, k) PC scores used for the plots
    targets: pd.DataFrame
    data_source: str = "real"  # "synthetic" for features of geoemb's stand-in
    n_splits: int = 5  # CV folds of the classification


def evaluate_features(
    X: np.ndarray,
    targets: pd.DataFrame,
    binary_target: str | None = "urban",
    pca_k: int = 10,
    n_pcs: int = 5,
    n_splits: int = 5,
    seed: int = 0,
) -> ZonalEvaluation:
    """Run the blog's evaluation on features ``X`` (N, F) and a table of targets (N rows).

    Rows with non-finite features are dropped; each target uses its own finite rows.
    """
    X = np.asarray(X, dtype=np.float64)
    ok = np.isfinite(X).all(axis=1)
    X, targets = X[ok], targets.loc[ok].reset_index(drop=True)
    if len(X) < 3:
        raise InputError(f"need at least 3 polygons with finite features, got {len(X)}")
    Z, evr = pca_scores(X, pca_k)
    rows, metrics = [], {"zonal/n_polygons": float(len(X)), "zonal/pca_explained": float(evr.sum())}
    for name in targets.columns:
        y = targets[name].to_numpy(dtype=float)
        m = np.isfinite(y)
        if m.sum() < 3:
            continue
        r_full, r_pca = ols_r2(X[m], y[m]), ols_r2(Z[m], y[m])
        rows.append({"variable": name, "r2_full": r_full, "r2_pca": r_pca, "n": int(m.sum())})
        metrics[f"zonal/r2/{name}"] = r_full
        metrics[f"zonal/r2_pca{Z.shape[1]}/{name}"] = r_pca
    cls_rows = []
    if binary_target is not None and binary_target in targets.columns:
        y = targets[binary_target].to_numpy(dtype=float)
        m = np.isfinite(y)
        yb = y[m].astype(int)
        _, cnt = np.unique(yb, return_counts=True)
        if len(cnt) == 2 and cnt.min() >= n_splits:
            base = majority_baseline(yb)
            a_full, s_full, _ = cv_logistic_accuracy(X[m], yb, n_splits, seed)
            a_pca, s_pca, _ = cv_logistic_accuracy(Z[m], yb, n_splits, seed)
            cls_rows.append(
                {
                    "task": binary_target,
                    "baseline": base,
                    "acc_full": a_full,
                    "std_full": s_full,
                    "acc_pca": a_pca,
                    "std_pca": s_pca,
                }
            )
            metrics.update(
                {
                    f"zonal/{binary_target}/baseline": base,
                    f"zonal/{binary_target}/acc": a_full,
                    f"zonal/{binary_target}/acc_std": s_full,
                    f"zonal/{binary_target}/acc_pca{Z.shape[1]}": a_pca,
                    f"zonal/{binary_target}/acc_pca{Z.shape[1]}_std": s_pca,
                }
            )
    corr = pc_correlations(Z, targets, n_pcs)
    return ZonalEvaluation(
        r2=pd.DataFrame(rows),
        classification=pd.DataFrame(cls_rows),
        correlations=corr,
        metrics=metrics,
        pca_k=int(Z.shape[1]),
        pca_explained=float(evr.sum()),
        n=len(X),
        scores=Z,
        targets=targets,
        n_splits=int(n_splits),
    )


def evaluate_census(
    features: PathLike | gpd.GeoDataFrame, analysis: CensusAnalysis | None = None, seed: int = 0
) -> ZonalEvaluation:
    """Read a features file (or take the GeoDataFrame of :func:`~geoemb.zonal.zonal_stats`),
    derive the census targets (renamed by ``analysis.census_columns``) and evaluate.

    Raises
    ------
    InputError
        No feature columns, or none of the census attribute columns.
    """
    analysis = analysis or CensusAnalysis()
    gdf, cols = read_features(features)
    columns = analysis.census_columns
    targets = census_targets(gdf, **(columns or {}))
    if targets.shape[1] == 0:
        raise InputError(
            "features have none of the census attribute columns "
            f"{columns or 'POP20/HOUSING20/ALAND20/AWATER20/UR20'}; pass columns={{...}}"
        )
    ev = evaluate_features(
        gdf[cols].to_numpy(dtype=float),
        targets.reset_index(drop=True),
        analysis.binary_target,
        analysis.pca_k,
        analysis.n_pcs,
        analysis.n_splits,
        seed,
    )
    ev.data_source = str(gdf.attrs.get("zonal", {}).get("data_source", "real"))
    return ev
