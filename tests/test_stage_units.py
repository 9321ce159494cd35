"""Known answers for the stages' own arithmetic, without running the DAG: the tables, the distribution
analysis, the fidelity floor and the sample stage's plan and guidance."""

import numpy as np
import pandas as pd
import pytest
import torch

from mgdm.analysis import paired
from mgdm.analysis.tables import FLOOR, downstream_table, image_tables, quantity_plot, write_table
from mgdm.classifiers.zoo import create_network
from mgdm.config import AnalysisConfig, FidelityConfig, SamplingConfig
from mgdm.files import save_model, write_npz

from conftest import discs_dataset, signal_at_call


@pytest.fixture(scope="module")
def discs(tmp_path_factory):
    return discs_dataset(tmp_path_factory.mktemp("discs"),
                         image_size=16, num_classes=3, channels=1, n_train=120, n_val=30, n_test=45)


@pytest.fixture(scope="module")
def reference(discs, tmp_path_factory):
    torch.manual_seed(0)
    model = create_network("resnet18", discs.num_classes, discs.channels, discs.image_size)
    path = tmp_path_factory.mktemp("ref") / "model.safetensors"
    save_model(path, model, {"kind": "classifier", "network": "resnet18", "num_classes": discs.num_classes,
                             "in_chans": discs.channels, "image_size": discs.image_size})
    return path


def test_downstream_table_means_seeds_and_subtracts_the_real_only_mean():
    runs = pd.DataFrame([{"dataset": "d", "network": "n", "adaptation": "as-is", "train set": s, "seed": seed,
                          "acc": acc, "auc": 0.7} for s, accs in (("real", (0.50, 0.54)), ("none", (0.55, 0.57)))
                         for seed, acc in enumerate(accs)])
    table = downstream_table(runs).set_index("train set")
    assert table.loc["none", "acc"] == "0.560 ± 0.014" and table.loc["real", "acc"] == "0.520 ± 0.028"
    assert table.loc["none", "Δacc vs real"] == pytest.approx(0.04)


def test_the_quantity_figure_puts_each_guidance_at_its_images_per_real_image(tmp_path):
    """Two guidances at 0.2x and 1x: x is n_synthetic / n_real, y the networks-level change against real-only
    (known: +1 point at 0.2x and +3 at 1x for `none`, whose seeds all gain the same)."""
    rng = np.random.default_rng(0)
    rows = []
    for network in ("a", "b", "c"):
        for seed in (0, 1):
            base = 0.5 + rng.normal(0, 0.02)
            for s, n_syn, gain in (("real", 0, 0), ("none", 200, 0.01), ("none-x1", 1000, 0.03),
                                   ("entropy-s2", 200, rng.normal(0, 0.01)), ("entropy-s2-x1", 1000, 0.0)):
                rows.append({"dataset": "d", "network": network, "train set": s, "seed": seed,
                             "acc": base + gain, "n_real": 1000, "n_synthetic": n_syn})
    runs = pd.DataFrame(rows)
    comparisons = paired.comparisons_table(runs, ["none", "entropy-s2", "none-x1", "entropy-s2-x1"], ["acc"])
    drawn = quantity_plot(comparisons, runs, tmp_path / "quantity.png").set_index("train set")
    assert (tmp_path / "quantity.png").stat().st_size > 5000
    assert set(drawn["inference"]) == {"networks"} and set(drawn["vs"]) == {"real"}
    assert drawn.loc["none", "quantity"] == pytest.approx(0.2) and drawn.loc["entropy-s2-x1", "quantity"] == 1
    assert drawn.loc["none", "mean"] == pytest.approx(1) and drawn.loc["none-x1", "mean"] == pytest.approx(3)
    assert drawn.loc["none-x1", "guidance"] == "none" and drawn.loc["entropy-s2-x1", "guidance"] == "entropy-s2"
    # nothing against real-only (only set-vs-set rows): an empty frame, and a figure that says so
    between = comparisons.assign(vs="none")
    assert quantity_plot(between, runs, tmp_path / "empty.png").empty
    assert 0 < (tmp_path / "empty.png").stat().st_size < (tmp_path / "quantity.png").stat().st_size


def test_each_set_is_divided_by_the_floor_at_its_own_n(tmp_path):
    """FID is biased by n: a 0.2x set (n 186) and a 1x set (n 508) each against the floor at its n."""
    fid = [{"dataset": "d", "set": "none", "n": 186, "domain_fid": 8.0},
           {"dataset": "d", "set": "none-x1", "n": 508, "domain_fid": 3.0},
           {"dataset": "d", "set": FLOOR, "n": 186, "domain_fid": 2.0},
           {"dataset": "d", "set": FLOOR, "n": 508, "domain_fid": 1.0}]
    image_tables("p", fid, [{"dataset": "d", "set": "none", "n": 186}], [{"dataset": "d"}], tmp_path)
    rows = {line.split("|")[2].strip(): line.split("|") for line in (tmp_path / "fidelity.md").read_text().splitlines()
            if line.startswith("| d ")}
    assert float(rows["none"][5]) == 4.0 and float(rows["none-x1"][5]) == 3.0 and float(rows[FLOOR][5]) == 1.0


def test_tables_print_p_values_as_given(tmp_path):
    write_table(pd.DataFrame({"set": ["a", "b"], "p": ["1.0e-05", "0.00089"], "mean": [0.12345, 2.0]}),
                tmp_path / "t", "caption")
    md = (tmp_path / "t.md").read_text()
    assert "1.0e-05" in md and "0.00089" in md and "0.123" in md and "0.000 " not in md


def synthetic_from_real(discs, path, split="train"):
    images, labels = discs.numpy(split)
    write_npz(path, images=images, labels=labels.astype(np.int64))
    return path


def test_the_real_training_images_as_a_synthetic_set_sit_exactly_on_the_real_data(discs, reference, tmp_path):
    from mgdm.analysis.distribution import analyze_sets

    sets = {"copy": synthetic_from_real(discs, tmp_path / "copy.npz")}
    figures = {k: tmp_path / f"{k}.png" for k in ("entropy", "embedding", "samples")}
    rows = analyze_sets(discs, reference, sets, AnalysisConfig(), figures)["sets"]
    copy = rows["copy"]
    assert copy["colour_error"] < 0.5  # grey levels: the same pixels (a subset in the same class mix); sets: 3-15
    assert copy["centre_distance"] == pytest.approx(1.0, rel=0.25)  # 1 = the real average distance
    assert copy["coverage"] > rows["real-heldout"]["coverage"] - 0.05


def test_fid_of_a_set_against_itself_is_zero_and_the_floor_is_above_it(discs, reference):
    from mgdm.metrics.fidelity import fidelity

    real, _ = discs.numpy("train")
    cfg = FidelityConfig(feature_extractors=["domain"], kid_subset_size=10, batch_size=64)
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        same = fidelity(real, real, "domain", str(reference), cfg, cache, "cpu")
        held = fidelity(discs.numpy("test")[0], real, "domain", str(reference), cfg, cache, "cpu")
    assert same["domain_fid"] == pytest.approx(0.0, abs=1e-3)
    assert held["domain_fid"] > same["domain_fid"] + 1e-3


def test_the_sample_stage_plans_its_labels_and_none_ignores_the_guidance_net():
    from mgdm.diffusion.unet import ddim_schedulers
    from mgdm.sampling.models import guidance_model
    from mgdm.stages.sample import label_plan

    cfg = SamplingConfig(ddim_steps=5, per_class=4, batch_size=8, scales={"none": [0]})
    assert label_plan(cfg, [30, 10, 20]).tolist() == [0] * 4 + [1] * 4 + [2] * 4
    train = SamplingConfig(ddim_steps=5, per_class=4, batch_size=8, class_counts="train", scales={"none": [0]})
    assert np.bincount(label_plan(train, [30, 10, 20])).tolist() == [6, 2, 4]  # 12 images, the train mix
    # a sized set (entropy-s2-x1): the training split's 61 images, balanced, the remainder to the first classes
    assert np.bincount(label_plan(cfg, [30, 10, 21], 1.0)).tolist() == [21, 20, 20]
    assert np.bincount(label_plan(cfg, [30, 10, 20], 3)).tolist() == [60, 60, 60]
    assert np.bincount(label_plan(train, [30, 10, 20], 0.5)).tolist() == [15, 5, 10]

    sampler, _ = ddim_schedulers(dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                                      beta_end=2e-2, clip_sample=True, prediction_type="epsilon"))

    def unet(x, t, class_labels=None):
        return type("Out", (), {"sample": 0.5 * x + class_labels.view(-1, 1, 1, 1)})

    def explode(*a, **k):
        raise AssertionError("the guidance net must not run for `none`")

    x, y, t = torch.randn(2, 1, 4, 4), torch.tensor([0, 1]), torch.tensor(500)
    out = guidance_model(unet, explode, "none", 7.0, sampler, 3)(x, t, y)
    assert torch.equal(out, unet(x, t, y).sample)
    cfg_out = guidance_model(unet, explode, "cfg", 2.0, sampler, 3)(x, t, y)  # eps_c + w (eps_c - eps_u)
    assert torch.allclose(cfg_out, 0.5 * x + y.view(-1, 1, 1, 1) + 2.0 * (y.view(-1, 1, 1, 1) - 3))
    with pytest.raises(ValueError, match="unknown guidance 'typo'"):
        guidance_model(unet, explode, "typo", 1.0, sampler, 3)


def test_a_job_clears_the_temporary_files_a_killed_writer_left_and_nothing_else(tmp_path):
    from mgdm.files import atomic_path
    from mgdm.files import remove_temporaries

    out = tmp_path / "samples" / "entropy-s2.npz"
    killed = atomic_path(out)  # a writer stopped inside the block: its temporary file is never renamed
    tmp = killed.__enter__()
    tmp.write_bytes(b"half an array")
    others = [out.parent / "entropy-s2.json", out.parent / ".entropy-s2.npz.shards.npz",  # a folder, not a file
              out.parent / ".none.npz.x1y2.npz", out.parent / "entropy-s2.npz.bak"]
    others[1].mkdir()
    for p in others[::2] + others[3:]:
        p.write_text("kept")
    assert tmp.name.startswith(".entropy-s2.npz.") and tmp.suffix == ".npz"
    assert remove_temporaries([out, out.parent / "entropy-s2.json"]) == [tmp]
    assert not tmp.exists() and all(p.exists() for p in others)
    assert remove_temporaries([out]) == []


def test_a_further_draw_is_the_set_the_next_sampling_seed_gives_and_pairs_its_sets(smoke_dag, tmp_path):
    """entropy-s2-d1 at sampling seed 0 is entropy-s2 at seed 1, bit for bit; draw 0 is unchanged by the draw
    machinery; a draw's sets start from one noise (none-d1 and entropy-s2-d1 agree where guidance barely acts)."""
    from mgdm.stages.sample import run as sample

    d = smoke_dag[0] / "results/smoke/discs"
    cfg = SamplingConfig(ddim_steps=3, per_class=2, batch_size=4, scales={"none": [0], "entropy": [2]})
    counts = [1, 1, 1]

    def images(name, seed):
        out = tmp_path / f"{name}-{seed}.npz"
        sample(d / "ddpm/model.safetensors", d / "guidance_net/model.safetensors", name,
               cfg.model_copy(update={"seed": seed}), counts, out, out.with_suffix(".png"), progress=False)
        with np.load(out) as f:
            return f["images"].astype(int)

    drawn, next_seed, itself = images("entropy-s2-d1", 0), images("entropy-s2", 1), images("entropy-s2", 0)
    assert np.array_equal(drawn, next_seed) and not np.array_equal(drawn, itself)
    assert np.array_equal(images("entropy-s2-d2", 0), images("entropy-s2-d1", 1))
    # sets of one draw share their starting noise: none-d1 is much closer to entropy-s2-d1 than to entropy-s2
    none = images("none-d1", 0)
    assert np.abs(none - drawn).mean() < 0.5 * np.abs(none - itself).mean()


def test_a_signal_stops_sampling_after_the_batch_under_way_and_the_rerun_ends_the_set(smoke_dag, tmp_path,
                                                                                       monkeypatch):
    """SIGTERM during batch 2 of 3: the batch is finished and kept as a shard, then the job stops (before, the
    batch under way was lost); the rerun draws batch 3 alone and writes the unbroken set, bit for bit."""
    import signal

    from mgdm.interrupts import Interrupted, interruptible
    from mgdm.stages import sample as stage

    d = smoke_dag[0] / "results/smoke/discs"
    cfg = SamplingConfig(ddim_steps=3, per_class=3, batch_size=3, scales={"entropy": [2]})  # 9 images: 3 batches

    def sample(name):
        out = tmp_path / f"{name}.npz"
        metrics = stage.run(d / "ddpm/model.safetensors", d / "guidance_net/model.safetensors", "entropy-s2", cfg,
                            [1, 1, 1], out, out.with_suffix(".png"), progress=False)["metrics"]
        with np.load(out) as f:
            return metrics, {k: f[k] for k in f.files}

    unbroken = sample("a")[1]
    calls = signal_at_call(monkeypatch, stage, "sample_batch", 2)
    with pytest.raises(Interrupted) as stopped, interruptible():
        sample("b")
    assert (stopped.value.signum, stopped.value.where) == (signal.SIGTERM, "batch 2 of 3") and len(calls) == 2
    assert sorted(p.name for p in (tmp_path / ".b.shards").glob("batch*")) == ["batch00000.npz", "batch00001.npz"]
    metrics, resumed = sample("b")
    assert metrics["resumed_batches"] == 2 and len(calls) == 3
    assert resumed.keys() == unbroken.keys() and all(np.array_equal(resumed[k], unbroken[k]) for k in unbroken)
