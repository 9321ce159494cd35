"""Every network of the zoo meets 28 px images: shapes, finiteness, features, recorded adaptation."""

import pytest
import torch
from safetensors.torch import save_file

from mgdm.classifiers.zoo import NETWORKS, create_network
from mgdm.config import NETWORKS as CONFIG_NETWORKS


def test_zoo_has_twenty_networks_and_the_config_knows_them():
    assert len(NETWORKS) == 20 and tuple(NETWORKS) == CONFIG_NETWORKS


# how each network meets 28 px (DESIGN.md: densenet121, vgg16_bn and convnext_atto refuse under 32 px,
# inception_v3 needs more than 64; the 1x1 last map of a 32x-shrinking net is why the rest are resized)
ADAPTATION_28 = {"resnet18": "3x3 stem, no max-pool", "resnet50": "3x3 stem, no max-pool",
                 "densenet121": "resize to 32 px", "vgg16_bn": "resize to 32 px", "convnext_atto": "resize to 32 px",
                 "mobilenetv2_100": "resize to 64 px", "efficientnet_b0": "resize to 64 px",
                 "regnetx_002": "resize to 64 px", "inception_v3": "resize to 75 px",
                 "vit_tiny_patch16_224": "resize to 32 px", "dla46_c": "resize to 32 px",
                 **{n: "resize to 64 px" for n in ("edgenext_xx_small", "mobilenetv3_small_100", "efficientvit_b0",
                                                   "mobilevit_xxs", "lcnet_100", "resnet10t", "regnety_002",
                                                   "tinynet_e", "ghostnet_100")}}


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("chans", [1, 3])
def test_forward_backward_and_features_at_28px(name, chans):
    torch.manual_seed(0)
    model = create_network(name, num_classes=5, in_chans=chans, image_size=28)
    x = torch.randn(2, chans, 28, 28)
    logits = model.train()(x)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 4])).backward()
    grads = {n: q.grad for n, q in model.named_parameters() if q.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), name
    assert next(iter(grads.values())).abs().sum() > 0, f"{name}: the input layer gets no gradient"
    with torch.no_grad():
        feats = model.eval().features(x)
    head = model.net.get_classifier()  # a Linear, or a 1x1 conv (DLA): its input is the feature width
    assert feats.shape == (2, getattr(head, "in_features", None) or head.in_channels) and torch.isfinite(feats).all()
    assert torch.allclose(model.classify(feats), model(x), atol=1e-5)  # features then head = the whole network
    assert NETWORKS[name].adaptation(28) == ADAPTATION_28[name] and model.in_chans == chans
    assert NETWORKS[name].adaptation(224) in ("as-is", "3x3 stem, no max-pool")  # no resize at full size


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
    import json
    import shutil

    from conftest import ROOT, run

    shutil.copy(ROOT / "params.yaml", tmp_path)
    run(["mgdm", "preprocess", "--profile", "smoke", "--dataset", "discs", "--no-mlflow"], tmp_path)
    cmd = ["mgdm", "survey-zoo", "--profile", "smoke", "--network", "convnext_atto", "--no-progress", "--threads", "1"]
    run(cmd, tmp_path)
    table = (tmp_path / "results/smoke/tables/zoo.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| convnext_atto"))
    assert "resize to 32 px" in row and "| flag" in table and "2 epochs" in table
    first = (tmp_path / "results/smoke/discs/zoo/convnext_atto.json").read_text()
    again = run(cmd, tmp_path)
    assert (tmp_path / "results/smoke/discs/zoo/convnext_atto.json").read_text() == first
    assert "convnext_atto:" in again.stdout
    record = json.loads((tmp_path / "results/smoke/records/zoo.json").read_text())
    assert record["dataset"] == "discs" and [r["network"] for r in record["networks"]] == ["convnext_atto"]
    assert record["networks"][0] == json.loads(first) and 0 < record["majority"] < 1
    # the record is what the table is built from: without the network's JSON or the data (a fresh clone), the
    # same table
    (tmp_path / "results/smoke/discs/zoo/convnext_atto.json").unlink()
    (tmp_path / "results/smoke/discs/data/dataset.npz").unlink()
    run(["mgdm", "survey-zoo", "--profile", "smoke", "--table-only"], tmp_path)
    assert (tmp_path / "results/smoke/tables/zoo.md").read_text() == table
