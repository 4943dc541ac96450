"""Bad input to the loader and the exporter: one clear ImageError / ExportError line each, and
corrupted images (hypothesis) never raise anything else."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sw.config import load_config
from sw.image.export import ExportError, ExportRequest, export
from sw.image.format import (EMBEDDING_FIELDS, FORMAT_VERSION, HEADER_SIZE, LINEAR_FIELDS, MAGIC,
                             SECTION_ENTRY_SIZE, STAGE_TENSORS, ImageError, SectionKind)
from sw.image.loader import load_image, parse_image
from sw.image.writer import seal
from sw.packing import fields_size, pack_array
from sw.synthetic_deit import save_pruned_deit

SMALL = dict(hidden_size=32, num_heads=2, intermediate_size=64, num_layers=1, image_size=8)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    return save_pruned_deit(tmp_path_factory.mktemp("small") / "run", removed_heads={0: [1]},
                            removed_neurons={0: list(range(16))}, **SMALL)


@pytest.fixture(scope="module")
def data(small_dir) -> bytes:
    return export(ExportRequest(model_dir=small_dir, config="tiny", name="small",
                                calibration_images=4)).data


def sections(data):
    return parse_image(data).sections


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def patched(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new):]


# --- framing ------------------------------------------------------------------------------------

def test_wrong_magic(data):
    with pytest.raises(ImageError) as error:
        parse_image(b"PK\x03\x04" + data[4:], source="x.bin")
    assert one_line(error) == (f"x.bin: not a weight image: it starts with 50 4b 03 04 4d 47 0d "
                               f"0a, expected the magic {MAGIC.hex(' ')}")


def test_wrong_version(data):
    with pytest.raises(ImageError) as error:
        parse_image(seal(patched(data, 8, pack_array([FORMAT_VERSION + 1], "u32"))), source="x")
    assert one_line(error) == (f"x: format version {FORMAT_VERSION + 1} (offset 8) is not "
                               f"supported; this build reads version {FORMAT_VERSION}")


def test_wrong_byte_order(data):
    with pytest.raises(ImageError, match=r"x: byte order mark at offset 12 reads 0x04030201, "
                                         r"expected 0x01020304 \(a little-endian image\)$"):
        parse_image(seal(patched(data, 12, bytes([1, 2, 3, 4]))), source="x")


@pytest.mark.parametrize("keep", [0, 5, 40])
def test_truncated_header(data, keep):
    with pytest.raises(ImageError, match=rf"x: truncated: {keep} bytes, shorter than the "
                                         rf"{HEADER_SIZE}-byte header$"):
        parse_image(data[:keep], source="x")


def test_truncated_table(data):
    with pytest.raises(ImageError, match=rf"x: truncated: the file has 100 bytes, the header says "
                                         rf"{len(data)}; the section table \(offset 64, "
                                         rf"\d+ bytes\) is cut off at byte 100$"):
        parse_image(data[:100], source="x")


def test_truncated_section_is_named_with_its_offset(data):
    fc1 = next(e for e in sections(data) if e.kind == SectionKind.LINEAR and e.tensor == 4)
    cut = fc1.offset + 10
    with pytest.raises(ImageError) as error:
        parse_image(data[:cut], source="x")
    index = list(sections(data)).index(fc1)
    assert one_line(error) == (f"x: truncated: the file has {cut} bytes, the header says "
                               f"{len(data)}; section {index} 'layer 0 fc1 (LINEAR)' (offset "
                               f"{fc1.offset}, {fc1.length} bytes) is cut off at byte {cut}")


def test_trailing_bytes(data):
    with pytest.raises(ImageError, match=rf"x: 3 unexpected bytes after the end of the image "
                                         rf"\(byte {len(data)}\)$"):
        parse_image(data + b"\0\0\0", source="x")


def test_section_checksum_mismatch(data):
    entry = next(e for e in sections(data) if e.kind == SectionKind.LINEAR and e.tensor == 0)
    index = list(sections(data)).index(entry)
    corrupt = bytearray(data)
    corrupt[entry.offset + entry.length - 1] ^= 0x10
    with pytest.raises(ImageError, match=rf"x: section {index} 'layer 0 q \(LINEAR\)' \(offset "
                                         rf"{entry.offset}, {entry.length} bytes\): checksum "
                                         rf"mismatch, stored 0x[0-9a-f]{{8}}, computed "
                                         rf"0x[0-9a-f]{{8}}$"):
        parse_image(bytes(corrupt), source="x")


def test_table_checksum_mismatch(data):
    corrupt = bytearray(data)
    corrupt[HEADER_SIZE + 4] ^= 1            # the first entry's tensor field
    with pytest.raises(ImageError, match=r"x: section table \(offset 64, \d+ bytes\): checksum "
                                         r"mismatch"):
        parse_image(bytes(corrupt), source="x")


def test_file_checksum_covers_the_header_and_padding(data):
    corrupt = bytearray(data)
    corrupt[HEADER_SIZE - 1] ^= 0xff         # reserved header byte
    with pytest.raises(ImageError, match=r"x: file checksum mismatch: stored 0x[0-9a-f]{8} "
                                         r"\(offset 44\), computed 0x[0-9a-f]{8}; the header or "
                                         r"the padding between sections is corrupt$"):
        parse_image(bytes(corrupt), source="x")


def test_files(tmp_path):
    with pytest.raises(ImageError, match=r"nothing.bin: no such file$"):
        load_image(tmp_path / "nothing.bin")
    with pytest.raises(ImageError, match=r"is a directory, not an image file$"):
        load_image(tmp_path)


# --- contents behind valid checksums (altered, then re-sealed) ----------------------------------

def test_block_shape_differs_from_config(data):
    entry = next(e for e in sections(data) if e.kind == SectionKind.LINEAR and e.tensor == 1)
    block_rows_at = entry.offset + fields_size(LINEAR_FIELDS[:2])
    altered = seal(patched(data, block_rows_at, pack_array([16], "u32")))
    with pytest.raises(ImageError, match=rf"x: section \d+ 'layer 0 k \(LINEAR\)' \(offset "
                                         rf"{entry.offset}\): block shape 16x8 differs from the "
                                         rf"config's 8x8$"):
        parse_image(altered, source="x")


def test_kept_head_out_of_range(data):
    entry = next(e for e in sections(data) if e.kind == SectionKind.LAYER)
    # LAYER record (24 bytes) + 13 scales, then kept_heads (one: head 0)
    heads_at = entry.offset + 24 + 13 * 8
    altered = seal(patched(data, heads_at, pack_array([7], "u32")))
    with pytest.raises(ImageError, match=r"kept heads at offset \d+ must increase and stay below "
                                         r"2, found \[7\]$"):
        parse_image(altered, source="x")


def test_program_must_be_the_layer_program(data):
    entry = next(e for e in sections(data) if e.kind == SectionKind.PROGRAM and e.layer == 0)
    second = entry.offset + 8 + 8            # header, then instruction 1 (GEMM Q <- LN1, arg 0)
    altered = seal(patched(data, second + 4, pack_array([5], "u16")))
    with pytest.raises(ImageError, match=r"'layer 0 \(PROGRAM\)' \(offset \d+\): program "
                                         r"instruction 1 is GEMM Q <- LN1 \(arg 5, arg2 0\), "
                                         r"expected GEMM Q <- LN1 \(arg 0, arg2 0\)$"):
        parse_image(altered, source="x")


def test_config_section_must_be_a_valid_config(data):
    entry = next(e for e in sections(data) if e.kind == SectionKind.CONFIG)
    text = data[entry.offset:entry.offset + entry.length]
    bad = text.replace(b'"array_rows": 4', b'"array_rows": 0')
    assert bad != text
    altered = seal(patched(data, entry.offset, bad))
    with pytest.raises(ImageError, match=r"x: section 0 'CONFIG' \(offset \d+\): config: Array "
                                         r"rows must be a positive integer, not 0$"):
        parse_image(altered, source="x")


def test_config_section_must_describe_a_layer_engine(data):
    """A valid config that no layer engine is built from (found by the resealed-garbage test
    below: the WEIGHT_STREAM alignment raised LayerEngineError, not ImageError)."""
    entry = next(e for e in sections(data) if e.kind == SectionKind.CONFIG)
    text = data[entry.offset:entry.offset + entry.length]
    bad = text.replace(b'"array_rows": 4', b'"array_rows": 8')
    assert bad != text
    with pytest.raises(ImageError, match=r"x: section 0 'CONFIG' \(offset \d+\): config 'small': "
                                         r"the layer engine needs array_rows \(8\) equal to "
                                         r"array_cols \(4\): it transposes key tiles in place$"):
        parse_image(seal(patched(data, entry.offset, bad)), source="x")


# --- hypothesis: corruption of any kind gives an ImageError, nothing else -----------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=10**6))
def test_any_truncation_is_reported_as_such(data, cut):
    cut %= len(data)
    with pytest.raises(ImageError, match=r"^x: truncated: "):
        parse_image(data[:cut], source="x")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(min_value=0, max_value=10**6), mask=st.integers(1, 255))
def test_any_flipped_byte_is_caught(data, position, mask):
    corrupt = bytearray(data)
    corrupt[position % len(data)] ^= mask
    with pytest.raises(ImageError):
        parse_image(bytes(corrupt), source="x")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.lists(st.tuples(st.integers(min_value=0, max_value=10**6),
                                  st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.integers(min_value=0, max_value=10**6)))
def test_resealed_garbage_loads_or_raises_image_error(data, changes, cut):
    """Checksums recomputed after the damage: the structural checks must still hold the line."""
    corrupt = bytearray(data)
    for position, value in changes:
        corrupt[position % len(data)] = value
    if cut is not None:
        corrupt = corrupt[:cut % len(data)]
    try:
        parse_image(seal(bytes(corrupt)), source="x")
    except ImageError as error:
        assert "\n" not in str(error) and str(error).startswith("x: ")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=10**6), extra=st.integers(0, 3))
def test_load_image_reports_what_parse_image_reports(data, tmp_path, cut, extra):
    """load_image checks the size from the header and the table before reading the whole file;
    its verdict on a cut or extended file is parse_image's on the same bytes."""
    content = data[:cut % (len(data) + 1)] + bytes(extra)
    path = tmp_path / "x.bin"
    path.write_bytes(content)
    try:
        expected = str(parse_image(content, source=str(path)).file_size)
    except ImageError as error:
        expected = str(error)
    try:
        found = str(load_image(path).file_size)
    except ImageError as error:
        found = str(error)
    assert found == expected


# --- exporter ----------------------------------------------------------------------------------

def export_error(tmp_path, model_dir, config="tiny", **options) -> str:
    with pytest.raises(ExportError) as error:
        export(ExportRequest(model_dir=model_dir, config=config, calibration_images=2,
                             **options))
    return one_line(error)


def test_missing_model_directory(tmp_path):
    assert export_error(tmp_path, tmp_path / "nope") == (
        f"{tmp_path / 'nope'}: model directory not found")
    (tmp_path / "empty").mkdir()
    assert export_error(tmp_path, tmp_path / "empty").endswith(
        "empty: neither a pruning output (pruned/ and pruning_report.json) nor a "
        "save_pretrained directory (config.json)")


def test_unsupported_architecture(tmp_path):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert export_error(tmp_path, tmp_path / "bert") == (
        f"{tmp_path / 'bert' / 'config.json'}: unsupported architecture 'bert'; the exporter "
        f"supports deit, vit")


def test_unknown_preset_and_wrong_data_width(tmp_path, small_dir):
    assert export_error(tmp_path, small_dir, config="tiny9").startswith(
        "--config: unknown preset 'tiny9'; presets: ")
    wide = load_config("tiny").replace(name="wide", hardware={"data_width": 16})
    wide.save(tmp_path / "wide.json")
    assert export_error(tmp_path, small_dir, config=str(tmp_path / "wide.json")) == (
        "config 'wide' has data_width 16; the integer model is int8 (data_width 8)")


def test_block_that_does_not_divide_a_matrix(tmp_path):
    # hidden 36 = 3 heads of 12: the 8x8 block divides no Q (36x36)
    model = save_pruned_deit(tmp_path / "odd", removed_heads={}, removed_neurons={},
                             hidden_size=36, num_heads=3, intermediate_size=64, num_layers=1,
                             image_size=8, block=(4, 4), report=False)
    assert export_error(tmp_path, model) == (
        "layer 0 q: the 8x8 block of config 'tiny' does not divide the 36x36 matrix")


def test_model_that_does_not_fit_the_config(tmp_path):
    # head_dim 12: every matrix divides into 8x8 blocks, but a block would straddle two heads
    model = save_pruned_deit(tmp_path / "heads", removed_heads={}, removed_neurons={},
                             hidden_size=24, num_heads=2, intermediate_size=32, num_layers=1,
                             image_size=8, block=(4, 4), report=False)
    assert export_error(tmp_path, model) == (
        "the model does not fit config 'tiny': block_rows (8) must divide head_dim (12), so a "
        "pruning block never straddles two heads")


def test_bad_pruning_report(tmp_path, small_dir):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(small_dir, run)
    report = json.loads((run / "pruning_report.json").read_text())
    report["surgery"]["layers"][0]["kept_heads"] = [0, 5]
    (run / "pruning_report.json").write_text(json.dumps(report))
    assert export_error(tmp_path, run) == (
        "pruning_report.json: surgery layer 0 kept_heads must be a non-empty increasing list of "
        "indices below 2, found [0, 5]")
    (run / "pruning_report.json").unlink()
    assert export_error(tmp_path, run) == (
        f"{run / 'pruning_report.json'}: missing (a pruning output directory holds pruned/ and "
        f"pruning_report.json)")


def test_report_removing_a_live_head_is_overruled(tmp_path, small_dir):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(small_dir, run)
    report = json.loads((run / "pruning_report.json").read_text())
    report["surgery"]["layers"][0]["kept_heads"] = [1]   # head 0 is live, head 1 is zero
    (run / "pruning_report.json").write_text(json.dumps(report))
    state = export(ExportRequest(model_dir=run, config="tiny", calibration_images=2))
    assert state.image.layers[0].kept_heads == (0, 1)
    assert state.notes == ["layer 0: heads [0] kept although the report removes them: their V "
                           "and O weights are not zero"]


# --- reserved fields and padding must be zero; pruning block shapes must fit ------------------

def entry_of(data, kind, tensor=None):
    return next(e for e in sections(data) if e.kind == kind
                and (tensor is None or e.tensor == tensor))


def test_reserved_header_bytes_must_be_zero(data):
    altered = seal(patched(data, 50, b"\x12"))
    with pytest.raises(ImageError) as error:
        parse_image(altered, source="x")
    assert one_line(error) == ("x: header bytes 48..63 are reserved and must be zero; byte 50 "
                               "is 0x12")


@pytest.mark.parametrize("field, at, value", [("reserved", 6, "u16"), ("reserved2", 28, "u32")])
def test_reserved_table_fields_must_be_zero(data, field, at, value):
    entry_at = HEADER_SIZE + 2 * SECTION_ENTRY_SIZE          # the third entry
    altered = seal(patched(data, entry_at + at, pack_array([9], value)))
    with pytest.raises(ImageError) as error:
        parse_image(altered, source="x")
    assert one_line(error) == (f"x: section table entry 2 (offset {entry_at}): field {field} is "
                               f"reserved and must be zero, found 9")


def test_padding_between_sections_must_be_zero(data):
    entries = sections(data)
    index = next(i for i in range(1, len(entries))
                 if entries[i].offset > entries[i - 1].offset + entries[i - 1].length)
    gap_at = entries[index - 1].offset + entries[index - 1].length
    altered = seal(patched(data, gap_at, b"\xab"))
    with pytest.raises(ImageError) as error:
        parse_image(altered, source="x")
    assert one_line(error) == (f"x: padding before section {index} (bytes {gap_at}.."
                               f"{entries[index].offset - 1}) must be zero; byte {gap_at} is 0xab")


@pytest.mark.parametrize("kind, tensor, record", [(SectionKind.MODEL, None, "model"),
                                                  (SectionKind.LINEAR, 2, "linear")])
def test_reserved_record_fields_must_be_zero(data, kind, tensor, record):
    entry = entry_of(data, kind, tensor)
    index = list(sections(data)).index(entry)
    altered = seal(patched(data, entry.offset + 28, pack_array([7], "u32")))
    with pytest.raises(ImageError) as error:
        parse_image(altered, source="x")
    assert one_line(error) == (f"x: section {index} '{entry.name}' (offset {entry.offset}): "
                               f"{record} record field reserved must be zero, found 7")


@pytest.mark.parametrize("rows, cols, shown", [(0xdeadbeef, 8, "3735928559x8"), (0, 8, "0x8"),
                                               (5, 8, "5x8"), (16, 64, "16x64")])
def test_pruning_block_shape_must_divide_the_unpruned_weight(data, rows, cols, shown):
    entry = entry_of(data, SectionKind.LINEAR, 0)             # q: 32x32 unpruned
    index = list(sections(data)).index(entry)
    at = entry.offset + fields_size(LINEAR_FIELDS[:4])
    altered = seal(patched(data, at, pack_array([rows, cols], "u32")))
    with pytest.raises(ImageError) as error:
        parse_image(altered, source="x")
    assert one_line(error) == (f"x: section {index} 'layer 0 q (LINEAR)' (offset {entry.offset}): "
                               f"pruning block shape: {shown} must be 0x0 (not pruned) or divide "
                               f"the unpruned 32x32 weight")


def test_pruning_block_shapes_that_fit_load(data):
    entry = entry_of(data, SectionKind.LINEAR, 0)
    at = entry.offset + fields_size(LINEAR_FIELDS[:4])
    for rows, cols in ((0, 0), (1, 32), (32, 1), (16, 16)):
        image = parse_image(seal(patched(data, at, pack_array([rows, cols], "u32"))))
        assert image.layers[0].linears["q"].pruning_block_shape == (rows, cols)


@pytest.mark.parametrize("shape, problem", [
    ([0xdeadbeef, 1], "3735928559x1 must be 0x0 (not pruned) or divide the unpruned 32x32 weight"),
    ([8, "8"], "8x'8' must be 0x0 (not pruned) or divide the unpruned 32x32 weight"),
    ([8], "[8] is not a [rows, cols] pair"),
])
def test_exporter_refuses_a_bad_pruning_block_in_the_report(tmp_path, small_dir, shape, problem):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(small_dir, run)
    report = json.loads((run / "pruning_report.json").read_text())
    report["layers"][0]["linears"]["k"]["block_shape"] = shape
    (run / "pruning_report.json").write_text(json.dumps(report))
    assert export_error(tmp_path, run) == (
        f"pruning_report.json: layers[0].linears.k.block_shape {problem}")


def test_a_section_count_beyond_the_declared_size_is_refused_from_the_header(data):
    """The table's end is checked against file_size before any of the table is read, so a
    forged count cannot make load_image read a large file's bytes as a table."""
    altered = patched(data, 20, pack_array([1 << 30], "u32"))
    with pytest.raises(ImageError) as error:
        parse_image(altered, source="x")
    assert one_line(error) == (f"x: section count {1 << 30} (offset 20) needs a table up to byte "
                               f"{64 + (1 << 35)}, past the image's declared end (file_size "
                               f"{len(data)})")


def test_a_weight_stream_must_hold_exactly_the_stored_blocks(data):
    """A WEIGHT_STREAM one word short (its table entry's length cut, the word zeroed as the
    padding it becomes) is refused naming the section and both byte counts."""
    index, entry = next((i, e) for i, e in enumerate(sections(data))
                        if e.kind == SectionKind.WEIGHT_STREAM and e.tensor == 4)
    length_at = HEADER_SIZE + index * 32 + 16
    end = entry.offset + entry.length
    altered = patched(data, length_at, pack_array([entry.length - 4], "u64"))
    altered = seal(patched(altered, end - 4, bytes(4)))
    with pytest.raises(ImageError) as error:
        parse_image(altered, source="x")
    assert one_line(error) == (f"x: section {index} 'layer 0 fc1 (WEIGHT_STREAM)' (offset "
                               f"{entry.offset}): {entry.length - 4} weight stream bytes, the "
                               f"{entry.length // 64} stored blocks need {entry.length}")


def test_a_weight_stream_must_start_on_an_axi_burst(data):
    """Moved 8 bytes back into the zeros before it (its last 8 bytes' place becoming padding), a
    stream is no longer where the engine fetches whole bursts from."""
    entries = sections(data)
    index, entry = next((i, e) for i, e in enumerate(entries) if i
                        and e.kind == SectionKind.WEIGHT_STREAM
                        and e.offset - (entries[i - 1].offset + entries[i - 1].length) >= 8)
    stream = data[entry.offset:entry.offset + entry.length]
    altered = patched(data, entry.offset - 8, stream + bytes(8))
    altered = patched(altered, HEADER_SIZE + index * 32 + 8, pack_array([entry.offset - 8],
                                                                        "u64"))
    with pytest.raises(ImageError) as error:
        parse_image(seal(altered), source="x")
    assert one_line(error) == (f"x: section {index} '{entry.name}' (offset "
                               f"{entry.offset - 8}): starts at byte {entry.offset - 8}, not on a "
                               f"64-byte AXI burst of the config's layer engine")


# --- the stages around the encoder (EMBEDDING, HEAD, their linears and programs) ---------------

def refusal(altered) -> str:
    with pytest.raises(ImageError) as error:
        parse_image(seal(altered), source="x")
    return one_line(error)


def located(data, kind, tensor=None, layer=0xFFFF):
    index, entry = next((i, e) for i, e in enumerate(sections(data)) if e.kind == kind
                        and e.layer == layer and (tensor is None or e.tensor == tensor))
    return index, entry


def test_the_embedding_record_must_make_the_models_tokens(data):
    index, entry = located(data, SectionKind.EMBEDDING)
    assert refusal(patched(data, entry.offset, pack_array([2], "u32"))) == (
        f"x: section {index} 'EMBEDDING' (offset {entry.offset}): 16 patches (4 x 4) and 2 "
        f"protected rows make 18 tokens, the model has 6")
    assert refusal(patched(data, entry.offset, pack_array([3], "u32"))) == (
        f"x: section {index} 'EMBEDDING' (offset {entry.offset}): patch_size 3 does not divide "
        f"image_size 8")
    channels_at = entry.offset + fields_size(EMBEDDING_FIELDS[:1])
    assert refusal(patched(data, channels_at, pack_array([0], "u32"))) == (
        f"x: section {index} 'EMBEDDING' (offset {entry.offset}): channels must be positive, "
        f"found 0")


def test_the_classifier_must_have_the_heads_classes_in_whole_blocks(data):
    index, entry = located(data, SectionKind.HEAD)
    linear_index, linear = located(data, SectionKind.LINEAR, STAGE_TENSORS["head"])
    assert refusal(patched(data, entry.offset, pack_array([20], "u32"))) == (
        f"x: section {linear_index} 'head (LINEAR)' (offset {linear.offset}): head weight is "
        f"16x32, expected 24x32 from the model's sizes and the EMBEDDING / HEAD record")
    assert refusal(patched(data, entry.offset + 4, pack_array([5], "u32"))) == (
        f"x: section {index} 'HEAD' (offset {entry.offset}): head record field reserved must be "
        f"zero, found 5")


def test_a_stage_linear_is_not_pruned(data):
    index, entry = located(data, SectionKind.LINEAR, STAGE_TENSORS["embedding"])
    at = entry.offset + fields_size(LINEAR_FIELDS[:4])
    assert refusal(patched(data, at, pack_array([8, 8], "u32"))) == (
        f"x: section {index} 'embedding (LINEAR)' (offset {entry.offset}): pruning block shape: "
        f"8x8 must be 0x0 (the embedding stage's weight is not pruned)")


def test_a_stage_program_is_the_one_of_the_slot_that_holds_its_weight(data):
    """The small model's 32x48 patch linear is wider than the O slot (32x32) of its engine, so
    the embedding program uses FC2's (32 x 64): the same GEMM in O's slot (tensor 3) is
    refused."""
    index, entry = located(data, SectionKind.PROGRAM, STAGE_TENSORS["embedding"])
    first = entry.offset + 8                      # after the program header
    assert refusal(patched(data, first + 4, pack_array([3], "u16"))) == (
        f"x: section {index} 'embedding (PROGRAM)' (offset {entry.offset}): program "
        f"instruction 0 is GEMM OUTPUT <- GELU, RESIDUAL1 (arg 3, arg2 2), expected GEMM "
        f"OUTPUT <- GELU, RESIDUAL1 (arg 5, arg2 2)")


def test_a_missing_stage_section_is_named(data):
    """A version-3 image without its head (the table's last four entries dropped and the file
    cut after the last layer) is refused naming the section."""
    entries = sections(data)
    head = [i for i, e in enumerate(entries) if e.kind == SectionKind.HEAD][0]
    count = len(entries) - 4
    assert head == count
    end = entries[count - 1].offset + entries[count - 1].length
    table_end = HEADER_SIZE + count * SECTION_ENTRY_SIZE
    shrunk = bytearray(data[:end])
    shrunk[20:24] = pack_array([count], "u32")
    shrunk[24:32] = pack_array([end], "u64")
    # the entries' offsets stay valid: the table shrinks, the sections do not move, and the
    # bytes the dropped entries held become zero padding
    shrunk[table_end:HEADER_SIZE + len(entries) * SECTION_ENTRY_SIZE] = bytes(
        4 * SECTION_ENTRY_SIZE)
    assert refusal(bytes(shrunk)) == "x: missing section 'HEAD'"


def test_a_distilled_deit_with_two_heads_is_refused(tmp_path):
    from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher
    config = DeiTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, image_size=8, patch_size=2, num_labels=10)
    DeiTForImageClassificationWithTeacher(config).save_pretrained(tmp_path / "teacher")
    message = export_error(tmp_path, tmp_path / "teacher", calibration="digits")
    assert message.endswith("DeiTForImageClassificationWithTeacher has cls_classifier, "
                            "distillation_classifier; the accelerator's head program runs one "
                            "classifier on the class token (a distilled DeiT's averaged two "
                            "heads are not supported)")


def test_a_patch_embedding_no_tensor_slot_holds_is_refused(tmp_path):
    """48 patch features (3 channels, 4 px patches) are wider than the O slot (32 x 32) and,
    with 16 FFN neurons kept, than FC2's (32 x 16) of the engine sized for the model."""
    model = save_pruned_deit(tmp_path / "run", removed_heads={}, block_density=1.0,
                             removed_neurons={0: list(range(48))}, **SMALL)
    assert export_error(tmp_path, model) == ("run: the patch embedding weight 32x48 fits no "
                                             "tensor slot of the engine (o 32x32, fc2 32x16)")
