"""The paper's statistics (SPEC section 7, Section IV-D) and its Table I.

Per measure and per pair of methods (the proposed one against another), values outside
``mean +- 1.96 std`` are outliers; the union of the two methods' outliers is removed from both
(paired) arrays, and the paired Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, two-sided)
compares what is left. Table I reports ``mean +- std`` per dataset, method and measure, marks with
``*`` the methods whose difference from the proposed method has ``p < 0.05``, and sets the best
mean of each dataset and measure in bold.

Standard deviations: the SPEC does not say which one, so population standard deviations
(``ddof=0``, NumPy's default) are used throughout, both for the outlier bounds and for the
``+-`` column; every function takes ``ddof`` to change that.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np

__all__ = ["outlier_mask", "remove_paired_outliers", "wilcoxon_paired", "PairedTest",
           "compare_paired", "TableOne", "table_one", "write_rows_csv"]

#: The SPEC's outlier bound, in standard deviations.
OUTLIER_K = 1.96
#: The significance level of Table I.
ALPHA = 0.05


def _as_1d(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per image or ROI); got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def _as_pairs(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Two validated 1-D arrays of equal length (paired samples)."""
    a = _as_1d(a, "a")
    b = _as_1d(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired arrays must have the same length; got {a.size} and {b.size}")
    return a, b


def outlier_mask(values: Sequence[float] | np.ndarray, k: float = OUTLIER_K,
                 ddof: int = 0) -> np.ndarray:
    """Which values are outliers: outside ``mean +- k * std``.

    Parameters
    ----------
    values : 1-D array_like
        The scores of one method on one measure.
    k : float
        Half-width of the kept interval in standard deviations (default 1.96).
    ddof : int
        Delta degrees of freedom of the standard deviation (default 0, the population std).

    Returns
    -------
    numpy.ndarray of bool
        True where ``|x - mean| > k * std``; values exactly on the bound are kept. All False for
        fewer than two values, or when the std is 0.

    Raises
    ------
    ValueError
        If ``values`` is not 1-D or contains NaN/Inf.
    """
    a = _as_1d(values, "values")
    if a.size < 2 or a.size <= ddof:
        return np.zeros(a.shape, dtype=bool)
    mean = a.mean()
    sd = a.std(ddof=ddof)
    return np.abs(a - mean) > k * sd


def remove_paired_outliers(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                           k: float = OUTLIER_K,
                           ddof: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop the union of both methods' outliers from both paired arrays.

    Parameters
    ----------
    a, b : 1-D array_like, same length
        Paired scores (element ``i`` of both comes from the same image or ROI).
    k : float
        Outlier bound in standard deviations (default 1.96).
    ddof : int
        Delta degrees of freedom of the standard deviation (default 0).

    Returns
    -------
    a_kept, b_kept : numpy.ndarray
        The pairs where neither value is an outlier of its own method.
    keep : numpy.ndarray of bool
        The mask applied to both.

    Raises
    ------
    ValueError
        If the arrays are not 1-D, differ in length, or contain NaN/Inf.
    """
    a, b = _as_pairs(a, b)
    keep = ~(outlier_mask(a, k, ddof) | outlier_mask(b, k, ddof))
    return a[keep], b[keep], keep


def wilcoxon_paired(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided p-value of the paired Wilcoxon signed-rank test (``scipy.stats.wilcoxon``).

    Parameters
    ----------
    a, b : 1-D array_like, same length
        Paired samples.

    Returns
    -------
    float
        The p-value; 1.0 when every difference is zero (the samples are identical), NaN when
        there are no pairs.

    Raises
    ------
    ValueError
        If the arrays are not 1-D, differ in length, or contain NaN/Inf.
    """
    from scipy.stats import wilcoxon

    a, b = _as_pairs(a, b)
    if a.size == 0:
        return float("nan")
    if np.all(a == b):
        return 1.0
    return float(wilcoxon(a, b).pvalue)


@dataclass(frozen=True)
class PairedTest:
    """Outcome of one proposed-versus-other comparison on one measure.

    Attributes
    ----------
    n : int
        Pairs left after outlier removal.
    removed : int
        Pairs removed as outliers (union of both methods').
    p_value : float
        Two-sided paired Wilcoxon p-value on the kept pairs.
    significant : bool
        ``p_value < alpha``.
    """

    n: int
    removed: int
    p_value: float
    significant: bool


def compare_paired(proposed: Sequence[float] | np.ndarray, other: Sequence[float] | np.ndarray,
                   k: float = OUTLIER_K, ddof: int = 0, alpha: float = ALPHA) -> PairedTest:
    """Outlier removal (union, both arrays) followed by the paired Wilcoxon test.

    Parameters
    ----------
    proposed, other : 1-D array_like, same length
        Paired scores of the proposed method and of the method compared with it.
    k, ddof : float, int
        Outlier bound and standard-deviation ddof (defaults 1.96 and 0).
    alpha : float
        Significance level (default 0.05).

    Returns
    -------
    PairedTest
    """
    a, b, keep = remove_paired_outliers(proposed, other, k, ddof)
    p = wilcoxon_paired(a, b)
    return PairedTest(n=int(a.size), removed=int((~keep).sum()), p_value=p,
                      significant=bool(p < alpha))


class TableOne(NamedTuple):
    """Table I: Markdown text and one dict per (dataset, method, measure) for a CSV file."""

    markdown: str
    rows: list[dict]


def _fmt(x: float, decimals: int) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.{decimals}f}"


def table_one(scores: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]], proposed: str,
              measures: Sequence[str] | None = None, methods: Sequence[str] | None = None,
              higher_is_better: Mapping[str, bool] | None = None, k: float = OUTLIER_K,
              ddof: int = 0, alpha: float = ALPHA, decimals: int = 3) -> TableOne:
    """Build the paper's Table I.

    Parameters
    ----------
    scores : mapping
        ``scores[dataset][method][measure]`` is a 1-D sequence of per-image (or per-ROI) values;
        within a dataset and measure, all methods' sequences are paired by position.
    proposed : str
        The method every other one is tested against (e.g. ``"xvertnet"``).
    measures, methods : sequence of str, optional
        Column and row order; default the order of first appearance in ``scores``.
    higher_is_better : mapping, optional
        Per measure, whether a larger mean is better (default True for every measure, as for
        entropy, Tenengrad, LPC-SI and TMQI).
    k, ddof, alpha : float, int, float
        Outlier bound (1.96 std), standard-deviation ddof (0) and significance level (0.05).
    decimals : int
        Digits after the point in the Markdown table.

    Returns
    -------
    TableOne
        ``markdown``: one row per dataset and method, one column per measure, cells
        ``mean +- std``; ``*`` (written ``\\*``) after a cell whose method differs from the
        proposed one with
        ``p < alpha``; the best mean of each dataset and measure in ``**bold**``.
        ``rows``: dicts with keys ``dataset, method, measure, n, mean, std, n_test, p_value,
        significant, best`` (``p_value`` and ``n_test`` are None for the proposed method).

    Notes
    -----
    ``mean +- std`` of a method is taken over its values with its own outliers removed
    (``mean +- k std`` of its own values). The test of a method against the proposed one uses the
    pairs left after removing the union of both methods' outliers, as the SPEC prescribes.

    Raises
    ------
    ValueError
        If ``proposed`` is missing from a dataset, or paired sequences differ in length.
    """
    if not scores:
        raise ValueError("scores is empty")
    datasets = list(scores)
    if methods is None:
        methods = list(dict.fromkeys(m for d in datasets for m in scores[d]))
    if measures is None:
        measures = list(dict.fromkeys(q for d in datasets for m in scores[d]
                                      for q in scores[d][m]))
    hib = {q: True for q in measures}
    if higher_is_better:
        hib.update(higher_is_better)

    rows: list[dict] = []
    for d in datasets:
        if proposed not in scores[d]:
            raise ValueError(f"dataset {d!r} has no scores for the proposed method {proposed!r}")
        for q in measures:
            cells = []
            for m in methods:
                if m not in scores[d] or q not in scores[d][m]:
                    continue
                v = _as_1d(scores[d][m][q], f"scores[{d!r}][{m!r}][{q!r}]")
                kept = v[~outlier_mask(v, k, ddof)]
                mean = float(kept.mean()) if kept.size else float("nan")
                sd = float(kept.std(ddof=ddof)) if kept.size > ddof else float("nan")
                row = {"dataset": d, "method": m, "measure": q, "n": int(kept.size),
                       "mean": mean, "std": sd, "n_test": None, "p_value": None,
                       "significant": False, "best": False}
                if m != proposed and q in scores[d][proposed]:
                    t = compare_paired(scores[d][proposed][q], v, k, ddof, alpha)
                    row.update(n_test=t.n, p_value=t.p_value, significant=t.significant)
                cells.append(row)
            finite = [c["mean"] for c in cells if math.isfinite(c["mean"])]
            if finite:
                best = max(finite) if hib[q] else min(finite)
                for c in cells:
                    c["best"] = c["mean"] == best
            rows.extend(cells)

    index = {(r["dataset"], r["method"], r["measure"]): r for r in rows}
    head = "| Dataset | Method | " + " | ".join(measures) + " |"
    sep = "|---|---|" + "---|" * len(measures)
    lines = [head, sep]
    for d in datasets:
        for m in methods:
            if m not in scores[d]:
                continue
            cells = []
            for q in measures:
                r = index.get((d, m, q))
                if r is None:
                    cells.append("")
                    continue
                text = f"{_fmt(r['mean'], decimals)} ± {_fmt(r['std'], decimals)}"
                if r["best"]:
                    text = f"**{text}**"
                if r["significant"]:
                    text += "\\*"  # escaped, so that it cannot merge with the bold marks
                cells.append(text)
            lines.append(f"| {d} | {m} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"mean ± std (ddof={ddof}) after removing values outside mean ± {k:g} std; "
                 f"* p < {alpha:g} vs {proposed} (paired Wilcoxon signed-rank test, outliers of "
                 "both methods removed); best mean in bold.")
    return TableOne(markdown="\n".join(lines) + "\n", rows=rows)


def write_rows_csv(rows: Iterable[Mapping], path, fieldnames: Sequence[str] | None = None) -> None:
    """Write :func:`table_one` rows (or any list of flat dicts) to a CSV file.

    Parameters
    ----------
    rows : iterable of mapping
        Dicts sharing the same keys.
    path : str or os.PathLike
        Output file.
    fieldnames : sequence of str, optional
        The columns; by default the first row's keys. Given, the header is
        written even when there are no rows.
    """
    rows = list(rows)
    if fieldnames is None:
        fieldnames = list(rows[0]) if rows else []
    with open(path, "w", newline="") as fh:
        if not fieldnames:
            return
        w = csv.DictWriter(fh, fieldnames=list(fieldnames))
        w.writeheader()
        for r in rows:
            w.writerow({key: ("" if val is None else val) for key, val in r.items()})
