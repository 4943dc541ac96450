"""Data sources: ``"digits"`` or an image folder, recorded and read back, checked against a model,
and the calibration images an export recorded."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import DeiTConfig

from sw.data.calibration import load_recorded_calibration
from sw.data.image_folder import list_image_folder, read_images
from sw.data.source import DataError, DataSource, check_model_data
from sw.models import small_deit_config


def write_image_folder(root, classes: int, per_class: int, size=(12, 10), seed: int = 0):
    """``classes`` sub-folders of ``per_class`` noisy solid-colour PNGs, a colour per class."""
    rng = np.random.default_rng(seed)
    for index in range(classes):
        folder = root / f"class_{index}"
        folder.mkdir(parents=True)
        colour = np.array([(60 * index) % 256, 255 - (45 * index) % 256, 128], dtype=float)
        for image_index in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{image_index:02d}.png")
    return root


@pytest.fixture
def folder(tmp_path):
    return write_image_folder(tmp_path / "pets", classes=3, per_class=5)


def test_parse_and_record_round_trip(folder, tmp_path):
    digits = DataSource.parse("digits")
    assert digits.is_digits and digits.describe() == "digits"
    assert digits.to_dict() == {"source": "digits", "val_fraction": 0.2, "seed": 0}
    source = DataSource.parse(folder, val_fraction=0.4, seed=3)
    assert source.to_dict() == {"source": "image_folder", "path": str(folder),
                                "val_fraction": 0.4, "seed": 3}
    for each in (digits, source):
        assert DataSource.from_dict(each.to_dict(), where="r") == each
    # extra keys (the report's image_size, classes, counts) are ignored
    assert DataSource.from_dict({**source.to_dict(), "image_size": 8}, where="r") == source
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=rf"^{missing}: image folder not found \(expected "
                                        r"'digits' or a folder with one sub-folder per class\)$"):
        DataSource.parse(missing)


@pytest.mark.parametrize("record, message", [
    ({"source": "imagenet"}, "r.source: expected 'digits' or 'image_folder', found 'imagenet'"),
    ({"source": "image_folder"}, "r.path: expected the image folder's path, found None"),
    ({"source": "digits", "val_fraction": 1.5},
     "r.val_fraction: expected a number between 0 and 1 (exclusive), found 1.5"),
    ({"source": "digits", "seed": -1}, "r.seed: expected an integer from 0 to 2**32 - 1, "
                                       "found -1"),
    ([], "r: must be an object, not list"),
])
def test_bad_records_are_one_line(record, message):
    with pytest.raises(DataError) as caught:
        DataSource.from_dict(record, where="r")
    assert str(caught.value) == message


def test_a_recorded_folder_that_is_gone(tmp_path):
    gone = tmp_path / "gone"
    with pytest.raises(DataError) as caught:
        DataSource.from_dict({"source": "image_folder", "path": str(gone)}, where="r")
    assert str(caught.value) == (f"r.path: the image folder {gone} recorded with the model no "
                                 f"longer exists")


def test_train_samples_without_reading_match_the_split(folder):
    source = DataSource.parse(folder, val_fraction=0.4)
    split = source.load_split(8)
    assert source.train_samples() == len(split.train_labels) == 9
    assert DataSource.parse("digits").train_samples() == 1437


def test_folder_calibration_takes_train_images_class_by_class(folder):
    source = DataSource.parse(folder, val_fraction=0.4)
    paths, labels, _ = list_image_folder(folder)
    split = source.load_split(8)
    images = source.calibration_images(8, 5)
    # classes in turn: the first train image of classes 0, 1, 2, then the second of 0, 1
    train = [index for index in range(len(paths))
             if any(torch.equal(read_images([paths[index]], image_size=8)[0], image)
                    for image in split.train_images)]
    by_class = [[index for index in train if labels[index] == label] for label in range(3)]
    expected = [by_class[0][0], by_class[1][0], by_class[2][0], by_class[0][1], by_class[1][1]]
    assert torch.equal(images, read_images([paths[index] for index in expected], image_size=8))
    assert torch.equal(images, split.train_images[:5])      # the train split's first five
    assert split.train_labels.tolist() == [0, 1, 2] * 3
    everything = source.calibration_images(8, 100)
    assert len(everything) == 9       # every train image, never a validation one
    assert not any(torch.equal(image, held_out) for image in everything
                   for held_out in split.val_images)


def test_digits_calibration_is_the_train_split_s_first():
    images = DataSource.parse("digits").calibration_images(16, 4)
    split = DataSource.parse("digits").load_split(16)
    assert torch.equal(images, split.train_images[:4])


def test_model_checks(folder):
    source = DataSource.parse(folder)
    check_model_data(small_deit_config(num_labels=3), source, model="m")   # "0", "1", "2"
    with pytest.raises(DataError) as caught:
        check_model_data(small_deit_config(num_labels=10), source, model="m")
    assert str(caught.value) == (f"{folder}: 3 classes (class_0, class_1, class_2), but the "
                                 f"model m has 10 labels (config.json num_labels)")
    named = small_deit_config(num_labels=3)
    named.id2label = {0: "class_0", 1: "dog", 2: "class_2"}
    with pytest.raises(DataError) as caught:
        check_model_data(named, source, model="m")
    assert str(caught.value) == (f"{folder}: class 1 is 'class_1', but the model m calls label "
                                 f"1 'dog' (config.json id2label; classes are the sub-folders in "
                                 f"sorted order)")
    with pytest.raises(DataError) as caught:
        check_model_data(DeiTConfig(image_size=30, patch_size=4, num_labels=3), source,
                         model="m")
    assert str(caught.value) == ("m: image_size 30 is not a positive multiple of patch_size 4; "
                                 "the data is resized to the model's square image size")
    with pytest.raises(DataError) as caught:
        check_model_data(small_deit_config(num_labels=3, num_channels=1), source, model="m")
    assert str(caught.value) == f"m: the model takes 1 image channels; {folder} gives RGB " \
                                f"images (3 channels)"


def test_load_recorded_calibration(folder, tmp_path):
    source = DataSource.parse(folder)
    image = tmp_path / "image"
    image.mkdir()
    record = {**source.to_dict(), "images": 4, "image_size": 8, "model": str(tmp_path / "m")}
    (image / "manifest.json").write_text(json.dumps({"calibration": record}))
    for where in (image, image / "params.json", image / "manifest.json"):
        recorded = load_recorded_calibration(where)
        assert torch.equal(recorded.images, source.calibration_images(8, 4))
        assert recorded.data == source and recorded.model_dir == tmp_path / "m"
    assert torch.equal(load_recorded_calibration(image, count=2).images,
                       source.calibration_images(8, 2))
    (image / "manifest.json").write_text(json.dumps({"calibration": {**record, "images": 99}}))
    with pytest.raises(DataError) as caught:
        load_recorded_calibration(image)
    assert str(caught.value) == (f"{image / 'manifest.json'}: calibration: {folder} now gives "
                                 f"12 calibration images, the export used 99: the data changed "
                                 f"since")
    (image / "manifest.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(DataError) as caught:
        load_recorded_calibration(image)
    assert str(caught.value) == (f"{image / 'manifest.json'}: calibration: missing (exported "
                                 f"before the manifest recorded its calibration data; export it "
                                 f"again)")
    with pytest.raises(DataError, match=r": not found \(an export directory of "):
        load_recorded_calibration(tmp_path / "elsewhere")


def test_an_unreadable_image_or_a_folder_too_small_to_split_is_one_line(folder, tmp_path):
    broken = folder / "class_1" / "99.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DataError) as caught:
        DataSource.parse(folder).load_split(8)
    assert str(caught.value).startswith(f"{broken}: cannot read it as an image (")
    assert "\n" not in str(caught.value)
    small = write_image_folder(tmp_path / "small", classes=5, per_class=4)
    with pytest.raises(DataError) as caught:
        DataSource.parse(small).load_split(8)
    assert str(caught.value) == (
        f"{small}: cannot split 20 images of 5 classes (fewest in one class: 4) into train and "
        f"validation sets with val_fraction 0.2: The test_size = 4 should be greater or equal to "
        f"the number of classes = 5")
