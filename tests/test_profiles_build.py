"""Every committed profile's models build at that profile's image size and take a training step and a
sampling step on CPU at a tiny batch: a profile that cannot run fails here, not an hour into a GPU lease."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import ROOT

from mgdm.classifiers.zoo import create_network
from mgdm.config import load
from mgdm.diffusion.unet import ddim_schedulers, make_unet, scheduler_config, train_scheduler, unet_config
from mgdm.guidance.measures import MEASURES
from mgdm.guidance.noisy_classifier import NoisyClassifier
from mgdm.sampling.ddim import guided_ddim

PROFILES = list(yaml.safe_load((ROOT / "params.yaml").read_text())["profiles"])


def shape_of(config, name: str) -> tuple[int, int, int]:
    """(channels, classes, image size) of a dataset, from its spec or its file's arrays."""
    spec = config.dataset(name)
    if spec.source == "procedural":
        return spec.channels, spec.num_classes, spec.image_size
    folder = config.data_dir()
    path = Path(folder or "") / (spec.file or "")
    if not folder or not path.exists():
        pytest.skip(f"{name}: data file not found (set MGDM_DATA_DIR to the folder holding {spec.file})")
    with np.load(path) as f:
        images, labels = f["train_images"], f["train_labels"]
    return (images.shape[-1] if images.ndim == 4 else 1), int(labels.max()) + 1, spec.image_size


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_builds_and_steps_its_generator(profile):
    config = load(ROOT / "params.yaml", profile).generator_config()
    p = config.profile
    torch.manual_seed(0)
    for name in p.datasets:
        channels, classes, size = shape_of(config, name)
        unet = make_unet(unet_config(p.ddpm, size, channels, classes))
        sched_cfg = scheduler_config(p.ddpm)
        x0, y = torch.randn(2, channels, size, size), torch.tensor([0, classes - 1])
        t = torch.tensor([10, 900])
        noise = torch.randn_like(x0)
        out = unet(train_scheduler(sched_cfg).add_noise(x0, noise, t), t, class_labels=y).sample
        assert out.shape == x0.shape
        out.pow(2).mean().backward()
        assert all(q.grad is not None and torch.isfinite(q.grad).all() for q in unet.parameters() if q.requires_grad)

        net = NoisyClassifier(channels, classes, p.guidance_net.width, dropout=p.guidance_net.dropout)
        F.cross_entropy(net(x0, t), y).backward()
        sampler, _ = ddim_schedulers(sched_cfg)
        with torch.no_grad():  # one guided DDIM step with the profile's UNet and guidance net
            x = guided_ddim(unet.eval(), torch.randn_like(x0), y, sampler, 1, null_label=classes,
                            guidance_net=net.eval(), measure=MEASURES["entropy"], scale=1.0)
        assert x.shape == x0.shape and torch.isfinite(x).all()

        reference = create_network(p.reference_net.network, classes, channels, size)
        F.cross_entropy(reference(x0), y).backward()


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_builds_and_steps_its_downstream_networks(profile):
    config = load(ROOT / "params.yaml", profile)
    gen = config.generator_config()
    for name in config.profile.datasets:
        channels, classes, size = shape_of(gen, name)
        x, y = torch.randn(2, channels, size, size), torch.tensor([0, classes - 1])
        for network in config.profile.downstream.networks:
            torch.manual_seed(0)
            model = create_network(network, classes, channels, size)
            logits = model(x)
            assert logits.shape == (2, classes)
            F.cross_entropy(logits, y).backward()
            assert all(q.grad is not None for q in model.parameters() if q.requires_grad), network


def test_a_unet_whose_levels_do_not_divide_the_image_is_refused_at_load(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["profiles"]["paper"]["ddpm"]["channels"] = [128, 256, 256, 256]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    from mgdm.config import ConfigError

    with pytest.raises(ConfigError, match="image_size must be a multiple of 8; dataset 'retinamnist' is 28 px"):
        load(tmp_path / "params.yaml", "paper")


@pytest.mark.parametrize("variant, setting, value, message", [
    ("wide", "channels", [64, 128, 128, 128], "generator_sweep.variants.wide.channels has 4 levels, so image_size "
                                              "must be a multiple of 8"),
    ("deep", "layers_per_block", 0, "generator_sweep.variants.deep: invalid configuration\n  layers_per_block: "
                                    "Input should be greater than or equal to 1")])
def test_a_sweep_variant_the_sweep_could_not_build_is_refused_at_load(tmp_path, variant, setting, value, message):
    """`mgdm sweep-generator` trains its variants one after the other for minutes each: a variant that cannot build
    is refused when the params are read, not when the sweep reaches it."""
    from mgdm.config import ConfigError, sweep_variant

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert sweep_variant(load(ROOT / "params.yaml", "cpu").profile, variant).model_dump()[setting] != value
    raw["profiles"]["cpu"]["generator_sweep"]["variants"][variant][setting] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load(tmp_path / "params.yaml", "cpu")
    assert message in str(err.value)
