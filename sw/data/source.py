"""Which images a run uses (the built-in digits or an image folder), recorded and reloaded.

``prune.py --data DIR|digits`` and ``export_sparse.py --calibration DIR|digits`` name a
:class:`DataSource`; ``pruning_report.json`` records it (:meth:`DataSource.to_dict`) so that the
exporter calibrates on the same data by default and the report's accuracy can be measured again
(:meth:`DataSource.load_split`). Images are always preprocessed at the model's own size, and
:func:`check_model_data` checks the classes and the image size against the model first.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from sw.data import ImageSplit

__all__ = ["DIGITS", "DataError", "DataSource", "check_model_data"]

#: The ``--data`` / ``--calibration`` value that names the built-in digits.
DIGITS = "digits"
_DIGITS_CLASSES = tuple(str(digit) for digit in range(10))
#: Label names that say nothing (transformers' ``LABEL_3``, the small DeiT's ``"3"``).
_PLACEHOLDER_LABEL = re.compile(r"^(LABEL_)?\d+$")


class DataError(ValueError):
    """The data cannot be used (missing, unreadable, or not the model's): one line naming it."""


@dataclass(frozen=True)
class DataSource:
    """Where the images come from, and how they are split into train and validation sets.

    Members
    -------
    folder : Path or None
        An image folder (``folder/<class>/<image>``), or None for the scikit-learn digits.
    val_fraction : float
        Fraction of each class held out for validation (stratified split).
    seed : int
        ``random_state`` of the split.
    """

    folder: Path | None = None
    val_fraction: float = 0.2
    seed: int = 0

    @classmethod
    def parse(cls, text: str | os.PathLike, *, val_fraction: float = 0.2,
              seed: int = 0) -> "DataSource":
        """``"digits"`` or an image folder's path (which must be a directory).

        Raises
        ------
        DataError
            If the folder does not exist or is not a directory.
        """
        if isinstance(text, str) and text == DIGITS:
            return cls(None, val_fraction, seed)
        folder = Path(text)
        if not folder.is_dir():
            raise DataError(f"{folder}: image folder not found (expected 'digits' or a folder "
                            f"with one sub-folder per class)")
        return cls(folder.absolute(), val_fraction, seed)

    @property
    def is_digits(self) -> bool:
        return self.folder is None

    def describe(self) -> str:
        return DIGITS if self.is_digits else str(self.folder)

    def to_dict(self) -> dict:
        """The JSON record (``pruning_report.json``'s ``"data"``, the manifest's calibration)."""
        source = ({"source": DIGITS} if self.is_digits
                  else {"source": "image_folder", "path": str(self.folder)})
        return {**source, "val_fraction": self.val_fraction, "seed": self.seed}

    @classmethod
    def from_dict(cls, record, *, where: str) -> "DataSource":
        """Read a :meth:`to_dict` record; ``where`` names it in errors (``file: data``).

        Raises
        ------
        DataError
            One line naming ``where`` and the field.
        """
        if not isinstance(record, dict):
            raise DataError(f"{where}: must be an object, not {type(record).__name__}")
        kind = record.get("source")
        fraction, seed = record.get("val_fraction", 0.2), record.get("seed", 0)
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
                or not 0 < fraction < 1:
            raise DataError(f"{where}.val_fraction: expected a number between 0 and 1 "
                            f"(exclusive), found {fraction!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
            raise DataError(f"{where}.seed: expected an integer from 0 to 2**32 - 1, "
                            f"found {seed!r}")
        if kind == DIGITS:
            return cls(None, float(fraction), seed)
        if kind == "image_folder":
            path = record.get("path")
            if not isinstance(path, str) or not path:
                raise DataError(f"{where}.path: expected the image folder's path, found "
                                f"{path!r}")
            if not Path(path).is_dir():
                raise DataError(f"{where}.path: the image folder {path} recorded with the model "
                                f"no longer exists")
            return cls(Path(path), float(fraction), seed)
        raise DataError(f"{where}.source: expected 'digits' or 'image_folder', found {kind!r}")

    # -- reading -----------------------------------------------------------------------------

    def class_names(self) -> tuple[str, ...]:
        """The class names, without reading any image.

        Raises
        ------
        DataError
            If the folder has no class folders or no images.
        """
        if self.is_digits:
            return _DIGITS_CLASSES
        return self._listing()[2]

    def _listing(self):
        from sw.data.image_folder import list_image_folder
        try:
            return list_image_folder(self.folder)
        except (FileNotFoundError, ValueError) as error:
            raise DataError(str(error)) from None

    def _train_indices(self, labels):
        from sw.data.image_folder import split_indices
        try:
            return split_indices(labels, self.val_fraction, self.seed, source=self.describe())
        except ValueError as error:
            raise DataError(str(error)) from None

    def train_samples(self) -> int:
        """Images in the train split, without reading any (the step count of a run)."""
        if self.is_digits:
            from sklearn.datasets import load_digits
            total = len(load_digits().target)
        else:
            total = len(self._listing()[1])
        return total - math.ceil(self.val_fraction * total)

    def load_split(self, image_size: int) -> ImageSplit:
        """Every image, preprocessed at ``image_size``, split into train and validation sets.

        Digits: :func:`sw.data.digits.load_digits_split`; an image folder:
        :func:`sw.data.image_folder.load_image_folder_split` (ImageNet normalisation).

        Raises
        ------
        DataError
            If the data cannot be read or split (one line naming the file or folder).
        """
        try:
            if self.is_digits:
                from sw.data.digits import load_digits_split
                return load_digits_split(image_size, self.val_fraction, self.seed)
            from sw.data.image_folder import load_image_folder_split
            return load_image_folder_split(self.folder, image_size=image_size,
                                           val_fraction=self.val_fraction, seed=self.seed)
        except (FileNotFoundError, ValueError) as error:
            raise DataError(str(error)) from None

    def calibration_images(self, image_size: int, count: int) -> torch.Tensor:
        """The first ``count`` images of :meth:`load_split`'s train split at ``image_size``
        (all of them if fewer), never a validation image. Of an image folder, only those
        files are read; its train split comes one class at a time in turn
        (:func:`sw.data.image_folder.classes_in_turn`), so the first images hold every class.

        Raises
        ------
        DataError
            If the data cannot be read or split.
        """
        if self.is_digits:
            from sw.data.digits import load_digits_train_images
            try:
                return load_digits_train_images(count, image_size, self.val_fraction, self.seed)
            except ValueError as error:
                raise DataError(str(error)) from None
        from sw.data.image_folder import classes_in_turn, read_images
        paths, labels, _ = self._listing()
        train, _ = self._train_indices(labels.numpy())
        chosen = classes_in_turn(train, labels)[:count]
        try:
            return read_images([paths[index] for index in chosen], image_size=image_size)
        except ValueError as error:
            raise DataError(str(error)) from None


def check_model_data(config, source: DataSource, *, model: str) -> None:
    """Check that ``source``'s images can be the input of the model whose HF config is
    ``config`` (``model`` names it in messages): the same number of classes, label names
    that agree when the model's say something, and an image size the model can take (a
    positive multiple of its patch size, 3 channels). Images are resized to the model's size.

    Raises
    ------
    DataError
        One line naming the data, the model and both values.
    """
    size, patch = getattr(config, "image_size", None), getattr(config, "patch_size", None)
    if isinstance(size, (list, tuple)):
        size = size[0] if len(set(size)) == 1 else size
    if isinstance(patch, (list, tuple)):
        patch = patch[0] if len(set(patch)) == 1 else patch
    if (isinstance(size, bool) or not isinstance(size, int) or size < 1
            or isinstance(patch, bool) or not isinstance(patch, int) or patch < 1
            or size % patch):
        raise DataError(f"{model}: image_size {size!r} is not a positive multiple of patch_size "
                        f"{patch!r}; the data is resized to the model's square image size")
    channels = getattr(config, "num_channels", 3)
    if channels != 3:
        raise DataError(f"{model}: the model takes {channels} image channels; "
                        f"{source.describe()} gives RGB images (3 channels)")
    names = source.class_names()
    labels = int(config.num_labels)
    if len(names) != labels:
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise DataError(f"{source.describe()}: {len(names)} classes ({shown}), but the model "
                        f"{model} has {labels} labels (config.json num_labels)")
    model_names = [str(config.id2label.get(index, "")) for index in range(labels)] \
        if getattr(config, "id2label", None) else []
    if (model_names and not all(_PLACEHOLDER_LABEL.match(name) for name in model_names)
            and model_names != list(names)):
        differ = next(index for index, (a, b) in enumerate(zip(model_names, names)) if a != b)
        raise DataError(f"{source.describe()}: class {differ} is {names[differ]!r}, but the "
                        f"model {model} calls label {differ} {model_names[differ]!r} "
                        f"(config.json id2label; classes are the sub-folders in sorted order)")
