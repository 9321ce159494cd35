"""Every network of the zoo meets 28 px images: shapes, finiteness, features, recorded adaptation."""

import pytest
import torch
from safetensors.torch import save_file

from mgdm.classifiers.zoo import NETWORKS, create_network
from mgdm.config import NETWORKS as CONFIG_NETWORKS


def test_zoo_has_ten_networks_and_the_config_knows_them():
    assert len(NETWORKS) == 10 and tuple(NETWORKS) == CONFIG_NETWORKS


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("chans", [1, 3])
def test_forward_at_28px(name, chans):
    torch.manual_seed(0)
    model = create_network(name, num_classes=5, in_chans=chans, image_size=28).eval()
    x = torch.randn(2, chans, 28, 28)
    with torch.no_grad():
        logits, feats = model(x), model.features(x)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    assert feats.ndim == 2 and feats.shape[0] == 2 and torch.isfinite(feats).all()
    assert NETWORKS[name].adaptation(28) != "" and model.in_chans == chans


def test_resnet_gets_the_medmnist_stem():
    model = create_network("resnet18", 5, 3, 28)
    assert model.net.conv1.stride == (1, 1) and model.net.conv1.kernel_size == (3, 3)
    assert isinstance(model.net.maxpool, torch.nn.Identity) and model.input_size is None


def test_local_weights_are_loaded_except_the_head(tmp_path):
    torch.manual_seed(0)
    source = create_network("resnet18", 10, 3, 28)
    save_file({k: v.contiguous() for k, v in source.net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    torch.manual_seed(1)
    loaded = create_network("resnet18", 5, 3, 28, weights=str(tmp_path / "w.safetensors")).eval()
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        assert torch.allclose(loaded.features(x), source.eval().features(x), atol=1e-5)
