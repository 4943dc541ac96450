"""The calibration images an exported weight image was quantized with, read back from its record.

``sw/export_sparse.py`` records its calibration data in ``manifest.json`` (``"calibration"``:
the data source, the image count and size, the model directory). :func:`load_recorded_calibration`
returns the same images, bit for bit, so that a replay feeds the hardware inputs that the golden
model computes from the data the image was calibrated on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from sw.data.source import DataError, DataSource

__all__ = ["RecordedCalibration", "load_recorded_calibration"]


@dataclass(frozen=True)
class RecordedCalibration:
    """The calibration of an exported image.

    Members
    -------
    images : torch.Tensor
        ``(N, 3, S, S)`` float32, exactly the tensor the exporter calibrated on.
    data : DataSource
        Where they come from (the digits or an image folder, and the split).
    model_dir : Path
        The ``save_pretrained`` directory that was exported (its float patch embedding turns
        ``images`` into the encoder's input: ``sw.golden.deit_int.IntegerDeiT.embed``).
    """

    images: torch.Tensor
    data: DataSource
    model_dir: Path


def load_recorded_calibration(image: str | os.PathLike, *, count: int | None = None
                              ) -> RecordedCalibration:
    """The calibration images recorded with an exported image.

    ``image`` is the export directory, or its ``manifest.json``, ``params.json`` or
    ``weights.bin`` (the manifest beside it is read). ``count`` keeps the first ``count``
    images (default: all that were used).

    Raises
    ------
    DataError
        One line naming the manifest and the problem (missing, no calibration record, data
        gone).
    """
    path = Path(image)
    manifest_path = path / "manifest.json" if path.is_dir() else path.parent / "manifest.json"
    try:
        document = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{manifest_path}: not found (an export directory of "
                        f"sw/export_sparse.py holds it)") from None
    except (OSError, ValueError, RecursionError) as error:
        raise DataError(f"{manifest_path}: cannot read it as JSON ({type(error).__name__})"
                        ) from None
    record = document.get("calibration") if isinstance(document, dict) else None
    where = f"{manifest_path}: calibration"
    if not isinstance(record, dict):
        raise DataError(f"{where}: missing (exported before the manifest recorded its "
                        f"calibration data; export it again)")
    fields = {key: record.get(key) for key in ("images", "image_size")}
    for key, value in fields.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DataError(f"{where}.{key}: expected a positive integer, found {value!r}")
    if not isinstance(record.get("model"), str):
        raise DataError(f"{where}.model: expected the model directory, found "
                        f"{record.get('model')!r}")
    data = DataSource.from_dict(record, where=where)
    used = fields["images"] if count is None else min(count, fields["images"])
    images = data.calibration_images(fields["image_size"], used)
    if len(images) != used:
        raise DataError(f"{where}: {data.describe()} now gives {len(images)} calibration images, "
                        f"the export used {fields['images']}: the data changed since")
    return RecordedCalibration(images=images, data=data, model_dir=Path(record["model"]))
