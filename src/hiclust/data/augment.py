"""Batched image augmentation on the batch's own device, with per-sample random parameters.

Contrastive methods need two random views of every image in every step. Running torchvision's
per-image PIL transforms in DataLoader workers would make the CPU the bottleneck; here the whole
batch is transformed at once with tensor ops, on the GPU when the batch is there, with no Python
loop over samples:

* crop + resize + horizontal flip (+ optional rotation/translation) are ONE per-sample affine map,
  bilinear: without rotation (and with "border" or "zeros" padding) it is separable and applied
  as two batched products with per-sample ``S × W`` and ``S × H`` interpolation matrices, else with
  :func:`torch.nn.functional.affine_grid` + ``grid_sample``;
* colour jitter (brightness, contrast, saturation, hue) uses per-sample factors and the same
  formulas as torchvision's ``ColorJitter``, clipping after each op as it does; the four ops are
  applied in a per-sample random order (as torchvision does per image) unless
  ``jitter_random_order=False`` (fixed order b, c, s, h);
* random grayscale replaces the selected samples by their luma;
* Gaussian blur uses per-sample separable kernels in a grouped ``conv2d`` (reflect padding);
* random erasing (torchvision's ``RandomErasing``, value 0) blanks one per-sample rectangle of the
  output, as a mask built from per-sample row and column bounds.

On the CPU the batch goes through the whole pipeline in chunks of a few MB (see
:data:`_CPU_CHUNK_ELEMS`); the random parameters are drawn for the whole batch first, so the
chunking does not change them.

For 1-channel input only brightness and contrast are applied (saturation, hue and grayscale are
meaningless there). Order of the stages: geometry → colour jitter → grayscale → blur (SimCLR's)
→ erasing (on the output, as torchvision's ``RandomErasing`` after ``ToTensor``).

Presets live in one place, :func:`augmentation_preset`; :data:`DATASET_AUGMENTATION` and
:func:`preset_for_dataset` pick one per dataset.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "BatchAugment",
    "to_float",
    "augmentation_preset",
    "available_presets",
    "preset_for_dataset",
    "preset_name_for_dataset",
    "DATASET_AUGMENTATION",
    "rgb_to_hsv",
    "hsv_to_rgb",
    "rgb_to_grayscale",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "gaussian_blur",
]

# ITU-R 601 luma weights, the ones torchvision uses for rgb_to_grayscale.
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


# --------------------------------------------------------------------------------------------
# Input conversion
# --------------------------------------------------------------------------------------------


def _check_batch(x: torch.Tensor, what: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor batch (B, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{what}: expected a batch of shape (B, C, H, W), got {tuple(x.shape)}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{what}: expected 1 or 3 channels (B, C, H, W), got shape {tuple(x.shape)}; channels-last input must be permuted")
    if not (x.dtype == torch.uint8 or x.dtype.is_floating_point):
        raise TypeError(f"{what}: expected uint8 (0-255) or float (0-1) images, got {x.dtype}")


def _as_float(x: torch.Tensor) -> torch.Tensor:
    # uint8 → [0, 1]; float input is taken to be in [0, 1] already (not checked: that would force a
    # device sync per batch).
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def to_float(images: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Deterministic evaluation transform: uint8/float ``(B, C, H, W)`` → float32 in [0, 1].

    If ``size`` is given and differs from ``(H, W)`` the batch is resized to ``size × size`` with
    antialiased bilinear interpolation (non-square images are stretched). Stays on the input's device.
    """
    _check_batch(images, "to_float")
    x = _as_float(images)
    if size is not None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"to_float: size must be a positive int or None, got {size!r}")
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp_(0.0, 1.0)
    return x


# --------------------------------------------------------------------------------------------
# Batched colour ops (per-sample factors of shape (B,))
# --------------------------------------------------------------------------------------------


def _per_sample(f: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    f = torch.as_tensor(f, dtype=x.dtype, device=x.device)
    return f.reshape(-1, 1, 1, 1) if f.ndim else f


def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` → ``(B, 1, H, W)`` luma (torchvision's weights)."""
    b, _, h, w = x.shape
    weights = torch.tensor(_GRAY_WEIGHTS, dtype=x.dtype, device=x.device)
    # One matrix product instead of five elementwise passes (the same sum, rounded in another order).
    return torch.matmul(weights, x.reshape(b, 3, h * w)).view(b, 1, h, w)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """Multiply by ``factor`` (per sample, shape (B,) or scalar) and clip to [0, 1]."""
    return (x * _per_sample(factor, x)).clamp(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """Blend with the per-image mean gray level: ``f·x + (1 − f)·mean``, clipped (torchvision's formula)."""
    gray = rgb_to_grayscale(x) if x.shape[1] == 3 else x
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    f = _per_sample(factor, x)
    return (f * x + (1.0 - f) * mean).clamp(0.0, 1.0)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """Blend each RGB pixel with its gray value: ``f·x + (1 − f)·gray``, clipped."""
    f = _per_sample(factor, x)
    return (f * x + (1.0 - f) * rgb_to_grayscale(x)).clamp(0.0, 1.0)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """RGB ``(B, 3, H, W)`` in [0, 1] → HSV with h, s, v in [0, 1] (h = 0 for gray pixels)."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    s = delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    # Hue sector by which channel is the maximum (red wins ties, then green), as in colorsys.
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, torch.remainder(h / 6.0, 1.0), torch.zeros_like(h))
    return torch.stack((h, s, maxc), dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """HSV ``(B, 3, H, W)`` → RGB, via the closed form c_n = v − v·s·clip(min(k, 4 − k), 0, 1),
    k = (n + 6h) mod 6 with n = 5, 3, 1 for R, G, B (no per-sector branching)."""
    h, s, v = x.unbind(1)
    n = torch.tensor((5.0, 3.0, 1.0), dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
    k = torch.remainder(n + 6.0 * h.unsqueeze(1), 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * ramp


def adjust_hue(x: torch.Tensor, shift: torch.Tensor | float) -> torch.Tensor:
    """Rotate the hue of ``x`` ``(B, 3, H, W)`` by ``shift`` (fraction of a full turn, per sample
    ``(B,)`` or scalar; ColorJitter draws it from [−0.5, 0.5]).

    The HSV round trip of :func:`rgb_to_hsv` / :func:`hsv_to_rgb` fused, without per-pixel branches
    (``torch.where``, comparisons and ``remainder`` cost several times an arithmetic op on the CPU):

    * a hue rotation keeps each pixel's max M and min m; the hue in sixths of a turn is
      h6 = 3 + σ·(g + b − r − 2M + m)/(M − m), σ = +1 where g ≥ b (hues 0..3) else −1 — in each of
      the six sectors this is colorsys' formula (e.g. (g − b)/(M − m) where r = M, b = m);
    * RGB is rebuilt as c_n = m + (M − m)·clip(|((h6' + o_n) mod 6) − 3| − 1, 0, 1), o = (0, 4, 2),
      with the triangle wave |(y mod 6) − 3| written as 3 − |3 − |6 − |y − 3||| (valid for y ∈ [−9, 15]).
    """
    n, _, h, w = x.shape
    maxc, minc = x.amax(dim=1), x.amin(dim=1)
    delta = maxc - minc
    coeffs = torch.tensor((-1.0, 1.0, 1.0), dtype=x.dtype, device=x.device)
    t = torch.matmul(coeffs, x.reshape(n, 3, h * w)).view(n, h, w).sub_(maxc, alpha=2.0).add_(minc)  # ≤ 0
    # rest = 3 − h6. Gray pixels (delta = t = 0) get 0; any hue would do, as delta·wave is 0 — and
    # wherever rounding makes h6 wrong (tiny delta), the output still lies in [min, max], off by < delta.
    _, g, b = x.unbind(1)
    rest = torch.copysign(t, g - b).div_(delta.clamp_min(torch.finfo(x.dtype).tiny))
    shift = _per_sample(shift, x).reshape(-1, 1, 1, 1)
    shift = shift - torch.round(shift)  # whole turns off: exact for |shift| ≤ 0.5, keeps y in the fold's range
    offsets = torch.tensor((0.0, 4.0, 2.0), dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
    wave = rest.unsqueeze(1).neg().expand(n, 3, h, w).add(6.0 * shift + offsets)  # y − 3 ∈ [−6, 10]
    wave = wave.abs_().sub_(6.0).abs_().sub_(3.0).abs_().neg_().add_(2.0).clamp_(0.0, 1.0)  # clip(|(y mod 6) − 3| − 1, 0, 1)
    return wave.mul_(delta.unsqueeze(1)).add_(minc.unsqueeze(1)).clamp_(0.0, 1.0)


def _gaussian_kernels(sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``(B,)`` sigmas → ``(B, k)`` normalized 1-D Gaussian kernels."""
    half = (kernel_size - 1) / 2.0
    xs = torch.linspace(-half, half, kernel_size, dtype=sigma.dtype, device=sigma.device)
    k = torch.exp(-0.5 * (xs[None, :] / sigma[:, None]) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor | float, kernel_size: int) -> torch.Tensor:
    """Per-sample Gaussian blur with reflect padding (torchvision's convention).

    Args:
        x: float ``(B, C, H, W)``.
        sigma: ``(B,)`` or scalar standard deviations in pixels.
        kernel_size: odd kernel width; must be < 2·min(H, W) for reflect padding.
    """
    b, c, h, w = x.shape
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"gaussian_blur: kernel_size must be odd and positive, got {kernel_size}")
    pad = kernel_size // 2
    if pad >= min(h, w):
        raise ValueError(f"gaussian_blur: kernel_size {kernel_size} too large for {h}x{w} images (need kernel_size < {2 * min(h, w)})")
    sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    sig = sig.expand(b) if sig.ndim == 0 else sig.reshape(b)
    return _blur_with_kernels(x, _gaussian_kernels(sig, kernel_size))


def _blur_with_kernels(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Separable blur with one 1-D kernel per sample: grouped conv over the B·C channel planes."""
    b, c, h, w = x.shape
    k = kernels.shape[1]
    pad = k // 2
    weight = kernels.repeat_interleave(c, dim=0)  # (B·C, k): each sample's kernel for each of its channels
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode="reflect"), weight.reshape(b * c, 1, 1, k), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), weight.reshape(b * c, 1, k, 1), groups=b * c)
    return y.reshape(b, c, h, w)


# --------------------------------------------------------------------------------------------
# The augmentation module
# --------------------------------------------------------------------------------------------


def _pair(v: float | Sequence[float], name: str, symmetric: bool = False) -> tuple[float, float]:
    if isinstance(v, (int, float)):
        return (-float(v), float(v)) if symmetric else (float(v), float(v))
    t = tuple(float(a) for a in v)
    if len(t) != 2 or t[0] > t[1]:
        raise ValueError(f"{name} must be a number or a (min, max) pair with min ≤ max, got {v!r}")
    return t  # type: ignore[return-value]


def _prob(p: float, name: str) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    return p


class BatchAugment(torch.nn.Module):
    """SimCLR-style random augmentation of a whole batch with per-sample parameters.

    Args:
        size: output side ``S``; output is ``(B, C, S, S)``.
        crop_scale: range of the crop area as a fraction of the input area (RandomResizedCrop).
        crop_ratio: range of the crop aspect ratio w/h (sampled log-uniformly).
        hflip_p: probability of a horizontal flip.
        jitter: ``(brightness, contrast, saturation, hue)`` strengths as in torchvision's ColorJitter:
            factors ~ U[max(0, 1 − v), 1 + v], hue shift ~ U[−hue, hue] (hue ≤ 0.5).
        jitter_p: probability that a sample gets colour jitter.
        jitter_random_order: apply the four jitter ops in a per-sample random order (torchvision's
            behaviour) instead of the fixed order brightness, contrast, saturation, hue. The random order
            evaluates a blend and a hue rotation at each of the 4 order slots (measured on an H200, whole
            "simclr" pipeline: 4.4 ms per 512×3×32×32 view, 18 ms per 256×3×224×224 "cc" view, with the
            grid_sample implementation before 2026-11-27; not measured on a GPU since).
        grayscale_p: probability of converting a sample to gray (kept 3-channel).
        blur_p: probability of a Gaussian blur.
        blur_sigma: range of the blur's sigma in output pixels.
        blur_kernel_size: odd kernel width; ``None`` → about 10% of ``size`` (at least 3).
        rotation: degrees; a number d means U[−d, d], or a ``(min, max)`` pair.
        translate: maximal shift as a fraction of the crop's width/height: a number or ``(tx, ty)``.
        padding_mode: ``grid_sample`` padding for points outside the image ("border" avoids dark seams
            when upsampling crops that touch the edge; "zeros" fills black).
        erase_p: probability of erasing one rectangle of the output to 0 (black), as torchvision's
            ``RandomErasing(value=0)``: its area a fraction ``erase_scale`` of the output, its aspect
            ratio h/w log-uniform in ``erase_ratio``, its position uniform; 10 tries to fit, else no erasing.
        erase_scale, erase_ratio: see ``erase_p`` (torchvision's defaults).
        stroke_p: probability of drawing a straight stroke over the output (each of the
            ``stroke_count`` strokes independently), as bright as the sample's brightest pixel
            (per channel: ink on MNIST-like images, light on dark): a pen stroke that is not
            part of the shape, such as the bar of a crossed 7 or the line that
            closes a 4's top, so that views with and without one are positives. Its centre is
            uniform in ``stroke_centre`` (fractions of the side, both axes; the default, the
            middle half, crosses the digit's body; a wider range reaches where a digit begins and
            ends, such as the foot of a 1), its length a fraction
            ``stroke_length`` of the side, its width a fraction ``stroke_width`` of the side, its
            angle uniform within ±``stroke_angle`` degrees of horizontal (90: any direction);
            pixels are covered in proportion to their overlap (1 px antialiased edge).
        stroke_centre, stroke_length, stroke_width, stroke_angle: see ``stroke_p``.
        stroke_count: how many strokes a view may get, each drawn with probability ``stroke_p``
            (1 to 4; more than one can add both the flag and the foot of a serifed 1). With 1 the
            draws are those of earlier versions; the first stroke's draws never depend on it.
        generator: default ``torch.Generator`` for the random parameters (reproducibility); parameters
            are drawn on the generator's device (CPU by default) and moved to the batch's device.

    ``forward(x, generator=None)``: uint8 (0–255) or float (0–1) ``(B, C, H, W)``, C in {1, 3}, on any
    device → float32 ``(B, C, S, S)`` in [0, 1] on the same device.

    Bilinear resampling (2 taps per axis) does not antialias: when crops are much larger than ``S`` (e.g.
    224 px images augmented to 32 px), resize the data first (``load_dataset(..., image_size=...)``).
    """

    def __init__(
        self,
        size: int,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip_p: float = 0.5,
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
        jitter_p: float = 0.8,
        jitter_random_order: bool = True,
        grayscale_p: float = 0.2,
        blur_p: float = 0.0,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        blur_kernel_size: int | None = None,
        rotation: float | tuple[float, float] = 0.0,
        translate: float | tuple[float, float] = 0.0,
        padding_mode: str = "border",
        erase_p: float = 0.0,
        erase_scale: tuple[float, float] = (0.02, 0.33),
        erase_ratio: tuple[float, float] = (0.3, 3.3),
        stroke_p: float = 0.0,
        stroke_centre: tuple[float, float] = (0.25, 0.75),
        stroke_length: tuple[float, float] = (0.25, 0.45),
        stroke_width: float = 0.08,
        stroke_angle: float = 20.0,
        stroke_count: int = 1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        self.size = size
        self.crop_scale = _pair(crop_scale, "crop_scale")
        if not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < min ≤ max ≤ 1, got {crop_scale!r}")
        self.crop_ratio = _pair(crop_ratio, "crop_ratio")
        if self.crop_ratio[0] <= 0:
            raise ValueError(f"crop_ratio must be positive, got {crop_ratio!r}")
        self.hflip_p = _prob(hflip_p, "hflip_p")
        jitter = tuple(float(v) for v in jitter)
        if len(jitter) != 4 or min(jitter) < 0:
            raise ValueError(f"jitter must be 4 non-negative numbers (brightness, contrast, saturation, hue), got {jitter!r}")
        if jitter[3] > 0.5:
            raise ValueError(f"hue jitter must be ≤ 0.5 (a half turn), got {jitter[3]}")
        self.jitter: tuple[float, float, float, float] = jitter  # type: ignore[assignment]
        self.jitter_p = _prob(jitter_p, "jitter_p")
        self.jitter_random_order = bool(jitter_random_order)
        self.grayscale_p = _prob(grayscale_p, "grayscale_p")
        self.blur_p = _prob(blur_p, "blur_p")
        self.blur_sigma = _pair(blur_sigma, "blur_sigma")
        if self.blur_sigma[0] <= 0:
            raise ValueError(f"blur_sigma must be positive, got {blur_sigma!r}")
        k = blur_kernel_size if blur_kernel_size is not None else max(3, int(0.1 * size) // 2 * 2 + 1)
        if not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise ValueError(f"blur_kernel_size must be an odd positive int, got {blur_kernel_size!r}")
        if self.blur_p > 0 and k // 2 >= size:
            raise ValueError(f"blur_kernel_size {k} is too large for output size {size} (need < {2 * size})")
        self.blur_kernel_size = k
        self.rotation = _pair(rotation, "rotation", symmetric=True)
        tr = _pair(translate, "translate") if not isinstance(translate, (int, float)) else (float(translate),) * 2
        if min(tr) < 0 or max(tr) > 1:
            raise ValueError(f"translate must be fractions in [0, 1], got {translate!r}")
        self.translate: tuple[float, float] = tr  # type: ignore[assignment]
        if padding_mode not in ("zeros", "border", "reflection"):
            raise ValueError(f"padding_mode must be 'zeros', 'border' or 'reflection', got {padding_mode!r}")
        self.padding_mode = padding_mode
        self.erase_p = _prob(erase_p, "erase_p")
        self.erase_scale = _pair(erase_scale, "erase_scale")
        if not 0.0 < self.erase_scale[0] <= self.erase_scale[1] <= 1.0:
            raise ValueError(f"erase_scale must satisfy 0 < min ≤ max ≤ 1, got {erase_scale!r}")
        self.erase_ratio = _pair(erase_ratio, "erase_ratio")
        if not 0.0 < self.erase_ratio[0] <= self.erase_ratio[1]:
            raise ValueError(f"erase_ratio must satisfy 0 < min ≤ max, got {erase_ratio!r}")
        self.stroke_p = _prob(stroke_p, "stroke_p")
        self.stroke_centre = _pair(stroke_centre, "stroke_centre")
        if not 0.0 <= self.stroke_centre[0] <= self.stroke_centre[1] <= 1.0:
            raise ValueError(f"stroke_centre must satisfy 0 ≤ min ≤ max ≤ 1 (fractions of the side), got {stroke_centre!r}")
        self.stroke_length = _pair(stroke_length, "stroke_length")
        if not 0.0 < self.stroke_length[0] <= self.stroke_length[1] <= 1.5:
            raise ValueError(f"stroke_length must satisfy 0 < min ≤ max ≤ 1.5 (fractions of the side), got {stroke_length!r}")
        self.stroke_width = float(stroke_width)
        if not 0.0 < self.stroke_width <= 0.5:
            raise ValueError(f"stroke_width must be a fraction of the side in (0, 0.5], got {stroke_width!r}")
        self.stroke_angle = float(stroke_angle)
        if not 0.0 <= self.stroke_angle <= 90.0:
            raise ValueError(f"stroke_angle must be degrees in [0, 90], got {stroke_angle!r}")
        if isinstance(stroke_count, bool) or not isinstance(stroke_count, int) or not 1 <= stroke_count <= 4:
            raise ValueError(f"stroke_count must be an integer from 1 to 4, got {stroke_count!r}")
        self.stroke_count = stroke_count
        self.generator = generator

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, crop_scale={self.crop_scale}, crop_ratio={tuple(round(r, 4) for r in self.crop_ratio)}, "
            f"hflip_p={self.hflip_p}, jitter={self.jitter}, jitter_p={self.jitter_p}, grayscale_p={self.grayscale_p}, "
            f"blur_p={self.blur_p}, blur_sigma={self.blur_sigma}, blur_kernel_size={self.blur_kernel_size}, "
            f"rotation={self.rotation}, translate={self.translate}"
            + (f", erase_p={self.erase_p}, erase_scale={self.erase_scale}, erase_ratio={self.erase_ratio}" if self.erase_p else "")
            + (f", stroke_p={self.stroke_p}, stroke_centre={self.stroke_centre}, stroke_length={self.stroke_length}, stroke_width={self.stroke_width}, "
               f"stroke_angle={self.stroke_angle}" + (f", stroke_count={self.stroke_count}" if self.stroke_count > 1 else "")
               if self.stroke_p else "")
        )

    # -- random parameters ------------------------------------------------------------------

    def _crop_boxes(self, b: int, h: int, w: int, rand: Callable[..., torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """RandomResizedCrop boxes, vectorized: 10 candidate boxes per sample, the first that fits wins,
        else torchvision's fallback (the whole image, clipped to the ratio range). Returns crop width,
        height and centre (x, y) in input pixels, each (B,)."""
        tries = 10
        area = float(h * w)
        s = self.crop_scale[0] + (self.crop_scale[1] - self.crop_scale[0]) * rand(b, tries)
        lo, hi = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
        r = torch.exp(lo + (hi - lo) * rand(b, tries))
        cw = torch.sqrt(area * s * r)
        ch = torch.sqrt(area * s / r)
        ok = (cw <= w) & (ch <= h)
        cw, ch = _first_fit(ok, cw, ch)
        in_ratio = w / h
        if in_ratio < self.crop_ratio[0]:
            fw, fh = float(w), w / self.crop_ratio[0]
        elif in_ratio > self.crop_ratio[1]:
            fw, fh = h * self.crop_ratio[1], float(h)
        else:
            fw, fh = float(w), float(h)
        any_ok = ok.any(dim=1)
        cw = torch.where(any_ok, cw, torch.full_like(cw, fw))
        ch = torch.where(any_ok, ch, torch.full_like(ch, fh))
        u = rand(b, 2)
        cx = (w - cw) * u[:, 0] + cw / 2  # left edge ~ U[0, w − cw]
        cy = (h - ch) * u[:, 1] + ch / 2
        return cw, ch, cx, cy

    def _theta(self, b: int, h: int, w: int, rand: Callable[..., torch.Tensor]) -> torch.Tensor:
        """Per-sample (B, 2, 3) affine maps from output to input normalized coordinates (align_corners=False).

        An output point (u, v) ∈ [−1, 1]² maps to the input pixel position
        centre + R(angle) · (flip·u·cw/2, v·ch/2), then to normalized coordinates 2·p/size − 1.
        """
        cw, ch, cx, cy = self._crop_boxes(b, h, w, rand)
        flip = torch.where(rand(b) < self.hflip_p, -1.0, 1.0)
        ang = torch.deg2rad(self.rotation[0] + (self.rotation[1] - self.rotation[0]) * rand(b))
        t = 2.0 * rand(b, 2) - 1.0
        cx = cx + t[:, 0] * self.translate[0] * cw
        cy = cy + t[:, 1] * self.translate[1] * ch
        cos, sin = torch.cos(ang), torch.sin(ang)
        theta = torch.stack(
            (
                torch.stack((flip * cos * cw / w, -sin * ch / w, 2.0 * cx / w - 1.0), dim=1),
                torch.stack((flip * sin * cw / h, cos * ch / h, 2.0 * cy / h - 1.0), dim=1),
            ),
            dim=1,
        )
        return theta

    # -- forward ----------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_batch(x, "BatchAugment")
        gen = generator if generator is not None else self.generator
        pdev = gen.device if gen is not None else torch.device("cpu")

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=gen, device=pdev, dtype=torch.float32)

        b, c, h, w = x.shape
        params = self._draw(b, c, h, w, rand).to(x.device)
        rows = _chunk_rows(x, self.size)
        out = torch.empty(b, c, self.size, self.size, device=x.device)
        for i in range(0, b, rows):
            self._augment_rows(x[i : i + rows], params.rows(slice(i, i + rows)), out[i : i + rows])
        return out

    def _draw(self, b: int, c: int, h: int, w: int, rand: Callable[..., torch.Tensor]) -> _Params:
        """All random parameters of a batch of ``b`` images ``(c, h, w)``, drawn in a fixed order."""
        theta = self._theta(b, h, w, rand)
        taps = None
        if self.rotation == (0.0, 0.0) and self.padding_mode != "reflection":  # separable: see _geometry
            zeros = self.padding_mode == "zeros"
            taps = (_taps(theta[:, 0, 0], theta[:, 0, 2], w, self.size, zeros),
                    _taps(theta[:, 1, 1], theta[:, 1, 2], h, self.size, zeros))
        ops, blend, hue = self._draw_jitter(b, c, rand)
        gray = rand(b) < self.grayscale_p if c == 3 and self.grayscale_p > 0 else None
        blur = None
        if self.blur_p > 0:
            sig = self.blur_sigma[0] + (self.blur_sigma[1] - self.blur_sigma[0]) * rand(b)
            kernels = _gaussian_kernels(sig, self.blur_kernel_size)
            delta = torch.zeros_like(kernels)
            delta[:, self.blur_kernel_size // 2] = 1.0  # unblurred samples get an identity kernel
            blur = torch.where((rand(b) < self.blur_p)[:, None], kernels, delta)
        # Drawn last, and only when on, so that turning erasing or strokes on leaves every other draw as it was.
        erase = self._erase_boxes(b, rand) if self.erase_p > 0 else None
        stroke = self._strokes(b, rand) if self.stroke_p > 0 else None
        return _Params(theta, taps, ops, blend, hue, gray, blur, erase, stroke)

    def _strokes(self, b: int, rand: Callable[..., torch.Tensor]) -> torch.Tensor:
        """Stroke segments in output pixels, ``(B, stroke_count, 5)``: rows (centre x, centre y,
        angle in radians, length, width); length and width 0 where a stroke is not drawn."""
        size = float(self.size)
        lo, hi = self.stroke_centre
        out = []
        for _ in range(self.stroke_count):  # one draw per stroke slot (at most 4), each batched
            u = rand(b, 5)
            on = u[:, 0] < self.stroke_p
            cx = size * (lo + (hi - lo) * u[:, 1])
            cy = size * (lo + (hi - lo) * u[:, 2])
            ang = math.radians(self.stroke_angle) * (2.0 * u[:, 3] - 1.0)
            length = size * (self.stroke_length[0] + (self.stroke_length[1] - self.stroke_length[0]) * u[:, 4])
            width = torch.full_like(length, size * self.stroke_width)
            out.append(torch.stack((cx, cy, ang, length * on, width * on), dim=1))
        return torch.stack(out, dim=1)

    def _erase_boxes(self, b: int, rand: Callable[..., torch.Tensor]) -> torch.Tensor:
        """RandomErasing rectangles in output pixels, ``(B, 4)`` int64 rows (top, bottom, left, right),
        bottom/right exclusive; an empty box (0, 0, 0, 0) for samples left unerased.

        As torchvision: area = U(erase_scale)·S², log-ratio h/w uniform, h = round(√(area·r)),
        w = round(√(area/r)), the first of 10 tries with h < S and w < S wins (none: no erasing), then
        top ~ U{0..S−h}, left ~ U{0..S−w}.
        """
        tries, size = 10, self.size
        area = size * size * (self.erase_scale[0] + (self.erase_scale[1] - self.erase_scale[0]) * rand(b, tries))
        lo, hi = math.log(self.erase_ratio[0]), math.log(self.erase_ratio[1])
        r = torch.exp(lo + (hi - lo) * rand(b, tries))
        eh = torch.round(torch.sqrt(area * r)).long()
        ew = torch.round(torch.sqrt(area / r)).long()
        ok = (eh < size) & (ew < size)
        eh, ew = _first_fit(ok, eh, ew)
        on = (rand(b) < self.erase_p) & ok.any(dim=1)
        u = rand(b, 2)
        top = torch.floor(u[:, 0] * (size - eh + 1).float()).long().clamp_max(size - eh)
        left = torch.floor(u[:, 1] * (size - ew + 1).float()).long().clamp_max(size - ew)
        box = torch.stack((top, top + eh, left, left + ew), dim=1)
        return torch.where(on[:, None], box, torch.zeros_like(box))

    def _draw_jitter(
        self, b: int, c: int, rand: Callable[..., torch.Tensor]
    ) -> tuple[list[list[int]] | None, torch.Tensor | None, torch.Tensor | None]:
        """ColorJitter parameters, ``None``s when jitter is off:

        * ops: per sample, the op id in each of the 4 order slots (0 brightness, 1 contrast,
          2 saturation, 3 hue; −1 for nothing: samples without jitter and disabled ops);
        * blend ``(B, 4, 3)``: per slot the coefficients (f, c, s) of ``f·x + c·mean gray + s·gray``
          ((1, 0, 0) = unchanged), i.e. brightness (f, 0, 0), contrast (f, 1 − f, 0), saturation (f, 0, 1 − f);
        * hue ``(B,)``: hue shifts.
        """
        bri, con, sat, hue = self.jitter
        if c == 1:
            sat, hue = 0.0, 0.0  # only brightness/contrast make sense for gray images
        if self.jitter_p == 0 or (bri == con == sat == hue == 0):
            return None, None, None

        def factors(v: float) -> torch.Tensor:
            lo, hi = max(0.0, 1.0 - v), 1.0 + v
            return lo + (hi - lo) * rand(b)

        apply = rand(b) < self.jitter_p
        fb, fc, fs = factors(bri), factors(con), factors(sat)
        fh = (2.0 * rand(b) - 1.0) * hue
        if self.jitter_random_order:
            order = torch.argsort(rand(b, 4), dim=1)  # per-sample permutation of op ids 0..3
        else:
            order = torch.arange(4, device=apply.device).expand(b, 4)  # b, c, s, h
        enabled = torch.tensor([bri > 0, con > 0, sat > 0, hue > 0], device=apply.device)
        ops = torch.where(apply[:, None] & enabled[order], order, -1)  # (B, 4)
        is_blend = (ops >= 0) & (ops < 3)
        f = torch.where(is_blend, torch.stack((fb, fc, fs), dim=1).gather(1, ops.clamp(0, 2)), 1.0)
        blend = torch.stack((f, (ops == 1) * (1.0 - f), (ops == 2) * (1.0 - f)), dim=2)
        return ops.tolist(), blend, fh

    def _augment_rows(self, x: torch.Tensor, p: _Params, out: torch.Tensor) -> None:
        """The whole pipeline on ``(n, C, H, W)`` images with their parameters, written to ``out`` ``(n, C, S, S)``."""
        x = self._geometry(_as_float(x), p)
        if p.stroke is not None:  # before the colour changes, as if written with the digit
            x = _stroke_rows(x, p.stroke)
        if p.ops is not None:
            x = _color_jitter(x, p.ops, p.blend, p.hue)
        if p.gray is not None:
            x = _gray_rows(x, p.gray)
        if p.blur is not None:
            x = _blur_with_kernels(x, p.blur)
        if p.erase is not None:
            x = _erase_rows(x, p.erase)
        torch.clamp(x, 0.0, 1.0, out=out)

    def _geometry(self, x: torch.Tensor, p: _Params) -> torch.Tensor:
        """Crop + resize + flip (+ rotation, translation), bilinear: ``(n, C, H, W)`` → ``(n, C, S, S)``.

        Without rotation the map is separable: two small per-sample interpolation matrices and two
        batched matrix products replace ``affine_grid``'s ``(n, S, S, 2)`` grid and ``grid_sample``
        (the same bilinear weights); ``_draw`` sets ``p.taps`` exactly in that case.
        """
        if p.taps is not None:
            return _separable_resample(x, _hat_matrix(*p.taps[0], x.shape[3]), _hat_matrix(*p.taps[1], x.shape[2]))
        grid = F.affine_grid(p.theta, [x.shape[0], x.shape[1], self.size, self.size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=self.padding_mode, align_corners=False)


# Floats in one CPU work chunk (2 MiB; 2^18 to 2^20 measured the same at 32 and 96 px). On the CPU the
# pipeline runs chunk by chunk so that its temporaries stay in cache and are recycled by the allocator:
# whole-batch temporaries of tens of MB are fresh memory each time (page faults), which made an
# out-of-place elementwise pass ~8× slower than the same pass in place (26 ms against 3.3 ms at 256×3×96×96).
_CPU_CHUNK_ELEMS = 1 << 19


def _chunk_rows(x: torch.Tensor, size: int) -> int:
    """Images per work chunk for ``x`` ``(B, C, H, W)`` augmented to ``size``: all of them off the CPU."""
    if x.device.type != "cpu":
        return max(1, x.shape[0])
    return max(1, _CPU_CHUNK_ELEMS // (x.shape[1] * max(size * size, x.shape[2] * x.shape[3])))


@dataclass
class _Params:
    """Per-sample random parameters of a batch (see ``BatchAugment._draw``); every tensor has the
    batch size as its first dim, ``ops`` is a list with one row per sample."""

    theta: torch.Tensor  # (B, 2, 3) output → input affine maps
    taps: tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None  # x, y: see _taps
    ops: list[list[int]] | None  # jitter op id per order slot, −1 = nothing
    blend: torch.Tensor | None  # (B, 4, 3) blend coefficients per order slot
    hue: torch.Tensor | None  # (B,) hue shifts
    gray: torch.Tensor | None  # (B,) bool: convert to grayscale
    blur: torch.Tensor | None  # (B, k) 1-D blur kernels (identity for unblurred samples)
    erase: torch.Tensor | None = None  # (B, 4) erased box (top, bottom, left, right), empty when not erased
    stroke: torch.Tensor | None = None  # (B, K, 5) strokes (centre x, centre y, angle, length, width); 0 length: none

    def to(self, device: torch.device) -> _Params:
        return self._map(lambda v: v.to(device) if isinstance(v, torch.Tensor) else v)

    def rows(self, sl: slice) -> _Params:
        return self._map(lambda v: v[sl])

    def _map(self, fn: Callable[[Any], Any]) -> _Params:
        def one(v: Any) -> Any:
            if v is None:
                return None
            return tuple(one(a) for a in v) if isinstance(v, tuple) else fn(v)

        return _Params(*(one(getattr(self, f.name)) for f in fields(self)))


def _taps(scale: torch.Tensor, shift: torch.Tensor, n_in: int, n_out: int, zeros: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear taps along one axis: output pixel ``j`` of each sample reads input pixels ``left`` and
    ``left + 1`` with weights ``1 − frac`` and ``frac`` (``(n, n_out)`` float32 each).

    Output pixel ``j`` samples the normalized input coordinate ``scale·u_j + shift`` (``(n,)`` each),
    with ``grid_sample``'s conventions: align_corners=False, coordinates clipped to the image
    (border) or, with ``zeros``, not clipped (taps outside the image then get no weight).
    """
    # Coordinates in float64 (only n·n_out numbers; MPS has no float64): the identity map then samples
    # pixel centres to ~1e-14 px, where grid_sample's float32 coordinates are off by ~1e-5 px at 224 px.
    exact = torch.float32 if scale.device.type == "mps" else torch.float64
    scale, shift = scale.to(exact), shift.to(exact)
    u = (2.0 * torch.arange(n_out, dtype=scale.dtype, device=scale.device) + 1.0) / n_out - 1.0  # pixel centres
    pos = ((scale[:, None] * u + shift[:, None] + 1.0) * n_in - 1.0) / 2.0  # input pixel coordinates (n, n_out)
    if not zeros:
        pos = pos.clamp(0.0, n_in - 1.0)
    left = pos.floor()
    return left.float(), (pos - left).float()


def _hat_matrix(left: torch.Tensor, frac: torch.Tensor, n_in: int) -> torch.Tensor:
    """``(n, n_out)`` taps (see :func:`_taps`) → ``(n, n_out, n_in)`` interpolation matrices: the
    bilinear "hat" max(0, 1 − |i − pos|) at every input pixel i (taps outside the image drop out)."""
    i = torch.arange(n_in, dtype=left.dtype, device=left.device)
    dist = (i - left.unsqueeze(2)).sub_(frac.unsqueeze(2)).abs_()  # whole-pixel offsets are exact
    return dist.neg_().add_(1.0).clamp_min_(0.0)


def _separable_resample(x: torch.Tensor, wx: torch.Tensor, wy: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` ``(n, C, H, W)`` with per-sample matrices ``wx`` ``(n, S, W)`` (along x) and
    ``wy`` ``(n, S, H)`` (along y) → ``(n, C, S, S)``, as two batched matrix products."""
    n, c, h, w = x.shape
    s = wx.shape[1]
    along_x = torch.bmm(x.reshape(n, c * h, w), wx.transpose(1, 2))  # (n, C·H, S)
    wy = wy.unsqueeze(1).expand(n, c, s, h).reshape(n * c, s, h)  # explicit copy: faster than matmul's broadcast
    return torch.bmm(wy, along_x.view(n * c, h, s)).view(n, c, s, s)


def _color_jitter(x: torch.Tensor, ops: list[list[int]], blend: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """Per-sample ColorJitter of ``x`` ``(n, C, H, W)``, in place where it can; ``ops``, ``blend``
    (``(n, 4, 3)``) and ``hue`` (``(n,)``) as drawn by ``BatchAugment._draw_jitter``. Each order slot
    is one blend pass over the samples (identity for the others) plus a hue rotation of the samples
    whose op in that slot is hue."""
    for k in range(len(ops[0])):
        col = [row[k] for row in ops]
        if any(0 <= o < 3 for o in col):
            x = _blend(x, blend[:, k], contrast=1 in col, saturation=2 in col)
        idx = [i for i, o in enumerate(col) if o == 3]
        if idx:
            rows = torch.tensor(idx, device=x.device)  # index_select/index_copy_: ~3× faster than x[rows] on the CPU
            x.index_copy_(0, rows, adjust_hue(x.index_select(0, rows), hue.index_select(0, rows)))
    return x


def _blend(x: torch.Tensor, coef: torch.Tensor, contrast: bool, saturation: bool) -> torch.Tensor:
    """``f·x + c·(mean gray) + s·gray`` per sample, clipped to [0, 1], in place: brightness,
    contrast or saturation with torchvision's formulas, evaluated in its order (it clips after each op).

    Args:
        x: ``(n, C, H, W)``.
        coef: ``(n, 3)`` rows (f, c, s); (1, 0, 0) leaves a sample unchanged exactly.
        contrast, saturation: whether any ``c`` / ``s`` is non-zero (skips the gray image otherwise).
    """
    n = x.shape[0]
    f, c, s = (v.reshape(n, 1, 1, 1) for v in coef.unbind(1))
    gray = (rgb_to_grayscale(x) if x.shape[1] == 3 else x) if contrast or saturation else None
    ref = None
    if contrast:
        ref = c * gray.mean(dim=(1, 2, 3), keepdim=True)
    if saturation:
        ref = s * gray if ref is None else torch.addcmul(ref, s, gray)  # a sample is one or the other
    x = x.mul_(f)
    if ref is not None:
        x = x.add_(ref)
    return x.clamp_(0.0, 1.0)


def _first_fit(ok: torch.Tensor, *candidates: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per sample, each ``(B, tries)`` candidate at the first try where ``ok`` holds (try 0 when none
    does; the caller decides what a sample without a fit gets): ``(B,)`` each."""
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)
    return tuple(c.gather(1, first).squeeze(1) for c in candidates)


def _erase_rows(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``x`` ``(n, C, S, S)`` with each sample's box ``(n, 4)`` (top, bottom, left, right) set to 0, in place."""
    idx = torch.arange(x.shape[2], device=x.device)
    rows = (idx >= boxes[:, 0:1]) & (idx < boxes[:, 1:2])  # (n, S)
    cols = (idx >= boxes[:, 2:3]) & (idx < boxes[:, 3:4])
    return x.masked_fill_((rows[:, :, None] & cols[:, None, :])[:, None], 0.0)


def stroke_coverage(strokes: torch.Tensor, size: int) -> torch.Tensor:
    """How much of each output pixel a stroke covers, ``(n, S, S)`` in [0, 1].

    ``strokes`` ``(n, 5)``: centre x, centre y (pixels, from the top-left corner), angle (radians
    from horizontal), length and width (pixels). A pixel's coverage falls linearly from 1 to 0 as
    the distance of its centre to the segment goes from width/2 − 1/2 to width/2 + 1/2; samples of
    length or width 0 are not covered at all.
    """
    centres = torch.arange(size, device=strokes.device, dtype=torch.float32) + 0.5
    cx, cy, ang, length, width = (strokes[:, i, None, None] for i in range(5))
    dx = centres[None, None, :] - cx  # (n, 1, S)
    dy = centres[None, :, None] - cy  # (n, S, 1)
    cos, sin = torch.cos(ang), torch.sin(ang)
    along = (dx * cos + dy * sin).clamp(-length / 2, length / 2)  # nearest point of the segment
    dist = torch.hypot(dx - along * cos, dy - along * sin)  # (n, S, S)
    cover = (width / 2 + 0.5 - dist).clamp(0.0, 1.0)
    return cover * ((length > 0) & (width > 0))


def _stroke_rows(x: torch.Tensor, strokes: torch.Tensor) -> torch.Tensor:
    """``x`` ``(n, C, S, S)`` with each sample's strokes ``(n, K, 5)`` drawn as bright as its
    brightest pixel per channel (``max(x, coverage · peak)``, coverage the most of any of its
    strokes), in place."""
    n, k, size = strokes.shape[0], strokes.shape[1], x.shape[-1]
    cover = stroke_coverage(strokes.reshape(n * k, 5), size).view(n, k, size, size).amax(dim=1)[:, None]  # (n, 1, S, S)
    peak = x.amax(dim=(2, 3), keepdim=True)  # (n, C, 1, 1)
    return torch.maximum(x, cover * peak, out=x)


def _gray_rows(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` ``(n, 3, H, W)`` with the samples in ``mask`` ``(n,)`` turned gray (kept 3-channel), in place."""
    idx = mask.nonzero().flatten()
    if idx.numel():
        x.index_copy_(0, idx, rgb_to_grayscale(x.index_select(0, idx)).expand(-1, 3, -1, -1))
    return x


# --------------------------------------------------------------------------------------------
# Presets (the only place where recipes are written down)
# --------------------------------------------------------------------------------------------


def _simclr(size: int, channels: int, blur: bool) -> dict[str, Any]:
    color = channels == 3
    return dict(
        crop_scale=(0.08, 1.0),
        hflip_p=0.5,
        jitter=(0.4, 0.4, 0.4 if color else 0.0, 0.1 if color else 0.0),
        jitter_p=0.8,
        grayscale_p=0.2 if color else 0.0,
        blur_p=0.5 if blur and size >= 96 else 0.0,
    )


def _cc(size: int, channels: int, s: float | None) -> dict[str, Any]:
    color = channels == 3
    s = (0.5 if size <= 32 else 1.0) if s is None else float(s)
    return dict(
        crop_scale=(0.08, 1.0),
        hflip_p=0.5,
        jitter=(0.8 * s, 0.8 * s, 0.8 * s if color else 0.0, min(0.2 * s, 0.5) if color else 0.0),
        jitter_p=0.8,
        grayscale_p=0.2 if color else 0.0,
        blur_p=0.5 if size >= 224 else 0.0,
        blur_kernel_size=23,
    )


def _digits(size: int, channels: int) -> dict[str, Any]:
    # Handwritten digits: no flips (a mirrored glyph is not a digit), mild crops,
    # small rotations/shifts, brightness/contrast only; black padding for rotated-in corners.
    return dict(
        crop_scale=(0.6, 1.0),
        crop_ratio=(0.8, 1.25),
        hflip_p=0.0,
        rotation=15.0,
        translate=0.1,
        jitter=(0.4, 0.4, 0.0, 0.0),
        jitter_p=0.8,
        grayscale_p=0.0,
        blur_p=0.0,
        padding_mode="zeros",
    )


def _fashion(size: int, channels: int) -> dict[str, Any]:
    # Centred clothing items on black: moderate crops (small crops lose the garment's shape), mirror-symmetric
    # classes so flips are safe, brightness/contrast only (Fashion-MNIST is gray).
    color = channels == 3
    return dict(
        crop_scale=(0.4, 1.0),
        hflip_p=0.5,
        jitter=(0.4, 0.4, 0.4 if color else 0.0, 0.1 if color else 0.0),
        jitter_p=0.8,
        grayscale_p=0.2 if color else 0.0,
        blur_p=0.0,
        padding_mode="zeros",
    )


_PRESETS: dict[str, Callable[..., dict[str, Any]]] = {
    # CoHiClust reference recipe (docs/methods.md, "Reference recipe"): RandomResizedCrop(0.08–1), flip .5, ColorJitter(.4,.4,.4,.1) p .8,
    # grayscale .2, and no blur at any size.
    "simclr": lambda size, ch, s: _simclr(size, ch, blur=False),
    # SimCLR paper variant: as "simclr" plus Gaussian blur p .5 for images ≥ 96 px (kernel ≈ 10% of the size).
    "simclr_blur": lambda size, ch, s: _simclr(size, ch, blur=True),
    # CC reference (docs/methods.md, "CC"): jitter 0.8s/0.2s with s = 0.5 for CIFAR-sized (≤ 32 px) input unless given,
    # blur kernel 23 p .5 only at ≥ 224 px.
    "cc": _cc,
    # The CC reference per dataset family, whatever the crop size (CC trains every dataset at 224 px):
    # CIFAR s = 0.5 without blur; STL-10 s = 1 without blur; the ImageNet subsets s = 1 with blur (kernel 23, p .5).
    "cc_cifar": lambda size, ch, s: {**_cc(size, ch, 0.5 if s is None else s), "blur_p": 0.0},
    "cc_stl10": lambda size, ch, s: {**_cc(size, ch, 1.0 if s is None else s), "blur_p": 0.0},
    "cc_imagenet": lambda size, ch, s: {**_cc(size, ch, 1.0 if s is None else s), "blur_p": 0.5},
    "digits": lambda size, ch, s: _digits(size, ch),
    "fashion": lambda size, ch, s: _fashion(size, ch),
}

DATASET_AUGMENTATION: dict[str, str] = {
    "digits": "digits",
    "mnist5k": "digits",
    "mnist": "digits",
    "fashion_mnist": "fashion",
    "cifar10": "simclr",
    "cifar100_20": "simclr",
    "stl10": "simclr",
    "imagenet10": "simclr",
    "imagenet_dogs": "simclr",
}


# BatchAugment's settings a preset may have replaced (everything but the output size and the generator).
_SETTINGS = frozenset(inspect.signature(BatchAugment.__init__).parameters) - {"self", "size", "generator"}


def available_presets() -> list[str]:
    return sorted(_PRESETS)


def augmentation_preset(
    name: str,
    image_size: int,
    channels: int,
    *,
    jitter_strength: float | None = None,
    generator: torch.Generator | None = None,
    **overrides: Any,
) -> BatchAugment:
    """Build a named augmentation recipe.

    Args:
        name: one of :func:`available_presets` — ``"simclr"`` (CoHiClust reference), ``"simclr_blur"``,
            ``"cc"`` (Contrastive Clustering reference, jitter strength and blur chosen by crop size),
            ``"cc_cifar"`` / ``"cc_stl10"`` / ``"cc_imagenet"`` (the same per dataset family, for CC's
            224 px crops of any source), ``"digits"``, ``"fashion"``.
        image_size: output side ``S`` (the crop size the network sees).
        channels: 1 or 3; colour-only ops are switched off for 1 channel.
        jitter_strength: the ``s`` of the CC recipe (default 0.5 for ≤ 32 px, else 1); only for the ``"cc*"`` presets.
        generator: optional ``torch.Generator`` for reproducible parameters.
        **overrides: any :class:`BatchAugment` argument, replacing the preset's value.
    """
    if name not in _PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}; choose one of {', '.join(available_presets())}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if jitter_strength is not None and not name.startswith("cc"):
        raise ValueError(f"jitter_strength is a parameter of the 'cc*' presets only, not {name!r}; override jitter=... instead")
    params = _PRESETS[name](image_size, channels, jitter_strength)
    unknown = sorted(set(overrides) - _SETTINGS)
    if unknown:
        import difflib

        close = [m for u in unknown for m in difflib.get_close_matches(u, _SETTINGS, n=1)]
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        raise ValueError(f"unknown augmentation setting(s) {', '.join(map(repr, unknown))}; "
                         f"{hint}choose among {', '.join(sorted(_SETTINGS))}")
    params.update(overrides)
    return BatchAugment(image_size, generator=generator, **params)


def preset_name_for_dataset(dataset_name: str, image_size: int, channels: int) -> str:
    """Preset name for a dataset: from :data:`DATASET_AUGMENTATION`, else by image properties
    (1 channel and ≤ 32 px → ``"digits"``, anything else → ``"simclr"``)."""
    key = dataset_name.strip().lower().replace("-", "_")
    if key in DATASET_AUGMENTATION:
        return DATASET_AUGMENTATION[key]
    return "digits" if channels == 1 and image_size <= 32 else "simclr"


def preset_and_settings(spec: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """An ``augmentation`` parameter given by name — a preset name, ``'auto'``, or a dict
    ``{'preset': name or 'auto', setting: value, ...}`` — as (preset name or 'auto', settings)."""
    if not isinstance(spec, dict):
        return spec, {}
    preset = spec.get("preset", "auto")
    if not isinstance(preset, str):
        raise ValueError(f"augmentation's 'preset' must be a preset name or 'auto', got {preset!r}")
    return preset, {str(k): v for k, v in spec.items() if k != "preset"}


def preset_for_dataset(dataset_name: str, image_size: int, channels: int, **kwargs: Any) -> BatchAugment:
    """:func:`augmentation_preset` with the preset chosen by :func:`preset_name_for_dataset`."""
    return augmentation_preset(preset_name_for_dataset(dataset_name, image_size, channels), image_size, channels, **kwargs)
