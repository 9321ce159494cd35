"""The grid trainer: a run alone equals the loop it replaced bit for bit, grouped runs equal solo ones, a group
holds one run in memory at a time, the device AUC equals scikit-learn's, and a killed group resumes to the
unbroken result."""

import signal

import numpy as np
import pytest
import torch

from mgdm.classifiers import train as grid
from mgdm.classifiers.grading import auc, device_auc
from mgdm.config import ClassifierTraining

from conftest import discs_dataset

from reference_train import train_classifier as reference_loop

CFG = ClassifierTraining(epochs=3, batch_size=16, lr=2e-3, weight_decay=1e-4, hflip=True, checkpoint_s=0)


@pytest.fixture(scope="module")
def discs(tmp_path_factory):
    return discs_dataset(tmp_path_factory.mktemp("discs"),
                         image_size=16, num_classes=3, n_train=60, n_val=30, n_test=9)


def runs_of(discs):
    """Three runs as a group holds them: two seeds on the real split, one on real + an extra set (here the
    validation images standing in for a synthetic set), each training tensor shared by its runs."""
    real = discs.tensors("train")
    extra = tuple(torch.cat(pair) for pair in zip(real, discs.tensors("val")))
    return [grid.Run(0, *real), grid.Run(1, *real), grid.Run(0, *extra)]


def assert_same_state(a, b, atol=0.0):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, atol=atol, rtol=0, msg=name)


def test_a_run_alone_is_bit_identical_to_the_loop_it_replaced(discs):
    train, val = discs.tensors("train"), discs.tensors("val")
    old, old_info = reference_loop("resnet18", train, val, discs.num_classes, CFG, seed=1)
    new, info = grid.train_classifier("resnet18", train, val, discs.num_classes, CFG, seed=1, progress=False)
    assert_same_state(new, old)
    assert info["best_epoch"] == old_info["best_epoch"]
    assert info["history"]["train_loss"] == old_info["history"]["train_loss"]
    assert info["history"]["val_acc"] == old_info["history"]["val_acc"]
    # the device AUC and scikit-learn's trapezoid differ in the last bits only
    np.testing.assert_allclose([v for _, v in info["history"]["val_auc"]],
                               [v for _, v in old_info["history"]["val_auc"]], rtol=0, atol=1e-12)


# a BatchNorm network, a LayerNorm one and an attention one
@pytest.mark.parametrize("network", ["resnet18", "convnext_atto", "vit_tiny_patch16_224"])
def test_grouped_runs_equal_solo_runs(discs, network):
    runs, val = runs_of(discs), discs.tensors("val")
    cfg = CFG.model_copy(update={"epochs": 2})
    grouped = list(grid.train_runs(network, runs, val, discs.num_classes, cfg, progress=False))
    for run, (model, info) in zip(runs, grouped):
        solo, solo_info = next(grid.train_runs(network, [run], val, discs.num_classes, cfg, progress=False))
        assert_same_state(model, solo, atol=1e-5)
        assert info["best_epoch"] == solo_info["best_epoch"]
    # the runs differ from each other: the grouping did not hand one run's model to all
    assert not torch.equal(next(grouped[0][0].parameters()), next(grouped[1][0].parameters()))


def test_a_group_holds_one_run_in_memory_at_a_time(discs, monkeypatch):
    """A run's model and optimiser are freed before the next run starts (56 inception_v3 runs held at once
    need 24 GB); the caller gets each run as it finishes."""
    import gc
    import weakref

    start, models = grid._start, []

    def start_and_count(*args):
        gc.collect()
        assert all(m() is None for m in models), "a finished run's training model is still held"
        live = start(*args)
        models.append(weakref.ref(live.model))
        return live

    monkeypatch.setattr(grid, "_start", start_and_count)
    runs = grid.train_runs("resnet18", runs_of(discs), discs.tensors("val"), discs.num_classes, CFG, progress=False)
    first = next(runs)
    assert len(models) == 1, "the first run is handed back before the second starts"
    assert len([first, *runs]) == 3 and len(models) == 3


def test_a_killed_group_resumes_to_the_unbroken_result(discs, tmp_path, monkeypatch):
    val = discs.tensors("val")
    unbroken = list(grid.train_runs("resnet18", runs_of(discs), val, discs.num_classes, CFG, progress=False))
    runs = [grid.Run(r.seed, r.images, r.labels, tmp_path / f"run{i}.resume.safetensors")
            for i, r in enumerate(runs_of(discs))]
    validate, calls = grid._validate, []

    def killed_in_epoch_two(live, *args):  # dies in the second run's second epoch, after a checkpoint
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        validate(live, *args)

    monkeypatch.setattr(grid, "_validate", killed_in_epoch_two)
    finished = []  # what the caller kept (train_group: the run cache) before the kill
    with pytest.raises(KeyboardInterrupt):
        for result in grid.train_runs("resnet18", runs, val, discs.num_classes, CFG, progress=False):
            finished.append(result)
    monkeypatch.setattr(grid, "_validate", validate)
    assert len(finished) == 1  # the first run finished; its state went with it, the second's is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run1.resume.json", "run1.resume.safetensors"]
    resumed = finished + list(grid.train_runs("resnet18", runs[1:], val, discs.num_classes, CFG, progress=False))
    assert [info["resumed_from_epoch"] for _, info in resumed] == [0, 1, 0]
    for (model, info), (ref, ref_info) in zip(resumed, unbroken, strict=True):
        assert_same_state(model, ref)
        assert info["history"] == ref_info["history"] and info["best_epoch"] == ref_info["best_epoch"]
    assert list(tmp_path.iterdir()) == []  # the states are removed as their runs finish


def test_wall_clock_checkpoints_skip_epochs(discs, tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(grid, "_save", lambda live: saved.append(live.epoch))
    run = grid.Run(0, *discs.tensors("train"), tmp_path / "state.safetensors")
    next(grid.train_runs("resnet18", [run], discs.tensors("val"), discs.num_classes,
                         CFG.model_copy(update={"checkpoint_s": 3600}), progress=False))
    assert saved == []  # an hour between states: a 3-epoch run writes none
    next(grid.train_runs("resnet18", [run], discs.tensors("val"), discs.num_classes, CFG, progress=False))
    assert saved == [1, 2]  # every epoch but the last (whose result is the output)


@pytest.mark.filterwarnings("ignore:Only one class is present")
@pytest.mark.parametrize("classes", [2, 3, 5])
def test_device_auc_equals_scikit_learn_with_ties_and_absent_classes(classes):
    rng = np.random.default_rng(classes)
    undefined = 0
    for trial in range(100):
        n = int(rng.integers(4, 40))
        labels = rng.integers(0, classes, n)
        logits = torch.from_numpy(rng.normal(size=(n, classes)))
        if trial % 2:
            logits = logits.round()  # many tied scores
        probs = torch.softmax(logits.float(), -1)
        expected = auc(labels, probs.numpy())
        got = float(device_auc(torch.from_numpy(labels), probs))
        if np.isnan(expected):
            undefined += 1
            assert np.isnan(got)
        else:
            assert got == pytest.approx(expected, abs=1e-12)
    assert undefined > 0  # small draws left some class out: the NaN branch was exercised


def test_device_auc_known_answer():
    # class 1's scores: positives 0.9, 0.5; negatives 0.5, 0.1 -> pairs won 1 + 1 + 0.5 (tie) + 1 of 4
    labels = torch.tensor([1, 1, 0, 0])
    probs = torch.tensor([[0.1, 0.9], [0.5, 0.5], [0.5, 0.5], [0.9, 0.1]])
    assert float(device_auc(labels, probs)) == 0.875


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_run_at_its_epochs_end_with_the_state_kept(discs, tmp_path, monkeypatch, sig):
    """Ctrl-C or SIGTERM (scancel) in epoch 2 of 3, with an hour between states: the run keeps its state
    at epoch 2's end and stops; the rerun resumes there and ends where the unbroken run ends. A second signal
    stops at once."""
    from mgdm.interrupts import Interrupted, interruptible

    val, cfg = discs.tensors("val"), CFG.model_copy(update={"checkpoint_s": 3600})
    unbroken = list(grid.train_runs("resnet18", runs_of(discs)[:1], val, discs.num_classes, cfg, progress=False))
    run = grid.Run(0, *discs.tensors("train"), tmp_path / "state.safetensors")
    validate, calls = grid._validate, []

    def signalled(live, *args, times=1):  # the signal comes in epoch 2's validation (the real handler runs)
        calls.append(1)
        if len(calls) == 2:
            for _ in range(times):
                signal.raise_signal(sig)
        validate(live, *args)

    monkeypatch.setattr(grid, "_validate", signalled)
    before = signal.getsignal(sig)
    with pytest.raises(Interrupted) as stopped, interruptible():
        next(grid.train_runs("resnet18", [run], val, discs.num_classes, cfg, progress=False))
    assert stopped.value.signum == sig and stopped.value.where == "epoch 2 of 3 (seed 0)"
    assert signal.getsignal(sig) is before  # the handler is put back
    monkeypatch.setattr(grid, "_validate", validate)
    model, info = next(grid.train_runs("resnet18", [run], val, discs.num_classes, cfg, progress=False))
    assert info["resumed_from_epoch"] == 2
    assert_same_state(model, unbroken[0][0])
    assert info["history"] == unbroken[0][1]["history"] and info["best_epoch"] == unbroken[0][1]["best_epoch"]

    calls.clear()
    monkeypatch.setattr(grid, "_validate", lambda live, *args: signalled(live, *args, times=2))
    with pytest.raises(Interrupted) as stopped, interruptible():
        next(grid.train_runs("resnet18", [run], val, discs.num_classes, cfg, progress=False))
    assert stopped.value.where == "" and not run.resume_path.exists()  # at once: no state
