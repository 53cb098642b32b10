"""Each corruption against a reference written here from the published generator's formulas
(hendrycks/robustness `ImageNet-C/create_c/make_cifar_c.py`) with numpy, scipy, PIL and matplotlib: deterministic
ones pixel for pixel (within 1 of 255, the generator's uint8 truncation included), random ones from the same draws
where the draws can be shared, else equal in distribution (two-sample Kolmogorov-Smirnov against numpy's)."""

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image
from scipy import ndimage, stats

from trainables import corruptions
from trainables.corruptions import corrupt
from trainables.vocabulary import PAPER_CORRUPTIONS, parse_corruption

SEVERITIES = range(1, 6)


def images(n=8, channels=3, side=32, seed=0) -> torch.Tensor:
    """Smooth 8-bit images like photographs (random 8×8 colour fields upsampled), and a black and a white patch."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(n, channels, 8, 8, generator=g), size=side, mode="bilinear", align_corners=False)
    x[0, :, :4, :4] = 0
    x[-1, :, -4:, -4:] = 1
    return (x * 255).round() / 255


def as_uint8(x: torch.Tensor) -> np.ndarray:
    """What corrupt returns, as the generator's stored bytes (N, H, W, C)."""
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def stored(reference: np.ndarray) -> np.ndarray:
    """The generator's last step: np.uint8 of its 0..255 floats (truncation)."""
    return np.uint8(np.clip(reference, 0, 255))


def assert_within_one(ours: torch.Tensor, reference: np.ndarray) -> None:
    diff = np.abs(as_uint8(ours).astype(int) - reference.astype(int))
    assert diff.max() <= 1, f"{diff.max()} of 255 at {np.unravel_index(diff.argmax(), diff.shape)}"


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("channels", [3, 1])
def test_gaussian_blur_is_scipys_gaussian_filter(severity, channels):
    x = images(channels=channels)
    sigma = corruptions.GAUSSIAN_BLUR[severity - 1]
    hwc = x.permute(0, 2, 3, 1).double().numpy()
    reference = [ndimage.gaussian_filter(img, sigma=(sigma, sigma, 0), mode="nearest", truncate=4.0) for img in hwc]
    assert_within_one(corrupt(x, "gaussian_blur", severity, 0), stored(np.clip(np.stack(reference), 0, 1) * 255))


@pytest.mark.parametrize("severity", SEVERITIES)
def test_brightness_adds_to_the_hsv_value(severity):
    x = images()
    hsv = rgb_to_hsv(x.permute(0, 2, 3, 1).double().numpy())
    hsv[..., 2] = np.clip(hsv[..., 2] + corruptions.BRIGHTNESS[severity - 1], 0, 1)
    assert_within_one(corrupt(x, "brightness", severity, 0), stored(np.clip(hsv_to_rgb(hsv), 0, 1) * 255))


@pytest.mark.parametrize("severity", SEVERITIES)
def test_contrast_scales_around_each_channels_mean(severity):
    x = images().permute(0, 2, 3, 1).double().numpy()
    c = corruptions.CONTRAST[severity - 1]
    means = x.mean(axis=(1, 2), keepdims=True)
    reference = stored(np.clip((x - means) * c + means, 0, 1) * 255)
    assert_within_one(corrupt(images(), "contrast", severity, 0), reference)


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("channels", [3, 1])
def test_jpeg_is_pils_jpeg(severity, channels):
    x = images(channels=channels)
    reference = []
    for img in as_uint8(x):
        buffer = io.BytesIO()
        Image.fromarray(img.squeeze(-1) if channels == 1 else img).save(
            buffer, "JPEG", quality=corruptions.JPEG_QUALITY[severity - 1]
        )
        reference.append(np.array(Image.open(buffer)).reshape(img.shape))
    assert_within_one(corrupt(x, "jpeg_compression", severity, 0), np.stack(reference))


def reference_plasma(size: int, decay: float, uniform) -> np.ndarray:
    """The generator's `plasma_fractal`, its uniform draws from `uniform(low, high, shape)`."""
    maparray = np.zeros((size, size))
    stepsize, wibble = size, 100.0

    def wibbledmean(array):
        return array / 4 + wibble * uniform(-wibble, wibble, array.shape)

    while stepsize >= 2:
        half = stepsize // 2
        cornerref = maparray[0:size:stepsize, 0:size:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[half:size:stepsize, half:size:stepsize] = wibbledmean(squareaccum)
        drgrid = maparray[half:size:stepsize, half:size:stepsize]
        ulgrid = maparray[0:size:stepsize, 0:size:stepsize]
        ltsum = drgrid + np.roll(drgrid, 1, axis=0) + ulgrid + np.roll(ulgrid, -1, axis=1)
        maparray[0:size:stepsize, half:size:stepsize] = wibbledmean(ltsum)
        ttsum = drgrid + np.roll(drgrid, 1, axis=1) + ulgrid + np.roll(ulgrid, -1, axis=0)
        maparray[half:size:stepsize, 0:size:stepsize] = wibbledmean(ttsum)
        stepsize //= 2
        wibble /= decay
    maparray -= maparray.min()
    return maparray / maparray.max()


def torch_draws(seed: int):
    """numpy-shaped draws taken from the torch generator `corrupt` seeds, in the order they are asked for."""
    g = torch.Generator().manual_seed(seed)
    return lambda low, high, shape: (torch.rand(shape, generator=g, dtype=torch.float64) * (high - low) + low).numpy()


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("channels,side", [(3, 32), (1, 8)])
def test_fog_adds_the_generators_plasma_fractal_from_the_same_draws(severity, channels, side):
    c0, decay = corruptions.FOG[severity - 1]
    x = images(n=1, channels=channels, side=side)  # one image: a batch draws level by level for all its images
    uniform = torch_draws(7)
    reference = []
    for img in x.permute(0, 2, 3, 1).double().numpy():
        top = img.max()
        fogged = img + c0 * reference_plasma(32, decay, uniform)[:side, :side][..., None]
        reference.append(np.clip(fogged * top / (top + c0), 0, 1) * 255)
    assert_within_one(corrupt(x, "fog", severity, 7), stored(np.stack(reference)))


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("channels,side", [(3, 32), (1, 8)])
def test_frost_blends_a_crop_of_the_texture_drawn(severity, channels, side):
    c0, c1 = corruptions.FROST[severity - 1]
    x = images(n=4, channels=channels, side=side)
    g = torch.Generator().manual_seed(3)
    textures = [
        np.asarray(Image.open(corruptions.FROST_DIR / f"frost{i}.png").convert("RGB"), dtype=float) for i in range(1, 6)
    ]
    picks = torch.randint(5, (len(x),), generator=g).tolist()
    reference = []
    for img, pick in zip(x.permute(0, 2, 3, 1).double().numpy(), picks):
        texture = textures[pick]
        top = int(torch.randint(texture.shape[0] - side, (1,), generator=g))
        left = int(torch.randint(texture.shape[1] - side, (1,), generator=g))
        crop = texture[top : top + side, left : left + side]
        if channels == 1:
            crop = (crop @ np.array([0.299, 0.587, 0.114]))[..., None]
        reference.append(np.clip(c0 * img * 255 + c1 * crop, 0, 255))
    assert_within_one(corrupt(x, "frost", severity, 3), stored(np.stack(reference)))
    assert [t.shape[:2] for t in textures] == [(120, 180), (63, 112), (63, 112), (70, 105), (99, 132)]


def imagemagick_motion_blur(layer: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick 6's MotionBlurImage (magick/effect.c) for an 8-bit grey image, pixel by pixel: the kernel of
    GetMotionBlurKernel, the offsets and the edge-replicating virtual pixels; rounded to 8 bits."""
    width = int(2 * math.ceil(radius) + 1)
    kernel = np.array(
        [math.exp(-(i * i) / (2 * sigma * sigma)) / (math.sqrt(2 * math.pi) * sigma) for i in range(width)]
    )
    kernel /= kernel.sum()
    px, py = width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle))
    offsets = [
        (math.ceil(i * py / math.hypot(px, py) - 0.5), math.ceil(i * px / math.hypot(px, py) - 0.5))
        for i in range(width)
    ]
    h, w = layer.shape
    out = np.zeros_like(layer, dtype=float)
    for y in range(h):
        for x in range(w):
            out[y, x] = sum(
                k * layer[min(max(y + oy, 0), h - 1), min(max(x + ox, 0), w - 1)]
                for k, (ox, oy) in zip(kernel, offsets)
            )
    return np.round(out)


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("channels,side", [(3, 32), (1, 8)])
def test_snow_from_the_same_draws(severity, channels, side):
    mean, std, zoom, threshold, radius, sigma, kept = corruptions.SNOW[severity - 1]
    x = images(n=2, channels=channels, side=side)
    g = torch.Generator().manual_seed(5)
    layers = (torch.randn((len(x), 1, side, side), generator=g) * std + mean).numpy()
    angles = (torch.rand(len(x), generator=g) * 90 - 135).tolist()
    reference = []
    for img, layer, angle in zip(x.permute(0, 2, 3, 1).numpy(), layers[:, 0], angles):
        crop = math.ceil(side / zoom)
        top = (side - crop) // 2
        zoomed = ndimage.zoom(layer[top : top + crop, top : top + crop], zoom, order=1)
        trim = (zoomed.shape[0] - side) // 2
        layer = zoomed[trim : trim + side, trim : trim + side]
        layer[layer < threshold] = 0
        layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8).astype(float)
        layer = (imagemagick_motion_blur(layer, radius, sigma, angle) / 255)[..., None]
        grey = img @ np.array([0.299, 0.587, 0.114])[:, None] if channels == 3 else img
        whitened = kept * img + (1 - kept) * np.maximum(img, grey * 1.5 + 0.5)
        reference.append(np.clip(whitened + layer + np.rot90(layer, k=2), 0, 1) * 255)
    assert_within_one(corrupt(x, "snow", severity, 5), stored(np.stack(reference)))


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("channels", [3, 1])
def test_motion_blur_is_imagemagicks_from_the_same_angle(severity, channels):
    radius, sigma = corruptions.MOTION_BLUR[severity - 1]
    x = images(n=2, channels=channels)
    angles = (torch.rand(len(x), generator=torch.Generator().manual_seed(9)) * 90 - 45).tolist()
    reference = [
        np.stack([imagemagick_motion_blur(channel, radius, sigma, angle) for channel in img], axis=-1)
        for img, angle in zip((x * 255).round().double().numpy(), angles)
    ]
    assert_within_one(corrupt(x, "motion_blur", severity, 9), stored(np.stack(reference)))


def reference_clipped_zoom(img: np.ndarray, zoom_factor: float) -> np.ndarray:
    """The generator's `clipped_zoom` of an (H, W, C) image."""
    h = img.shape[0]
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    img = ndimage.zoom(img[top : top + ch, top : top + ch], (zoom_factor, zoom_factor, 1), order=1)
    trim_top = (img.shape[0] - h) // 2
    return img[trim_top : trim_top + h, trim_top : trim_top + h]


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("channels", [3, 1])
def test_zoom_blur_averages_the_generators_zooms(severity, channels):
    factors = [np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.01),
               np.arange(1, 1.26, 0.01)][severity - 1]  # fmt: skip
    x = images(channels=channels)
    reference = []
    for img in x.permute(0, 2, 3, 1).numpy():
        out = np.zeros_like(img)
        for factor in factors:
            out += reference_clipped_zoom(img, factor)
        reference.append(np.clip((img + out) / (len(factors) + 1), 0, 1) * 255)
    assert_within_one(corrupt(x, "zoom_blur", severity, 0), stored(np.stack(reference)))


@pytest.mark.parametrize("severity", SEVERITIES)
def test_saturate_scales_the_hsv_saturation(severity):
    x = images()
    scale, shift = corruptions.SATURATE[severity - 1]
    hsv = rgb_to_hsv(x.permute(0, 2, 3, 1).double().numpy())
    hsv[..., 1] = np.clip(hsv[..., 1] * scale + shift, 0, 1)
    assert_within_one(corrupt(x, "saturate", severity, 0), stored(np.clip(hsv_to_rgb(hsv), 0, 1) * 255))
    grey = images(channels=1)
    assert torch.equal(corrupt(grey, "saturate", severity, 0), grey)  # no colour to saturate


def reference_disk(radius: float, alias_blur: float) -> np.ndarray:
    """The generator's `disk`, its cv2.GaussianBlur(ksize 3, σ) written out: OpenCV's 3-tap Gaussian
    exp(−(i−1)²/2σ²), normalised, along both axes, edges as BORDER_REFLECT_101 (scipy's 'mirror')."""
    grid = np.arange(-8, 9)
    x, y = np.meshgrid(grid, grid)
    disk = ((x**2 + y**2) <= radius**2).astype(float)
    disk /= disk.sum()
    taps = np.exp(-((np.arange(3) - 1) ** 2) / (2 * alias_blur**2))
    taps /= taps.sum()
    return ndimage.correlate1d(ndimage.correlate1d(disk, taps, axis=0, mode="mirror"), taps, axis=1, mode="mirror")


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("channels,side", [(3, 32), (1, 8)])
def test_defocus_blur_is_opencvs_filter2d_with_the_generators_disk(severity, channels, side):
    kernel = reference_disk(*corruptions.DEFOCUS_BLUR[severity - 1])
    x = images(channels=channels, side=side)
    hwc = x.permute(0, 2, 3, 1).double().numpy()  # filter2D: correlation, edges BORDER_REFLECT_101
    reference = [np.stack([ndimage.correlate(img[..., c], kernel, mode="mirror") for c in range(channels)], -1)
                 for img in hwc]  # fmt: skip
    assert_within_one(corrupt(x, "defocus_blur", severity, 0), stored(np.clip(np.stack(reference), 0, 1) * 255))


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("channels,side", [(3, 32), (1, 8)])
def test_pixelate_is_pils_box_resize_down_and_back(severity, channels, side):
    x = images(channels=channels, side=side)
    shrunk = int(side * corruptions.PIXELATE[severity - 1])
    reference = []
    for img in as_uint8(x):
        image = Image.fromarray(img.squeeze(-1) if channels == 1 else img)
        image = image.resize((shrunk, shrunk), Image.BOX).resize((side, side), Image.BOX)
        reference.append(np.asarray(image).reshape(img.shape))
    assert np.array_equal(as_uint8(corrupt(x, "pixelate", severity, 0)), np.stack(reference))  # Pillow's own bytes


# the noises, as the generator writes them with numpy's random draws
NUMPY_NOISE = {
    "gaussian_noise": lambda x, c, rng: np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1),
    "shot_noise": lambda x, c, rng: np.clip(rng.poisson(x * c) / c, 0, 1),
    "speckle_noise": lambda x, c, rng: np.clip(x + x * rng.normal(size=x.shape, scale=c), 0, 1),
    "impulse_noise": lambda x, c, rng: np.where(rng.random(x.shape) < c, (rng.random(x.shape) < 0.5).astype(float), x),
}
NOISE_LEVELS = {
    "gaussian_noise": corruptions.GAUSSIAN_NOISE,
    "shot_noise": corruptions.SHOT_NOISE,
    "speckle_noise": corruptions.SPECKLE_NOISE,
    "impulse_noise": corruptions.IMPULSE_NOISE,
}


@pytest.mark.parametrize("severity", [1, 3, 5])
@pytest.mark.parametrize("noise", sorted(NUMPY_NOISE))
def test_noises_are_distributed_as_numpys(noise, severity):
    """On flat images at three levels, the stored values of ours and numpy's are one distribution (KS test, and
    Welch's test on their means, which sees a shift KS misses), and another severity's are not (the test can
    tell them apart)."""
    c = NOISE_LEVELS[noise][severity - 1]
    rng = np.random.default_rng(severity)
    for level in (0.1, 0.5, 0.9):
        x = torch.full((16, 3, 32, 32), level)
        ours = as_uint8(corrupt(x, noise, severity, severity)).ravel()
        theirs = stored(NUMPY_NOISE[noise](x.numpy().transpose(0, 2, 3, 1), c, rng) * 255).ravel()
        assert stats.ks_2samp(ours, theirs).pvalue > 1e-3, (level, ours.mean(), theirs.mean())
        assert stats.ttest_ind(ours, theirs, equal_var=False).pvalue > 1e-3, (level, ours.mean(), theirs.mean())
        other = NOISE_LEVELS[noise][4 if severity <= 3 else 0]
        elsewhere = stored(NUMPY_NOISE[noise](x.numpy().transpose(0, 2, 3, 1), other, rng) * 255).ravel()
        assert stats.ks_2samp(ours, elsewhere).pvalue < 1e-3


@pytest.mark.parametrize("corruption", sorted(corruptions.CORRUPTIONS))
def test_the_same_seed_gives_the_same_images_and_values_stay_8_bit(corruption):
    x = images(n=4)
    first, again = corrupt(x, corruption, 3, 11), corrupt(x, corruption, 3, 11)
    assert torch.equal(first, again) and first.shape == x.shape
    assert torch.equal((first * 255).round() / 255, first) and first.min() >= 0 and first.max() <= 1
    assert not torch.equal(first, x)


# ---- names, and where the corrupted images come from --------------------------------------------------------


def test_every_corruption_name_is_made_and_paper9_reports_the_mean_and_its_nine():
    from trainables.vocabulary import CORRUPTIONS, parse_evaluation, reported_metrics

    assert set(CORRUPTIONS) == set(corruptions.CORRUPTIONS) and len(PAPER_CORRUPTIONS) == 9
    fog = parse_evaluation("corrupt_fog_3")
    assert (fog.name, fog.metric, fog.metrics) == ("corrupt_fog_3", "corruption_acc/fog_3", ["corruption_acc/fog_3"])
    metrics = reported_metrics(["corrupt_paper9_2"], ["corrupt_paper9_2", "pgd_linf_0.1"])
    nine = [f"corruption_acc/{c}_2" for c in PAPER_CORRUPTIONS]
    assert metrics[6:16] == ["corruption_acc/paper9_2", *nine]  # per epoch, on the validation images
    assert {"test/corruption_acc/paper9_2", *(f"test/{m}" for m in nine), "test/robust_acc/pgd_linf_0.1"} <= set(
        metrics
    )
    for bad in ("corrupt_fog_6", "corrupt_fog_0", "corrupt_glass_blur_3", "corrupt_fog", "corrupt_paper10_3"):
        with pytest.raises(ValueError, match="unknown corruption"):
            parse_evaluation(bad)


def corruption_run(tmp_path, **fields):
    from tests.test_data import write_cifar
    from trainables.config import TrainConfig
    from trainables.run import Run

    write_cifar(
        tmp_path / "data", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", 10
    )
    given = {"model": "mlp", "epochs": 1, "batch_size": 2, "val_split": 0, "eval_attacks": ("corrupt_paper9_3",)}
    config = TrainConfig(dataset="cifar10", data_dir=str(tmp_path / "data"), **(given | fields))
    return Run(config)


def write_cifar_c(folder, run, corruptions_given=None, severity_images=None):
    """A CIFAR-10-C folder for `run`'s test set, in the published layout: black images, except severity 3's
    block, which holds `severity_images` (N, H, W, C uint8)."""
    folder.mkdir(parents=True, exist_ok=True)
    test_y = run.data.test_y.numpy()
    np.save(folder / "labels.npy", np.tile(test_y.astype(np.uint8), 5))
    n = len(test_y)
    for name in corruptions_given or PAPER_CORRUPTIONS:
        blocks = np.zeros((5 * n, 32, 32, 3), dtype=np.uint8)
        if severity_images is not None:
            blocks[2 * n : 3 * n] = severity_images
        np.save(folder / f"{name}.npy", blocks)


def test_test_corruptions_come_from_the_published_files_and_validation_ones_are_made_the_same_for_every_run(tmp_path):
    from trainables.evaluate import clean_accuracy

    run = corruption_run(tmp_path)
    test_pixels = (run.data.test_x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    flipped = test_pixels[:, :, ::-1].copy()  # severity 3's block: the test images mirrored
    write_cifar_c(tmp_path / "CIFAR-10-C", run, severity_images=flipped)
    from_files = corruption_run(tmp_path / "again", corruption_dir=str(tmp_path / "CIFAR-10-C"))
    x, y = from_files.corrupted(parse_corruption("corrupt_fog_3"), 1000, on_test=True)
    assert torch.equal(x, torch.from_numpy(flipped).permute(0, 3, 1, 2).float() / 255)
    metrics = from_files.test()
    expected = clean_accuracy(from_files.model, x, y)["clean_acc"]
    assert metrics["test/corruption_acc/fog_3"] == expected and metrics["test/corruption_acc/paper9_3"] == expected
    # without the files, test corruptions are made on the fly; validation ones always are, from a seed of their
    # own: the same for another seed of the trial
    made, _ = run.corrupted(parse_corruption("corrupt_fog_3"), 1000, on_test=True)
    assert not torch.equal(made, x)
    seed_1 = corruption_run(tmp_path / "seed", seed=1, val_split=0.5)
    seed_2 = corruption_run(tmp_path / "seed2", seed=2, val_split=0.5)
    for corruption in ("corrupt_snow_3", "corrupt_shot_noise_5"):
        first, _ = seed_1.corrupted(parse_corruption(corruption), 1000, on_test=False)
        assert torch.equal(first, seed_2.corrupted(parse_corruption(corruption), 1000, on_test=False)[0])
        assert not torch.equal(
            first, corrupt(seed_1.data.selection[0], corruption.split("_", 1)[1].rsplit("_", 1)[0], 3, 0)
        )


@pytest.mark.parametrize(
    "damage,names",
    [
        (lambda folder: (folder / "snow.npy").unlink(), "snow.npy: no such file"),
        (lambda folder: np.save(folder / "fog.npy", np.zeros((15, 32, 32), np.uint8)), "fog.npy: uint8 (15, 32, 32)"),
        (lambda folder: np.save(folder / "fog.npy", np.zeros((15, 32, 32, 3), np.float32)), "fog.npy: float32"),
        (lambda folder: (folder / "frost.npy").write_text("not an array"), "frost.npy: not a readable .npy"),
        (lambda folder: np.save(folder / "labels.npy", (np.arange(15) + 1) % 10), "labels.npy: severity 1's labels"),
        (lambda folder: np.save(folder / "labels.npy", np.zeros(7, np.uint8)), "labels.npy: 7 labels"),
        (lambda folder: [p.unlink() for p in folder.iterdir()] and folder.rmdir(), "no such corruption folder"),
    ],
)
def test_a_bad_corruption_folder_is_one_line_naming_the_file_and_nothing_trains(tmp_path, capsys, damage, names):
    from sweeps.cli import main

    run = corruption_run(tmp_path)
    folder = tmp_path / "CIFAR-10-C"
    write_cifar_c(folder, run)
    damage(folder)
    checkpoint = tmp_path / "ck.pt"
    argv = ["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--model", "mlp", "--epochs", "1"]
    argv += ["--eval-attacks", "corrupt_paper9_3", "--corruption-dir", str(folder), "--save", str(checkpoint)]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and names in err[0], err
    assert not checkpoint.exists()


def test_a_corruption_evaluated_every_epoch_is_read_from_the_files_too_and_frost_refuses_large_images(tmp_path):
    from trainables.corruptions import CorruptionError, check_corruptions_fit

    run = corruption_run(tmp_path)
    write_cifar_c(tmp_path / "CIFAR-10-C", run, corruptions_given=["fog"])
    epoch_only = corruption_run(
        tmp_path / "again",
        eval_attacks=(),
        epoch_attacks=("corrupt_fog_3",),
        corruption_dir=str(tmp_path / "CIFAR-10-C"),
    )
    assert list(epoch_only.corruption_files.arrays) == ["fog"]
    check_corruptions_fit({"frost", "fog"}, 32)
    check_corruptions_fit({"fog"}, 64)
    with pytest.raises(CorruptionError, match="these images are 64 pixels"):
        check_corruptions_fit({"frost"}, 64)


def test_a_sweep_refuses_a_bad_corruption_folder_in_one_line_before_it_starts(tmp_path, capsys):
    """The driver checks the files it can without the test set (it imports no torch): the trials never start."""
    import yaml

    from sweeps.cli import main
    from tests.conftest import tiny_spec

    run = corruption_run(tmp_path)
    folder = tmp_path / "CIFAR-10-C"
    write_cifar_c(folder, run)
    (folder / "snow.npy").unlink()
    spec = tiny_spec(
        dataset="cifar10",
        data_dir=str(tmp_path / "data"),
        corruption_dir=str(folder),
        final_attacks=["corrupt_paper9_3"],
    )
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    code = main(["sweep", str(tmp_path / "spec.yaml"), "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"{folder / 'snow.npy'}: no such file" in err[0], err
    assert not (tmp_path / "results").exists()
