"""Load an ImageFolder-style directory (``root/<class>/<image>``) into normalised tensors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.model_selection import train_test_split

from sw.data import ImageSplit

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_SUFFIXES", "load_image_folder",
           "load_image_folder_split"]

#: Per-channel RGB statistics that ImageNet checkpoints (DeiT, ViT) were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def load_image_folder(root: str | os.PathLike, *, image_size: int = 32,
                      mean: tuple[float, float, float] = IMAGENET_MEAN,
                      std: tuple[float, float, float] = IMAGENET_STD,
                      ) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Read every image under ``root/<class>/`` as ``(images, labels, class_names)``.

    Classes are the sub-directories in sorted order; images are read in sorted file order,
    converted to RGB, resized to ``image_size`` square (bilinear), scaled to 0..1 and normalised
    with ``mean`` and ``std``. Files with other suffixes than :data:`IMAGE_SUFFIXES` are skipped.

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
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size <= 0:
        raise ValueError(f"Image size must be a positive integer, not {image_size!r}")
    class_dirs = sorted(entry for entry in root.iterdir() if entry.is_dir())
    if not class_dirs:
        raise ValueError(f"{root}: no class folders found")
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    images, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        for path in sorted(class_dir.iterdir()):
            if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            with Image.open(path) as image:
                rgb = image.convert("RGB").resize((image_size, image_size),
                                                  Image.Resampling.BILINEAR)
                pixels = torch.from_numpy(np.array(rgb, dtype=np.float32) / 255.0)
            images.append((pixels.permute(2, 0, 1) - mean_t) / std_t)
            labels.append(label)
    if not images:
        raise ValueError(f"{root}: no images found in class folders")
    return (torch.stack(images), torch.tensor(labels, dtype=torch.int64),
            tuple(class_dir.name for class_dir in class_dirs))


def load_image_folder_split(root: str | os.PathLike, *, image_size: int = 32,
                            val_fraction: float = 0.2, seed: int = 0,
                            mean: tuple[float, float, float] = IMAGENET_MEAN,
                            std: tuple[float, float, float] = IMAGENET_STD) -> ImageSplit:
    """Load an image folder and split it like the digits: stratified, fixed by ``seed``.

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
    train_index, val_index = train_test_split(
        np.arange(len(labels)), test_size=val_fraction, random_state=seed,
        stratify=labels.numpy())
    train_index = torch.as_tensor(np.sort(train_index))
    val_index = torch.as_tensor(np.sort(val_index))
    return ImageSplit(train_images=images[train_index], train_labels=labels[train_index],
                      val_images=images[val_index], val_labels=labels[val_index],
                      class_names=class_names)
