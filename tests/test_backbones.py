"""Backbone registry and builders (hiclust.nn.backbones).

The fingerprints in ``FINGERPRINTS`` were computed from the implementation before the
registry refactor (flat ``nn.Sequential`` backbones) and pin its behaviour: the same parameters
created in the same order from the same random stream, and the same forward outputs.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from hiclust.nn import BACKBONES, MLP, ResNetBackbone, SmallCNN, build_backbone, default_backbone, register_backbone
from hiclust.nn import backbones as backbones_module

NAMES = ["smallcnn", "resnet18", "resnet34", "resnet50", "mlp"]


def _batch_norms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.fixture
def registry():
    """BACKBONES, restored after the test."""
    saved = dict(BACKBONES)
    yield BACKBONES
    BACKBONES.clear()
    BACKBONES.update(saved)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


def test_registry_holds_the_builders_in_order():
    assert list(BACKBONES) == NAMES
    assert ", ".join(BACKBONES) == "smallcnn, resnet18, resnet34, resnet50, mlp"
    assert "resnet18" in BACKBONES and "auto" not in BACKBONES
    assert ("auto", *BACKBONES) == ("auto", *NAMES)
    assert BACKBONES["smallcnn"] is backbones_module.smallcnn
    assert BACKBONES["resnet50"] is backbones_module.resnet50
    assert BACKBONES["mlp"] is backbones_module.mlp


@pytest.mark.parametrize("name", ["vgg", "", "auto", "ResNet18"])
def test_build_backbone_refuses_unknown_names_listing_the_choices(name):
    choices = "smallcnn, resnet18, resnet34, resnet50, mlp"
    with pytest.raises(ValueError, match=rf"^unknown backbone .*; choose one of {choices}$"):
        build_backbone(name, 3, 32)


def test_build_backbone_forwards_options_to_the_builder():
    assert build_backbone("smallcnn", 1, 8, width=4).feature_dim == 8
    assert build_backbone("mlp", 2, 3, hidden=(5, 7)).feature_dim == 7
    small = build_backbone("resnet18", 3, 64)  # CIFAR stem at <= 64 px by default
    assert small.conv1.kernel_size == (3, 3) and isinstance(small.maxpool, nn.Identity)
    large = build_backbone("resnet18", 3, 65)
    assert large.conv1.kernel_size == (7, 7) and isinstance(large.maxpool, nn.MaxPool2d)
    forced = build_backbone("resnet18", 3, 16, cifar_stem=False)
    assert forced.conv1.kernel_size == (7, 7)
    with pytest.raises(TypeError):
        build_backbone("mlp", 1, 4, cifar_stem=True)


def test_register_backbone_adds_a_name_and_refuses_duplicates(registry):
    def tiny(in_channels, image_size, norm_layer=nn.BatchNorm1d):
        return MLP(in_channels * image_size * image_size, (3,), norm_layer=norm_layer)

    assert register_backbone("tiny", tiny) is tiny
    assert list(registry)[-1] == "tiny" and "tiny" in ", ".join(registry)
    net = build_backbone("tiny", 2, 2)
    assert net(torch.zeros(4, 2, 2, 2)).shape == (4, 3)

    with pytest.raises(ValueError, match="backbone 'tiny' is already registered; pass overwrite=True"):
        register_backbone("tiny", tiny)
    with pytest.raises(ValueError, match="'resnet18' is already registered"):
        register_backbone("resnet18", tiny)
    assert registry["resnet18"] is backbones_module.resnet18

    def other(in_channels, image_size):
        return MLP(in_channels * image_size * image_size, (5,))

    register_backbone("tiny", other, overwrite=True)
    assert build_backbone("tiny", 1, 2).feature_dim == 5


def test_register_backbone_validates_its_arguments(registry):
    with pytest.raises(ValueError, match="reserved"):
        register_backbone("auto", backbones_module.smallcnn)
    with pytest.raises(ValueError, match="non-empty string"):
        register_backbone("", backbones_module.smallcnn)
    with pytest.raises(TypeError, match="callable"):
        register_backbone("nope", "not a function")
    assert list(registry) == NAMES


# ---------------------------------------------------------------------------------------------
# Shapes, feature_dim, submodules
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "channels", "size", "feature_dim"),
    [
        ("smallcnn", 1, 4, 32),
        ("smallcnn", 1, 8, 64),
        ("smallcnn", 3, 13, 128),
        ("smallcnn", 1, 28, 256),
        ("resnet18", 3, 16, 512),
        ("resnet18", 1, 72, 512),
        ("resnet34", 2, 16, 512),
        ("resnet50", 3, 16, 2048),
        ("mlp", 1, 5, 512),
        ("mlp", 7, 1, 512),
    ],
)
def test_output_shape_matches_feature_dim(name, channels, size, feature_dim):
    torch.manual_seed(0)
    net = build_backbone(name, channels, size)
    assert net.feature_dim == feature_dim
    x = torch.randn(2, channels, size, size)
    assert net.train()(x).shape == (2, feature_dim)
    assert net.eval()(x).shape == (2, feature_dim)


def test_smallcnn_has_named_stages_blocks_and_pools():
    net = SmallCNN(1, 28, 8)
    names = dict(net.named_modules())
    assert [n for n, _ in net.features.named_children()] == ["stage1", "stage2", "stage3", "stage4"]
    assert isinstance(names["features.stage1.block1.conv"], nn.Conv2d)
    assert isinstance(names["features.stage1.block1.norm"], nn.BatchNorm2d)
    assert isinstance(names["features.stage1.block1.relu"], nn.ReLU)
    assert isinstance(names["features.stage1.pool"], nn.Identity)
    assert isinstance(names["features.stage2.pool"], nn.MaxPool2d)
    assert names["features.stage4.block2.conv"].out_channels == 64 == net.feature_dim
    assert isinstance(net.pool, nn.AdaptiveAvgPool2d)
    # no anonymous Sequential indexes left in the parameter names
    assert not any(part.isdigit() for key in net.state_dict() for part in key.split("."))


def test_mlp_has_named_blocks():
    net = MLP(6, (5, 4, 3))
    assert [n for n, _ in net.features.named_children()] == ["block1", "block2", "block3"]
    assert isinstance(net.features.block1.linear, nn.Linear) and net.features.block1.linear.bias is None
    assert isinstance(net.features.block3.norm, nn.BatchNorm1d)
    assert not any(part.isdigit() for key in net.state_dict() for part in key.split("."))
    assert net(torch.randn(2, 1, 2, 3)).shape == (2, 3)  # flattened from dim 1
    assert MLP(6, ()).feature_dim == 6


def test_resnet_state_dict_is_torchvisions_without_the_classifier():
    net = ResNetBackbone(18, in_channels=3, cifar_stem=False)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    expected = {k: v.shape for k, v in reference.items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in net.state_dict().items()} == expected
    net.load_state_dict({k: v for k, v in reference.items() if not k.startswith("fc.")})


def test_constructors_reject_bad_arguments():
    with pytest.raises(ValueError, match="at least 4 px"):
        SmallCNN(1, 3)
    with pytest.raises(ValueError, match="ResNet depth must be one of"):
        ResNetBackbone(101)


# ---------------------------------------------------------------------------------------------
# norm_layer
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "size"), [("smallcnn", 8), ("resnet18", 16), ("resnet34", 16), ("resnet50", 16)])
def test_norm_layer_is_used_for_every_normalization_of_conv_nets(name, size):
    net = build_backbone(name, 2, size, norm_layer=lambda c: nn.GroupNorm(1, c))
    assert _batch_norms(net) == []
    assert sum(isinstance(m, nn.GroupNorm) for m in net.modules()) > 0
    assert net(torch.randn(1, 2, size, size)).shape == (1, net.feature_dim)  # batch of 1 is fine without BN


@pytest.mark.parametrize(("name", "size"), [("smallcnn", 8), ("resnet18", 16)])
def test_conv_nets_default_to_batch_norm_2d(name, size):
    norms = _batch_norms(build_backbone(name, 3, size))
    assert norms and all(type(m) is nn.BatchNorm2d for m in norms)


def test_mlp_norm_layer():
    assert all(type(m) is nn.BatchNorm1d for m in _batch_norms(build_backbone("mlp", 1, 4)))
    net = build_backbone("mlp", 1, 4, hidden=(6, 5), norm_layer=nn.LayerNorm)
    assert _batch_norms(net) == []
    assert [type(b.norm) for b in net.features] == [nn.LayerNorm, nn.LayerNorm]
    assert net(torch.randn(1, 1, 4, 4)).shape == (1, 5)


# ---------------------------------------------------------------------------------------------
# default_backbone
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "size", "expected"),
    [(1, 8, "smallcnn"), (1, 28, "smallcnn"), (1, 32, "smallcnn"), (1, 33, "resnet18"), (3, 28, "resnet18"), (3, 32, "resnet18"),
     (3, 96, "resnet18"), (3, 224, "resnet18"), (2, 16, "resnet18")],
)
def test_default_backbone(channels, size, expected):
    assert default_backbone(channels, size) == expected
    assert default_backbone(channels, size) in BACKBONES


# ---------------------------------------------------------------------------------------------
# Behaviour pinned to the implementation before the refactor
# ---------------------------------------------------------------------------------------------

# Computed from the previous implementation: under torch.manual_seed(0), build_backbone(name, C, S);
# n_tensors/numel of parameters(); sum and first 5 values of the first parameter (the first conv
# or linear weight); checksum = sum_i (i + 1) * parameters()[i].sum(); rng_after = the next
# torch.rand(1, dtype=float64) after building; out_train/out_eval = sum of the output for
# x = torch.randn(2, C, S, S, generator=Generator().manual_seed(1)), in train then eval mode.
FINGERPRINTS = {
    ("smallcnn", 1, 8): {"n_tensors": 12, "numel": 65184, "first_sum": -4.403385692101438, "first5": [-0.0024956069, 0.1788145304, -0.2743483782, -0.2453130186, -0.1283847988], "checksum": 1447.5663325807589, "rng_after": 0.5505493018182872, "out_train": 51.20158563554287, "out_eval": 1.694745937769767},
    ("smallcnn", 3, 12): {"n_tensors": 18, "numel": 287456, "first_sum": -0.07490452515048673, "first5": [-0.0014408393, 0.1032386199, -0.1583951116, -0.1416315287, -0.0741229951], "checksum": 5407.579319974577, "rng_after": 0.8599661058742575, "out_train": 103.60232119262218, "out_eval": 1.5408700858033626},
    ("resnet18", 3, 16): {"n_tensors": 60, "numel": 11168832, "first_sum": 0.5563576719869161, "first5": [0.1487737894, -0.1111906916, 0.108565025, 0.0772626102, -0.1158882231], "checksum": 199529.52701857575, "rng_after": 0.4329786930051932, "out_train": 855.7711646975949, "out_eval": 693.1979301978208},
    ("resnet18", 3, 72): {"n_tensors": 60, "numel": 11176512, "first_sum": -5.018750041808971, "first5": [0.0241096746, 0.0075287749, 0.0466583744, -0.0017881278, 0.0206561964], "checksum": 199523.95191086197, "rng_after": 0.0922052379904652, "out_train": 851.9607461541891, "out_eval": 689.2320840205066},
    ("resnet34", 1, 16): {"n_tensors": 108, "numel": 21275840, "first_sum": -4.325275738781784, "first5": [0.144467473, -0.0555483513, 0.0634041652, -0.1313589513, 0.085311614], "checksum": 624900.1400967183, "rng_after": 0.8349896923121587, "out_train": 1091.521865338087, "out_eval": 8951.537927418947},
    ("resnet50", 2, 16): {"n_tensors": 159, "numel": 23499776, "first_sum": 10.693922757607652, "first5": [0.0714347214, -0.0647231713, 0.1949705631, -0.1503485143, -0.1620593518], "checksum": 2876491.001716152, "rng_after": 0.9187298293309029, "out_train": 4343.847417462617, "out_eval": 4782.054989046559},
    ("mlp", 1, 6): {"n_tensors": 6, "numel": 282624, "first_sum": 12.96619566197478, "first5": [-0.0012478034, 0.0894072652, -0.1371741891, -0.1226565093, -0.0641923994], "checksum": 3582.644737898547, "rng_after": 0.39512912269946776, "out_train": 509.01640440523624, "out_eval": 91.51868786592968},
}  # fmt: skip


def _close(value: float | list[float]):
    return pytest.approx(value, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize(("name", "channels", "size"), list(FINGERPRINTS))
def test_parameters_and_outputs_match_the_previous_implementation(name, channels, size):
    expected = FINGERPRINTS[name, channels, size]
    torch.manual_seed(0)
    net = build_backbone(name, channels, size)
    rng_after = torch.rand(1, dtype=torch.float64).item()
    params = list(net.parameters())
    first = params[0].detach().double().flatten()
    checksum = sum((i + 1) * p.detach().double().sum().item() for i, p in enumerate(params))

    assert len(params) == expected["n_tensors"]
    assert sum(p.numel() for p in params) == expected["numel"]
    assert first.sum().item() == _close(expected["first_sum"])
    assert first[:5].tolist() == _close(expected["first5"])
    assert checksum == _close(expected["checksum"])
    assert rng_after == expected["rng_after"]  # the random stream was consumed exactly as before

    x = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert net.train()(x).double().sum().item() == _close(expected["out_train"])
        assert net.eval()(x).double().sum().item() == _close(expected["out_eval"])


# ---------------------------------------------------------------------------------------------
# Checkpoints saved before the refactor
# ---------------------------------------------------------------------------------------------

_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _legacy_smallcnn_keys() -> list[str]:
    """State-dict keys of the previous SmallCNN(1, 8): net = [block, block, MaxPool2d, block,
    block, AdaptiveAvgPool2d, Flatten], block = [Conv2d, BatchNorm2d, ReLU]."""
    return [k for i in (0, 1, 3, 4) for k in [f"net.{i}.0.weight", *(f"net.{i}.1.{b}" for b in _BN_KEYS)]]


def _legacy_mlp_keys() -> list[str]:
    """State-dict keys of the previous MLP(6, (5, 3)): net = [Linear, BatchNorm1d, ReLU] * 2."""
    return [k for i in (0, 3) for k in [f"net.{i}.weight", *(f"net.{i + 1}.{b}" for b in _BN_KEYS)]]


def _randomized(net: nn.Module) -> nn.Module:
    with torch.no_grad():
        for t in net.state_dict().values():
            t.copy_(torch.randint(1, 100, t.shape) if t.dtype == torch.long else torch.rand(t.shape) + 0.5)
    return net


@pytest.mark.parametrize(
    ("make", "legacy_keys"),
    [(lambda: SmallCNN(1, 8), _legacy_smallcnn_keys), (lambda: MLP(6, (5, 3)), _legacy_mlp_keys)],
)
def test_legacy_state_dicts_still_load(make, legacy_keys):
    source = _randomized(make())
    legacy = dict(zip(legacy_keys(), source.state_dict().values(), strict=True))
    target = make()
    target.load_state_dict(legacy)  # strict
    for a, b in zip(source.state_dict().values(), target.state_dict().values(), strict=True):
        assert torch.equal(a, b)

    # inside a larger model too, and current keys still load
    holder, wrapped = nn.Module(), nn.Module()
    holder.backbone, wrapped.backbone = make(), source
    holder.load_state_dict({f"backbone.{k}": v for k, v in legacy.items()})
    holder.load_state_dict(wrapped.state_dict())
    x = torch.randn(3, 1, 8, 8) if isinstance(source, SmallCNN) else torch.randn(3, 6)
    assert torch.equal(holder.backbone.eval()(x), source.eval()(x))


def test_legacy_resnet_state_dict_still_loads():
    source = _randomized(ResNetBackbone(18, 1, True))
    target = ResNetBackbone(18, 1, True)
    target.load_state_dict({f"net.{k}": v for k, v in source.state_dict().items()})
    for a, b in zip(source.state_dict().values(), target.state_dict().values(), strict=True):
        assert torch.equal(a, b)
