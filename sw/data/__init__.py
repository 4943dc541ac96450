"""Image classification data sets as normalised tensors: the scikit-learn digits and image folders.

Every image loader returns an :class:`ImageSplit`, so training and pruning code does not care where
the images came from; token sequences for BERT come as :class:`sw.data.sequences.SequenceSplit`
(the same ``train_inputs`` / ``val_inputs`` / labels members). The submodules are imported explicitly (``from sw.data.digits import ...``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ImageSplit", "iterate_batches"]


@dataclass(frozen=True)
class ImageSplit:
    """A train/validation split of normalised images.

    Members
    -------
    train_images, val_images : torch.Tensor
        ``(N, 3, H, W)`` float32, normalised per channel.
    train_labels, val_labels : torch.Tensor
        ``(N,)`` int64 class indices.
    class_names : tuple of str
        Name of each class index.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        return self.train_images.shape[-1]

    @property
    def train_inputs(self) -> torch.Tensor:
        """What the model's main input takes (the name :class:`sw.data.sequences.SequenceSplit`
        shares, so training loops take either split)."""
        return self.train_images

    @property
    def val_inputs(self) -> torch.Tensor:
        return self.val_images

    def train_dataset(self) -> torch.utils.data.TensorDataset:
        return torch.utils.data.TensorDataset(self.train_images, self.train_labels)

    def val_dataset(self) -> torch.utils.data.TensorDataset:
        return torch.utils.data.TensorDataset(self.val_images, self.val_labels)


def iterate_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, *,
                    generator: torch.Generator | None = None):
    """Yield ``(images, labels)`` batches; shuffled with ``generator`` when one is given.

    Raises
    ------
    ValueError
        If ``batch_size`` is not a positive integer or the tensors disagree in length.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"Batch size must be a positive integer, not {batch_size!r}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if generator is None:
        order = torch.arange(len(images))
    else:
        order = torch.randperm(len(images), generator=generator)
    for start in range(0, len(images), batch_size):
        index = order[start:start + batch_size]
        yield images[index], labels[index]
