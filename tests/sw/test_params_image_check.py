"""A ``params.json`` with a ``weights.bin`` beside it must be the config inside that image
(issue 14, item 11): an edited one built hardware the image does not fit, silently."""

import json
import shutil

import pytest

from hw.generate import main as generate_main
from sw.config import ConfigError, load_config
from sw.image.export import ExportRequest, export, write
from sw.image.format import ImageError, SectionKind
from sw.image.loader import load_image, parse_image
from sw.image.writer import seal
from sw.synthetic_deit import save_pruned_deit

SMALL = dict(hidden_size=32, num_heads=2, intermediate_size=64, num_layers=1, image_size=8)


@pytest.fixture(scope="module")
def exported_image(tmp_path_factory):
    """An exported image directory: weights.bin, params.json, manifest.json."""
    model = save_pruned_deit(tmp_path_factory.mktemp("small") / "run", removed_heads={0: [1]},
                             removed_neurons={0: list(range(16))}, **SMALL)
    out = tmp_path_factory.mktemp("image") / "small"
    write(export(ExportRequest(model_dir=model, config="tiny", name="small",
                               calibration_images=4)), out)
    return out


@pytest.fixture
def image_dir(exported_image, tmp_path):
    """A copy of the exported image the test may edit."""
    return shutil.copytree(exported_image, tmp_path / "small")


def edit_params(directory, section, field, change):
    path = directory / "params.json"
    data = json.loads(path.read_text())
    data[section][field] = change(data[section][field])
    path.write_text(json.dumps(data, indent=2))
    return path


def test_the_exported_params_are_accepted(image_dir):
    assert load_config(image_dir / "params.json") == load_image(image_dir / "weights.bin").config


@pytest.mark.parametrize("section, field, change", [
    ("model", "tokens", lambda tokens: tokens - 1),
    ("model", "layers", lambda layers: layers + 1),
    ("hardware", "block_rows", lambda rows: 2 * rows),
])
def test_edited_params_are_refused_naming_the_field(image_dir, section, field, change):
    expected = load_image(image_dir / "weights.bin").config.to_dict()[section][field]
    path = edit_params(image_dir, section, field, change)
    found = json.loads(path.read_text())[section][field]
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == (
        f"{path}: field '{section}.{field}' disagrees with the image beside it "
        f"({image_dir / 'weights.bin'}): expected {expected}, found {found}; re-export instead "
        f"of editing params.json")


def test_make_verilog_refuses_edited_params(image_dir, tmp_path, capsys):
    path = edit_params(image_dir, "model", "tokens", lambda tokens: tokens - 1)
    assert generate_main(["--config", str(path), "--out", str(tmp_path / "verilog")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {path}: field 'model.tokens' disagrees with the "
                                   f"image beside it")
    assert captured.err.count("\n") == 1
    assert not (tmp_path / "verilog").exists()


def test_a_damaged_image_beside_params_is_named(image_dir):
    image = image_dir / "weights.bin"
    image.write_bytes(image.read_bytes()[:100])
    with pytest.raises(ConfigError) as error:
        load_config(image_dir / "params.json")
    message = str(error.value)
    assert message.startswith(f"{image_dir / 'params.json'}: cannot check it against the image "
                              f"beside it: {image}: ")
    assert "\n" not in message


def test_only_params_json_beside_an_image_is_checked(image_dir, tmp_path):
    """Another file name, or params.json alone, is an ordinary config file."""
    path = edit_params(image_dir, "model", "tokens", lambda tokens: tokens - 1)
    renamed = shutil.copy(path, image_dir / "edited.json")
    assert load_config(renamed).model.tokens == json.loads(path.read_text())["model"]["tokens"]
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(path, alone / "params.json")
    assert load_config(alone / "params.json") == load_config(renamed)


def test_keys_in_the_image_config_section_are_escaped(exported_image):
    """The loader reads the image's CONFIG section through the same reader, so a key holding a
    newline and a terminal escape is shown escaped, on one line (issue 14, item 7)."""
    data = (exported_image / "weights.bin").read_bytes()
    entry = next(e for e in parse_image(data).sections if e.kind == SectionKind.CONFIG)
    text = data[entry.offset:entry.offset + entry.length]
    hostile = text.replace(b'"array_rows"', b'"\\n\\u001b]0"')      # same length, 12 bytes
    assert hostile != text and len(hostile) == len(text)
    altered = seal(data[:entry.offset] + hostile + data[entry.offset + entry.length:])
    with pytest.raises(ImageError) as error:
        parse_image(altered, source="x")
    assert str(error.value).endswith("config: unknown field 'hardware.\\n\\x1b]0'")
    assert str(error.value).isprintable()


def test_a_huge_integer_in_the_image_config_section_is_one_line(exported_image, monkeypatch):
    """json refuses an integer of more than 4300 digits with a plain ValueError; the loader
    reports it as a damaged CONFIG section, not a traceback (issue 14, item 7)."""
    from sw.config import AcceleratorConfig
    from sw.image.writer import encode_image

    image = load_image(exported_image / "weights.bin")
    text = image.config.to_json()
    assert '"array_rows": ' in text
    huge = text.replace('"array_rows": ', '"array_rows": ' + "1" + "0" * 5000 + ", \"x\": ", 1)
    monkeypatch.setattr(AcceleratorConfig, "to_json", lambda self: huge)
    data = encode_image(image)
    monkeypatch.undo()
    with pytest.raises(ImageError) as error:
        parse_image(data, source="x")
    assert str(error.value).endswith("config holds an integer of more than 4300 digits")
    assert str(error.value).isprintable()
