"""Snow's motion blur (trainables.corruptions.motion_blur) against ImageMagick's own, on snow layers as the
CIFAR-10-C generator makes them: how many 8-bit levels apart the two are.

    uv run python bench/snow_motion_blur.py        # needs ImageMagick's `convert` (Debian: apt-get install imagemagick)

The generator blurs its snow layer with ImageMagick through Wand (`MagickMotionBlurImage(radius, sigma, angle)`);
`convert -motion-blur RADIUSxSIGMA+ANGLE` calls the same MotionBlurImage. Each layer: N(c0, c1) at 32×32, zoomed,
thresholded and stored in 8 bits as the generator does at each severity, blurred at an angle drawn from
U(−135°, −45°)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trainables.corruptions import SNOW, clipped_zoom, motion_blur


def imagemagick(layer: np.ndarray, radius: float, sigma: float, angle: float, folder: Path) -> np.ndarray:
    source, blurred = folder / "layer.png", folder / "blurred.png"
    Image.fromarray(layer, mode="L").save(source)
    subprocess.run(["convert", str(source), "-motion-blur", f"{radius}x{sigma}+{angle}", str(blurred)], check=True)
    return np.asarray(Image.open(blurred).convert("L"), dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=50, help="snow layers per severity")
    args = parser.parse_args()
    if not shutil.which("convert"):
        raise SystemExit("ImageMagick's `convert` is not installed (Debian: apt-get install imagemagick)")
    version = subprocess.run(["convert", "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    print(f"{version}\n{args.layers} snow layers per severity, 32x32; |samat - ImageMagick| in 8-bit levels")
    g = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        for severity, (mean, std, zoom, threshold, radius, sigma, _) in enumerate(SNOW, 1):
            layers = torch.randn((args.layers, 1, 32, 32), generator=g) * std + mean
            layers = clipped_zoom(layers, zoom)
            layers = (torch.where(layers < threshold, 0, layers).clamp(0, 1) * 255).floor()
            angles = torch.rand(args.layers, generator=g) * 90 - 135
            ours = motion_blur(layers, radius, sigma, angles)[:, 0].long().numpy()
            theirs = np.stack(
                [
                    imagemagick(layer.numpy().astype(np.uint8), radius, sigma, float(angle), Path(folder))
                    for layer, angle in zip(layers[:, 0], angles)
                ]
            )
            diff = np.abs(ours - theirs)
            equal, within = np.mean(diff == 0), np.mean(diff <= 1)
            print(f"severity {severity}: max {diff.max()}, mean {diff.mean():.3f}, ", end="")
            print(f"pixels equal {equal:.1%}, within 1 level {within:.1%}")


if __name__ == "__main__":
    main()
