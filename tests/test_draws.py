"""The draw of a set as a random factor: ANOVA's mean squares, the crossed interval's coverage, and the table's
pairing of each draw's sets."""

import numpy as np
import pandas as pd
import pytest

from mgdm.analysis import paired
from mgdm.analysis.draws import cells, crossed, draws_table, format_draws, mean_squares


def test_mean_squares_match_a_least_squares_anova():
    """Against the model-comparison route: residual sums of squares of the additive fit and of the fits
    without each factor (dummy-coded least squares)."""
    rng = np.random.default_rng(1)
    n, k = 6, 5
    y = rng.normal(size=(n, k)) + rng.normal(size=(n, 1)) + 2 * rng.normal(size=(1, k))
    rows, cols = np.repeat(np.arange(n), k), np.tile(np.arange(k), n)

    def rss(*factors):
        x = np.column_stack([np.ones(n * k)] + [(f[:, None] == np.arange(1, f.max() + 1)).astype(float)
                                                 for f in factors])
        r = y.ravel() - x @ np.linalg.lstsq(x, y.ravel(), rcond=None)[0]
        return r @ r

    full = rss(rows, cols)
    ms = mean_squares(y)
    assert ms["ms_residual"] == pytest.approx(full / ((n - 1) * (k - 1)))
    assert ms["ms_network"] == pytest.approx((rss(cols) - full) / (n - 1))
    assert ms["ms_draw"] == pytest.approx((rss(rows) - full) / (k - 1))


def simulate(sd_draw: float, sims: int = 2000, n: int = 6, k: int = 5, seed: int = 0):
    """Coverage of the true mean 0 by the crossed interval and by draw 0's network-level t interval alone."""
    rng = np.random.default_rng(seed)
    hit_crossed = hit_one = 0
    for _ in range(sims):
        y = rng.normal(size=(n, 1)) + sd_draw * rng.normal(size=(1, k)) + rng.normal(size=(n, k))
        c = crossed(y)
        hit_crossed += c["ci_low"] <= 0 <= c["ci_high"]
        one = paired.t_summary(y[:, 0])
        hit_one += one["ci_low"] <= 0 <= one["ci_high"]
    return hit_crossed / sims, hit_one / sims


def test_the_crossed_interval_keeps_coverage_where_one_draw_does_not():
    crossed_cov, one_cov = simulate(sd_draw=1.0)
    assert crossed_cov >= 0.94 and one_cov < 0.8  # one draw's interval is about that draw, not the guidance
    crossed_cov, one_cov = simulate(sd_draw=0.0)
    assert 0.94 <= crossed_cov <= 0.995 and one_cov == pytest.approx(0.95, abs=0.015)


def test_components_and_the_draw_test_see_a_draw_effect_only_where_there_is_one():
    rng = np.random.default_rng(3)
    net = rng.normal(size=(8, 1))
    flat = crossed(net + 0.3 * rng.normal(size=(8, 6)))
    shifted = crossed(net + 0.3 * rng.normal(size=(8, 6)) + np.array([[0, 2, -2, 1, -1, 0]]))
    assert flat["p_draw"] > 0.05 and shifted["p_draw"] < 1e-6
    assert shifted["sd_draw"] == pytest.approx(np.std([0, 2, -2, 1, -1, 0], ddof=1), rel=0.1)
    assert flat["sd_network"] == pytest.approx(float(net.std(ddof=1)), rel=0.15)


def test_the_upper_bound_on_the_draws_sd_covers_it_at_its_level():
    rng = np.random.default_rng(4)
    for sd in (0.5, 2.0):
        hits = [crossed(rng.normal(size=(6, 1)) + sd * rng.normal(size=(1, 5)) + 1.8 * rng.normal(size=(6, 5)))[
            "sd_draw_upper"] >= sd for _ in range(2000)]
        assert np.mean(hits) == pytest.approx(0.95, abs=0.015)


def runs_with_draws(effects: dict[str, list[float]], networks: int = 4, seeds: int = 2) -> pd.DataFrame:
    """Accuracies: a (network, seed) base, plus for each set and draw k the given effect (points) at k."""
    rng = np.random.default_rng(0)
    rows = []
    for n in range(networks):
        for seed in range(seeds):
            base = 0.5 + 0.05 * rng.standard_normal()
            rows.append({"dataset": "d", "network": f"net{n}", "seed": seed, "train set": "real", "acc": base})
            for s, by_draw in effects.items():
                for k, e in enumerate(by_draw):
                    rows.append({"dataset": "d", "network": f"net{n}", "seed": seed,
                                 "train set": s + (f"-d{k}" if k else ""), "acc": base + e / 100})
    return pd.DataFrame(rows)


def test_each_draw_pairs_its_own_sets_and_the_pooled_mean_averages_the_draws():
    runs = runs_with_draws({"none": [0, 1, 2], "entropy-s2": [2, 4, 3]})
    assert cells(runs, "entropy-s2", "none", "acc", [0, 1, 2]).iloc[0].tolist() == pytest.approx([2, 3, 1])
    pooled, single = draws_table(runs, metrics=("acc",))
    assert set(pooled["comparison"]) == {"none − real", "entropy-s2 − real", "entropy-s2 − none"}
    row = pooled.set_index("comparison").loc["entropy-s2 − none"]
    assert row["mean"] == pytest.approx(2.0) and row["draws"] == 3 and row["networks"] == 4
    one = single[single["comparison"] == "entropy-s2 − none"].set_index("draw")["mean"]
    assert one.tolist() == pytest.approx([2, 3, 1])
    shown = format_draws(pooled, single).set_index("comparison")
    assert shown.loc["entropy-s2 − none", "draw 1"].startswith("+3.00 [+3.00, +3.00]")


def test_the_command_writes_its_table_from_records_and_refuses_records_of_one_draw(tmp_path):
    import shutil

    from conftest import ROOT, run

    shutil.copy(ROOT / "params.yaml", tmp_path)
    records = tmp_path / "results/smoke/records"
    records.mkdir(parents=True)
    runs = runs_with_draws({"none": [0, 1, 2], "entropy-s2": [2, 4, 3]}).assign(dataset="discs")
    runs.rename(columns={"train set": "set"}).assign(
        adaptation="as-is", epochs=3, balanced_acc=runs["acc"], macro_f1=runs["acc"], auc=runs["acc"], qwk=0.0,
        best_epoch=1, n_real=100, n_synthetic=12, wall_s=1.0, machine="m", test_correct="").to_csv(
        records / "runs.csv", index=False)
    res = run(["mgdm", "set-draws", "--profile", "smoke"], tmp_path, mlflow=False)
    assert "entropy-s2 − none, accuracy over networks and draws: +2.00" in res.stdout
    table = (tmp_path / "results/smoke/tables/set_draws.md").read_text()
    assert "draw 2" in table and (tmp_path / "results/smoke/figures/set_draws.png").stat().st_size > 0
    one = pd.read_csv(records / "runs.csv")
    one[~one["set"].str.contains("-d")].to_csv(records / "runs.csv", index=False)
    res = run(["mgdm", "set-draws", "--profile", "smoke"], tmp_path, check=False, mlflow=False)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "runs of 1 draw(s) of the sets" in res.stderr


def test_mgdm_is_compared_with_its_one_stage_measure_in_every_draw():
    from mgdm.analysis.draws import comparisons

    runs = runs_with_draws({"entropy-s2": [1, 1], "mgdm-s2": [0, -1]})
    assert comparisons(runs) == [("entropy-s2", "real"), ("mgdm-s2", "real"), ("mgdm-s2", "entropy-s2")]
    assert comparisons(runs, mgdm_measure="margin")[-1] == ("mgdm-s2", "real")
    pooled, _ = draws_table(runs, metrics=("acc",))
    assert pooled.set_index("comparison").loc["mgdm-s2 − entropy-s2", "mean"] == pytest.approx(-1.5)
