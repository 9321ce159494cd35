"""Paired statistics and the claims table, against answers worked out by hand or by simulation."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mgdm.analysis.paired import (adjust, claims_table, comparison, comparisons_table, design, fmt_p, format_table, holm, mcnemar_p,
                                  pairs, power_table, summarise, t_summary, variance_components, verdict, wilcoxon_p)


def frame(diffs: dict[str, list[float]]) -> pd.DataFrame:
    """Pairs {network: [diff per seed]} as comparison code sees them (index network, seed; column diff)."""
    rows = [(n, s, d) for n, ds in diffs.items() for s, d in enumerate(ds)]
    return pd.DataFrame(rows, columns=["network", "seed", "diff"]).set_index(["network", "seed"])


def test_t_summary_matches_scipy_and_the_margin_test_is_one_sided():
    d = np.array([0.5, 1.5, -0.2, 2.0, 0.9, 1.1])
    s = t_summary(d, margin=1.0)
    ref = stats.ttest_1samp(d, 0.0)
    lo, hi = ref.confidence_interval(0.95)
    assert s["ci_low"] == pytest.approx(lo) and s["ci_high"] == pytest.approx(hi)
    assert s["p"] == pytest.approx(ref.pvalue)
    assert s["p_margin"] == pytest.approx(stats.ttest_1samp(d, 1.0, alternative="less").pvalue)


def test_pairs_are_matched_on_network_and_seed_not_on_seed_alone():
    # two networks far apart in accuracy; set u is exactly 0.02 above real within each (network, seed)
    rows = []
    for network, base in (("a", 0.3), ("b", 0.7)):
        for seed in range(4):
            rows += [{"network": network, "seed": seed, "train set": "real", "acc": base + 0.01 * seed},
                     {"network": network, "seed": seed, "train set": "u", "acc": base + 0.01 * seed + 0.02}]
    p = pairs(pd.DataFrame(rows), "u", "real", "acc")
    assert len(p) == 8 and np.allclose(p["diff"], 0.02)  # seed-only matching gives 4 pairs or +-0.4 diffs


def test_network_level_averages_seeds_within_a_network_first():
    p = frame({"a": [1.0, 1.0, 1.0, 1.0], "b": [3.0, 3.0], "c": [-1.0]})
    s = summarise(p, "networks")
    assert s["n"] == 3 and s["pairs"] == 7 and s["mean"] == pytest.approx(1.0)  # (1 + 3 - 1) / 3
    ref = stats.ttest_1samp([1.0, 3.0, -1.0], 0.0)
    assert s["ci_low"] == pytest.approx(ref.confidence_interval().low)
    assert summarise(p, "pairs")["n"] == 7


def test_zeros_and_ties():
    assert wilcoxon_p(np.zeros(8)) == 1.0
    assert wilcoxon_p(np.array([0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])) == pytest.approx(
        stats.wilcoxon([1.0] * 6).pvalue)  # zeros dropped (scipy's wilcox)
    same = t_summary(np.full(6, 2.0))
    assert same["ci_low"] == same["ci_high"] == 2.0 and same["p"] == 0.0 and same["p_margin"] == 1.0
    zero = t_summary(np.zeros(6))
    assert zero["p"] == 1.0 and zero["p_margin"] == 0.0


def row(mean, lo, hi, p, p_margin, inference="pairs", n=10):
    return {"mean": mean, "ci_low": lo, "ci_high": hi, "p_holm": p, "p_margin_holm": p_margin, "n": n,
            "inference": inference}


@pytest.mark.parametrize("r, expected", [
    (row(2.0, 1.0, 3.0, 0.001, 0.9), "supported"),
    (row(-2.0, -3.0, -1.0, 0.001, 0.0001), "contradicted"),
    (row(0.1, -0.4, 0.6, 0.6, 0.001), "gain of at least 1 excluded"),
    (row(0.8, 0.1, 1.5, 0.09, 0.3), "undecided (CI excludes 0, but Holm-adjusted p 0.09 >= 0.05)"),
    (row(0.2, -0.3, 0.7, 0.4, 0.08), "undecided (CI below +1, but Holm-adjusted p of a gain >= 1 is 0.08)"),
    (row(0.5, -1.0, 2.0, 0.5, 0.3), "undecided (CI includes 0 and +1)"),
    (row(0.5, math.nan, math.nan, math.nan, math.nan, "networks", 1), "undecided (1 network: no interval)"),
])
def test_every_verdict_branch_says_why(r, expected):
    assert verdict(r, margin=1.0) == expected


def test_holm_on_a_known_answer():
    # sorted 0.005, 0.01, 0.03, 0.04 with m = 4: 0.02, 0.03, 0.06, then max(0.06, 0.04) = 0.06
    assert np.allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    out = holm([0.02, np.nan, 0.5])
    assert out[0] == pytest.approx(0.04) and math.isnan(out[1]) and out[2] == pytest.approx(0.5)


def test_verdicts_rest_on_holm_adjusted_p_within_each_inference():
    rows = pd.DataFrame([{"inference": "pairs", "mean": 1.5, "ci_low": 0.1, "ci_high": 2.9, "p": 0.03,
                          "p_margin": 0.7, "n": 10}] * 3)
    out = adjust(rows)
    assert np.allclose(out["p_holm"], 0.09)  # three tests of p .03: none survives
    assert out["verdict"].iloc[0].startswith("undecided (CI excludes 0, but Holm-adjusted p 0.09")


def coverage(sample, truth: float, inference: str, sims: int = 2000, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(sims):
        s = summarise(sample(rng), inference)
        hits += s["ci_low"] <= truth <= s["ci_high"]
    return hits / sims


def test_the_t_interval_keeps_its_coverage_at_five_pairs():
    # the percentile bootstrap covers about 83% here (README); the t interval 95%
    cov = coverage(lambda rng: frame({"a": list(rng.normal(1.0, 2.0, 5))}), 1.0, "pairs")
    assert 0.93 <= cov <= 0.97


def test_networks_as_a_random_factor_keep_coverage_where_pairs_do_not():
    # 5 networks x 8 seeds; each network has its own true effect (sd 1.5) around 0.5, seed noise sd 2
    def sample(rng):
        effects = rng.normal(0.5, 1.5, 5)
        return frame({f"n{i}": list(e + rng.normal(0, 2.0, 8)) for i, e in enumerate(effects)})

    assert 0.93 <= coverage(sample, 0.5, "networks") <= 0.97
    assert coverage(sample, 0.5, "pairs") < 0.85  # 40 pairs that are not independent


def test_variance_components_recover_the_simulated_ones():
    rng = np.random.default_rng(1)
    est = []
    for _ in range(300):
        effects = rng.normal(0, 1.0, 10)
        est.append(variance_components(frame({f"n{i}": list(e + rng.normal(0, 2.0, 6))
                                               for i, e in enumerate(effects)})))
    assert np.mean([e["var_seed"] for e in est]) == pytest.approx(4.0, rel=0.05)
    assert np.mean([e["var_network"] for e in est]) == pytest.approx(1.0, rel=0.2)


def test_design_power_matches_simulated_t_tests():
    var_net, var_seed, n_net, n_seed, effect = 1.0, 9.0, 8, 3, 1.5
    rng = np.random.default_rng(2)
    rejected = 0
    sims = 3000
    for _ in range(sims):
        means = effect + rng.normal(0, 1.0, n_net) + rng.normal(0, 3.0, (n_net, n_seed)).mean(1)
        rejected += stats.ttest_1samp(means, 0.0).pvalue < 0.05
    d = design(var_net, var_seed, n_net, n_seed, effect)
    assert d["power"] == pytest.approx(rejected / sims, abs=0.03)
    assert d["halfwidth"] == pytest.approx(stats.t.ppf(0.975, 7) * math.sqrt(1 / 8 + 9 / 24))
    # far beyond the critical value power is 1, not scipy's nan of the lower tail
    assert design(0.0, 3.0, 20, 2, 3.0)["power"] == pytest.approx(1.0)


def test_power_table_reads_variance_components_from_runs():
    rng = np.random.default_rng(3)
    rows = []
    for n in range(6):
        shift = rng.normal(0, 0.01)
        for seed in range(5):
            base = 0.5 + rng.normal(0, 0.05)
            rows += [{"network": f"n{n}", "seed": seed, "train set": "real", "acc": base},
                     {"network": f"n{n}", "seed": seed, "train set": "none",
                      "acc": base + shift + rng.normal(0, 0.02)}]
    table, s = power_table(pd.DataFrame(rows), wall_s=60.0, budget_min=100, parallel=2, compared_sets=1)
    vc = variance_components(pairs(pd.DataFrame(rows), "none", "real", "acc").pipe(lambda p: p.assign(diff=100 * p["diff"])))
    assert s["var_seed"] == pytest.approx(vc["var_seed"]) and s["pilot_networks"] == 6 and s["pilot_pairs"] == 30
    r = table.set_index(["networks", "seeds"]).loc[(10, 4)]
    assert r["minutes"] == pytest.approx(10 * 4 * 2 * 60 / 60 / 2)
    assert r["power at 3"] >= r["power at 1.5"] >= r["power at 1"]


def test_power_table_from_one_network_says_the_network_component_is_not_estimable():
    rng = np.random.default_rng(4)
    rows = [{"network": "resnet18", "seed": seed, "train set": ts, "acc": 0.5 + rng.normal(0, 0.03)}
            for seed in range(5) for ts in ("real", "none")]
    table, s = power_table(pd.DataFrame(rows), wall_s=60.0, budget_min=100, parallel=2, compared_sets=1)
    assert not s["network_estimable"] and math.isnan(s["var_network"]) and s["var_seed"] > 0
    # the designs use the seed variance alone: the half-width of N networks x S seeds is t * sqrt(var_seed / NS)
    r = table.set_index(["networks", "seeds"]).loc[(5, 2)]
    assert r["half-width"] == pytest.approx(stats.t.ppf(0.975, 4) * math.sqrt(s["var_seed"] / 10))


def test_mcnemar_counts_only_the_images_the_runs_disagree_on():
    a = np.array([True] * 8 + [True] * 50 + [False] * 20)
    b = np.array([False] * 8 + [True] * 50 + [False] * 20)
    assert mcnemar_p(a, b) == pytest.approx(2 * 0.5**8)  # 8 discordant, all one way
    assert mcnemar_p(a, a) == 1.0


def runs_frame(gain: float, seeds: int = 8, networks=("resnet18",)) -> pd.DataFrame:
    """Accuracies that vary a lot from seed to seed, with set 'entropy-s2' exactly `gain` above the others."""
    rng = np.random.default_rng(0)
    rows = []
    for n in networks:
        for seed in range(seeds):
            base = 0.5 + 0.1 * rng.standard_normal()
            for s, acc in (("real", base), ("none", base), ("classifier-s2", base), ("entropy-s2", base + gain),
                           ("mgdm-s2", base + 2 * gain)):
                rows.append({"dataset": "d", "network": n, "seed": seed, "train set": s, "acc": acc})
    return pd.DataFrame(rows)


def test_single_pair_gets_mcnemar_from_test_predictions():
    runs = runs_frame(0.02, seeds=1)
    correct = {("resnet18", "entropy-s2", 0): np.r_[np.ones(60), np.zeros(40)].astype(bool),
               ("resnet18", "real", 0): np.r_[np.ones(50), np.zeros(50)].astype(bool)}
    (s,) = comparison(runs, "entropy-s2", "real", "acc", correct)
    assert s["n"] == 1 and s["inference"] == "pairs" and s["mcnemar_p"] == pytest.approx(2 * 0.5**10)


def test_claims_table_states_each_claim_under_both_inferences():
    nets = ("resnet18", "vgg16_bn", "convnext_atto", "regnetx_002", "resnet50", "densenet121")
    table = claims_table(runs_frame(0.02, networks=nets), ["none", "classifier-s2", "entropy-s2", "mgdm-s2"],
                         "entropy")
    t = table.set_index(["claim", "inference"])
    beats_none = t.loc[("uncertainty guidance beats no guidance", "networks")]
    assert beats_none["verdict"] == "supported" and beats_none["n"] == 6 and beats_none["pairs"] == 48
    assert t.loc[("uncertainty guidance beats classifier guidance", "pairs"), "mean"] == pytest.approx(2.0)
    assert t.loc[("two-stage MGDM beats one-stage uncertainty guidance", "pairs"), "comparison"] == "mgdm-s2 − entropy-s2"
    shown = format_table(table)
    assert "p_holm" in shown and shown["mean"].iloc[0] == "+2.00"


def test_one_network_has_no_network_level_rows():
    table = claims_table(runs_frame(0.0), ["none", "entropy-s2"], "entropy")
    assert set(table["inference"]) == {"pairs"}
    assert (table["verdict"] == "gain of at least 1 excluded").all()  # exactly 0 in 8 pairs


def test_p_values_print_with_two_significant_digits():
    assert [fmt_p(p) for p in (0.00089, 0.0009, 0.0123, 0.5, 0.999, 3e-6, math.nan)] == [
        "0.00089", "0.0009", "0.012", "0.5", "1", "3.0e-06", "--"]


def test_a_profile_without_the_compared_sets_has_an_empty_claims_table():
    table = claims_table(runs_frame(0.02), ["none"], "entropy")  # nothing to compare: no uncertainty set
    assert table.empty and format_table(table).empty


def test_a_metric_one_dataset_lacks_gives_no_rows_for_it():
    runs = pd.concat([runs_frame(0.01).assign(dataset="ordinal", qwk=0.5),
                      runs_frame(0.01).assign(dataset="binary", qwk=float("nan"))])
    table = comparisons_table(runs, ["none", "entropy-s2"], ["acc", "qwk"])
    qwk = table[table["metric"] == "qwk"]
    assert set(qwk["dataset"]) == {"ordinal"} and len(table[table["dataset"] == "binary"]) == 2  # acc only


@pytest.mark.parametrize("x", ["-x3", "-d1"])
def test_guidances_compare_at_one_quantity_and_one_draw(x):
    base = runs_frame(0.02)
    other = base[base["train set"] != "real"].assign(**{"train set": lambda f: f["train set"] + x})
    runs = pd.concat([base, other])
    sets = ["none", "classifier-s2", "entropy-s2", "mgdm-s2"] + [f"{s}{x}" for s in ("none", "classifier-s2",
                                                                                    "entropy-s2", "mgdm-s2")]
    claims = claims_table(runs, sets, "entropy")
    assert set(claims["comparison"]) == {
        f"{a}{y} − {b}{y}" for y in ("", x) for a, b in (("entropy-s2", "none"), ("entropy-s2", "classifier-s2"),
                                                          ("mgdm-s2", "entropy-s2"))} | {
        "entropy-s2 − real", f"entropy-s2{x} − real"}
    pairs = comparisons_table(runs, sets, ["acc"])
    assert set(pairs[pairs["vs"] == f"classifier-s2{x}"]["train set"]) == {f"{s}{x}" for s in ("none", "entropy-s2",
                                                                                                "mgdm-s2")}
    assert len(pairs[pairs["vs"] == "real"]["train set"].unique()) == 8  # every set against real-only
