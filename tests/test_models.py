"""Tests of reid_nb.models: pooling, BN neck, backbones, weight loading, size counts."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from reid_nb.core import BadInputError
import hashlib

import reid_nb.models as models
from reid_nb.models import (BNNeck, GeM, SmallNet, build_backbone, check_weights, count_macs, count_params,
                            file_sha256, imagenet_weights_path, load_backbone_weights)


def test_gem_equals_avg_at_p1_and_brute_force_at_p3():
    x = torch.rand(3, 4, 5, 2) * 2
    assert torch.allclose(GeM(p=1)(x), F.adaptive_avg_pool2d(x, 1), atol=1e-6)
    ref = torch.stack([torch.stack([(x[b, c].clamp(min=1e-6) ** 3).mean() ** (1 / 3) for c in range(4)])
                       for b in range(3)])
    assert torch.allclose(GeM()(x).flatten(1), ref, atol=1e-5)
    big = GeM(p=60)(x).flatten(1)
    assert torch.allclose(big, x.amax((2, 3)), rtol=0.05)  # large p approaches max pooling


def test_gem_p_is_learned_and_clamps_negatives():
    g = GeM(); x = torch.randn(2, 3, 4, 4)
    out = g(x); out.sum().backward()
    assert g.p.grad is not None and torch.isfinite(out).all() and (out > 0).all()


def test_bnneck_bias_frozen_under_training():
    neck = BNNeck(6)
    assert (neck.weight == 1).all() and (neck.bias == 0).all() and not neck.bias.requires_grad
    opt = torch.optim.SGD(neck.parameters(), lr=0.5, weight_decay=0.1, momentum=0.9)
    for _ in range(5):
        opt.zero_grad(); (neck(torch.randn(16, 6) + 2) * torch.arange(6.0)).sum().backward(); opt.step()
    assert (neck.bias == 0).all() and not torch.allclose(neck.weight, torch.ones(6))


def test_resnet50_last_stride_1_doubles_the_last_map():
    x = torch.zeros(1, 3, 128, 64)
    r2, r1 = build_backbone("resnet50"), build_backbone("resnet50", last_stride=1)
    with torch.no_grad(): m2, m1 = r2.feature_map(x), r1.feature_map(x)
    assert m2.shape == (1, 2048, 4, 2) and m1.shape == (1, 2048, 8, 4)
    assert count_params(r1) == count_params(r2) == 23_508_032  # ResNet-50 without fc
    assert r1.body.layer4[0].conv2.stride == (1, 1) and r1.body.layer4[0].downsample[0].stride == (1, 1)
    assert r2.body.layer4[0].conv2.stride == (2, 2)


def test_backbone_output_and_pooling():
    m = build_backbone("small", pooling="gem")
    out = m(torch.rand(3, 3, 64, 32))
    assert out.shape == (3, 128) and m.out_dim == 128 and isinstance(m.pool, GeM)
    assert build_backbone("small", widths=(8, 16, 24))(torch.rand(2, 3, 128, 64)).shape == (2, 24)


def test_smallnet_shapes():
    assert SmallNet()(torch.zeros(1, 3, 64, 32)).shape == (1, 128, 8, 4)
    assert SmallNet()(torch.zeros(1, 3, 128, 64)).shape == (1, 128, 16, 8)
    assert SmallNet(last_stride=1)(torch.zeros(1, 3, 64, 32)).shape == (1, 128, 16, 8)
    assert sum(isinstance(m, nn.Conv2d) for m in SmallNet(depth=1).modules()) == 4


def test_missing_imagenet_weights_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(BadInputError) as e:
        build_backbone("resnet50", weights="imagenet")
    msg = str(e.value)
    assert str(tmp_path / "th" / "hub" / "checkpoints") in msg and "resnet50-0676ba61.pth" in msg
    assert "never downloads" in msg and "-p weights" in msg and "weights='" not in msg.split("weights='imagenet'")[1]
    with pytest.raises(BadInputError, match="no ImageNet weights for arch='small'"):
        build_backbone("small", weights="imagenet")
    with pytest.raises(BadInputError, match="file not found"):
        build_backbone("small", weights=tmp_path / "none.pth")


def test_imagenet_weights_found_in_torch_home(tmp_path, monkeypatch):
    """A torchvision-format file in the hub cache is found and loaded exactly (fc ignored)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"; folder.mkdir(parents=True)
    torch.manual_seed(0); ref = torchvision.models.resnet50(weights=None)
    torch.save(ref.state_dict(), folder / "resnet50-0676ba61.pth")
    assert imagenet_weights_path() == folder / "resnet50-0676ba61.pth"
    with pytest.raises(BadInputError, match="does not match the sha256 prefix 0676ba61.*verify=False"):
        build_backbone("resnet50", weights="imagenet")  # a random stand-in under torchvision's name is refused
    m = build_backbone("resnet50", weights="imagenet", last_stride=1, pooling="gem", verify=False)
    assert torch.equal(m.body.layer3[2].conv2.weight, ref.layer3[2].conv2.weight)
    assert torch.equal(m.body.bn1.running_var, ref.bn1.running_var) and m.pool.p.item() == 3.0


def test_weight_file_wrappers_and_errors(tmp_path):
    src = build_backbone("small", pooling="gem")
    with torch.no_grad(): src.pool.p.fill_(2.5)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}
    torch.save(wrapped, tmp_path / "w.pth")
    dst = build_backbone("small", weights=tmp_path / "w.pth", pooling="gem")
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    torch.save(build_backbone("small", widths=(8, 16, 32, 64)).state_dict(), tmp_path / "other.pth")
    with pytest.raises(BadInputError, match="wrong shape"):
        load_backbone_weights(build_backbone("small"), tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(BadInputError, match="junk.pth"):
        build_backbone("small", weights=tmp_path / "junk.pth")


@pytest.mark.parametrize("kw, match", [({"arch": "vgg"}, "arch"), ({"pooling": "max"}, "pooling"),
                                       ({"last_stride": 3}, "last_stride")])
def test_bad_options(kw, match):
    with pytest.raises(BadInputError, match=match):
        build_backbone(**kw)


def test_count_macs_hand_computed():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(4, 2, 1, stride=2),
                        nn.Flatten(), nn.Linear(2 * 3 * 2, 5))
    # conv1: 6*4 outputs * 4 ch * 27; conv2: 3*2 outputs * 2 ch * 4; linear: 12*5
    assert count_macs(net, 6, 4) == 6 * 4 * 4 * 27 + 3 * 2 * 2 * 4 + 12 * 5
    assert count_params(net) == 4 * 27 + 2 * 4 + 2 + 12 * 5 + 5
    assert count_params(BNNeck(3), trainable=True) == 3


def test_check_weights_verifies_the_name_hash_against_the_content(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    f = tmp_path / "stand-in.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), f)
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    assert file_sha256(f) == digest  # an independent hash of the same bytes
    with pytest.raises(BadInputError, match="not a torchvision ResNet-50 ImageNet file"):
        check_weights("resnet50", f)  # no hash in the name
    named = tmp_path / f"resnet50-{digest[:8]}.pth"
    f.rename(named)
    with pytest.raises(BadInputError, match="not a torchvision ResNet-50"):
        check_weights("resnet50", named)  # its own hash, but not one torchvision published
    monkeypatch.setattr(models, "RESNET50_HASHES", (*models.RESNET50_HASHES, digest[:8]))
    assert check_weights("resnet50", named) == named  # a name hash that the content matches is accepted
    wrong = tmp_path / "resnet50-11ad3fa6.pth"
    named.rename(wrong)
    with pytest.raises(BadInputError) as e:
        check_weights("resnet50", wrong)
    msg = str(e.value)
    assert "sha256 prefix 11ad3fa6" in msg and "-p weights" in msg
    assert str(tmp_path / "th" / "hub" / "checkpoints") in msg
    assert check_weights("resnet50", wrong, verify=False) == wrong and check_weights("small", None) is None
    assert check_weights("resnet50", wrong) == wrong  # declared a stand-in once, it is not verified again in the run
    with pytest.raises(BadInputError, match="file not found.*-p weights"):
        check_weights("resnet50", tmp_path / "missing.pth")


def test_channels_last_gives_the_same_features():
    torch.manual_seed(0)
    a = build_backbone("small", widths=(8, 16), pooling="gem")
    torch.manual_seed(0)
    b = build_backbone("small", widths=(8, 16), pooling="gem", channels_last=True)
    assert b.body[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 16)
    assert torch.allclose(a(x), b(x), atol=1e-5)
    b2 = build_backbone("small", widths=(8, 16), pooling="gem", channels_last=True)
    b2.load_state_dict(a.state_dict())
    assert torch.allclose(a(x), b2(x), atol=1e-5)
    assert b2.body[0][0].weight.is_contiguous(memory_format=torch.channels_last)
