"""The paper's ten timm networks and ten small ones, each with a recorded way of meeting small (28 px) images.

timm's ImageNet networks shrink their input 32x, so at 28 px the last feature map is 1x1 and some
refuse the size. Each network therefore either gets the MedMNIST v2 stem (3x3 stride-1 first conv,
no max-pool) or has its inputs resized up to a minimum side, or both; the choice is part of the
results tables. Weights start from scratch; a local weights file is an option, never a requirement.
The first ten are the paper's downstream networks; the ten after them are small networks of other families
(DLA, EdgeNeXt, MobileNetV3, EfficientViT, MobileViT, PP-LCNet, ResNet-T, RegNetY, TinyNet, GhostNet),
cheap enough on 2 cores to make architectures the unit of the operating grid (`mgdm survey-zoo` first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class NetworkSpec:
    timm_name: str
    adapt_stem: bool = False  # 3x3 stride-1 stem and no max-pool (ResNets, as MedMNIST v2)
    min_size: int = 0  # smaller inputs are resized (bilinear) up to this side
    kwargs: dict = field(default_factory=dict)

    def adaptation(self, image_size: int) -> str:
        parts = ["3x3 stem, no max-pool"] if self.adapt_stem else []
        if image_size < self.min_size:
            parts.append(f"resize to {self.min_size} px")
        return ", ".join(parts) or "as-is"


NETWORKS = {
    "resnet18": NetworkSpec("resnet18", adapt_stem=True),
    "resnet50": NetworkSpec("resnet50", adapt_stem=True),
    "densenet121": NetworkSpec("densenet121", min_size=32),
    "vgg16_bn": NetworkSpec("vgg16_bn", min_size=32),
    "mobilenetv2_100": NetworkSpec("mobilenetv2_100", min_size=64),
    "efficientnet_b0": NetworkSpec("efficientnet_b0", min_size=64),
    "convnext_atto": NetworkSpec("convnext_atto", min_size=32),
    "regnetx_002": NetworkSpec("regnetx_002", min_size=64),
    "inception_v3": NetworkSpec("inception_v3", min_size=75),
    "vit_tiny_patch16_224": NetworkSpec("vit_tiny_patch16_224", min_size=32, kwargs={"patch_size": 4}),
    # small networks beyond the paper's ten (a deep-stem resnet10t has no single conv1 to adapt: resized instead)
    "dla46_c": NetworkSpec("dla46_c", min_size=32),
    "edgenext_xx_small": NetworkSpec("edgenext_xx_small", min_size=64),
    "mobilenetv3_small_100": NetworkSpec("mobilenetv3_small_100", min_size=64),
    "efficientvit_b0": NetworkSpec("efficientvit_b0", min_size=64),
    "mobilevit_xxs": NetworkSpec("mobilevit_xxs", min_size=64),
    "lcnet_100": NetworkSpec("lcnet_100", min_size=64),
    "resnet10t": NetworkSpec("resnet10t", min_size=64),
    "regnety_002": NetworkSpec("regnety_002", min_size=64),
    "tinynet_e": NetworkSpec("tinynet_e", min_size=64),
    "ghostnet_100": NetworkSpec("ghostnet_100", min_size=64),
}


class SmallImageNet(nn.Module):
    """A timm network behind an optional resize; `features` gives the pre-logit embedding."""

    def __init__(self, net: nn.Module, in_chans: int, input_size: int | None):
        super().__init__()
        self.net, self.in_chans, self.input_size = net, in_chans, input_size

    def _prepare(self, x):
        if self.input_size and x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(self._prepare(x)), pre_logits=True)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from `features`' output (the head is a Linear, or a 1x1 conv in DLA)."""
        head = self.net.get_classifier()
        return head(features[..., None, None]).flatten(1) if isinstance(head, nn.Conv2d) else head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._prepare(x))


def create_network(name: str, num_classes: int, in_chans: int, image_size: int,
                   weights: str | None = None) -> SmallImageNet:
    """Return network `name` for images of side `image_size`, from scratch or from a local weights file."""
    import timm

    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose from {', '.join(NETWORKS)}")
    spec = NETWORKS[name]
    size = max(image_size, spec.min_size)
    kwargs = dict(spec.kwargs)
    if name.startswith("vit"):
        kwargs["img_size"] = size
    net = timm.create_model(spec.timm_name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
    if spec.adapt_stem:
        net.conv1 = nn.Conv2d(in_chans, net.conv1.out_channels, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    if weights:
        from mgdm.files import read_safetensors

        # Tensors whose shape differs (the head, an adapted stem) keep their fresh initialisation.
        own = net.state_dict()
        state = {k: v for k, v in read_safetensors(weights).items() if k in own and own[k].shape == v.shape}
        skipped = sorted(set(own) - set(state))
        if skipped:
            print(f"{weights}: {len(state)} tensors loaded; kept fresh: {', '.join(skipped[:6])}"
                  + (" ..." if len(skipped) > 6 else ""))
        net.load_state_dict(state, strict=False)
    return SmallImageNet(net, in_chans, size if size != image_size else None)


def load_classifier(path: str | Path, device: str = "cpu") -> SmallImageNet:
    """Return a classifier saved by save_model (network name, classes, channels and size in its JSON), in eval mode."""
    from mgdm.files import load_model_config, load_weights

    c = load_model_config(path)
    model = create_network(c["network"], c["num_classes"], c["in_chans"], c["image_size"])
    return load_weights(path, model).to(device).eval().requires_grad_(False)
