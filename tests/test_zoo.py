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


def test_survey_zoo_writes_a_table_and_skips_surveyed_networks(tmp_path):
    import shutil

    from conftest import ROOT, run

    shutil.copy(ROOT / "params.yaml", tmp_path)
    run(["mgdm", "preprocess", "--profile", "smoke", "--dataset", "discs", "--no-mlflow"], tmp_path)
    cmd = ["mgdm", "survey-zoo", "--profile", "smoke", "--network", "resnet18", "--no-progress", "--threads", "1"]
    run(cmd, tmp_path)
    table = (tmp_path / "results/smoke/tables/zoo.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| resnet18"))
    assert "3x3 stem, no max-pool" in row and "| flag" in table and "2 epochs" in table
    first = (tmp_path / "results/smoke/discs/zoo/resnet18.json").read_text()
    again = run(cmd, tmp_path)
    assert (tmp_path / "results/smoke/discs/zoo/resnet18.json").read_text() == first
    assert "resnet18:" in again.stdout
