"""The loaders read tiny files written here in the real on-disk formats; augmentation stays on the device."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from trainables.data import DataError, ImageData, augment, load_dataset


def write_cifar(root, folder, train_files, test_files, label_key, classes):
    rng = np.random.default_rng(0)
    (root / folder).mkdir(parents=True)
    expected = {}
    for name, n in [(f, 2) for f in train_files] + [(f, 3) for f in test_files]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)  # row = 1024 red, 1024 green, 1024 blue
        labels = [int(v) for v in rng.integers(0, classes, n)]
        with open(root / folder / name, "wb") as f:
            pickle.dump({"data": data, label_key: labels, "batch_label": name}, f)
        expected[name] = (data, labels)
    return expected


@pytest.mark.parametrize(
    "name,folder,train,test,key,classes",
    [
        ("cifar10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", 10),
        ("cifar100", "cifar-100-python", ["train"], ["test"], "fine_labels", 100),
    ],
)
def test_cifar_loader_reads_python_batches(tmp_path, name, folder, train, test, key, classes):
    expected = write_cifar(tmp_path, folder, train, test, key, classes)
    data = load_dataset(name, tmp_path)
    assert data.train_x.shape == (2 * len(train), 3, 32, 32) and data.test_x.shape == (3, 3, 32, 32)
    assert data.num_classes == classes and data.flip and data.crop_padding == 4
    first, labels = expected[train[0]]
    torch.testing.assert_close(data.train_x[0, 1, 0, 0], torch.tensor(first[0, 1024] / 255.0, dtype=torch.float32))
    torch.testing.assert_close(data.train_x[1, 2, 31, 31], torch.tensor(first[1, 3071] / 255.0, dtype=torch.float32))
    assert data.train_y[:2].tolist() == labels and data.test_y.tolist() == expected[test[0]][1]


def test_cifar_loader_refuses_code_in_a_batch_file(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    write_cifar(tmp_path, "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", 10)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": Payload()}))
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        load_dataset("cifar10", tmp_path)


def test_missing_cifar_says_where_and_how(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in str(e.value) and "--download" in str(e.value)


def write_tinyimagenet(root, wnids=("n01443537", "n01629819"), per_class=3, size=64):
    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    rng = np.random.default_rng(0)
    lines = []
    for c, wnid in enumerate(wnids):
        images = base / "train" / wnid / "images"
        images.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(images / f"{wnid}_{i}.JPEG")
        val_name = f"val_{c}.JPEG"
        Image.fromarray(np.full((size, size), 40 * c, dtype=np.uint8), mode="L").save(
            base / "val" / "images" / val_name
        )
        lines.append(f"{val_name}\t{wnid}\t0\t0\t{size - 1}\t{size - 1}")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def test_tinyimagenet_loader_reads_the_standard_folder(tmp_path):
    write_tinyimagenet(tmp_path)
    data = load_dataset("tinyimagenet", tmp_path)
    assert data.train_x.shape == (6, 3, 64, 64) and data.test_x.shape == (2, 3, 64, 64)
    assert data.train_y.tolist() == [0, 0, 0, 1, 1, 1] and data.test_y.tolist() == [0, 1]
    assert data.num_classes == 2
    # the greyscale validation image is read as RGB; JPEG keeps a flat grey level nearly exact
    assert abs(data.test_x[1].mean().item() - 40 / 255) < 2 / 255
    resized = load_dataset("tinyimagenet", tmp_path, image_size=32)
    assert resized.train_x.shape == (6, 3, 32, 32) and 0 <= resized.train_x.min() <= resized.train_x.max() <= 1


def test_missing_tinyimagenet_says_where(tmp_path):
    with pytest.raises(DataError, match="tiny-imagenet-200"):
        load_dataset("tinyimagenet", tmp_path)


def test_digits_split_is_fixed_and_in_unit_range(digits):
    again = load_dataset("digits")
    assert torch.equal(digits.test_y, again.test_y)
    assert digits.train_x.shape == (1438, 1, 8, 8) and digits.test_x.shape == (359, 1, 8, 8)
    assert digits.train_x.min() >= 0 and digits.train_x.max() <= 1 and not digits.flip


def test_augment_crops_and_flips_within_the_padded_image():
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    out = augment(x, padding=0, flip=True)
    for i in range(2):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(2))
    shifted = augment(x.repeat(64, 1, 1, 1), padding=1, flip=False)
    assert shifted.shape == (128, 3, 4, 4)
    padded = torch.nn.functional.pad(x.repeat(64, 1, 1, 1), (1, 1, 1, 1), mode="reflect")
    windows = {
        (dy, dx)
        for i in range(128)
        for dy in range(3)
        for dx in range(3)
        if torch.equal(shifted[i], padded[i, :, dy : dy + 4, dx : dx + 4])
    }
    assert len(windows) == 9  # every offset of the 3x3 window occurs


def test_bundled_digits_match_scikit_learn():
    from sklearn.datasets import load_digits

    from trainables.data import read_bundled_digits

    images, labels = read_bundled_digits()
    reference = load_digits()
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)


def test_validation_is_held_out_seeded_and_class_stratified(digits):
    split = digits.hold_out(0.2)
    assert len(split.train_y) + len(split.val_y) == len(digits.train_y) and split.test_y is digits.test_y
    for c in range(10):  # every class gives its share, rounded
        assert (split.val_y == c).sum() == round(0.2 * (digits.train_y == c).sum().item())
    # no image is in both: the held-out rows are exactly the ones training lost
    train_rows = {tuple(r) for r in split.train_x.flatten(1).tolist()}
    assert not any(tuple(r) in train_rows for r in split.val_x.flatten(1).tolist())
    again = digits.hold_out(0.2)
    assert torch.equal(again.val_x, split.val_x)  # the same images every time: a fixed seed
    assert not torch.equal(digits.hold_out(0.2, seed=1).val_x, split.val_x)
    assert digits.hold_out(0).val_x is None and torch.equal(digits.hold_out(0).selection[0], digits.test_x)
    assert torch.equal(split.selection[0], split.val_x)


def class_ordered_data(classes=200, per_class=100, test_per_class=20, shuffle_test=False) -> ImageData:
    """Images in class order, as Tiny ImageNet's training folders load (all of class 0, then all of class 1...),
    the test images too unless `shuffle_test`."""
    generator = torch.Generator().manual_seed(0)
    train_y = torch.arange(classes).repeat_interleave(per_class)
    test_y = torch.arange(classes).repeat_interleave(test_per_class)
    if shuffle_test:
        test_y = test_y[torch.randperm(len(test_y), generator=generator)]
    return ImageData(
        "class_ordered",
        torch.rand(len(train_y), 1, 8, 8, generator=generator),
        train_y,
        torch.rand(len(test_y), 1, 8, 8, generator=generator),
        test_y,
        classes,
        (0.5,),
        (0.25,),
        crop_padding=1,
        flip=False,
    )


def test_every_prefix_of_the_validation_images_samples_every_class():
    """Of 200 classes in class order, the first eval_n = 1000 and epoch_eval_n = 200 validation images are seeded
    samples of all of them (in class order they held 100 and 20), the same images every time."""
    data = class_ordered_data()
    split = data.hold_out(0.1)
    assert all((split.val_y == c).sum() == 10 for c in range(200))  # still class-stratified
    assert len(split.val_y[:1000].unique()) >= 190
    assert len(split.val_y[:200].unique()) >= 100
    assert torch.equal(data.hold_out(0.1).val_x, split.val_x)
