"""Tests of xvert_gpu.stats on data with known answers."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from xvert_gpu.stats import (compare_paired, outlier_mask, remove_paired_outliers, table_one,
                             wilcoxon_paired, write_rows_csv)


def test_outlier_mask_obvious_outlier():
    x = np.array([1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 1.02, 0.98, 1.01, 0.99, 10.0])
    m = outlier_mask(x)
    assert m.tolist() == [False] * 10 + [True]


def test_outlier_mask_bound_uses_ddof0():
    # mean 0, population std 1: +-2 lie outside 1.96, +-1.5 inside; ddof=1 widens the bound.
    x = np.array([-2.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    sd0 = x.std()
    assert outlier_mask(x).tolist() == (np.abs(x) > 1.96 * sd0).tolist()
    assert outlier_mask(x, ddof=1).tolist() == (np.abs(x) > 1.96 * x.std(ddof=1)).tolist()


def test_outlier_mask_degenerate():
    assert not outlier_mask([5.0]).any()
    assert not outlier_mask([3.0, 3.0, 3.0]).any()
    assert outlier_mask([]).size == 0


def test_remove_paired_outliers_union():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, 40)
    b = rng.normal(0.0, 1.0, 40)
    a[3] = 50.0   # outlier of a only
    b[17] = -50.0  # outlier of b only
    ak, bk, keep = remove_paired_outliers(a, b)
    assert not keep[3] and not keep[17]
    assert ak.size == bk.size == keep.sum()
    assert 50.0 not in ak and -50.0 not in bk
    # both outliers' partners are gone too (the union is removed from both arrays)
    assert a[17] not in ak and b[3] not in bk
    np.testing.assert_array_equal(ak, a[keep])
    np.testing.assert_array_equal(bk, b[keep])


def test_remove_paired_outliers_bad_input():
    with pytest.raises(ValueError, match="same length"):
        remove_paired_outliers([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        remove_paired_outliers([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="1-D"):
        remove_paired_outliers(np.zeros((2, 2)), np.zeros((2, 2)))


def test_wilcoxon_shifted_sample_significant():
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, 30)
    b = a + 0.5 + rng.normal(0.0, 0.1, 30)
    assert wilcoxon_paired(a, b) < 0.05


def test_wilcoxon_identical_not_significant():
    a = np.linspace(0.0, 1.0, 20)
    assert wilcoxon_paired(a, a.copy()) == 1.0
    assert np.isnan(wilcoxon_paired([], []))


def test_wilcoxon_noise_not_significant():
    rng = np.random.default_rng(2)
    a = rng.normal(0.0, 1.0, 25)
    b = a + rng.normal(0.0, 1e-3, 25) * np.where(np.arange(25) % 2, 1, -1)
    assert wilcoxon_paired(a, b) > 0.05


def test_wilcoxon_matches_scipy():
    from scipy.stats import wilcoxon
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=15), rng.normal(size=15)
    assert wilcoxon_paired(a, b) == pytest.approx(wilcoxon(a, b).pvalue)


def test_compare_paired_counts():
    rng = np.random.default_rng(4)
    a = rng.normal(1.0, 0.1, 30)
    b = a - 0.2 + rng.normal(0.0, 0.01, 30)
    a[0] = 100.0
    t = compare_paired(a, b)
    assert t.removed >= 1 and t.n == 30 - t.removed
    assert t.significant and t.p_value < 0.05


def _scores():
    rng = np.random.default_rng(5)
    n = 24
    base = rng.normal(0.0, 0.05, n)
    return {
        "JSRT": {
            "ours": {"entropy": 7.0 + base, "tmqi": 0.90 + base / 10},
            "clahe": {"entropy": 6.5 + base + rng.normal(0, 0.01, n), "tmqi": 0.90 + base / 10},
            "farbman": {"entropy": 7.3 + base + rng.normal(0, 0.01, n),
                        "tmqi": 0.80 + base / 10},
        },
        "NIH": {
            "ours": {"entropy": 7.1 + base, "tmqi": 0.95 + base / 10},
            "clahe": {"entropy": 6.0 + base, "tmqi": 0.85 + base / 10},
        },
    }


def test_table_one_rows_and_markdown(tmp_path):
    md, rows = table_one(_scores(), proposed="ours")
    by = {(r["dataset"], r["method"], r["measure"]): r for r in rows}
    assert len(rows) == 3 * 2 + 2 * 2
    # significance vs the proposed method
    assert by["JSRT", "clahe", "entropy"]["significant"]
    assert by["JSRT", "farbman", "entropy"]["significant"]
    assert not by["JSRT", "clahe", "tmqi"]["significant"]  # identical scores
    assert by["JSRT", "clahe", "tmqi"]["p_value"] == 1.0
    assert by["JSRT", "ours", "entropy"]["p_value"] is None
    # best (higher is better by default)
    assert by["JSRT", "farbman", "entropy"]["best"]
    assert not by["JSRT", "ours", "entropy"]["best"]
    assert by["NIH", "ours", "tmqi"]["best"]
    # the Markdown table
    lines = md.splitlines()
    assert lines[0] == "| Dataset | Method | entropy | tmqi |"
    farb = next(line for line in lines if line.startswith("| JSRT | farbman |"))
    assert farb.split("|")[3].strip().startswith("**7.2")
    assert farb.split("|")[3].strip().endswith("**\\*")
    ours = next(line for line in lines if line.startswith("| NIH | ours |"))
    assert ours.split("|")[4].strip().startswith("**0.9")
    assert "±" in ours
    # CSV
    path = tmp_path / "table1.csv"
    write_rows_csv(rows, path)
    with open(path, newline="") as fh:
        read = list(csv.DictReader(fh))
    assert len(read) == len(rows)
    assert set(read[0]) >= {"dataset", "method", "measure", "mean", "std", "p_value", "best"}


def test_table_one_lower_is_better_and_mean_std():
    scores = {"D": {"ours": {"err": [1.0, 2.0, 3.0, 4.0]}, "b": {"err": [0.5, 1.0, 1.5, 2.0]}}}
    md, rows = table_one(scores, proposed="ours", higher_is_better={"err": False}, decimals=2)
    by = {r["method"]: r for r in rows}
    assert by["b"]["best"] and not by["ours"]["best"]
    assert by["ours"]["mean"] == pytest.approx(2.5)
    assert by["ours"]["std"] == pytest.approx(np.std([1.0, 2.0, 3.0, 4.0]))
    assert "**1.25 ± 0.56**" in md


def test_table_one_missing_proposed():
    with pytest.raises(ValueError, match="proposed"):
        table_one({"D": {"a": {"m": [1.0, 2.0]}}}, proposed="ours")


def test_write_rows_csv_header_without_rows(tmp_path):
    path = tmp_path / "empty.csv"
    write_rows_csv([], path, fieldnames=["a", "b"])
    assert path.read_text().strip() == "a,b"
    write_rows_csv([], path)
    assert path.read_text() == ""
    write_rows_csv([{"a": 1, "b": None}], path, fieldnames=["b", "a"])
    assert path.read_text().splitlines() == ["b,a", ",1"]
