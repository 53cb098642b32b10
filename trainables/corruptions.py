"""Common corruptions as CIFAR-10-C makes them, as batched torch operations on the training device.

Source: Hendrycks & Dietterich 2019, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR), and their generator hendrycks/robustness `ImageNet-C/create_c/make_cifar_c.py`, whose
parameters per severity 1-5 each function below repeats. The generator works on 0..255 floats and stores with
`np.uint8`, which truncates; `corrupt` does the same (floor(255·y)/255), so a deterministic corruption here equals
the published files' pixels within 1/255, and a random one equals them in distribution.

Every function takes images in [0, 1] of shape (N, C, H, W), C = 3 (RGB) or 1 (grey, such as the digits), the
severity, and a torch.Generator for its random draws, and returns images in [0, 1] before that truncation. On a
grey image a colour step takes the image itself for its grey (what RGB→grey gives for R = G = B), and frost's
RGB texture enters as its grey (ITU-R 601 luma, as cv2's RGB2GRAY). Parameters are in pixels as the generator
gives them for 32×32 images: on the 8×8 digits the spatial ones (blur σ, snow's streaks, frost's texture) are
four times larger relative to the image.

    corruption        what it does                                          parameter per severity 1..5
    gaussian_noise    x + N(0, c)                                           c = .04 .06 .08 .09 .10
    shot_noise        Poisson(x·c) / c                                      c = 500 250 100 75 50
    impulse_noise     salt and pepper on a share c of the values            c = .01 .02 .03 .05 .07
    speckle_noise     x + x·N(0, c)                                         c = .06 .10 .12 .16 .20
    gaussian_blur     Gaussian blur σ = c (scipy's: edge-replicated, 4σ)    c = .4 .6 .7 .8 1
    brightness        HSV value + c                                         c = .05 .10 .15 .20 .30
    contrast          (x − channel mean)·c + mean                           c = .75 .50 .40 .30 .15
    jpeg_compression  JPEG at quality c (libjpeg through torchvision.io)    c = 80 65 58 50 40
    fog               x + c0·plasma fractal (wibble decay c1), rescaled     (.2,3) (.5,3) (.75,2.5) (1,2) (1.5,1.75)
    frost             c0·x + c1·a random crop of a frost texture            (1,.2) (1,.3) (.9,.4) (.85,.4) (.75,.45)
    snow              a motion-blurred snow layer over a whitened image     seven numbers each (SNOW)
    motion_blur       ImageMagick's motion blur, angle U(−45°, 45°)         (6,1) (6,1.5) (6,2) (8,2) (9,2.5): radius, σ
    zoom_blur         mean of the image zoomed by 1, 1.01, ... up to c      c = 1.06 1.11 1.16 1.21 1.26 (exclusive)
    saturate          HSV saturation·c0 + c1                                (.3,0) (.1,0) (1.5,0) (2,.1) (2.5,.2)

    defocus_blur      a blurred disk of radius c0 (OpenCV's filter2D)         (.3,.4) (.4,.5) (.5,.6) (1,.2) (1.5,.1)
    pixelate          Pillow's BOX resize to side·c and back                c = .95 .9 .85 .75 .65

Not here, of CIFAR-10-C's nineteen: glass_blur (its pixel swaps run in sequence, each reading the last),
elastic_transform and spatter (OpenCV's affine warp, and its edge detector, distance transform and histogram
equalisation, not yet written for the device)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.io import decode_jpeg, decode_png, encode_jpeg, read_file

from trainables.usage import UsageError

FROST_DIR = Path(__file__).parent / "assets" / "frost"
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as cv2's COLOR_RGB2GRAY

GAUSSIAN_NOISE = (0.04, 0.06, 0.08, 0.09, 0.10)
SHOT_NOISE = (500, 250, 100, 75, 50)
IMPULSE_NOISE = (0.01, 0.02, 0.03, 0.05, 0.07)
SPECKLE_NOISE = (0.06, 0.1, 0.12, 0.16, 0.2)
GAUSSIAN_BLUR = (0.4, 0.6, 0.7, 0.8, 1.0)
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
JPEG_QUALITY = (80, 65, 58, 50, 40)
MOTION_BLUR = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))  # ImageMagick radius, sigma
ZOOM_BLUR_ENDS = (1.06, 1.11, 1.16, 1.21, 1.26)  # zoom factors np.arange(1, end, 0.01)
SATURATE = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))  # S·c0 + c1
DEFOCUS_BLUR = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))  # disk radius, its anti-aliasing σ
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)  # the side it is shrunk to, as a share
PIL_PRECISION = 22  # Pillow's fixed-point resampling coefficients (libImaging/Resample.c: 32 − 8 − 2 bits)
FOG = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))
FROST = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))
# snow layer mean and std, zoom, threshold, motion blur radius and sigma, share of the image kept
SNOW = (
    (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)


def gaussian_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=generator, device=x.device) * GAUSSIAN_NOISE[severity - 1]
    return (x + noise).clamp(0, 1)


def shot_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    c = SHOT_NOISE[severity - 1]
    return (torch.poisson(x * c, generator=generator) / c).clamp(0, 1)


def impulse_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """scikit-image's `random_noise(mode='s&p', amount=c)` as it reads since 0.16: each value flips with
    probability c, to 1 or to 0 with even odds. (Older releases, perhaps the published files', set exactly
    ceil(c·size/2) values to each, drawn with replacement and never in the last row, column or channel.)"""
    flipped = torch.rand(x.shape, generator=generator, device=x.device) < IMPULSE_NOISE[severity - 1]
    salted = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
    return torch.where(flipped, salted.to(x.dtype), x)


def speckle_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=generator, device=x.device) * SPECKLE_NOISE[severity - 1]
    return (x + x * noise).clamp(0, 1)


def gaussian_blur(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """scikit-image's `gaussian(sigma=c, multichannel=True)`, which is scipy.ndimage's `gaussian_filter` per
    channel: a normalised kernel of radius int(4σ + 0.5), edges replicated."""
    sigma = GAUSSIAN_BLUR[severity - 1]
    radius = int(4 * sigma + 0.5)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64, device=x.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype)
    channels = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels).clamp(0, 1)


def brightness(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """HSV value + c (clipped to 1), hue and saturation kept: that is the colour scaled by V'/V, since every RGB
    channel is V times a function of H and S alone; black (V = 0, saturation 0) becomes grey V'."""
    value = x.amax(dim=1, keepdim=True)
    brighter = (value + BRIGHTNESS[severity - 1]).clamp(max=1)
    return torch.where(value > 0, x * brighter / value.clamp_min(1e-12), brighter).clamp(0, 1)


def contrast(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    means = x.mean(dim=(2, 3), keepdim=True)
    return ((x - means) * CONTRAST[severity - 1] + means).clamp(0, 1)


def jpeg_compression(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """JPEG at the generator's quality through libjpeg (torchvision.io), as PIL's `save(format='JPEG')` encodes
    (baseline, 4:2:0 chroma subsampling, integer DCT), on the CPU: a GPU codec (nvJPEG) rounds differently."""
    pixels = (x * 255).round().to(torch.uint8).cpu()
    coded = encode_jpeg(list(pixels), quality=JPEG_QUALITY[severity - 1])
    return torch.stack(decode_jpeg(coded)).to(x.device, x.dtype) / 255


def grey(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W): ITU-R 601 luma of RGB images, a grey image itself."""
    if x.shape[1] == 1:
        return x
    return sum(w * x[:, i : i + 1] for i, w in enumerate(LUMA))


def plasma_fractal(n: int, size: int, decay: float, generator: torch.Generator, device) -> torch.Tensor:
    """(n, size, size) heightmaps in [0, 1] by the diamond-square algorithm of the generator's `plasma_fractal`
    (size a power of two), each point's noise wibble·U(−wibble, wibble) with wibble from 100, divided by `decay`
    at each level; the uniform draws come in the generator's order (squares, then the two diamond sets)."""
    maps = torch.zeros(n, size, size, dtype=torch.float64, device=device)
    step, wibble = size, 100.0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        noise = torch.rand(total.shape, generator=generator, dtype=torch.float64, device=device)
        return total / 4 + wibble * (noise * 2 * wibble - wibble)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:size:step, 0:size:step]
        squares = corners + corners.roll(-1, dims=1)
        squares = squares + squares.roll(-1, dims=2)
        maps[:, half:size:step, half:size:step] = wibbled_mean(squares)
        centres = maps[:, half:size:step, half:size:step]
        corners = maps[:, 0:size:step, 0:size:step]
        across = centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        maps[:, 0:size:step, half:size:step] = wibbled_mean(across)
        down = centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        maps[:, half:size:step, 0:size:step] = wibbled_mean(down)
        step //= 2
        wibble /= decay
    low = maps.amin(dim=(1, 2), keepdim=True)
    maps = maps - low
    return maps / maps.amax(dim=(1, 2), keepdim=True)


def fog(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """x + c0·plasma, rescaled by max/(max + c0) with each image's own maximum; the fractal is 32×32 as the
    generator's (the next power of two for a larger image), cropped to the image."""
    c0, decay = FOG[severity - 1]
    n, _, h, w = x.shape
    size = max(32, 1 << (max(h, w) - 1).bit_length())
    plasma = plasma_fractal(n, size, decay, generator, x.device)[:, None, :h, :w].to(x.dtype)
    top = x.amax(dim=(1, 2, 3), keepdim=True)
    return ((x + c0 * plasma) * top / (top + c0)).clamp(0, 1)


@cache
def frost_textures() -> tuple[torch.Tensor, ...]:
    """The generator's frost1-5 images, read as it reads them (cv2, alpha dropped) and resized ×0.2 (cv2's
    bilinear), as uint8 RGB (3, H, W); assets/frost/README.md says where they come from. (frost6 is never drawn:
    the generator picks `np.random.randint(5)`.)"""
    return tuple(decode_png(read_file(str(FROST_DIR / f"frost{i}.png"))) for i in range(1, 6))


class CorruptionError(UsageError):
    """A corruption that cannot be made for these images."""


def check_corruptions_fit(corruptions: list[str], side: int) -> None:
    """Refuse, before anything trains, a corruption that cannot be made at this image side: frost crops its
    textures (the smallest 63 pixels high) to the image's side."""
    largest = min(min(t.shape[1:]) for t in frost_textures()) - 1
    if "frost" in corruptions and side > largest:
        raise CorruptionError(
            f"corrupt_frost: frost crops its textures (CIFAR-10-C's, at most {largest} pixels) to the image's side, "
            f"and these images are {side} pixels: resize them (image_size) or leave frost out"
        )


def frost(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """c0·x + c1·frost, the frost a random crop of the image's size from one of five textures drawn at random."""
    c0, c1 = FROST[severity - 1]
    n, channels, h, w = x.shape
    textures = frost_textures()
    draw = generator.device
    picks = torch.randint(len(textures), (n,), generator=generator, device=draw).tolist()
    crops = []
    for pick in picks:
        texture = textures[pick]
        top = int(torch.randint(texture.shape[1] - h, (1,), generator=generator, device=draw))
        left = int(torch.randint(texture.shape[2] - w, (1,), generator=generator, device=draw))
        crops.append(texture[:, top : top + h, left : left + w])
    layer = torch.stack(crops).to(x.device, x.dtype) / 255
    layer = grey(layer) if channels == 1 else layer
    return (c0 * x + c1 * layer).clamp(0, 1)


def clipped_zoom(layer: torch.Tensor, zoom: float) -> torch.Tensor:
    """The generator's `clipped_zoom`: the centre ceil(h/zoom) square, zoomed by scipy.ndimage.zoom (order 1,
    whose grid puts the corners on the corners) to round(side·zoom), the centre h×h of that."""
    h = layer.shape[-2]
    side = math.ceil(h / zoom)
    top = (h - side) // 2
    zoomed = F.interpolate(
        layer[..., top : top + side, top : top + side], size=round(side * zoom), mode="bilinear", align_corners=True
    )
    trim = (zoomed.shape[-1] - h) // 2
    return zoomed[..., trim : trim + h, trim : trim + h]


def imagemagick_motion_blur(layer: torch.Tensor, radius: float, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """ImageMagick's MotionBlurImage (magick/effect.c) on 8-bit grey images (N, 1, H, W) in 0..255, one angle
    (degrees) per image: a one-sided Gaussian of 2·ceil(radius) + 1 taps, tap i taken i pixels along the angle
    (rounded as ImageMagick rounds), edges replicated, the sum rounded to 8 bits."""
    width = 2 * math.ceil(radius) + 1
    taps = torch.arange(width, dtype=torch.float64, device=layer.device)
    weights = torch.exp(-(taps**2) / (2 * sigma**2))
    weights = (weights / weights.sum()).to(layer.dtype)
    radians = torch.deg2rad(angles.to(torch.float64))[:, None]
    # x follows the cosine and y the sine: ImageMagick's offset[i].x uses point.y = width·cos(angle)
    dx = torch.ceil(taps * torch.cos(radians) - 0.5).long()
    dy = torch.ceil(taps * torch.sin(radians) - 0.5).long()
    n, _, h, w = layer.shape
    ys = (torch.arange(h, device=layer.device)[None, :, None, None] + dy[:, None, None, :]).clamp(0, h - 1)
    xs = (torch.arange(w, device=layer.device)[None, None, :, None] + dx[:, None, None, :]).clamp(0, w - 1)
    batch = torch.arange(n, device=layer.device)[:, None, None, None]
    picked = layer[:, 0][batch, ys, xs]  # (N, H, W, taps)
    return (picked * weights).sum(-1).round()[:, None]


def snow(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """A snow layer N(c0, c1) zoomed by c2, thresholded at c3, stored as 8-bit grey and motion-blurred (radius c4,
    sigma c5, an angle drawn from U(−135°, −45°)); the image kept at c6 and whitened by the rest
    (max(x, 1.5·grey + 0.5)); the layer added twice, once turned by 180°."""
    mean, std, zoom, threshold, radius, sigma, kept = SNOW[severity - 1]
    n, _, h, w = x.shape
    layer = torch.randn((n, 1, h, w), generator=generator, device=x.device, dtype=x.dtype) * std + mean
    layer = clipped_zoom(layer, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    layer = (layer.clamp(0, 1) * 255).floor()  # to 8 bits, as the generator's astype(np.uint8)
    angles = torch.rand(n, generator=generator, device=x.device) * 90 - 135
    layer = imagemagick_motion_blur(layer, radius, sigma, angles) / 255
    whitened = kept * x + (1 - kept) * torch.maximum(x, grey(x) * 1.5 + 0.5)
    return (whitened + layer + layer.flip(2, 3)).clamp(0, 1)


def motion_blur(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """The 8-bit image motion-blurred by ImageMagick's kernel (radius, sigma) at an angle drawn from U(−45°, 45°),
    each channel alike."""
    radius, sigma = MOTION_BLUR[severity - 1]
    n, channels, h, w = x.shape
    angles = torch.rand(n, generator=generator, device=x.device) * 90 - 45
    pixels = (x * 255).round().reshape(n * channels, 1, h, w)
    blurred = imagemagick_motion_blur(pixels, radius, sigma, angles.repeat_interleave(channels))
    return (blurred.reshape(n, channels, h, w) / 255).clamp(0, 1)


def zoom_blur(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The mean of the image and its `clipped_zoom`s by each factor of np.arange(1, end, 0.01), numpy's float
    steps included (severity 1 zooms by 1.00 to 1.06: seven factors)."""
    factors = np.arange(1, ZOOM_BLUR_ENDS[severity - 1], 0.01)
    zoomed = sum(clipped_zoom(x, float(factor)) for factor in factors)
    return ((x + zoomed) / (len(factors) + 1)).clamp(0, 1)


def saturate(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """HSV saturation S·c0 + c1 (clipped), hue and value kept: each channel's distance below the value V scales by
    S'/S; a grey pixel (S = 0, hue 0 by convention) takes hue 0's colour, (V, V(1 − S'), V(1 − S')). A grey image
    has no colour to saturate and is returned as it is."""
    if x.shape[1] == 1:
        return x
    scale, shift = SATURATE[severity - 1]
    value, low = x.amax(dim=1, keepdim=True), x.amin(dim=1, keepdim=True)
    saturation = torch.where(value > 0, (value - low) / value.clamp_min(1e-12), torch.zeros_like(value))
    saturated = (saturation * scale + shift).clamp(0, 1)
    coloured = value - saturated / saturation.clamp_min(1e-12) * (value - x)
    hue_zero = torch.cat([value, value * (1 - saturated), value * (1 - saturated)], dim=1)
    return torch.where(value > low, coloured, hue_zero).clamp(0, 1)


def defocus_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The generator's `disk`: a normalised disk on a 17×17 grid, blurred by OpenCV's 3×3 Gaussian (σ =
    alias_blur, edges reflected as BORDER_REFLECT_101); cropped to the taps that are not zero."""
    taps = torch.arange(-8, 9, dtype=torch.float64)
    disk = ((taps[:, None] ** 2 + taps[None, :] ** 2) <= radius**2).double()
    disk /= disk.sum()
    gaussian = torch.exp(-((torch.arange(3, dtype=torch.float64) - 1) ** 2) / (2 * alias_blur**2))
    gaussian /= gaussian.sum()
    padded = F.pad(disk[None, None], (1, 1, 1, 1), mode="reflect")
    blurred = F.conv2d(F.conv2d(padded, gaussian.view(1, 1, 1, 3)), gaussian.view(1, 1, 3, 1))[0, 0]
    reach = int((blurred != 0).nonzero().sub(8).abs().max())
    return blurred[8 - reach : 9 + reach, 8 - reach : 9 + reach]


def defocus_blur(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """OpenCV's `filter2D` with the defocus kernel, per channel, edges reflected (BORDER_REFLECT_101)."""
    kernel = defocus_kernel(*DEFOCUS_BLUR[severity - 1]).to(x.device, x.dtype)
    reach, channels = kernel.shape[0] // 2, x.shape[1]
    padded = F.pad(x, (reach,) * 4, mode="reflect")
    return F.conv2d(padded, kernel.expand(channels, 1, *kernel.shape), groups=channels).clamp(0, 1)


def box_resampling(size: int, to: int, device) -> torch.Tensor:
    """(to, size) integer weights of Pillow's BOX resampling from `size` to `to` pixels, fixed point as Pillow
    keeps them: output pixel i averages the input pixels whose centres fall in its box of side size/to (at least
    one pixel)."""
    scale = size / to
    support = 0.5 * max(scale, 1.0)
    weights = torch.zeros(to, size, dtype=torch.float64)
    for i in range(to):
        centre = (i + 0.5) * scale
        low, high = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), size)
        for j in range(low, high):
            offset = (j - centre + 0.5) / max(scale, 1.0)
            weights[i, j] = 1.0 if -0.5 < offset <= 0.5 else 0.0
        weights[i] /= weights[i].sum()
    return torch.floor(0.5 + weights * (1 << PIL_PRECISION)).long().to(device)


def pil_resize_box(pixels: torch.Tensor, to: int) -> torch.Tensor:
    """Pillow's `resize((to, to), Image.BOX)` of 8-bit images (N, C, H, W) as int64: the horizontal pass, rounded to
    8 bits, then the vertical one, in its fixed-point arithmetic."""
    rows = box_resampling(pixels.shape[-1], to, pixels.device)
    columns = box_resampling(pixels.shape[-2], to, pixels.device)
    half = 1 << (PIL_PRECISION - 1)
    across = ((pixels @ rows.T + half) >> PIL_PRECISION).clamp(0, 255)
    return ((columns @ across + half) >> PIL_PRECISION).clamp(0, 255)


def pixelate(x: torch.Tensor, severity: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The 8-bit image shrunk to int(side·c) pixels and back with Pillow's BOX filter."""
    side = x.shape[-1]
    pixels = (x * 255).round().long()
    return pil_resize_box(pil_resize_box(pixels, int(side * PIXELATE[severity - 1])), side).to(x.dtype) / 255


CORRUPTIONS: dict[str, Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]] = {
    f.__name__: f
    for f in (
        gaussian_noise,
        shot_noise,
        impulse_noise,
        speckle_noise,
        gaussian_blur,
        brightness,
        contrast,
        jpeg_compression,
        fog,
        frost,
        snow,
        motion_blur,
        zoom_blur,
        saturate,
        defocus_blur,
        pixelate,
    )
}


def corrupt(x: torch.Tensor, corruption: str, severity: int, seed: int) -> torch.Tensor:
    """`x` corrupted as the generator stores it (8 bits, truncated), its random draws from a generator seeded
    with `seed` on x's device: the same images and seed give the same corrupted images."""
    generator = torch.Generator(device=x.device)
    generator.manual_seed(seed)
    return (CORRUPTIONS[corruption](x, severity, generator) * 255).floor() / 255
