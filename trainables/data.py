"""Data sets as tensors resident on the training device, pixels in [0, 1], and batched on-device augmentation.

No DataLoader: a whole data set (digits 0.5 MB, CIFAR 600 MB as float32) lives on the device, batches are
index slices of it, and crop/flip run as a few tensor ops per batch (the airbench way)."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from trainables.cifar_c import C_SEVERITIES, open_corruption_folder
from trainables.usage import UsageError
from trainables.vocabulary import DATASETS

SPLIT_SEED = 0  # the validation split's: the same images for every trial, seed and resumed run


class DataError(UsageError):
    """A data set that cannot be found or read; the message says where it was looked for and how to get it."""


@dataclass
class ImageData:
    name: str
    train_x: torch.Tensor  # (N, C, H, W) float in [0, 1]
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int  # random-crop padding in pixels (reflect); 0 disables the crop
    flip: bool  # random horizontal flip (wrong for digits, right for natural images)
    val_x: torch.Tensor | None = None  # held out of the training images by `hold_out`
    val_y: torch.Tensor | None = None

    @property
    def channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_x.shape[-1]

    def to(self, device: torch.device) -> ImageData:
        for field in ("train_x", "train_y", "test_x", "test_y", "val_x", "val_y"):
            if getattr(self, field) is not None:
                setattr(self, field, getattr(self, field).to(device, non_blocking=True))
        return self

    def hold_out(self, fraction: float, seed: int = SPLIT_SEED) -> ImageData:
        """A copy whose validation set is a seeded, class-stratified `fraction` of the training images (each
        class gives round(fraction x its count)), removed from training; 0 holds out nothing. The validation
        images come in a seeded random order, so that any prefix of them (the first `eval_n`, `epoch_eval_n`) is
        a seeded sample of the whole split: training images may load class by class (Tiny ImageNet's do)."""
        if not fraction:
            return dataclasses.replace(self, val_x=None, val_y=None)
        generator = torch.Generator().manual_seed(seed)
        labels = self.train_y.cpu()
        picked = []
        for c in range(self.num_classes):
            members = (labels == c).nonzero().flatten()
            picked.append(members[torch.randperm(len(members), generator=generator)[: round(fraction * len(members))]])
        val = torch.cat(picked)
        val = val[torch.randperm(len(val), generator=generator)].to(self.train_y.device)
        train = torch.ones(len(labels), dtype=torch.bool, device=self.train_y.device)
        train[val] = False
        return dataclasses.replace(
            self,
            train_x=self.train_x[train],
            train_y=self.train_y[train],
            val_x=self.train_x[val],
            val_y=self.train_y[val],
        )

    def train_sample(self, n: int, seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` training images (and labels) drawn at random by a seeded generator: the same for every trial, seed
        and resumed run, and from every class even where the images load class by class."""
        drawn = torch.randperm(len(self.train_y), generator=torch.Generator().manual_seed(seed))[:n]
        drawn = drawn.to(self.train_y.device)
        return self.train_x[drawn], self.train_y[drawn]

    def test_prefix_coverage(self, n: int) -> tuple[int, int, float]:
        """How many images the first `n` test images are, how many classes they hold, and the chance that as many
        images drawn at random from the test set would hold no more classes. Each class's presence in the draw is
        taken as independent of the others' (a Poisson binomial count): the true count varies less, so the chance
        is if anything too high, and a shuffled test set is not taken for an ordered one."""
        labels = self.test_y.cpu()
        n = min(n, len(labels))
        covered = len(labels[:n].unique())
        share = torch.bincount(labels, minlength=self.num_classes).double() / len(labels)
        count = torch.ones(1, dtype=torch.float64)  # distribution of the number of classes drawn, over classes
        for present in (1 - (1 - share) ** n).tolist():
            count = F.pad(count * (1 - present), (0, 1)) + F.pad(count * present, (1, 0))
        return n, covered, count[: covered + 1].sum().item()

    @property
    def selection(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The images trials are evaluated and selected on every epoch: validation if held out, else test."""
        return (self.val_x, self.val_y) if self.val_x is not None else (self.test_x, self.test_y)


def augment(x: torch.Tensor, padding: int, flip: bool) -> torch.Tensor:
    """Random crop (reflect padding) and horizontal flip for a whole batch, on the batch's device."""
    n, _, h, w = x.shape
    if padding:
        padded = F.pad(x, (padding,) * 4, mode="reflect")
        dy = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device)
        dx = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device)
        rows = (dy + torch.arange(h, device=x.device).view(1, h, 1)).expand(n, h, w)
        cols = (dx + torch.arange(w, device=x.device).view(1, 1, w)).expand(n, h, w)
        batch = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
        x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # one gather for all crops
    if flip:
        x = torch.where(torch.rand(n, 1, 1, 1, device=x.device) < 0.5, x.flip(3), x)
    return x.contiguous()


def read_bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (images 1797x8x8 in 0..16, labels). Read straight from the CSV it ships:
    importing sklearn.datasets costs ~3 s (scipy), paid again by every Ray trial process."""
    sklearn = importlib.util.find_spec("sklearn")  # locates the package without importing it
    csv = Path(sklearn.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if sklearn else None
    if csv is None or not csv.is_file():
        from sklearn.datasets import load_digits  # noqa: PLC0415 - the layout changed: let scikit-learn read it

        digits = load_digits()
        return digits.images, digits.target
    table = np.loadtxt(csv, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


def load_digits_data() -> ImageData:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes), split 80/20 with a fixed permutation."""
    images, labels = read_bundled_digits()
    x = torch.tensor(images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(labels, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    n_test = len(y) // 5
    train_x = x[n_test:]
    return ImageData(
        "digits",
        train_x,
        y[n_test:],
        x[:n_test],
        y[:n_test],
        10,
        (train_x.mean().item(),),
        (train_x.std().item(),),
        crop_padding=1,
        flip=False,
    )


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR's python batches are pickles; allow only what they hold (numpy arrays, lists, dicts, bytes)."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, list[int]]:
    try:
        entry = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
        data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        return data, list(entry[label_key])
    except (OSError, KeyError, ValueError, pickle.UnpicklingError, EOFError) as e:
        raise DataError(f"cannot read CIFAR batch {path}: {e}") from e


CIFAR = {  # name: (folder, train files, test files, label key, classes, mean, std)
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "labels",
        10,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
    ),
    "cifar100": (
        "cifar-100-python",
        ["train"],
        ["test"],
        "fine_labels",
        100,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
    ),
}


def load_cifar(name: str, data_dir: Path, download: bool = False) -> ImageData:
    folder, train_files, test_files, label_key, classes, mean, std = CIFAR[name]
    root = data_dir / folder
    if download and not root.is_dir():
        from torchvision import datasets  # noqa: PLC0415 - ~3 s to import; downloads and checks the archive's md5

        try:
            (datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100)(str(data_dir), download=True)
        except Exception as e:  # noqa: BLE001 - any network failure becomes one clear line
            raise DataError(f"downloading {name} into {data_dir} failed: {e}") from e
    missing = [f for f in train_files + test_files if not (root / f).is_file()]
    if missing:
        raise DataError(
            f"{name} not found: looked for {root}/{{{','.join(missing)}}}; pass --download where the "
            f"network allows, or --data-dir DIR where DIR holds {folder}/ (the python version from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html)"
        )

    def read(files):
        parts = [_read_cifar_batch(root / f, label_key) for f in files]
        x = torch.from_numpy(np.concatenate([p[0] for p in parts])).float() / 255.0
        y = torch.tensor([label for p in parts for label in p[1]], dtype=torch.int64)
        return x, y

    (train_x, train_y), (test_x, test_y) = read(train_files), read(test_files)
    return ImageData(name, train_x, train_y, test_x, test_y, classes, mean, std, crop_padding=4, flip=True)


def load_tinyimagenet(data_dir: Path, image_size: int | None = None) -> ImageData:
    """The standard `tiny-imagenet-200` folder: wnids.txt, train/<wnid>/images/*.JPEG, and val/images with
    val/val_annotations.txt (the labelled validation set serves as the test set). `image_size` resizes (the
    paper used 32)."""
    root = data_dir / "tiny-imagenet-200"
    annotations = root / "val" / "val_annotations.txt"
    if not (root / "wnids.txt").is_file() or not annotations.is_file():
        raise DataError(
            f"tinyimagenet not found: looked for {root}/wnids.txt and {annotations}; download and unzip "
            f"http://cs231n.stanford.edu/tiny-imagenet-200.zip into the folder given by --data-dir"
        )
    wnids = (root / "wnids.txt").read_text().split()
    label_of = {wnid: i for i, wnid in enumerate(wnids)}

    def read(paths: list[Path]) -> torch.Tensor:
        try:
            pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])  # greyscale ones too
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"cannot read a tinyimagenet image under {root}: {e}") from e
        images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
        if image_size and image_size != images.shape[-1]:
            images = F.interpolate(images, size=image_size, mode="bilinear", antialias=True, align_corners=False)
        return images.clamp_(0, 1)

    train_paths, train_labels = [], []
    for wnid in wnids:
        for p in sorted((root / "train" / wnid / "images").glob("*.JPEG")):
            train_paths.append(p)
            train_labels.append(label_of[wnid])
    test_paths, test_labels = [], []
    for line in annotations.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[1] in label_of:
            test_paths.append(root / "val" / "images" / fields[0])
            test_labels.append(label_of[fields[1]])
    if not train_paths or not test_paths:
        raise DataError(f"tinyimagenet at {root} has no images ({len(train_paths)} train, {len(test_paths)} val)")
    return ImageData(
        "tinyimagenet",
        read(train_paths),
        torch.tensor(train_labels),
        read(test_paths),
        torch.tensor(test_labels),
        len(wnids),
        (0.4802, 0.4481, 0.3975),
        (0.2302, 0.2265, 0.2262),
        crop_padding=4,
        flip=True,
    )


def load_dataset(
    name: str, data_dir: str | Path = "data", download: bool = False, image_size: int | None = None
) -> ImageData:
    data_dir = Path(data_dir).expanduser().resolve()
    if name == "digits":
        return load_digits_data()
    if name in CIFAR:
        return load_cifar(name, data_dir, download)
    if name == "tinyimagenet":
        return load_tinyimagenet(data_dir, image_size)
    raise DataError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


# ---- CIFAR-10-C and CIFAR-100-C as published: trainables.cifar_c checks the folder, here it meets the test set ----


@dataclass
class CorruptionFiles:
    """A CIFAR-10-C or CIFAR-100-C folder, read memory-mapped: per corruption an uint8 array of five blocks of
    (H, W, C) images, one block per severity, and `labels.npy`, each block's labels those of the test images."""

    arrays: dict[str, np.ndarray]
    labels: np.ndarray

    @property
    def block(self) -> int:
        return len(self.labels) // C_SEVERITIES

    def images(self, corruption: str, severity: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `n` images of a severity's block (as many as it holds), in [0, 1] as (N, C, H, W)."""
        start = (severity - 1) * self.block
        stop = start + min(n, self.block)
        x = torch.from_numpy(np.ascontiguousarray(self.arrays[corruption][start:stop]))
        return x.permute(0, 3, 1, 2).float() / 255, torch.from_numpy(self.labels[start:stop].astype(np.int64))


def load_corruption_files(
    folder: str | Path, corruptions: list[str], test_y: torch.Tensor, image_shape: tuple[int, int, int]
) -> CorruptionFiles:
    """Open the files of `corruptions` in `folder` (checked by trainables.cifar_c against the test images' shape
    (C, H, W)) and check them against the test set they corrupt: each block's labels are the test set's first ones.
    Labels that disagree: one line naming the file, before anything trains."""
    arrays, labels = open_corruption_folder(folder, corruptions, tuple(image_shape))
    labels_path = Path(folder) / "labels.npy"
    block = len(labels) // C_SEVERITIES
    if block > len(test_y):
        raise DataError(f"{labels_path}: blocks of {block} labels, more than the {len(test_y)} test images")
    expected = test_y[:block].cpu().numpy()
    for severity in range(1, C_SEVERITIES + 1):
        given = labels[(severity - 1) * block : severity * block]
        if not np.array_equal(given, expected):
            first = int(np.argmax(given != expected))
            raise DataError(
                f"{labels_path}: severity {severity}'s labels disagree with the test set's at image {first} "
                f"({given[first]} against {expected[first]}): a corruption folder of another data set?"
            )
    return CorruptionFiles(arrays, labels)
