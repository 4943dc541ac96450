"""The 8x8 handwritten digits set that scikit-learn ships, upscaled and split deterministically."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sw.data import ImageSplit, iterate_batches

__all__ = ["DIGITS_MEAN", "DIGITS_STD", "DigitsSplit", "load_digits_split",
           "load_digits_train_images", "preprocess_digits", "iterate_batches"]

#: Mean and standard deviation of all 1,797 digits after bilinear upscaling from 8x8 (pixel values
#: 0..16) to 32x32. Fixed constants, not recomputed per split, so the same raw image always maps
#: to the same tensor whatever the split or image size (at other sizes the std is only roughly 1).
DIGITS_MEAN = 4.8842
DIGITS_STD = 5.1781

#: The digits loader returns the common split type.
DigitsSplit = ImageSplit

_CLASS_NAMES = tuple(str(digit) for digit in range(10))


def preprocess_digits(images: np.ndarray | torch.Tensor, image_size: int = 32) -> torch.Tensor:
    """Turn raw ``(N, 8, 8)`` digits (values 0..16) into normalised ``(N, 3, S, S)`` float32.

    Bilinear upscaling (``align_corners=False``), then ``(x - DIGITS_MEAN) / DIGITS_STD``, then the
    single channel is replicated to three so RGB vision models take it unchanged.

    Raises
    ------
    ValueError
        If ``image_size`` is not a positive integer or the images are not ``(N, 8, 8)``.
    """
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size <= 0:
        raise ValueError(f"Image size must be a positive integer, not {image_size!r}")
    raw = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if raw.ndim != 3 or raw.shape[1:] != (8, 8):
        raise ValueError(f"Digits must have shape (N, 8, 8), not {tuple(raw.shape)}")
    upscaled = F.interpolate(raw[:, None], size=(image_size, image_size), mode="bilinear",
                             align_corners=False)
    normalised = (upscaled - DIGITS_MEAN) / DIGITS_STD
    return normalised.expand(-1, 3, -1, -1).contiguous()


def _split_indices(targets, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and validation indices of the stratified split (scikit-learn)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"Validation fraction must be between 0 and 1, not {val_fraction!r}")
    train_index, val_index = train_test_split(
        np.arange(len(targets)), test_size=val_fraction, random_state=seed, stratify=targets)
    return np.sort(train_index), np.sort(val_index)


def load_digits_train_images(count: int, image_size: int = 32, val_fraction: float = 0.2,
                             seed: int = 0) -> torch.Tensor:
    """The first ``count`` images of :func:`load_digits_split`'s train set, preprocessing only
    those (large image sizes would otherwise upscale all 1,797 images).

    Raises
    ------
    ValueError
        As :func:`load_digits_split`.
    """
    digits = load_digits()
    train_index, _ = _split_indices(digits.target, val_fraction, seed)
    return preprocess_digits(digits.images[train_index[:count]], image_size)


def load_digits_split(image_size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> ImageSplit:
    """Load the digits, preprocess them and split them into train and validation sets.

    The split is stratified by class and depends only on ``val_fraction`` and ``seed``
    (scikit-learn ``train_test_split`` with ``random_state=seed``).

    Raises
    ------
    ValueError
        If ``val_fraction`` is not strictly between 0 and 1, or ``image_size`` is invalid.
    """
    digits = load_digits()
    train_index, val_index = _split_indices(digits.target, val_fraction, seed)
    images = preprocess_digits(digits.images, image_size)
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    train_index = torch.as_tensor(train_index)
    val_index = torch.as_tensor(val_index)
    return ImageSplit(
        train_images=images[train_index], train_labels=labels[train_index],
        val_images=images[val_index], val_labels=labels[val_index],
        class_names=_CLASS_NAMES)
