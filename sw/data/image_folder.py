"""Load an ImageFolder-style directory (``root/<class>/<image>``) into normalised tensors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from sklearn.model_selection import train_test_split

from sw.data import ImageSplit

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_SUFFIXES", "list_image_folder",
           "classes_in_turn", "load_image_folder", "load_image_folder_split", "read_images",
           "split_indices"]

#: Per-channel RGB statistics that ImageNet checkpoints (DeiT, ViT) were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def list_image_folder(root: str | os.PathLike
                      ) -> tuple[list[Path], torch.Tensor, tuple[str, ...]]:
    """The image files under ``root/<class>/`` as ``(paths, labels, class_names)``, unread.

    Classes are the sub-directories in sorted order; files are listed in sorted order within
    each; files with other suffixes than :data:`IMAGE_SUFFIXES` are skipped.

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a directory.
    ValueError
        If ``root`` has no class folders, or the class folders hold no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found")
    class_dirs = sorted(entry for entry in root.iterdir() if entry.is_dir())
    if not class_dirs:
        raise ValueError(f"{root}: no class folders found (expected {root}/<class>/<image>)")
    paths, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        for path in sorted(class_dir.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(path)
                labels.append(label)
    if not paths:
        raise ValueError(f"{root}: no images found in class folders")
    return (paths, torch.tensor(labels, dtype=torch.int64),
            tuple(class_dir.name for class_dir in class_dirs))


def read_images(paths, *, image_size: int = 32,
                mean: tuple[float, float, float] = IMAGENET_MEAN,
                std: tuple[float, float, float] = IMAGENET_STD) -> torch.Tensor:
    """Read image files as ``(N, 3, image_size, image_size)`` float32: converted to RGB, resized
    square (bilinear), scaled to 0..1 and normalised with ``mean`` and ``std``.

    Raises
    ------
    ValueError
        If ``image_size`` is not a positive integer, or a file cannot be read as an image
        (naming the file).
    """
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size <= 0:
        raise ValueError(f"Image size must be a positive integer, not {image_size!r}")
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB").resize((image_size, image_size),
                                                  Image.Resampling.BILINEAR)
        except (UnidentifiedImageError, OSError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ValueError(f"{path}: cannot read it as an image ({reason})") from None
        pixels = torch.from_numpy(np.array(rgb, dtype=np.float32) / 255.0)
        images.append((pixels.permute(2, 0, 1) - mean_t) / std_t)
    if not images:
        return torch.empty(0, 3, image_size, image_size)
    return torch.stack(images)


def load_image_folder(root: str | os.PathLike, *, image_size: int = 32,
                      mean: tuple[float, float, float] = IMAGENET_MEAN,
                      std: tuple[float, float, float] = IMAGENET_STD,
                      ) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Read every image under ``root/<class>/`` as ``(images, labels, class_names)``
    (:func:`list_image_folder`'s order, :func:`read_images`' preprocessing).

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a directory.
    ValueError
        If ``root`` has no class folders, the class folders hold no images, or a file is not
        an image.
    """
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size <= 0:
        raise ValueError(f"Image size must be a positive integer, not {image_size!r}")
    paths, labels, class_names = list_image_folder(root)
    return read_images(paths, image_size=image_size, mean=mean, std=std), labels, class_names


def split_indices(labels, val_fraction: float, seed: int, *, source: str = "the data"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and validation indices of the stratified split (scikit-learn
    ``train_test_split`` with ``random_state=seed``): the same rule for every data set.

    Raises
    ------
    ValueError
        If ``val_fraction`` is not strictly between 0 and 1, or the classes are too small to
        stratify (one line naming ``source``).
    """
    if not (isinstance(val_fraction, float) and 0.0 < val_fraction < 1.0):
        raise ValueError(f"Validation fraction must be between 0 and 1, not {val_fraction!r}")
    labels = np.asarray(labels)
    try:
        train_index, val_index = train_test_split(
            np.arange(len(labels)), test_size=val_fraction, random_state=seed, stratify=labels)
    except ValueError as error:
        counts = np.bincount(labels)
        raise ValueError(f"{source}: cannot split {len(labels)} images of {len(counts)} classes "
                         f"(fewest in one class: {counts.min()}) into train and validation "
                         f"sets with val_fraction {val_fraction}: "
                         f"{str(error).splitlines()[0]}") from None
    return np.sort(train_index), np.sort(val_index)


def classes_in_turn(indices, labels) -> list[int]:
    """``indices`` reordered one class at a time in turn: the first of every class (in class
    order), then the second, ... An image folder lists its files class by class, so this is
    what makes the first N of its train split (``--max-train-samples``, calibration) hold
    every class."""
    by_class: dict[int, list[int]] = {}
    for index in indices:
        by_class.setdefault(int(labels[index]), []).append(int(index))
    columns = [by_class[label] for label in sorted(by_class)]
    return [column[rank] for rank in range(max(map(len, columns), default=0))
            for column in columns if rank < len(column)]


def load_image_folder_split(root: str | os.PathLike, *, image_size: int = 32,
                            val_fraction: float = 0.2, seed: int = 0,
                            mean: tuple[float, float, float] = IMAGENET_MEAN,
                            std: tuple[float, float, float] = IMAGENET_STD) -> ImageSplit:
    """Load an image folder and split it like the digits: stratified, fixed by ``seed``
    (:func:`split_indices`). The train images come one class at a time in turn
    (:func:`classes_in_turn`), the validation images in file order.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`load_image_folder`; also if ``val_fraction`` is not strictly between 0 and 1
        or a class has too few images to stratify.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"Validation fraction must be between 0 and 1, not {val_fraction!r}")
    images, labels, class_names = load_image_folder(root, image_size=image_size, mean=mean,
                                                    std=std)
    train_index, val_index = split_indices(labels.numpy(), float(val_fraction), seed,
                                           source=str(root))
    train_index = torch.as_tensor(classes_in_turn(train_index, labels))
    val_index = torch.as_tensor(val_index)
    return ImageSplit(train_images=images[train_index], train_labels=labels[train_index],
                      val_images=images[val_index], val_labels=labels[val_index],
                      class_names=class_names)
