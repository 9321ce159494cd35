"""`mgdm training-length`: the converged length against known answers, and the command end to end on discs."""

import shutil

import pandas as pd
import pytest

from mgdm.tools.training_length import converged_length, table


def lengths(means: dict[int, float], network: str = "n") -> pd.DataFrame:
    # two seeds per length, spread symmetrically about the given mean
    return pd.DataFrame([{"network": network, "epochs": e, "seed": s, "val_auc": m + d, "acc": 0.5, "auc": m,
                          "balanced_acc": 0.3, "best_epoch": e, "wall_s": 1.0}
                         for e, m in means.items() for s, d in ((0, -0.01), (1, 0.01))])


@pytest.mark.parametrize("means, tolerance, expected", [
    ({4: 0.600, 8: 0.650, 16: 0.656, 32: 0.658}, 0.01, 8),     # 8 -> 32 gains .008
    ({4: 0.600, 8: 0.650, 16: 0.656, 32: 0.658}, 0.005, 16),   # ... which is more than .005
    ({4: 0.600, 8: 0.700, 16: 0.650, 32: 0.720}, 0.01, 32),    # a dip does not make 8 converged: 32 beats it by .02
    ({4: 0.700, 8: 0.690, 16: 0.695}, 0.01, 4),                # longer never helps: the shortest
])
def test_converged_length_is_the_shortest_that_no_longer_length_beats(means, tolerance, expected):
    assert converged_length(lengths(means), tolerance) == expected


def test_table_marks_the_converged_length_and_the_gain_to_the_next():
    rows = pd.concat([lengths({4: 0.60, 8: 0.65, 16: 0.655}, "a"), lengths({4: 0.70, 8: 0.72, 16: 0.75}, "b")])
    out = table(rows, 0.01)
    shuffled = table(rows.sample(frac=1, random_state=0), 0.01)  # records in any order: the same table
    pd.testing.assert_frame_equal(shuffled.sort_values(["network", "epochs"], ignore_index=True), out)
    assert out.loc[out["converged"] == "yes", ["network", "epochs"]].values.tolist() == [["a", 8]]
    assert out.loc[out["converged"] != "", ["network", "epochs"]].values.tolist() == [["a", 8], ["b", 16]]
    assert out["converged"].iloc[-1] == "not shown (longest run)"  # b still gains at its longest length
    a = out[out["network"] == "a"]
    assert a["gain to next"].round(6).tolist()[:2] == [0.05, 0.005] and pd.isna(a["gain to next"].iloc[-1])
    assert a["val_auc_sd"].round(6).tolist() == [0.014142] * 3 and a["seeds"].tolist() == [2, 2, 2]


def test_training_length_writes_one_record_per_length_and_skips_finished_ones(tmp_path):
    from conftest import ROOT, run

    shutil.copy(ROOT / "params.yaml", tmp_path)
    run(["mgdm", "preprocess", "--profile", "smoke", "--dataset", "discs", "--no-mlflow"], tmp_path)
    empty = run(["mgdm", "training-length", "--profile", "smoke", "--table-only"], tmp_path, check=False)
    assert empty.returncode == 2 and "training_length.json: no finished length yet" in empty.stderr
    cmd = ["mgdm", "training-length", "--profile", "smoke", "--no-progress", "--threads", "1"]
    run(cmd, tmp_path)
    folder = tmp_path / "results/smoke/discs/lengths"
    # no resume state left
    assert sorted(p.name for p in folder.iterdir()) == ["convnext_atto-e1.json", "convnext_atto-e2.json"]
    records = pd.read_json(folder / "convnext_atto-e2.json")
    assert records["seed"].tolist() == [0, 1] and (records["val_auc_curve"].map(len) == 2).all()
    assert (records["val_auc"] == records["val_auc_curve"].map(max)).all()
    table_md = (tmp_path / "results/smoke/tables/training_length.md").read_text()
    assert table_md.count("| convnext_atto") == 2 and "seeds 0, 1" in table_md
    assert (tmp_path / "results/smoke/figures/training_length.png").stat().st_size > 0
    first = (folder / "convnext_atto-e1.json").read_text()
    again = run(cmd, tmp_path)
    assert (folder / "convnext_atto-e1.json").read_text() == first and "best validation AUC" not in again.stdout
    # the table comes back from the records alone
    shutil.rmtree(folder)
    (tmp_path / "results/smoke/tables/training_length.md").unlink()
    run(["mgdm", "training-length", "--profile", "smoke", "--table-only"], tmp_path)
    assert (tmp_path / "results/smoke/tables/training_length.md").read_text() == table_md
