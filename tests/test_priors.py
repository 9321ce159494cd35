"""The class-prior control (mgdm.analysis.controls, `mgdm prior-shift`): Bayes' rule moves a posterior between
priors exactly, and the table pairs each set with the real-only runs moved to its prior (known answers)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mgdm.analysis.controls import adjusted_label, check_against_runs, prior_table, reweight
from mgdm.files import FileError


def posterior(x: np.ndarray, prior) -> np.ndarray:
    """The exact posterior of two unit Gaussians at -1 and +1 under class prior `prior`."""
    joint = np.stack([prior[0] * stats.norm.pdf(x, -1), prior[1] * stats.norm.pdf(x, 1)], 1)
    return joint / joint.sum(1, keepdims=True)


def test_reweighting_a_posterior_gives_the_posterior_under_the_new_prior():
    x = np.linspace(-4, 4, 81)
    moved = reweight(posterior(x, [0.1, 0.9]), [0.1, 0.9], [0.3, 0.7])
    assert np.allclose(moved, posterior(x, [0.3, 0.7]), atol=1e-12)
    assert np.allclose(reweight([[0.6, 0.4]], [0.5, 0.5], [0.2, 0.8]), [[0.24 / 0.88, 0.64 / 0.88]])


def record_and_runs():
    """Two networks x two seeds, labels [0, 0, 1, 1], trained under the prior 0.1/0.9. At that prior every run
    calls all four images class 1 (accuracy .5); moved to 0.5/0.5 (real 1/9 + a set of 8 class-0 images), the
    seed-0 runs get all four right (1.0) and the seed-1 runs three (.75: their second image stays class 1)."""
    p0 = {0: [0.2, 0.15, 0.05, 0.01], 1: [0.2, 0.08, 0.05, 0.01]}
    networks, seeds, probs, rows = [], [], [], []
    for network in ("a", "b"):
        for seed in (0, 1):
            networks.append(network)
            seeds.append(seed)
            probs.append(np.array([[p, 1 - p] for p in p0[seed]], dtype=np.float32))
            rows.append({"dataset": "d", "network": network, "seed": seed, "train set": "real", "acc": 0.5,
                         "balanced_acc": 0.5, "macro_f1": 1 / 3, "test_correct": "0011"})
            rows.append({"dataset": "d", "network": network, "seed": seed, "train set": "s", "acc": 1.0,
                         "balanced_acc": 1.0, "macro_f1": 1.0, "test_correct": "1111"})
    record = {"real_counts": np.array([1, 9]), "sets": np.array(["s"]), "set_counts": np.array([[8, 0]]),
              "test_labels": np.array([0, 0, 1, 1]), "networks": np.array(networks), "seeds": np.array(seeds),
              "probs": np.stack(probs)}
    return record, pd.DataFrame(rows)


def test_the_table_pairs_each_set_with_the_real_only_runs_at_its_prior():
    record, runs = record_and_runs()
    table = prior_table(runs, record, "d")
    label = adjusted_label(np.array([0.5, 0.5]))
    assert label == "real (prior 0.500/0.500)"
    acc = table[(table["metric"] == "acc") & (table["inference"] == "pairs")].set_index(["train set", "vs"])
    assert acc.loc[(label, "real"), "mean"] == pytest.approx(37.5)  # (50 + 25 + 50 + 25) / 4 points
    assert acc.loc[("s", label), "mean"] == pytest.approx(12.5)  # the set beyond its prior: 0, 25, 0, 25
    assert acc.loc[("s", label), "pairs"] == 4 and acc.loc[("s", label), "networks"] == 2
    assert set(table["inference"]) == {"networks", "pairs"} and "auc" not in set(table["metric"])


def test_a_record_from_other_runs_is_refused_naming_the_run():
    record, runs = record_and_runs()
    runs.loc[(runs["network"] == "b") & (runs["seed"] == 1) & (runs["train set"] == "real"), "test_correct"] = "0111"
    with pytest.raises(FileError, match="priors.npz: real-only run b seed 1 does not match"):
        check_against_runs(record, runs, "d", "priors.npz")


def test_a_profile_without_its_record_is_one_line_naming_the_file(tmp_path):
    from conftest import ROOT, run

    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "results/cpu/records").mkdir(parents=True)
    (tmp_path / "results/cpu/records/runs.csv").write_text((ROOT / "results/cpu/records/runs.csv").read_text())
    res = run(["mgdm", "prior-shift", "--profile", "cpu", "--from-records"], tmp_path, check=False)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "results/cpu/records/priors.npz: no prior-shift record" in res.stderr


def test_copies_are_drawn_to_the_sets_class_counts_from_the_real_images_of_each_class():
    from mgdm.analysis.controls import control_label, draw_copies

    labels = np.array([0] * 9 + [1])
    idx = draw_copies(labels, [3, 5])
    assert np.bincount(labels[idx]).tolist() == [3, 5] and (idx[labels[idx] == 1] == 9).all()
    assert (draw_copies(labels, [3, 5]) == idx).all()  # seed 0: the same draw every time
    assert control_label([100, 100]) == "real copies (100/100)"


def test_each_set_is_paired_with_the_control_of_its_class_counts():
    from mgdm.analysis.controls import copies_table

    rows = []
    for network in ("a", "b"):
        for seed in (0, 1):
            for s, acc in (("real", 0.50), ("real copies (1/1)", 0.60 + 0.01 * seed), ("s", 0.65)):
                rows.append({"dataset": "d", "network": network, "seed": seed, "train set": s, "acc": acc,
                             "balanced_acc": acc, "macro_f1": acc, "auc": acc})
    table = copies_table(pd.DataFrame(rows), {"s": "real copies (1/1)"}, "d")
    acc = table[(table["metric"] == "acc") & (table["inference"] == "pairs")].set_index(["train set", "vs"])
    assert acc.loc[("real copies (1/1)", "real"), "mean"] == pytest.approx(10.5)  # (10 + 11 + 10 + 11) / 4
    assert acc.loc[("s", "real copies (1/1)"), "mean"] == pytest.approx(4.5)  # 5, 4, 5, 4
    assert len(table) == 2 * 4 * 2  # two comparisons x four metrics x two inferences
