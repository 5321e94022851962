"""Tests of hiclust.data.augment: batched augmentation with per-sample randomness (CPU)."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

from hiclust.data.augment import (
    DATASET_AUGMENTATION,
    BatchAugment,
    _Params,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    augmentation_preset,
    available_presets,
    gaussian_blur,
    hsv_to_rgb,
    preset_for_dataset,
    preset_name_for_dataset,
    rgb_to_grayscale,
    rgb_to_hsv,
    to_float,
)

# Every random op off: the geometry is the identity affine map and no colour op runs.
NO_RANDOM = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)


def _images(b: int = 6, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=g)


def _smooth_images(b: int = 4, c: int = 3, size: int = 32) -> torch.Tensor:
    # Smooth structured content, so that geometric changes are visible and blur tests are meaningful.
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack([xx, yy, (xx - yy).abs(), xx * yy])[:c]
    imgs = base[None].repeat(b, 1, 1, 1)
    imgs[:, :, 4:12, 6:10] = 1.0
    return imgs


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_output_shape_dtype_range(channels: int, dtype: torch.dtype) -> None:
    x = _images(5, channels, 20, 24)
    if dtype.is_floating_point:
        x = x.float() / 255
    aug = BatchAugment(12, blur_p=0.5, blur_kernel_size=3, generator=torch.Generator().manual_seed(1))
    y = aug(x)
    assert y.shape == (5, channels, 12, 12)
    assert y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert y.device == x.device


def test_two_views_differ_and_samples_get_independent_parameters() -> None:
    aug = augmentation_preset("simclr", 32, 3, generator=torch.Generator().manual_seed(0))
    x = _smooth_images(8).clone()  # 8 identical images
    v1, v2 = aug(x), aug(x)
    assert (v1 - v2).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # every sample differs between views
    # identical inputs within one batch get different outputs (per-sample randomness, not per batch)
    diffs = (v1[:, None] - v1[None]).abs().amax(dim=(2, 3, 4))
    off_diag = diffs[~torch.eye(8, dtype=torch.bool)]
    assert off_diag.min() > 1e-3


def test_generator_reproducibility() -> None:
    x = _images(6)
    a = augmentation_preset("cc", 16, 3, generator=torch.Generator().manual_seed(123))
    b = augmentation_preset("cc", 16, 3, generator=torch.Generator().manual_seed(123))
    c = augmentation_preset("cc", 16, 3, generator=torch.Generator().manual_seed(124))
    ya, yb, yc = a(x), b(x), c(x)
    assert torch.equal(ya, yb)
    assert not torch.allclose(ya, yc)
    # a generator passed to forward overrides the module's one
    assert torch.equal(a(x, generator=torch.Generator().manual_seed(5)), b(x, generator=torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("channels", [1, 3])
def test_identity_when_all_randomness_disabled(channels: int) -> None:
    x = _images(4, channels, 16, 16)
    y = BatchAugment(16, **NO_RANDOM)(x)
    torch.testing.assert_close(y, x.float() / 255, atol=1e-6, rtol=0)


def test_full_crop_at_half_size_is_2x2_average() -> None:
    # With align_corners=False each output pixel centre falls exactly between 2x2 input pixels.
    x = torch.rand(3, 3, 16, 16)
    y = BatchAugment(8, **NO_RANDOM)(x)
    torch.testing.assert_close(y, F.avg_pool2d(x, 2), atol=1e-6, rtol=0)


def test_non_square_input_full_crop_matches_interpolate() -> None:
    # crop_scale=(1, 1): a candidate box fits only with ratio exactly 20/12, so RandomResizedCrop's fallback
    # applies: the whole image (its ratio lies inside crop_ratio), stretched to 10x10.
    x = torch.rand(2, 3, 12, 20)
    y = BatchAugment(10, **dict(NO_RANDOM, crop_ratio=(0.5, 2.0)))(x)
    ref = F.interpolate(x, size=(10, 10), mode="bilinear", align_corners=False)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=0)


def test_hflip_p1_equals_torch_flip() -> None:
    x = _images(4, 3, 16, 16)
    y = BatchAugment(16, **dict(NO_RANDOM, hflip_p=1.0))(x)
    torch.testing.assert_close(y, torch.flip(x.float() / 255, dims=[-1]), atol=1e-6, rtol=0)


def test_rotation_90_equals_rot90() -> None:
    x = torch.rand(2, 1, 8, 8)
    y = BatchAugment(8, **dict(NO_RANDOM, rotation=(90.0, 90.0)))(x)
    # +90° maps output (u, v) to input (−v, u): a counter-clockwise turn of the content in image coordinates
    candidates = [torch.rot90(x, k, dims=(-2, -1)) for k in (1, 3)]
    errs = [float((y - c).abs().max()) for c in candidates]
    assert min(errs) < 1e-5 and max(errs) > 0.1


def test_crop_stays_inside_and_scale_range_respected() -> None:
    # An image whose columns encode their x coordinate: a crop of scale s has a column range ≈ sqrt(s)·W.
    w = 64
    x = torch.linspace(0, 1, w).reshape(1, 1, 1, w).repeat(64, 1, w, 1)
    aug = BatchAugment(w, crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0), hflip_p=0, jitter_p=0, grayscale_p=0,
                       generator=torch.Generator().manual_seed(0))
    y = aug(x)
    span = y[:, 0, 0, -1] - y[:, 0, 0, 0]
    expected = (0.5 * w - 1) / (w - 1)  # half the width, measured between outer pixel centres
    torch.testing.assert_close(span, torch.full_like(span, expected), atol=0.02, rtol=0)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_grayscale_p1_gives_equal_channels() -> None:
    x = _images(4)
    y = BatchAugment(16, **dict(NO_RANDOM, grayscale_p=1.0))(x)
    assert torch.allclose(y[:, 0], y[:, 1]) and torch.allclose(y[:, 1], y[:, 2])
    torch.testing.assert_close(y[:, :1], TF.rgb_to_grayscale(x.float() / 255), atol=1e-6, rtol=0)


def test_hsv_round_trip_and_against_colorsys() -> None:
    x = torch.rand(4, 3, 9, 7, generator=torch.Generator().manual_seed(0))
    x[0, :, 0, 0] = 0.5  # gray pixel
    x[0, :, 0, 1] = 0.0  # black pixel
    hsv = rgb_to_hsv(x)
    torch.testing.assert_close(hsv_to_rgb(hsv), x, atol=1e-5, rtol=0)
    flat = x.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    ref = np.array([colorsys.rgb_to_hsv(*p) for p in flat])
    got = hsv.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_hue_shift_zero_is_identity_and_shift_matches_colorsys() -> None:
    x = torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(adjust_hue(x, torch.zeros(3)), x, atol=1e-5, rtol=0)
    shifts = torch.tensor([0.25, -0.1, 0.5])
    y = adjust_hue(x, shifts)
    for i, s in enumerate(shifts.tolist()):  # brute-force reference, pixel by pixel
        flat = x[i].permute(1, 2, 0).reshape(-1, 3).double().numpy()
        ref = []
        for p in flat:
            h, sat, v = colorsys.rgb_to_hsv(*p)
            ref.append(colorsys.hsv_to_rgb((h + s) % 1.0, sat, v))
        np.testing.assert_allclose(y[i].permute(1, 2, 0).reshape(-1, 3).numpy(), np.array(ref), atol=1e-5)


def test_color_ops_match_torchvision_per_sample() -> None:
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    f = torch.tensor([0.5, 1.0, 1.6])
    yb, yc, ys = adjust_brightness(x, f), adjust_contrast(x, f), adjust_saturation(x, f)
    for i in range(3):
        fi = float(f[i])
        torch.testing.assert_close(yb[i], TF.adjust_brightness(x[i], fi), atol=1e-6, rtol=0)
        torch.testing.assert_close(yc[i], TF.adjust_contrast(x[i], fi), atol=1e-6, rtol=0)
        torch.testing.assert_close(ys[i], TF.adjust_saturation(x[i], fi), atol=1e-6, rtol=0)
    g = torch.rand(2, 1, 8, 8)  # 1-channel contrast uses the image's own mean
    torch.testing.assert_close(adjust_contrast(g, torch.tensor([0.3, 2.0]))[1], TF.adjust_contrast(g[1], 2.0), atol=1e-6, rtol=0)


def test_rgb_to_grayscale_weights() -> None:
    x = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(rgb_to_grayscale(x), TF.rgb_to_grayscale(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("random_order", [True, False])
def test_jitter_changes_colours_only_when_enabled(random_order: bool) -> None:
    x = _smooth_images(6)
    base = BatchAugment(32, **NO_RANDOM)(x)
    on = BatchAugment(32, **dict(NO_RANDOM, jitter_p=1.0), jitter_random_order=random_order,
                      generator=torch.Generator().manual_seed(0))(x)
    assert (on - base).abs().amax(dim=(1, 2, 3)).min() > 1e-3
    # brightness only, fixed factor 1 ± 0 → identity; factor range [0.5, 1.5] → each sample scaled uniformly
    only_b = BatchAugment(32, **dict(NO_RANDOM, jitter_p=1.0), jitter=(0.5, 0.0, 0.0, 0.0),
                          jitter_random_order=random_order, generator=torch.Generator().manual_seed(0))(x * 0.5)
    ratio = only_b / (x * 0.5).clamp_min(1e-3)
    mask = x * 0.5 > 0.05
    for i in range(6):
        r = ratio[i][mask[i]]
        assert float(r.max() - r.min()) < 1e-4 and 0.5 - 1e-4 <= float(r.mean()) <= 1.5 + 1e-4


def test_single_jitter_op_is_order_independent_and_keeps_its_invariant() -> None:
    x = _smooth_images(8) * 0.8 + 0.1
    kw = dict(NO_RANDOM, jitter_p=1.0)
    for jitter in [(0.0, 0.0, 0.8, 0.0), (0.0, 0.0, 0.0, 0.4), (0.0, 0.6, 0.0, 0.0)]:
        outs = [BatchAugment(32, **kw, jitter=jitter, jitter_random_order=o, generator=torch.Generator().manual_seed(0))(x)
                for o in (True, False)]
        torch.testing.assert_close(outs[0], outs[1], atol=1e-6, rtol=0)  # one op: order cannot matter
        y = outs[0]
        assert (y - x).abs().amax(dim=(1, 2, 3)).min() > 1e-3
    mid = x * 0.3 + 0.35  # values in [0.38, 0.62]: saturation factors ≤ 1.4 cannot clip
    sat = BatchAugment(32, **kw, jitter=(0.0, 0.0, 0.4, 0.0), generator=torch.Generator().manual_seed(1))(mid)
    # saturation moves each pixel along the line to its gray value: luma is kept (weights sum to 0.9999)
    torch.testing.assert_close(rgb_to_grayscale(sat), rgb_to_grayscale(mid), atol=1e-4, rtol=0)
    assert (sat - mid).abs().amax(dim=(1, 2, 3)).min() > 1e-3
    hue = BatchAugment(32, **kw, jitter=(0.0, 0.0, 0.0, 0.4), generator=torch.Generator().manual_seed(1))(x)
    # a hue rotation keeps each pixel's max and min channel values
    torch.testing.assert_close(hue.amax(dim=1), x.amax(dim=1), atol=1e-5, rtol=0)
    torch.testing.assert_close(hue.amin(dim=1), x.amin(dim=1), atol=1e-5, rtol=0)


def test_one_channel_input_skips_colour_only_ops() -> None:
    x = _images(4, 1, 16, 16)
    aug = BatchAugment(16, **dict(NO_RANDOM, jitter_p=1.0, grayscale_p=1.0), jitter=(0.0, 0.0, 0.9, 0.5))
    torch.testing.assert_close(aug(x), x.float() / 255, atol=1e-6, rtol=0)  # saturation/hue/gray: no-ops


def test_blur_tiny_sigma_is_identity_and_blur_reduces_total_variation() -> None:
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(gaussian_blur(x, torch.full((4,), 0.05), 5), x, atol=1e-6, rtol=0)
    aug = BatchAugment(16, **dict(NO_RANDOM, blur_p=1.0), blur_sigma=(1.0, 2.0), blur_kernel_size=5)
    y = aug(x)

    def tv(z: torch.Tensor) -> torch.Tensor:
        return (z[..., 1:, :] - z[..., :-1, :]).abs().sum(dim=(1, 2, 3)) + (z[..., 1:] - z[..., :-1]).abs().sum(dim=(1, 2, 3))

    assert bool((tv(y) < 0.7 * tv(x)).all())


def test_blur_matches_torchvision_gaussian_blur() -> None:
    x = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(4))
    sig = torch.tensor([0.5, 1.0, 2.0])
    y = gaussian_blur(x, sig, 5)
    for i in range(3):
        ref = TF.gaussian_blur(x[i : i + 1], kernel_size=[5, 5], sigma=[float(sig[i])] * 2)
        torch.testing.assert_close(y[i : i + 1], ref, atol=1e-5, rtol=0)


def test_blur_p0_leaves_samples_untouched_when_mixed() -> None:
    # blur_p=0.5: blurred samples change, the others are bit-identical (identity kernel).
    x = torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    aug = BatchAugment(16, **dict(NO_RANDOM, blur_p=0.5), blur_kernel_size=5, generator=torch.Generator().manual_seed(0))
    y = aug(x)
    changed = (y - x).abs().amax(dim=(1, 2, 3)) > 1e-4
    assert 0 < int(changed.sum()) < 32
    torch.testing.assert_close(y[~changed], x[~changed], atol=1e-6, rtol=0)


def test_to_float() -> None:
    x = _images(2, 3, 8, 8)
    torch.testing.assert_close(to_float(x), x.float() / 255)
    y = to_float(x, 4)
    assert y.shape == (2, 3, 4, 4) and y.dtype == torch.float32
    # antialiased bilinear resize agrees with Pillow's (the usual reference), up to uint8 rounding
    ref = np.stack([np.stack([np.asarray(Image.fromarray(x[i, ch].numpy()).resize((4, 4), Image.BILINEAR)) for ch in range(3)])
                    for i in range(2)])
    np.testing.assert_allclose(y.numpy() * 255, ref.astype(np.float32), atol=1.0)
    f = torch.rand(2, 1, 5, 5)
    assert to_float(f, 5) is not None and torch.equal(to_float(f, 5), f)
    with pytest.raises(TypeError):
        to_float(torch.zeros(2, 3, 4, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="channels"):
        to_float(torch.zeros(2, 4, 4, 4))


def test_bad_input_and_parameters() -> None:
    aug = BatchAugment(8)
    with pytest.raises(ValueError, match="B, C, H, W"):
        aug(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        aug(torch.zeros(2, 8, 8, 3))
    with pytest.raises(ValueError, match="crop_scale"):
        BatchAugment(8, crop_scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="probability"):
        BatchAugment(8, hflip_p=2.0)
    with pytest.raises(ValueError, match="hue"):
        BatchAugment(8, jitter=(0.4, 0.4, 0.4, 0.7))
    with pytest.raises(ValueError, match="odd"):
        BatchAugment(8, blur_kernel_size=4)
    with pytest.raises(ValueError, match="too large"):
        BatchAugment(8, blur_p=0.5, blur_kernel_size=23)


def test_presets() -> None:
    assert set(available_presets()) >= {"simclr", "simclr_blur", "cc", "digits", "fashion"}
    s = augmentation_preset("simclr", 32, 3)
    assert (s.crop_scale, s.hflip_p, s.jitter, s.jitter_p, s.grayscale_p, s.blur_p) == ((0.08, 1.0), 0.5, (0.4, 0.4, 0.4, 0.1), 0.8, 0.2, 0.0)
    assert augmentation_preset("simclr", 96, 3).blur_p == 0.0  # the CoHiClust reference uses no blur
    assert augmentation_preset("simclr_blur", 96, 3).blur_p == 0.5 and augmentation_preset("simclr_blur", 32, 3).blur_p == 0.0
    cc32, cc224 = augmentation_preset("cc", 32, 3), augmentation_preset("cc", 224, 3)
    assert cc32.jitter == pytest.approx((0.4, 0.4, 0.4, 0.1)) and cc32.blur_p == 0.0
    assert cc224.jitter == pytest.approx((0.8, 0.8, 0.8, 0.2)) and cc224.blur_p == 0.5 and cc224.blur_kernel_size == 23
    assert augmentation_preset("cc", 224, 3, jitter_strength=0.5).jitter == pytest.approx((0.4, 0.4, 0.4, 0.1))
    d = augmentation_preset("digits", 28, 1)
    assert d.hflip_p == 0.0 and d.rotation == (-15.0, 15.0) and d.jitter[2:] == (0.0, 0.0) and d.crop_scale[0] >= 0.5
    gray = augmentation_preset("simclr", 28, 1)
    assert gray.grayscale_p == 0.0 and gray.jitter[2:] == (0.0, 0.0)
    assert augmentation_preset("simclr", 32, 3, hflip_p=0.0).hflip_p == 0.0  # overrides
    with pytest.raises(ValueError, match="simclr"):
        augmentation_preset("nope", 32, 3)
    with pytest.raises(ValueError, match="cc"):
        augmentation_preset("simclr", 32, 3, jitter_strength=0.5)


def test_preset_for_dataset() -> None:
    assert DATASET_AUGMENTATION["mnist5k"] == "digits" and DATASET_AUGMENTATION["cifar10"] == "simclr"
    assert preset_name_for_dataset("digits", 8, 1) == "digits"
    assert preset_name_for_dataset("Fashion-MNIST", 28, 1) == "fashion"
    assert preset_name_for_dataset("folder:/x", 28, 1) == "digits"  # fallback by image properties
    assert preset_name_for_dataset("folder:/x", 64, 3) == "simclr"
    aug = preset_for_dataset("cifar100_20", 32, 3)
    assert isinstance(aug, BatchAugment) and aug.size == 32 and aug.jitter == (0.4, 0.4, 0.4, 0.1)
    y = preset_for_dataset("digits", 8, 1)(_images(3, 1, 8, 8))
    assert y.shape == (3, 1, 8, 8)


def test_random_parameters_follow_torchvision_distributions() -> None:
    """Crop area and aspect ratio, flip and grayscale rates and the brightness factor of the batched
    pipeline against torchvision's own samplers (two-sample Kolmogorov–Smirnov distance, binomial rates)."""
    from scipy.stats import ks_2samp
    from torchvision.transforms import ColorJitter, RandomResizedCrop

    n, size = 2000, 96
    gen = torch.Generator().manual_seed(0)
    aug = BatchAugment(size, crop_scale=(0.08, 1.0), hflip_p=0.5, jitter=(0.4, 0.0, 0.0, 0.0), jitter_p=1.0,
                       grayscale_p=0.2, generator=gen)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen)

    cw, ch = aug._crop_boxes(n, size, size, rand)[:2]
    torch.manual_seed(0)
    img = torch.zeros(3, size, size)
    boxes = torch.tensor([RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])[2:] for _ in range(n)],
                         dtype=torch.float32)  # (h, w), integers
    ours_area, ours_ratio = (cw * ch / size**2).numpy(), (cw / ch).numpy()
    tv_area, tv_ratio = (boxes[:, 0] * boxes[:, 1] / size**2).numpy(), (boxes[:, 1] / boxes[:, 0]).numpy()
    assert ks_2samp(ours_area, tv_area).statistic < 0.06  # torchvision rounds to whole pixels
    assert ks_2samp(ours_ratio, tv_ratio).statistic < 0.06
    # A brightness-only jitter on a dark, horizontally graded image: output / input = the factor,
    # the left-right order says whether it was flipped, equal channels say grayscale.
    size = 16  # the rest reads whole images: small ones keep it fast
    ramp = torch.linspace(0.05, 0.3, size).reshape(1, 1, 1, size).expand(n, 3, size, size).clone()
    ramp[:, 1] *= 0.5  # a colour image, so that grayscale is visible
    still = BatchAugment(size, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=0.5, jitter=(0.4, 0, 0, 0),
                         jitter_p=1.0, grayscale_p=0.2, generator=torch.Generator().manual_seed(1))
    y = still(ramp)
    flipped = (y[:, 0, 0, 0] > y[:, 0, 0, -1]).float().mean().item()
    grey = torch.isclose(y[:, 0], y[:, 1]).all(dim=(1, 2)).float().mean().item()
    assert abs(flipped - 0.5) < 0.04 and abs(grey - 0.2) < 0.03  # ±3.5 binomial standard deviations
    colour = ~torch.isclose(y[:, 0], y[:, 1]).all(dim=(1, 2))
    left = torch.where(y[:, 0, 0, 0] < y[:, 0, 0, -1], y[:, 0, size // 2, 0], y[:, 0, size // 2, -1])
    ours_factor = (left[colour] / ramp[0, 0, 0, 0]).numpy()
    tv_factor = np.array([float(ColorJitter.get_params((0.6, 1.4), None, None, None)[1]) for _ in range(n)])
    assert ks_2samp(ours_factor, tv_factor).statistic < 0.06


def _draw_like_forward(aug: BatchAugment, x: torch.Tensor, seed: int) -> _Params:
    """The parameters ``aug(x, generator=Generator().manual_seed(seed))`` draws (same order, same stream)."""
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = x.shape
    return aug._draw(b, c, h, w, lambda *shape: torch.rand(*shape, generator=g))


@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
def test_separable_geometry_matches_affine_grid_sample(padding_mode: str) -> None:
    # Rotation-free crops (with flips and translations that leave the image) are resampled with two
    # per-sample interpolation matrices; the reference is affine_grid + grid_sample on the same theta.
    x = torch.rand(40, 3, 21, 34, generator=torch.Generator().manual_seed(6))
    aug = BatchAugment(17, crop_scale=(0.05, 1.0), crop_ratio=(0.5, 2.0), hflip_p=0.5, translate=0.3, jitter_p=0.0,
                       grayscale_p=0.0, padding_mode=padding_mode)
    y = aug(x, generator=torch.Generator().manual_seed(7))
    theta = _draw_like_forward(aug, x, 7).theta
    grid = F.affine_grid(theta, [40, 3, 17, 17], align_corners=False)
    ref = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    # grid_sample's float32 coordinates are off by up to ~1e-6 px here; the matrices use float64 ones
    torch.testing.assert_close(y, ref, atol=2e-5, rtol=0)


def test_adjust_hue_matches_hsv_round_trip_and_torchvision() -> None:
    x = torch.rand(6, 3, 10, 10, generator=torch.Generator().manual_seed(8))
    x[:, :, 0, 0] = 0.4  # gray
    x[:, :, 0, 1] = torch.tensor([0.9, 0.9, 0.2])  # ties for the max: r = g
    x[:, :, 0, 2] = torch.tensor([0.7, 0.1, 0.7])  # r = b
    x[:, :, 0, 3] = torch.tensor([0.2, 0.8, 0.8])  # g = b
    x[:, :, 0, 4] = torch.tensor([1.0, 0.0, 0.0])  # pure red
    x[:, :, 0, 5] = torch.tensor([0.3, 0.3000001, 0.3])  # nearly gray
    shifts = torch.tensor([0.0, 0.5, -0.5, 0.13, -0.37, 0.49])
    y = adjust_hue(x, shifts)
    hsv = rgb_to_hsv(x)
    hsv[:, 0] = torch.remainder(hsv[:, 0] + shifts.reshape(-1, 1, 1), 1.0)
    torch.testing.assert_close(y, hsv_to_rgb(hsv), atol=2e-6, rtol=0)
    for i, s in enumerate(shifts.tolist()):
        torch.testing.assert_close(y[i], TF.adjust_hue(x[i], s), atol=2e-6, rtol=0)
    # whole turns are dropped: 0.7 turns = −0.3 turns
    torch.testing.assert_close(adjust_hue(x, 0.7), adjust_hue(x, -0.3), atol=2e-6, rtol=0)


def _sequential_jitter(img: torch.Tensor, ops: list[int], factors: list[float], hue: float) -> torch.Tensor:
    """torchvision's functional ops, one image, in the given order (op ids as in BatchAugment._draw_jitter)."""
    for op, f in zip(ops, factors):
        if op == 0:
            img = TF.adjust_brightness(img, f)
        elif op == 1:
            img = TF.adjust_contrast(img, f)
        elif op == 2:
            img = TF.adjust_saturation(img, f)
        elif op == 3:
            img = TF.adjust_hue(img, hue)
    return img


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("random_order", [True, False])
def test_batched_jitter_equals_torchvision_ops_in_sequence(channels: int, random_order: bool) -> None:
    # Strong factors (up to 1.9) on uniform noise: most images clip at 0 or 1 after some op, so the
    # per-op clipping is exercised. Geometry is the identity (matrices exact to ~1e-14 there).
    x = torch.rand(48, channels, 12, 12, generator=torch.Generator().manual_seed(9))
    aug = BatchAugment(12, **dict(NO_RANDOM, jitter_p=0.8), jitter=(0.9, 0.9, 0.9, 0.5), jitter_random_order=random_order)
    y = aug(x, generator=torch.Generator().manual_seed(10))
    p = _draw_like_forward(aug, x, 10)
    clipping = 0
    for i in range(48):
        factors = p.blend[i, :, 0].tolist()
        ref = _sequential_jitter(x[i], p.ops[i], factors, float(p.hue[i]))
        torch.testing.assert_close(y[i], ref, atol=1e-5, rtol=0)
        # brightness or contrast ≥ 1.2 on noise in [0, 1] pushes the brightest pixels above 1
        clipping += any(o in (0, 1) and f >= 1.2 for o, f in zip(p.ops[i], factors))
    assert clipping >= 12
    assert sum(any(o >= 0 for o in row) for row in p.ops) < 48  # some samples get no jitter (p = 0.8)


def test_cpu_chunking_does_not_change_the_output(monkeypatch: pytest.MonkeyPatch) -> None:
    import hiclust.data.augment as augment_module

    x = _images(10, 3, 20, 20)
    aug = augmentation_preset("simclr_blur", 96, 3, blur_p=0.5)
    whole = aug(x, generator=torch.Generator().manual_seed(11))
    monkeypatch.setattr(augment_module, "_CPU_CHUNK_ELEMS", 1)  # one image per chunk
    assert augment_module._chunk_rows(x, 96) == 1
    torch.testing.assert_close(aug(x, generator=torch.Generator().manual_seed(11)), whole, atol=1e-6, rtol=0)


def test_random_erasing_matches_torchvision_statistics_and_leaves_the_rest() -> None:
    """Erasing blanks exactly one rectangle per erased sample (the rest of the image equals the same
    draw without erasing); the erased rate, area fraction, aspect ratio h/w and position follow
    torchvision's RandomErasing (KS distance, binomial rate); turning erasing on changes no other draw."""
    from scipy.stats import ks_2samp
    from torchvision.transforms import RandomErasing

    n, size = 2000, 32
    x = torch.full((n, 1, size, size), 200, dtype=torch.uint8)
    kw = dict(NO_RANDOM, rotation=10.0, jitter=(0.4, 0.4, 0.0, 0.0), jitter_p=1.0)
    on = BatchAugment(size, erase_p=0.4, **kw)(x, generator=torch.Generator().manual_seed(3))
    off = BatchAugment(size, **kw)(x, generator=torch.Generator().manual_seed(3))
    erased = on != off  # (n, 1, S, S): only pixels inside the box differ, and they are 0
    assert (on[erased] == 0).all()
    rows, cols = erased[:, 0].any(2), erased[:, 0].any(1)  # (n, S) each
    hit = rows.any(1)
    # The differing pixels of each sample fill the rectangle spanned by their rows and columns (one box).
    assert (erased[:, 0].sum((1, 2)) == rows.sum(1) * cols.sum(1)).all()
    rate = hit.float().mean().item()
    assert abs(rate - 0.4) < 0.04  # p 0.4 minus the rare no-fit draws, ±3.5 binomial standard deviations
    eh, ew = rows.sum(1)[hit].float(), cols.sum(1)[hit].float()
    top = rows[hit].float().argmax(1).float()

    torch.manual_seed(0)
    img = torch.zeros(1, size, size)
    tv = torch.tensor([RandomErasing.get_params(img, (0.02, 0.33), (0.3, 3.3), value=[0])[:4] for _ in range(n)],
                      dtype=torch.float32)  # (top, left, h, w)
    tv = tv[tv[:, 2] < size]  # torchvision's no-fit fallback returns the whole image, unerased
    assert ks_2samp((eh * ew / size**2).numpy(), (tv[:, 2] * tv[:, 3] / size**2).numpy()).statistic < 0.07
    assert ks_2samp((eh / ew).numpy(), (tv[:, 2] / tv[:, 3]).numpy()).statistic < 0.07
    assert ks_2samp((top / (size - eh + 1)).numpy(), (tv[:, 0] / (size - tv[:, 2] + 1)).numpy()).statistic < 0.07
    with pytest.raises(ValueError, match="erase_scale"):
        BatchAugment(8, erase_p=0.5, erase_scale=(0.2, 0.1))


def _segment_distance(px: float, py: float, cx: float, cy: float, ang: float, length: float) -> float:
    """Distance of the point (px, py) to the segment of the given centre, angle and length, by hand."""
    ax, ay = cx - 0.5 * length * np.cos(ang), cy - 0.5 * length * np.sin(ang)
    bx, by = cx + 0.5 * length * np.cos(ang), cy + 0.5 * length * np.sin(ang)
    t = ((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / max((bx - ax) ** 2 + (by - ay) ** 2, 1e-12)
    t = min(1.0, max(0.0, t))
    return float(np.hypot(px - (ax + t * (bx - ax)), py - (ay + t * (by - ay))))


def test_stroke_coverage_matches_the_distance_to_the_segment_computed_by_hand() -> None:
    from hiclust.data.augment import stroke_coverage

    size = 12
    strokes = torch.tensor([[6.0, 6.0, 0.0, 5.0, 1.0],      # horizontal through the middle
                            [4.3, 7.9, 0.35, 7.0, 2.2],     # tilted, off the pixel grid
                            [6.0, 6.0, -1.2, 9.0, 1.5],
                            [6.0, 6.0, 0.0, 0.0, 1.5]])     # length 0: no stroke
    cover = stroke_coverage(strokes, size)
    assert cover.shape == (4, size, size)
    for n, (cx, cy, ang, length, width) in enumerate(strokes.tolist()):
        for i in range(size):
            for j in range(size):
                d = _segment_distance(j + 0.5, i + 0.5, cx, cy, ang, length)
                want = 0.0 if length == 0 else min(1.0, max(0.0, width / 2 + 0.5 - d))
                assert abs(float(cover[n, i, j]) - want) < 1e-5, (n, i, j)
    # a 1-px horizontal stroke on a pixel edge (y = 6) half-covers the rows above and below it,
    # over the 6 pixel centres within its length (x in 3.5 .. 8.5): 6 pixels' worth of ink
    assert float(cover[0].sum()) == pytest.approx(6.0, abs=1e-5)
    assert cover[0, 5:7, 3:9].eq(0.5).all()


def test_strokes_are_drawn_as_bright_as_the_ink_at_their_rate_and_change_no_other_draw() -> None:
    n, size = 1500, 16
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    x[:, :, 3:13, 7:9] = torch.randint(100, 256, (n, 1, 1, 1), generator=g, dtype=torch.uint8)  # a "1" of random ink
    kw = dict(NO_RANDOM, rotation=10.0)
    aug = BatchAugment(size, stroke_p=0.3, stroke_angle=25.0, **kw)
    gen = torch.Generator().manual_seed(5)
    on = aug(x, generator=gen)
    off = BatchAugment(size, **kw)(x, generator=torch.Generator().manual_seed(5))
    # the same parameters, drawn again: the strokes behind `on`
    params = aug._draw(n, 1, size, size, lambda *s, g=torch.Generator().manual_seed(5): torch.rand(*s, generator=g))
    from hiclust.data.augment import stroke_coverage

    assert params.stroke.shape == (n, 1, 5)  # one stroke slot by default
    cover = stroke_coverage(params.stroke[:, 0], size)[:, None]
    peak = off.amax(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(on, torch.maximum(off, cover * peak), atol=1e-6, rtol=0)
    drawn = params.stroke[:, 0, 3] > 0
    assert ((on != off).flatten(1).any(1) <= drawn).all()  # nothing changes without a stroke
    assert abs(drawn.float().mean().item() - 0.3) < 0.04  # ±3.4 binomial standard deviations
    s = params.stroke[drawn, 0]
    assert s[:, 0].min() >= 0.25 * size and s[:, 0].max() <= 0.75 * size
    assert s[:, 1].min() >= 0.25 * size and s[:, 1].max() <= 0.75 * size
    assert s[:, 2].abs().max() <= np.radians(25.0) + 1e-6 and s[:, 2].abs().max() > np.radians(22.0)
    assert s[:, 3].min() >= 0.25 * size - 1e-5 and s[:, 3].max() <= 0.45 * size + 1e-5
    with pytest.raises(ValueError, match="stroke_width"):
        BatchAugment(8, stroke_p=0.5, stroke_width=0.0)
    with pytest.raises(ValueError, match="stroke_angle"):
        BatchAugment(8, stroke_p=0.5, stroke_angle=120.0)


def test_strokes_at_any_angle_cover_every_direction_uniformly() -> None:
    # stroke_angle=90 (the mnist preset's): the direction is uniform over all of them, so the
    # line closing a 4's top (steep) is drawn as often as a 7's bar (flat)
    aug = BatchAugment(16, stroke_p=1.0, stroke_angle=90.0, **NO_RANDOM)
    params = aug._draw(20000, 1, 16, 16, lambda *s, g=torch.Generator().manual_seed(1): torch.rand(*s, generator=g))
    ang = np.degrees(params.stroke[:, 0, 2].numpy())
    assert ang.min() >= -90.0 - 1e-4 and ang.max() <= 90.0 + 1e-4
    counts, _ = np.histogram(np.abs(ang), bins=6, range=(0.0, 90.0))  # 15° bins of |angle|
    assert (np.abs(counts / len(ang) - 1 / 6) < 0.015).all()  # each ≈ 1/6 (sd 0.0026)
    from hiclust.data.augment import stroke_coverage

    # a vertical stroke covers the transpose of the same horizontal one
    flat = stroke_coverage(torch.tensor([[8.0, 6.3, 0.0, 7.0, 1.3]]), 16)
    steep = stroke_coverage(torch.tensor([[6.3, 8.0, np.pi / 2, 7.0, 1.3]]), 16)
    torch.testing.assert_close(steep[0], flat[0].T, atol=1e-5, rtol=0)


def test_stroke_centres_fill_the_range_asked_for_and_the_default_keeps_the_middle_half() -> None:
    # stroke_centre=(0.1, 0.9) reaches the rows where a digit begins and ends (a 1's foot), which
    # the default middle half never touches; the other stroke draws stay as they were
    draw = lambda aug: aug._draw(20000, 1, 16, 16, lambda *s, g=torch.Generator().manual_seed(2): torch.rand(*s, generator=g))
    wide = draw(BatchAugment(16, stroke_p=1.0, stroke_angle=90.0, stroke_centre=(0.1, 0.9), **NO_RANDOM)).stroke[:, 0]
    middle = draw(BatchAugment(16, stroke_p=1.0, stroke_angle=90.0, **NO_RANDOM)).stroke[:, 0]
    for axis in (0, 1):
        c = wide[:, axis].numpy() / 16
        assert c.min() >= 0.1 and c.max() <= 0.9
        counts, _ = np.histogram(c, bins=8, range=(0.1, 0.9))
        assert (np.abs(counts / len(c) - 1 / 8) < 0.012).all()  # uniform: each ≈ 1/8 (sd 0.0023)
        m = middle[:, axis].numpy() / 16
        assert m.min() >= 0.25 and m.max() <= 0.75
        # the same uniform draw, mapped onto the other range
        np.testing.assert_allclose((c - 0.1) / 0.8, (m - 0.25) / 0.5, atol=1e-5)
    torch.testing.assert_close(wide[:, 2:], middle[:, 2:])
    assert (middle[:, 1] / 16 > 0.8).sum() == 0 and (wide[:, 1] / 16 > 0.8).float().mean() > 0.1
    with pytest.raises(ValueError, match="stroke_centre"):
        BatchAugment(8, stroke_p=0.5, stroke_centre=(0.6, 0.4))


def test_two_stroke_slots_draw_independently_and_ink_the_union_of_their_strokes() -> None:
    # stroke_count=2: each slot on with probability stroke_p, the first slot's draws those of a
    # single stroke, and the image inked where either stroke covers it (a 1's flag and foot)
    n, size = 4000, 16
    rand = lambda: (lambda *s, g=torch.Generator().manual_seed(3): torch.rand(*s, generator=g))
    two = BatchAugment(size, stroke_p=0.6, stroke_angle=90.0, stroke_count=2, **NO_RANDOM)
    one = BatchAugment(size, stroke_p=0.6, stroke_angle=90.0, **NO_RANDOM)
    s2, s1 = two._draw(n, 1, size, size, rand()).stroke, one._draw(n, 1, size, size, rand()).stroke
    assert s2.shape == (n, 2, 5) and s1.shape == (n, 1, 5)
    torch.testing.assert_close(s2[:, 0], s1[:, 0])
    drawn = (s2[:, :, 3] > 0).float()
    counts = np.bincount(drawn.sum(1).long().numpy(), minlength=3) / n
    np.testing.assert_allclose(counts, [0.16, 0.48, 0.36], atol=0.03)  # Binomial(2, 0.6); sd ≤ 0.008
    assert abs(float(np.corrcoef(drawn[:, 0], drawn[:, 1])[0, 1])) < 0.05
    x = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    x[:, :, 3:13, 7:9] = 200
    from hiclust.data.augment import stroke_coverage

    out = two(x, generator=torch.Generator().manual_seed(3))
    plain = BatchAugment(size, **NO_RANDOM)(x, generator=torch.Generator().manual_seed(3))
    cover = torch.maximum(stroke_coverage(s2[:, 0], size), stroke_coverage(s2[:, 1], size))[:, None]
    torch.testing.assert_close(out, torch.maximum(plain, cover * 200 / 255), atol=1e-6, rtol=0)
    assert "stroke_count=2" in repr(two) and "stroke_count" not in repr(one)
    for bad in (0, 5, 1.5, True):
        with pytest.raises(ValueError, match="stroke_count must be an integer from 1 to 4"):
            BatchAugment(8, stroke_p=0.5, stroke_count=bad)
