"""Paired statistics and the claims table, against answers worked out by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mgdm.analysis.paired import (MIN_PAIRS, bootstrap_ci, claims_table, comparison, format_table, mcnemar_p,
                                  pairs, paired_summary)


def test_six_positive_pairs_are_the_fewest_that_support_a_claim():
    s = paired_summary([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert s["n"] == 6 and s["mean"] == 3.5
    assert s["wilcoxon_p"] == pytest.approx(2 / 2**6)  # exact: all six ranks on one side
    assert s["t_p"] == pytest.approx(stats.ttest_1samp([1, 2, 3, 4, 5, 6], 0).pvalue)
    assert s["d_z"] == pytest.approx(3.5 / np.std([1, 2, 3, 4, 5, 6], ddof=1))
    assert 1.0 < s["ci_low"] < 3.5 < s["ci_high"] < 6.0
    assert s["verdict"] == "supported"
    assert paired_summary([-1.0, -2.0, -3.0, -4.0, -5.0, -6.0])["verdict"] == "contradicted"


def test_fewer_pairs_or_a_ci_across_zero_is_undecided():
    assert paired_summary([5.0, 6.0, 7.0])["verdict"] == f"undecided (3 pairs; need {MIN_PAIRS})"
    assert paired_summary([3.0, -2.0, 1.0, -1.0, 2.0, -3.0, 0.5])["verdict"] == "undecided (CI includes 0)"


def test_bootstrap_ci_of_a_constant_is_that_constant_and_of_one_value_is_unknown():
    assert bootstrap_ci(np.full(8, 1.5)) == (1.5, 1.5)
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([2.0])))


def test_mcnemar_counts_only_the_images_the_runs_disagree_on():
    a = np.array([True] * 8 + [True] * 50 + [False] * 20)
    b = np.array([False] * 8 + [True] * 50 + [False] * 20)
    assert mcnemar_p(a, b) == pytest.approx(2 * 0.5**8)  # 8 discordant, all one way
    assert mcnemar_p(a, a) == 1.0


def runs_frame(gain: float, seeds: int = 8, networks=("resnet18",)) -> pd.DataFrame:
    """Accuracies that vary a lot from seed to seed, with set 'u' exactly `gain` above 'real' in each pair."""
    rng = np.random.default_rng(0)
    rows = []
    for n in networks:
        for seed in range(seeds):
            base = 0.5 + 0.1 * rng.standard_normal()
            for s, acc in (("real", base), ("none", base), ("classifier-s2", base), ("entropy-s2", base + gain),
                           ("mgdm-s2", base + 2 * gain)):
                rows.append({"dataset": "d", "network": n, "seed": seed, "train set": s, "acc": acc})
    return pd.DataFrame(rows)


def test_pairing_removes_seed_to_seed_variance():
    runs = runs_frame(0.01)
    p = pairs(runs, "entropy-s2", "real", "acc")
    assert len(p) == 8 and np.allclose(p["diff"], 0.01)
    s = comparison(runs, "entropy-s2", "real", "acc")
    assert s["ci_low"] == pytest.approx(1.0) and s["ci_high"] == pytest.approx(1.0)  # points, not fractions


def test_single_pair_gets_mcnemar_from_test_predictions():
    runs = runs_frame(0.02, seeds=1)
    y = np.zeros(100, dtype=int)
    preds = {("resnet18", "entropy-s2", 0): (np.r_[np.zeros(60), np.ones(40)].astype(int), y),
             ("resnet18", "real", 0): (np.r_[np.zeros(50), np.ones(50)].astype(int), y)}
    s = comparison(runs, "entropy-s2", "real", "acc", preds)
    assert s["n"] == 1 and s["mcnemar_p"] == pytest.approx(2 * 0.5**10)
    assert s["verdict"].startswith("undecided (1 pair;")


def test_claims_table_states_each_claim_with_a_verdict():
    runs = runs_frame(0.02, networks=("resnet18", "vgg16_bn", "convnext_atto", "regnetx_002", "resnet50",
                                      "densenet121"))
    table = claims_table(runs, ["none", "classifier-s2", "entropy-s2", "mgdm-s2"], "entropy")
    by_claim = table.set_index("claim")
    assert by_claim.loc["uncertainty guidance beats no guidance", "verdict"] == "supported"
    assert by_claim.loc["uncertainty guidance beats classifier guidance", "mean"] == pytest.approx(2.0)
    assert by_claim.loc["two-stage MGDM beats one-stage uncertainty guidance", "comparison"] == "mgdm-s2 − entropy-s2"
    across = by_claim.loc["the gain over real-only holds across networks"]
    assert across["n"] == 6 and across["verdict"] == "supported" and "6/6 networks > 0" in across["comparison"]


def test_pairs_for_halfwidth_uses_the_t_interval():
    from mgdm.analysis.paired import halfwidth, pairs_for_halfwidth

    n = pairs_for_halfwidth(3.0, 1.5)
    assert n == 18 and halfwidth(3.0, n) <= 1.5 < halfwidth(3.0, n - 1)
    assert halfwidth(3.0, 18) == pytest.approx(stats.t.ppf(0.975, 17) * 3 / 18**0.5)


def test_power_table_designs_from_the_pilot_sd_and_cost():
    from mgdm.analysis.paired import pairs_for_halfwidth, power_table

    rows = []
    for seed in range(6):
        base = 0.5 + 0.05 * seed
        rows += [{"network": "resnet18", "seed": seed, "train set": "real", "acc": base},
                 {"network": "resnet18", "seed": seed, "train set": "none", "acc": base + (0.02 if seed % 2 else -0.02)}]
    table, summary = power_table(pd.DataFrame(rows), wall_s=120.0, target=1.5, budget_min=60, parallel=2, max_sets=3)
    sd = float(np.std([2, -2] * 3, ddof=1))
    assert summary["sd_points"] == pytest.approx(sd) and summary["pilot_pairs"] == 6
    need = pairs_for_halfwidth(sd, 1.5)
    two = table.set_index("compared sets").loc[2]
    assert two["pairs needed"] == need and two["minutes needed"] == pytest.approx(need * 3 * 120 / 60 / 2)
    assert two["pairs in 60 min"] == 20  # 60 min / (3 runs x 2 min / 2 parallel)


def test_a_profile_without_the_compared_sets_has_an_empty_claims_table():
    table = claims_table(runs_frame(0.02), ["none"], "entropy")  # nothing to compare: no uncertainty set
    assert table.empty and format_table(table).empty
