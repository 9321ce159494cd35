"""Training: a resumed run equals an unbroken one; checkpoints are safetensors written atomically."""

import copy
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mgdm.data.synthetic import load_synthetic
from mgdm.config import DDPMConfig
from mgdm.data.splits import DataError
from mgdm.diffusion import train as ddpm_train
from mgdm.files import read_training_info, save_training_state, write_npz

from conftest import discs_dataset, signal_at_call

CFG = dict(channels=[8, 16], layers_per_block=1, attention=False, steps=6, batch_size=8, lr=1e-3,
           ema_decay=0.9, label_dropout=0.2, checkpoint_every=3)


@pytest.fixture(scope="module")
def discs(tmp_path_factory):
    return discs_dataset(tmp_path_factory.mktemp("discs"),
                         image_size=8, num_classes=3, n_train=30, n_val=9, n_test=9)


RECIPE = dict(normalization="standardize", prediction_type="v_prediction", snr_gamma=5.0, schedule="cosine",
              zero_terminal_snr=True, timestep_spacing="trailing", warmup_steps=2, lr_decay="cosine", hflip=True)


@pytest.mark.parametrize("recipe", [{}, RECIPE], ids=["first-recipe", "v-minsnr-ztsnr-warmup-cosine-flip"])
def test_resumed_ddpm_training_equals_an_unbroken_run(discs, tmp_path, recipe, monkeypatch):
    cfg = {**CFG, **recipe}
    unbroken = ddpm_train.train_ddpm(discs, DDPMConfig(**cfg), tmp_path / "a" / "model.safetensors", progress=False)

    def killed_after_first_checkpoint(*args, **kwargs):
        save_training_state(*args, **kwargs)
        raise KeyboardInterrupt

    # killed right after the step-3 checkpoint, then run again with the state left behind
    monkeypatch.setattr(ddpm_train, "save_training_state", killed_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        ddpm_train.train_ddpm(discs, DDPMConfig(**cfg), tmp_path / "b" / "model.safetensors", progress=False)
    monkeypatch.setattr(ddpm_train, "save_training_state", save_training_state)
    result = ddpm_train.train_ddpm(discs, DDPMConfig(**cfg), tmp_path / "b" / "model.safetensors", progress=False)
    assert result["metrics"]["resumed_from"] == 3
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the loss window (10 steps) was open at the kill: its first 3 losses ride in the state, so the curve and
    # final loss are the unbroken run's (without them the resumed run averaged steps 4-6 alone)
    assert result["history"] == unbroken["history"]
    assert result["metrics"]["final_loss"] == unbroken["metrics"]["final_loss"]


def test_a_run_killed_after_its_last_state_reports_the_unbroken_loss_curve(discs, tmp_path, monkeypatch):
    """Killed after the final step's state but before the model was written: the rerun trains no step, and its
    final loss, curve and training time come from the state (they were NaN, [] and the rerun's few ms)."""
    unbroken = ddpm_train.train_ddpm(discs, DDPMConfig(**CFG), tmp_path / "a" / "model.safetensors", progress=False)

    def killed_before_the_model(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ddpm_train, "save_model", killed_before_the_model)
    with pytest.raises(KeyboardInterrupt):
        ddpm_train.train_ddpm(discs, DDPMConfig(**CFG), tmp_path / "b" / "model.safetensors", progress=False)
    monkeypatch.undo()
    result = ddpm_train.train_ddpm(discs, DDPMConfig(**CFG), tmp_path / "b" / "model.safetensors", progress=False)
    assert result["metrics"]["resumed_from"] == CFG["steps"]
    assert result["history"] == unbroken["history"] and len(result["history"]["loss"]) == 1
    assert result["metrics"]["final_loss"] == unbroken["metrics"]["final_loss"]
    assert result["metrics"]["train_s"] >= read_training_info(tmp_path / "b" / "resume.safetensors")["train_s"] > 0


def test_a_kill_between_a_state_and_its_json_copy_resumes_from_the_state(discs, tmp_path, monkeypatch):
    """Known answer: the second state (step 4) is renamed into place and the kill comes before its JSON copy is,
    so the JSON still says step 2. The step rides in the tensors' header: the rerun resumes at 4 and ends where
    an unbroken run ends. (Read from the JSON, it resumed the step-4 weights at step 2, as the suite's random
    kill of train-guidance-net once found.)"""
    from mgdm.config import GuidanceNetConfig
    from mgdm.guidance import train as guidance_train

    cfg = GuidanceNetConfig(width=8, steps=6, batch_size=8, lr=1e-3, checkpoint_every=2, dropout=0.1)
    ddpm = DDPMConfig(**CFG)
    unbroken = guidance_train.train_guidance_net(discs, cfg, ddpm, tmp_path / "a" / "model.safetensors",
                                                 progress=False)
    states = []

    def killed_before_the_second_json(path, step, *args, **kwargs):
        sidecar = path.with_suffix(".json")
        before = sidecar.read_text() if sidecar.exists() else None
        save_training_state(path, step, *args, **kwargs)
        states.append(step)
        if len(states) == 2:
            sidecar.write_text(before)  # the JSON copy of the step-2 state, as the kill left it
            raise KeyboardInterrupt

    monkeypatch.setattr(guidance_train, "save_training_state", killed_before_the_second_json)
    with pytest.raises(KeyboardInterrupt):
        guidance_train.train_guidance_net(discs, cfg, ddpm, tmp_path / "b" / "model.safetensors", progress=False)
    resume = tmp_path / "b" / "resume.safetensors"
    assert states == [2, 4] and '"step": 2' in resume.with_suffix(".json").read_text()
    assert read_training_info(resume)["step"] == 4
    monkeypatch.setattr(guidance_train, "save_training_state", save_training_state)
    resumed = guidance_train.train_guidance_net(discs, cfg, ddpm, tmp_path / "b" / "model.safetensors",
                                                progress=False)
    assert resumed["metrics"]["resumed_from"] == 4
    keys = [k for k in unbroken["metrics"] if k.startswith("val_acc")] + ["final_loss"]
    assert [resumed["metrics"][k] for k in keys] == [unbroken["metrics"][k] for k in keys]
    assert resumed["history"] == unbroken["history"]
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_changed_settings_do_not_resume(discs, tmp_path):
    ddpm_train.train_ddpm(discs, DDPMConfig(**CFG), tmp_path / "model.safetensors", progress=False)
    result = ddpm_train.train_ddpm(discs, DDPMConfig(**{**CFG, "lr": 5e-4}), tmp_path / "model.safetensors", progress=False)
    assert result["metrics"]["resumed_from"] == 0


def test_checkpoint_writes_leave_no_temporary_files(discs, tmp_path):
    ddpm_train.train_ddpm(discs, DDPMConfig(**CFG), tmp_path / "model.safetensors", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors", "resume.json",
                                                          "resume.safetensors"]


def test_synthetic_set_of_the_wrong_shape_is_refused(discs, tmp_path):
    write_npz(tmp_path / "s.npz", images=np.zeros((4, 9, 9, 1), np.uint8), labels=np.zeros(4, np.int64))
    with pytest.raises(DataError, match=r"s\.npz: images \(4, 9, 9, 1\)"):
        load_synthetic(tmp_path / "s.npz", discs)
    write_npz(tmp_path / "t.npz", images=np.zeros((4, 8, 8, 1), np.uint8), labels=np.full(4, 7))
    with pytest.raises(DataError, match="labels outside 0..2"):
        load_synthetic(tmp_path / "t.npz", discs)


def test_outputs_get_a_normal_file_mode(tmp_path):
    import os

    from mgdm.files import write_json

    write_json(tmp_path / "m.json", {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_fused_ema_update_equals_one_lerp_per_parameter():
    from mgdm.training import ema_update

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Linear(8, 2))
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for q in model.parameters():
            q.add_(torch.randn_like(q))
    expected = [e.detach().clone().lerp_(q, 1 - min(0.999, 6 / 15)) for e, q in zip(ema.parameters(),
                                                                                      model.parameters())]
    ema_update(ema, model, 0.999, 5)
    assert all(torch.equal(e, x) for e, x in zip(ema.parameters(), expected))  # bit for bit


def test_loading_a_resume_state_clears_what_a_kill_mid_write_left_beside_it(tmp_path):
    """A kill inside the state's write leaves its temporary file (`.resume.safetensors.<random>.safetensors`); the
    state is no declared output, so the job clears it when it loads the state, as the suite's random kill of
    train-baseline found (the rerun left the temporary behind). Nothing else in the folder is touched."""
    from mgdm.files import atomic_path, load_training_state

    net = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(net.parameters())
    state = tmp_path / "seed0.resume.safetensors"
    save_training_state(state, 3, {"net": net}, opt, {"seed": 0})
    killed = atomic_path(state)  # the next write, stopped inside the block: never renamed
    killed.__enter__().write_bytes(b"half a state")
    others = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert len(list(tmp_path.glob(".seed0.resume.safetensors.*.safetensors"))) == 1
    assert load_training_state(state, {"net": net}, opt, {"seed": 0}) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == others == ["seed0.resume.json", "seed0.resume.safetensors"]


def test_a_signal_stops_ddpm_training_after_the_step_under_way_with_the_state_kept(discs, tmp_path, monkeypatch):
    """SIGTERM in step 13 of 30, with no state due before the end: the state is kept after step 13, mid loss
    window (its open window rides in the state), and the job stops; the rerun resumes there and ends with the
    unbroken run's model, loss curve and final loss."""
    import signal

    from mgdm.interrupts import Interrupted, interruptible

    cfg = DDPMConfig(**{**CFG, "steps": 30, "checkpoint_every": 30})
    unbroken = ddpm_train.train_ddpm(discs, cfg, tmp_path / "a" / "model.safetensors", progress=False)
    loss = ddpm_train.diffusion_loss
    calls = signal_at_call(monkeypatch, ddpm_train, "diffusion_loss", 13)
    with pytest.raises(Interrupted) as stopped, interruptible():
        ddpm_train.train_ddpm(discs, cfg, tmp_path / "b" / "model.safetensors", progress=False)
    assert (stopped.value.signum, stopped.value.where) == (signal.SIGTERM, "step 13 of 30") and len(calls) == 13
    assert read_training_info(tmp_path / "b" / "resume.safetensors")["step"] == 13
    monkeypatch.setattr(ddpm_train, "diffusion_loss", loss)
    result = ddpm_train.train_ddpm(discs, cfg, tmp_path / "b" / "model.safetensors", progress=False)
    assert result["metrics"]["resumed_from"] == 13
    assert result["metrics"]["final_loss"] == unbroken["metrics"]["final_loss"]
    assert result["history"] == unbroken["history"]
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
