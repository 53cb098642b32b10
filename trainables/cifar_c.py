"""CIFAR-10-C and CIFAR-100-C folders as Hendrycks & Dietterich publish them (zenodo records 2535967 and 3555552):
`<corruption>.npy`, uint8, N×H×W×C in five blocks of equal length, one per severity (10,000 rows each in the
published files: the test images in order), and `labels.npy`, read memory-mapped.

numpy alone, no torch: a sweep's driver checks a folder before it starts anything (sweeps.commands), and the
training core opens it the same way before it trains (trainables.data.load_corruption_files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainables.usage import UsageError

C_SEVERITIES = 5


class CorruptionFolderError(UsageError):
    """A corruption folder that is missing, or a file in it that is missing or not as published."""


def read_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise CorruptionFolderError(f"{path}: no such file")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise CorruptionFolderError(f"{path}: not a readable .npy array ({str(e).split('.')[0]})") from None


def open_corruption_folder(
    folder: str | Path, corruptions: list[str], image_shape: tuple[int, int, int] | None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The arrays of `corruptions` and the labels, memory-mapped, once every file is as published: labels.npy one
    dimension in five equal blocks, each <corruption>.npy as many uint8 images (of `image_shape` (C, H, W) where
    given). Else one line naming the file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CorruptionFolderError(
            f"{folder}: no such corruption folder (it should hold <corruption>.npy and labels.npy)"
        )
    labels_path = folder / "labels.npy"
    labels = read_npy(labels_path)
    if labels.ndim != 1 or not len(labels) or len(labels) % C_SEVERITIES:
        raise CorruptionFolderError(
            f"{labels_path}: {labels.shape[0] if labels.ndim else 0} labels of shape {labels.shape}; expected "
            f"{C_SEVERITIES} equal blocks of the test images' labels, one per severity"
        )
    arrays = {}
    for corruption in corruptions:
        path = folder / f"{corruption}.npy"
        array = read_npy(path)
        images = (len(labels), *(image_shape[1:] + image_shape[:1] if image_shape else array.shape[1:]))
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape != images:
            raise CorruptionFolderError(
                f"{path}: {array.dtype} {tuple(array.shape)}; expected uint8 {images} (labels.npy's {len(labels)} "
                f"images{' of the test images' + chr(39) + ' H×W×C' if image_shape else ''})"
            )
        arrays[corruption] = array
    return arrays, labels
