"""Tests for the digits and image-folder data modules."""

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from sw.data import ImageSplit, iterate_batches
from sw.data.digits import DIGITS_MEAN, DIGITS_STD, load_digits_split, preprocess_digits
from sw.data.image_folder import (IMAGENET_MEAN, IMAGENET_STD, load_image_folder,
                                  load_image_folder_split)


@pytest.fixture(scope="module")
def split():
    return load_digits_split()


def test_shapes_and_dtypes(split):
    assert isinstance(split, ImageSplit)
    assert split.train_images.shape == (1437, 3, 32, 32)
    assert split.val_images.shape == (360, 3, 32, 32)
    assert split.train_images.dtype == torch.float32
    assert split.train_labels.dtype == torch.int64
    assert split.num_classes == 10
    assert split.class_names == tuple("0123456789")
    assert split.image_size == 32
    assert torch.equal(split.train_images[:, 0], split.train_images[:, 2])


def test_split_is_deterministic_and_depends_on_seed(split):
    again = load_digits_split()
    assert torch.equal(split.train_images, again.train_images)
    assert torch.equal(split.val_labels, again.val_labels)
    other = load_digits_split(seed=1)
    assert not torch.equal(split.val_labels, other.val_labels)


def test_split_is_stratified_and_disjoint(split):
    total = np.bincount(load_digits().target, minlength=10)
    val = np.bincount(split.val_labels.numpy(), minlength=10)
    assert np.all(np.abs(val - 0.2 * total) <= 1)
    train_rows = {tuple(row.flatten().tolist()) for row in split.train_images[:, 0, ::4, ::4]}
    assert len(split.train_labels) + len(split.val_labels) == 1797
    # Some digits repeat pixel for pixel; most validation images must not appear in training.
    overlap = sum(tuple(row.flatten().tolist()) in train_rows
                  for row in split.val_images[:, 0, ::4, ::4])
    assert overlap < 10


def test_normalisation_constants():
    raw = load_digits().images
    images = preprocess_digits(raw, 32)
    assert DIGITS_MEAN == pytest.approx(4.8842)
    assert DIGITS_STD == pytest.approx(5.1781)
    assert float(images.mean()) == pytest.approx(0.0, abs=1e-3)
    assert float(images.std()) == pytest.approx(1.0, abs=1e-3)
    blank = preprocess_digits(np.zeros((1, 8, 8)), 16)
    assert torch.allclose(blank, torch.full((1, 3, 16, 16), -DIGITS_MEAN / DIGITS_STD))


def test_preprocess_rejects_bad_input():
    with pytest.raises(ValueError, match=r"^Image size must be a positive integer, not 0$"):
        preprocess_digits(np.zeros((1, 8, 8)), 0)
    with pytest.raises(ValueError, match=r"^Digits must have shape \(N, 8, 8\), not \(1, 4, 4\)$"):
        preprocess_digits(np.zeros((1, 4, 4)), 32)
    with pytest.raises(ValueError, match="Validation fraction must be between 0 and 1, not 1.0"):
        load_digits_split(val_fraction=1.0)


def test_iterate_batches_covers_every_sample_once():
    images = torch.arange(10.0)[:, None]
    labels = torch.arange(10)
    batches = list(iterate_batches(images, labels, 4, generator=torch.Generator().manual_seed(0)))
    assert [len(batch_labels) for _, batch_labels in batches] == [4, 4, 2]
    seen = torch.cat([batch_labels for _, batch_labels in batches])
    assert sorted(seen.tolist()) == list(range(10))
    assert all(torch.equal(batch_images[:, 0].long(), batch_labels)
               for batch_images, batch_labels in batches)
    with pytest.raises(ValueError, match=r"^Batch size must be a positive integer, not 0$"):
        next(iterate_batches(images, labels, 0))


def _write_folder(root, counts, size=(10, 6)):
    for class_index, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for image_index in range(count):
            value = 40 * class_index + image_index
            Image.new("RGB", size, (value, 255 - value, 128)).save(
                root / name / f"{image_index}.png")
    return root


def test_image_folder_loads_classes_in_sorted_order(tmp_path):
    root = _write_folder(tmp_path / "pets", {"dog": 2, "cat": 3})
    (root / "cat" / "notes.txt").write_text("not an image")
    images, labels, class_names = load_image_folder(root, image_size=8)
    assert class_names == ("cat", "dog")
    assert images.shape == (5, 3, 8, 8) and images.dtype == torch.float32
    assert labels.tolist() == [0, 0, 0, 1, 1]
    # Solid colours survive resizing: the first cat image (written second) is (40, 215, 128).
    expected = ((torch.tensor([40, 215, 128]) / 255.0 - torch.tensor(IMAGENET_MEAN))
                / torch.tensor(IMAGENET_STD))
    assert torch.allclose(images[0, :, 0, 0], expected, atol=1e-5)


def test_image_folder_split(tmp_path):
    root = _write_folder(tmp_path / "pets", {"cat": 5, "dog": 5})
    split = load_image_folder_split(root, image_size=8, val_fraction=0.4, seed=0)
    assert split.class_names == ("cat", "dog")
    assert split.train_images.shape == (6, 3, 8, 8)
    assert sorted(split.val_labels.tolist()) == [0, 0, 1, 1]
    again = load_image_folder_split(root, image_size=8, val_fraction=0.4, seed=0)
    assert torch.equal(split.val_images, again.val_images)


def test_image_folder_errors(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match=f"^{missing}: image folder not found$"):
        load_image_folder(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "stray.png").write_bytes(b"")
    with pytest.raises(ValueError, match=f"^{empty}: no class folders found \\(expected "):
        load_image_folder(empty)
    imageless = tmp_path / "imageless"
    (imageless / "cat").mkdir(parents=True)
    (imageless / "cat" / "readme.txt").write_text("no pictures here")
    with pytest.raises(ValueError, match=f"^{imageless}: no images found in class folders$"):
        load_image_folder(imageless)


def test_train_images_are_the_split_s_first():
    from sw.data.digits import load_digits_train_images
    split = load_digits_split(16, 0.2, 0)
    assert torch.equal(load_digits_train_images(5, 16, 0.2, 0), split.train_images[:5])
