"""Export a pruned HF DeiT / ViT for the accelerator: ``weights.bin``, ``params.json``, manifest.

The export is an ordered list of named steps (:data:`STEPS`), each ``step(state) -> state``:
read the hardware config, find and load the model and its pruning report, decide the kept heads
and FFN neurons, check that every matrix fits the hardware's block shape, quantize with the
integer model's calibration (on ``calibration``: an image folder or the digits, by default the
data recorded with the model, :func:`choose_calibration_data`), quantize the model around the
encoder (the patch embedding with the position table, the final LayerNorm and the classifier:
``sw.golden.model_stages``), assemble the image and the accelerator parameters sized from the
pruned model, and check the bytes by loading them back. :func:`verify` then runs the golden
model from the image's bytes and from the torch model and counts differences, per layer and in
the whole model's logits; :func:`write` puts the outputs in place atomically. Every problem
with the input raises :class:`ExportError` with one line naming it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from sw.atomic import OutputRefused, replace_directory
from sw.atomic import check_output_directory as check_replay_directory
from sw.block_sparse import BlockSparseMatrix
from sw.config import AcceleratorConfig, ConfigError, ModelTopology, load_config, minimum_buffers
from sw.engine_params import EngineParams
from sw.image.format import (SCALE_POINTS, TENSOR_ROLES, EmbeddingImage, HeadImage, ImageError,
                             LayerImage, LinearImage, ModelInfo, WeightImage, dense_shape,
                             pruning_block_problem)
from sw.image.loader import parse_image
from sw.image.program import layer_program, stage_program, stage_slot
from sw.image.summary import manifest
from sw.image.writer import encode_image
from sw.numerics import signed_range

__all__ = ["SUPPORTED_ARCHITECTURES", "OUTPUT_FILES", "REPLAY_DIR", "REPLAY_RECORD",
           "REPLAY_WAVES", "DEFAULT_CALIBRATION_IMAGES",
           "ExportError", "ExportRequest", "ExportState", "STEPS", "export", "verify", "write",
           "calibration_images", "check_output_directory", "choose_calibration_data"]

SUPPORTED_ARCHITECTURES = ("deit", "vit")
OUTPUT_FILES = ("weights.bin", "params.json", "manifest.json")
#: What ``sim/replay.py`` writes into an export directory: ``replay/`` holding ``replay.json``
#: and optionally ``waves.vcd``. It is derived from the image, so an export that replaces the
#: image removes it (it would be stale); one holding anything else is refused.
REPLAY_DIR = "replay"
REPLAY_RECORD = "replay.json"
REPLAY_WAVES = "waves.vcd"
DEFAULT_CALIBRATION_IMAGES = 64

#: The digits split the calibration images come from: the trainer's defaults.
CALIBRATION_SPLIT = {"val_fraction": 0.2, "seed": 0}


#: Sizes in a DeiT / ViT ``config.json`` that must be positive integers (absent: the default).
MODEL_SIZE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "image_size", "patch_size", "num_channels")


class ExportError(ValueError):
    """The model, its report or the config cannot be exported; one line naming the problem."""


@dataclass(frozen=True)
class ExportRequest:
    """What to export, for which hardware, where (``out=None``: only in memory).

    ``calibration`` is ``"digits"``, an image folder's path, a
    :class:`~sw.data.source.DataSource`, or None: the data recorded with the model
    (:func:`choose_calibration_data`); the first ``calibration_images`` of its train split
    are used.
    """

    model_dir: Path
    config: str
    out: Path | None = None
    name: str | None = None
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    progress: bool = False
    calibration: str | os.PathLike | None = None


@dataclass
class ExportState:
    """What the steps have established so far."""

    request: ExportRequest
    hardware: AcceleratorConfig | None = None     #: the --config, whose hardware is used
    model_source: Path | None = None              #: the save_pretrained directory
    report: dict | None = None                    #: pruning_report.json, if any
    model: object = None                          #: the torch model
    architecture: str = ""
    topology: dict = field(default_factory=dict)  #: unpruned shapes: hidden, heads, ...
    kept_heads: list = field(default_factory=list)
    kept_ffn: list = field(default_factory=list)
    ffn_padding: list = field(default_factory=list)
    pruning_blocks: list = field(default_factory=list)
    token_pruning: list = field(default_factory=list)  #: per layer: TokenPruning or None
    token_entry: dict | None = None               #: the report's "tokens" (or config's)
    notes: list = field(default_factory=list)     #: things the user should know, one line each
    calibration_data: object = None               #: sw.data.source.DataSource
    calibration: object = None                    #: calibration images (torch tensor)
    integer_model: object = None                  #: sw.golden.deit_int.IntegerDeiT
    embedding: object = None                      #: sw.golden.model_stages.IntegerEmbedding
    head: object = None                           #: sw.golden.model_stages.IntegerHead
    config: AcceleratorConfig | None = None       #: params.json
    image: WeightImage | None = None
    data: bytes = b""


# ------------------------------------------------------------------------------------------------
# Steps
# ------------------------------------------------------------------------------------------------

def read_hardware_config(state: ExportState) -> ExportState:
    """Check the request; load ``--config`` and check that its widths are the integer model's."""
    count = state.request.calibration_images
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ExportError(f"--calibration-images must be a positive integer, not {count!r}")
    if state.request.out is not None:        # before any work, not after it
        check_output_directory(state.request.out)
    try:
        config = load_config(state.request.config)
        config.check_layer_engine()             # an image runs on the layer engine
    except ConfigError as error:
        raise ExportError(f"--config: {error}") from None
    if state.request.name is not None:
        try:
            config.replace(name=state.request.name)
        except ConfigError as error:
            raise ExportError(f"--name: {error}") from None
    hw = config.hardware
    if hw.data_width != 8:
        raise ExportError(f"config '{config.name}' has data_width {hw.data_width}; the integer "
                          f"model is int8 (data_width 8)")
    if hw.multiplier_width < 16:
        raise ExportError(f"config '{config.name}' has multiplier_width {hw.multiplier_width}; "
                          f"the integer model's multipliers need 16 bits")
    state.hardware = config
    return state


def locate_model(state: ExportState) -> ExportState:
    """A pruning output (``pruned/`` + ``pruning_report.json``) or a save_pretrained directory."""
    directory = Path(state.request.model_dir)
    if not directory.is_dir():
        raise ExportError(f"{directory}: model directory not found")
    if (directory / "pruned" / "config.json").is_file():
        report_path = directory / "pruning_report.json"
        if not report_path.is_file():
            raise ExportError(f"{report_path}: missing (a pruning output directory holds "
                              f"pruned/ and pruning_report.json)")
        try:
            state.report = json.loads(report_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as error:   # ValueError: JSON, UTF-8
            raise ExportError(f"{report_path}: cannot read it as JSON "
                              f"({_first_line(error) or type(error).__name__})") from None
        state.model_source = directory / "pruned"
    elif (directory / "config.json").is_file():
        state.model_source = directory
    else:
        raise ExportError(f"{directory}: neither a pruning output (pruned/ and "
                          f"pruning_report.json) nor a save_pretrained directory (config.json)")
    config_path = state.model_source / "config.json"
    try:
        document = json.loads(config_path.read_text(encoding="utf-8"))
        model_type = document.get("model_type")
    except (OSError, ValueError, AttributeError, RecursionError) as error:   # ValueError: JSON
        raise ExportError(f"{config_path}: cannot read the model config "
                          f"({type(error).__name__}: {_first_line(error)})") from None
    if model_type not in SUPPORTED_ARCHITECTURES:
        raise ExportError(f"{config_path}: unsupported architecture {model_type!r}; the exporter "
                          f"supports {', '.join(SUPPORTED_ARCHITECTURES)}")
    for name in MODEL_SIZE_FIELDS:
        value = document.get(name, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ExportError(f"{config_path}: {name} must be a positive integer, found "
                              f"{json.dumps(value)[:40]}")
    state.architecture = model_type
    return state


def load_torch_model(state: ExportState) -> ExportState:
    """Load the model and read its unpruned shapes and token count."""
    import torch

    from sw.models import load_model
    from sw.pruning.structures import structure_for
    from sw.quantize.calibration import encoder_layers
    from sw.progress import limit_library_bars
    from transformers.utils import logging as transformers_logging
    limit_library_bars(state.request.progress)
    _check_safetensors(state.model_source)
    # transformers' multi-line load report is kept, not printed: its rows become one line
    report, verbosity = _LoadReport(), transformers_logging.get_verbosity()
    transformers_logging.disable_default_handler()
    transformers_logging.add_handler(report)
    transformers_logging.set_verbosity_warning()
    try:
        model = load_model(state.model_source, token_pruning=False)   # calibration sees every token
    except Exception as error:     # noqa: BLE001 (whatever the user's files make the library raise)
        if "ignore_mismatched_sizes" in str(error):
            raise ExportError(_size_mismatch(state.model_source)) from None
        raise ExportError(f"{state.model_source}: cannot load the model "
                          f"({type(error).__name__}: {_first_line(error)})") from None
    finally:
        transformers_logging.set_verbosity(verbosity)
        transformers_logging.remove_handler(report)
        transformers_logging.enable_default_handler()
    missing, unexpected = report.keys("MISSING"), report.keys("UNEXPECTED")
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ExportError(f"{state.model_source}: the weights lack {missing[0]}{more}, which the "
                          f"model of config.json has (it would be initialised at random)")
    if unexpected:
        state.notes.append(f"{state.model_source}: {len(unexpected)} tensors of the weights are "
                           f"not in the model of config.json and were ignored ({unexpected[0]}"
                           f"{', ...' if len(unexpected) > 1 else ''})")
    config = model.config
    structure = structure_for(model)
    backbone = getattr(model, state.architecture, None)
    if backbone is None or not hasattr(backbone, "embeddings"):
        raise ExportError(f"{state.model_source}: {type(model).__name__} is not a "
                          f"{state.architecture} image classifier (no {state.architecture}."
                          f"embeddings)")
    if getattr(config, "num_channels", 3) != 3:
        raise ExportError(f"{state.model_source}: the model takes {config.num_channels} image "
                          f"channels; calibration feeds 3-channel (RGB) images")
    with torch.no_grad():
        size = int(config.image_size)
        tokens = backbone.embeddings(torch.zeros(1, 3, size, size)).shape[1]
    layers = len(encoder_layers(model))
    state.model = model
    state.topology = {"hidden_size": int(config.hidden_size),
                      "num_heads": structure.num_heads(config),
                      "head_dim": structure.head_dim(config),
                      "ffn_size": int(config.intermediate_size), "tokens": int(tokens),
                      "layers": layers, "image_size": size, "norm": structure.norm}
    return state


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


class _LoadReport(logging.Handler):
    """Keeps transformers' log messages during a model load instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def keys(self, status: str) -> list[str]:
        """The tensor names of the load report's rows with ``status`` (``key | STATUS | ...``)."""
        keys = []
        for message in self.messages:
            for line in message.splitlines():
                cells = [cell.strip() for cell in line.split("|")]
                if len(cells) >= 2 and cells[1] == status:
                    keys.append(cells[0])
        return keys


def _check_safetensors(directory: Path) -> None:
    """Every ``*.safetensors`` weight file must have a readable header covering the file (a
    garbage or truncated file is named here, not in a library traceback)."""
    from safetensors import safe_open
    for path in sorted(Path(directory).glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as weights:
                weights.keys()
        except Exception as error:      # noqa: BLE001 (SafetensorError, OSError, ...)
            raise ExportError(f"{path}: not a readable safetensors file "
                              f"({_first_line(error)})") from None


def _size_mismatch(directory: Path) -> str:
    """One line naming a weight whose shape differs from what ``config.json`` builds."""
    from transformers import AutoModelForImageClassification
    try:
        _, info = AutoModelForImageClassification.from_pretrained(
            directory, local_files_only=True, ignore_mismatched_sizes=True,
            output_loading_info=True)
        mismatched = sorted(info["mismatched_keys"], key=lambda entry: str(entry[0]))
    except Exception:      # noqa: BLE001 (the first load already failed; say what is known)
        mismatched = []
    if not mismatched:
        return f"{directory}: the weights do not match config.json's sizes"
    name, stored, expected = mismatched[0]
    more = f" (and {len(mismatched) - 1} more tensors)" if len(mismatched) > 1 else ""
    return (f"{directory}: the weights do not match config.json's sizes: {name} is "
            f"{'x'.join(map(str, stored))} in the weights, config.json gives "
            f"{'x'.join(map(str, expected))}{more}")


def _report_indices(values, count: int, what: str) -> tuple:
    if (not isinstance(values, list) or not values
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in values)
            or sorted(set(values)) != values or values[0] < 0 or values[-1] >= count):
        raise ExportError(f"pruning_report.json: {what} must be a non-empty increasing list of "
                          f"indices below {count}, found {str(values)[:60]}")
    return tuple(values)


def _weights(state: ExportState, index: int) -> dict:
    """``(out, in)`` float64 weights and biases of one layer's linears."""
    from sw.pruning.structures import linear_modules, weight_out_in
    layer = linear_modules(state.model)[index]
    result = {}
    for role in TENSOR_ROLES:
        module = layer[role][1]
        weight = weight_out_in(module).detach().double().numpy()
        bias = (module.bias.detach().double().numpy() if module.bias is not None
                else np.zeros(weight.shape[0]))
        result[role] = (weight, bias)
    return result


def _pruning_block(layers, index: int, role: str, topology: dict) -> tuple[int, int]:
    """The report's ``layers[index].linears[role].block_shape``; (0, 0) where the report has
    none. A shape that is there must divide the unpruned weight (as the loader checks)."""
    try:
        shape = layers[index]["linears"][role]["block_shape"]
    except (TypeError, KeyError, IndexError):
        return (0, 0)
    problem = (f"{str(shape)[:40]} is not a [rows, cols] pair"
               if not isinstance(shape, list) or len(shape) != 2
               else pruning_block_problem(tuple(shape),
                                          dense_shape(role, SimpleNamespace(**topology))))
    if problem is not None:
        raise ExportError(f"pruning_report.json: layers[{index}].linears.{role}.block_shape "
                          f"{problem}")
    return tuple(shape)


def choose_kept_units(state: ExportState) -> ExportState:
    """Kept heads and FFN neurons: the pruning report's, plus any it removes that still matter.

    Heads follow the surgery's one rule, :func:`sw.pruning.surgery.removable_heads` (zero O
    columns, or zero V weight rows; in a token-pruning layer also a constant attention row): a
    head the report removes against that rule is kept, with a note, and the constant
    ``O_h @ b_v,h`` of each removed head is folded into O's bias
    (:func:`~sw.pruning.surgery.fold_head_constants`), as the surgery does. A neuron is inert
    when its FC2 column is zero or its FC1 row and bias are (GELU(0) = 0). The surgery removes
    neurons whose FC1 row alone is zero and folds ``act(b1)`` into FC2's bias in the *filled*
    model; the pruned model still computes them, so the image keeps them.
    """
    from sw.pruning.surgery import fold_head_constants, removable_heads
    topology = state.topology
    heads, ffn = topology["num_heads"], topology["ffn_size"]
    surgery = None
    if state.report is not None:
        surgery = state.report.get("surgery") if isinstance(state.report, dict) else None
        if not isinstance(surgery, dict) or not isinstance(surgery.get("layers"), list):
            raise ExportError("pruning_report.json: no 'surgery' with a 'layers' list (written "
                              "by sw/prune.py)")
        if len(surgery["layers"]) != topology["layers"]:
            raise ExportError(f"pruning_report.json: surgery lists {len(surgery['layers'])} "
                              f"layers, the model has {topology['layers']}")
    tokens = state.report.get("tokens") if isinstance(state.report, dict) else None
    token_layers = tokens.get("layers") if isinstance(tokens, dict) else None
    token_layers = token_layers if isinstance(token_layers, list) else []
    for index in range(topology["layers"]):
        weights = _weights(state, index)
        if surgery is None:
            kept_heads, kept_ffn = tuple(range(heads)), tuple(range(ffn))
        else:
            entry = surgery["layers"][index]
            if not isinstance(entry, dict):
                raise ExportError(f"pruning_report.json: surgery layer {index} is not an object")
            kept_heads = _report_indices(entry.get("kept_heads"), heads,
                                         f"surgery layer {index} kept_heads")
            kept_ffn = _report_indices(entry.get("kept_neurons"), ffn,
                                       f"surgery layer {index} kept_neurons")
        removed = sorted(set(range(heads)) - set(kept_heads))
        live_heads = []
        if removed:
            live = {role: weights[role][0] != 0 for role in ("q", "k", "v", "o")}
            live.update({f"{role}_bias": weights[role][1] != 0 for role in ("q", "k", "v")})
            removable = removable_heads(live, num_heads=heads,
                                        selects_tokens=index in token_layers)
            live_heads = [head for head in removed if head not in removable]
            fold_head_constants(state.model, index, [h for h in removed if h in removable])
        fc1_weight, fc1_bias = weights["fc1"]
        fc2_weight = weights["fc2"][0]
        live_neurons = [n for n in sorted(set(range(ffn)) - set(kept_ffn))
                        if fc2_weight[:, n].any() and (fc1_weight[n].any() or fc1_bias[n])]
        if live_heads:
            state.notes.append(f"layer {index}: heads {live_heads} kept although the report "
                               f"removes them: " + ("their V and O weights are not zero"
                                                    if index not in token_layers else
                                                    "they are live or choose the kept tokens"))
        if live_neurons:
            state.notes.append(f"layer {index}: {len(live_neurons)} FFN neurons kept although "
                               f"the report removes them: their constant output act(b1) still "
                               f"reaches FC2 in the pruned model")
        state.kept_heads.append(tuple(sorted(set(kept_heads) | set(live_heads))))
        state.kept_ffn.append(tuple(sorted(set(kept_ffn) | set(live_neurons))))
        blocks = {}
        layers = state.report.get("layers") if state.report else None
        for role in TENSOR_ROLES:
            blocks[role] = _pruning_block(layers, index, role, topology)
        state.pruning_blocks.append(blocks)
    return state


def _recorded_token_pruning(state: ExportState) -> dict | None:
    """The gathers a plain directory's ``config.json`` records (``token_pruning``, written by
    ``sw.pruning.tokens.patch_token_pruning``: ``--model run/pruned``), as a report entry."""
    from sw.pruning.tokens import CONFIG_FIELD, PROTECTED_TOKENS, TokenPruningArgs
    recorded = getattr(state.model.config, CONFIG_FIELD, None)
    if recorded is None:
        return None
    where = f"{state.model_source / 'config.json'}: {CONFIG_FIELD}"
    if not isinstance(recorded, dict) or set(recorded) != {"keep_rate", "layers", "fuse"}:
        raise ExportError(f"{where}: expected an object with keep_rate, layers, fuse, found "
                          f"{str(recorded)[:60]}")
    try:
        args = TokenPruningArgs(**recorded, warmup=False)
    except ValueError as error:
        raise ExportError(f"{where}: {error}") from None
    if args.layers[-1] >= state.topology["layers"]:
        raise ExportError(f"{where}: layers {list(args.layers)} reach beyond the model's "
                          f"{state.topology['layers']} layers")
    return {**args.to_dict(), "protected": PROTECTED_TOKENS[state.architecture]}


def choose_token_pruning(state: ExportState) -> ExportState:
    """Each layer's token gather, from the pruning report's ``"tokens"`` entry (written by
    ``sw/prune.py`` when the recipe prunes tokens), or for a plain directory from its
    ``config.json``'s ``token_pruning``: the same keep counts the model was fine-tuned with
    (``sw.golden.token_select.keep_count``), so the image's programs gather exactly where and
    as much as training did."""
    from sw.golden.token_select import TokenPruning, keep_count
    layers = state.topology["layers"]
    if isinstance(state.report, dict):
        entry = state.report.get("tokens")
    else:
        entry = _recorded_token_pruning(state)
    state.token_entry = entry
    if entry is None:
        state.token_pruning = [None] * layers
        return state
    try:
        keep_rate, protected, fuse, chosen = (entry[key] for key in ("keep_rate", "protected",
                                                                     "fuse", "layers"))
    except (KeyError, TypeError):
        raise ExportError("pruning_report.json: 'tokens' needs keep_rate, protected, fuse and "
                          "layers (written by sw/prune.py)") from None

    def integer(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)
    if (not isinstance(fuse, bool) or not (integer(keep_rate) or isinstance(keep_rate, float))
            or not 0 < keep_rate <= 1 or not integer(protected) or protected < 1):
        raise ExportError(f"pruning_report.json: tokens keep_rate {keep_rate!r}, protected "
                          f"{protected!r}, fuse {fuse!r} are out of range")
    indices = isinstance(chosen, list) and all(integer(value) for value in chosen)
    _report_indices(sorted(chosen) if indices else chosen, layers, "tokens layers")
    rows, result = state.topology["tokens"], []
    for index in range(layers):
        gather = None
        if index in chosen and rows > protected:
            gather = TokenPruning(keep=keep_count(rows - protected, keep_rate),
                                  protected=protected, fuse=fuse)
            if gather.output_tokens(rows) == rows:
                gather = None
        result.append(gather)
        rows = rows if gather is None else gather.output_tokens(rows)
    state.token_pruning = result
    return state


def fit_to_hardware(state: ExportState) -> ExportState:
    """Pad the kept FFN neurons to whole blocks and check every matrix against the block shape.

    FC1's rows and FC2's columns are the kept neurons, so their count must be a multiple of both
    ``block_rows`` and ``block_cols``; inert neurons (zero FC1 row and FC2 column first, then
    the lowest indices) fill the gap. Their outputs are exactly zero in float and in integers.
    """
    hw = state.hardware.hardware
    topology = state.topology
    ffn, head_dim, hidden = topology["ffn_size"], topology["head_dim"], topology["hidden_size"]
    step = EngineParams.from_config(state.hardware).ffn_step
    for index, kept in enumerate(state.kept_ffn):
        need = -len(kept) % step
        padding = []
        if need:
            weights = _weights(state, index)
            fc1_weight, fc2_weight = weights["fc1"][0], weights["fc2"][0]

            def has_weights(neuron: int) -> bool:
                return bool(fc1_weight[neuron].any() or fc2_weight[:, neuron].any())
            candidates = sorted(set(range(ffn)) - set(kept), key=lambda n: (has_weights(n), n))
            if len(candidates) >= need:       # else the block check below names the matrix
                padding = candidates[:need]
        state.kept_ffn[index] = tuple(sorted(set(kept) | set(padding)))
        state.ffn_padding.append(len(padding))
    for index in range(topology["layers"]):
        attention = len(state.kept_heads[index]) * head_dim
        neurons = len(state.kept_ffn[index])
        shapes = {"q": (attention, hidden), "k": (attention, hidden), "v": (attention, hidden),
                  "o": (hidden, attention), "fc1": (neurons, hidden), "fc2": (hidden, neurons)}
        for role, (rows, cols) in shapes.items():
            if rows % hw.block_rows or cols % hw.block_cols:
                raise ExportError(
                    f"layer {index} {role}: the {hw.block_rows}x{hw.block_cols} block of config "
                    f"'{state.hardware.name}' does not divide the {rows}x{cols} matrix")
    _params(state, weight_words=None)
    return state


def _params(state: ExportState, *, weight_words: int | None) -> AcceleratorConfig:
    """The accelerator config sized from the pruned model (``weight_words``: the most words a
    weight's stored blocks take; None while unknown)."""
    topology = state.topology
    hw = state.hardware.hardware
    try:
        model = ModelTopology(
            hidden_size=topology["hidden_size"], num_heads=topology["num_heads"],
            head_dim=topology["head_dim"],
            ffn_size=max(len(kept) for kept in state.kept_ffn), tokens=topology["tokens"],
            layers=topology["layers"], norm=topology["norm"])
        buffers = minimum_buffers(model, array_rows=hw.array_rows, array_cols=hw.array_cols,
                                  block_rows=hw.block_rows, block_cols=hw.block_cols)
        if weight_words is not None:
            buffers["weight_buffer_depth"] = max(buffers["weight_buffer_depth"], weight_words)
        return AcceleratorConfig(name=_config_name(state), model=model,
                                 hardware=dataclasses.replace(hw, **buffers))
    except ConfigError as error:
        raise ExportError(f"the model does not fit config '{state.hardware.name}': "
                          f"{error}") from None


def _config_name(state: ExportState) -> str:
    request = state.request
    if request.name is not None:
        return request.name
    base = Path(request.out).name if request.out is not None else Path(request.model_dir).name
    return re.sub(r"[^A-Za-z0-9_.-]", "_", base).lstrip(".") or "image"


def calibration_images(image_size: int, count: int):
    """The first ``count`` images of the digits train split (val_fraction 0.2, seed 0)."""
    from sw.data.digits import load_digits_train_images
    return load_digits_train_images(count, image_size, **CALIBRATION_SPLIT)


def _recorded_data(state: ExportState):
    """The data recorded with the model: ``pruning_report.json``'s ``"data"``, or a
    ``training.json`` written by ``sw/train_digits.py`` (digits); None when there is none."""
    from sw.data.source import DIGITS, DataError, DataSource
    if isinstance(state.report, dict):
        if "data" in state.report:
            try:
                return DataSource.from_dict(state.report["data"],
                                            where="pruning_report.json: data")
            except DataError as error:
                raise ExportError(f"{error}; pass --calibration DIR|digits") from None
        # A report without "data" comes from a prune.py that could only use the digits.
        state.notes.append("pruning_report.json records no data (it predates prune.py --data, "
                           "which pruned on the digits): calibrating on the digits")
        return DataSource.parse(DIGITS)
    record_path = state.model_source / "training.json"
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("data"), dict) \
            or "digits_normalisation" not in record["data"]:
        return None
    options = record.get("options") if isinstance(record.get("options"), dict) else {}
    try:
        return DataSource.from_dict({"source": DIGITS,
                                     "val_fraction": options.get("val_fraction", 0.2),
                                     "seed": options.get("split_seed", 0)},
                                    where=f"{record_path}: options")
    except DataError as error:
        raise ExportError(str(error)) from None


def choose_calibration_data(state: ExportState) -> ExportState:
    """The calibration data: the request's ``calibration`` (``"digits"`` or an image folder),
    else the data recorded with the model (the pruning report's ``"data"``; a digits teacher's
    ``training.json``), else an error: never the digits behind the user's back. Its classes and
    the model's image size are checked (:func:`sw.data.source.check_model_data`)."""
    from sw.data.source import DataError, DataSource, check_model_data
    try:
        if isinstance(state.request.calibration, DataSource):
            source = state.request.calibration
        elif state.request.calibration is not None:
            try:
                source = DataSource.parse(state.request.calibration)
            except DataError as error:
                raise ExportError(f"--calibration: {error}") from None
        else:
            source = _recorded_data(state)
            if source is None:
                raise ExportError(f"{state.request.model_dir}: no data is recorded with this "
                                  f"model (no pruning_report.json data, no training.json of "
                                  f"sw/train_digits.py); pass --calibration DIR|digits")
        check_model_data(state.model.config, source, model=str(state.model_source))
    except DataError as error:
        raise ExportError(str(error)) from None
    state.calibration_data = source
    return state


def quantize(state: ExportState) -> ExportState:
    """Calibrate on the chosen data and quantize the kept heads and neurons."""
    from sw.data.source import DataError
    from sw.golden.deit_int import quantize_model
    requested = state.request.calibration_images
    source = state.calibration_data
    try:
        state.calibration = source.calibration_images(state.topology["image_size"], requested)
    except DataError as error:
        raise ExportError(f"calibration data: {error}") from None
    if len(state.calibration) < requested:
        state.notes.append(f"--calibration-images {requested}: the train split of "
                           f"{source.describe()} has {len(state.calibration)} images; "
                           f"calibrated on all of them")
    try:
        state.integer_model = quantize_model(state.model, state.calibration,
                                             kept_heads=state.kept_heads,
                                             kept_ffn=state.kept_ffn,
                                             progress=state.request.progress)
    except ValueError as error:
        raise ExportError(f"quantization failed: {error}") from None
    return state


def quantize_embedding_and_head(state: ExportState) -> ExportState:
    """Quantize the model around the encoder on the same calibration images: the patch
    embedding (the pixels' and its output's int8 scales) with the position table, and the
    classifier on the final LayerNorm's output (``sw.golden.model_stages.quantize_stages``)."""
    from sw.golden.model_stages import quantize_stages
    model = state.model
    if not hasattr(model, "classifier"):
        heads = ", ".join(name for name in ("cls_classifier", "distillation_classifier")
                          if hasattr(model, name))
        raise ExportError(f"{state.request.model_dir}: {type(model).__name__} has "
                          f"{heads or 'no classifier'}; the accelerator's head program runs "
                          f"one classifier on the class token (a distilled DeiT's averaged "
                          f"two heads are not supported)")
    try:
        state.embedding, state.head = quantize_stages(
            state.integer_model, state.calibration,
            block_rows=state.hardware.hardware.block_rows)
    except ValueError as error:
        raise ExportError(f"quantizing the embedding and head failed: {error}") from None
    return state


def _linear_image(state: ExportState, what: str, quantized,
                  pruning_block: tuple = (0, 0)) -> LinearImage:
    """A linear's image (``what`` names it in messages: ``"layer 0 q"``, ``"embedding"``)."""
    hw = state.hardware.hardware
    rows, cols = np.shape(quantized.weight)
    if rows % hw.block_rows or cols % hw.block_cols:
        raise ExportError(f"{what}: the {hw.block_rows}x{hw.block_cols} block of config "
                          f"'{state.hardware.name}' does not divide the {rows}x{cols} matrix")
    matrix = BlockSparseMatrix.from_dense(quantized.weight, (hw.block_rows, hw.block_cols))
    low, high = signed_range(hw.acc_width)
    bias = np.asarray(quantized.bias)
    if bias.size and (bias.min() < low or bias.max() > high):
        raise ExportError(f"{what}: a bias needs more than acc_width {hw.acc_width} bits")
    if np.asarray(quantized.multiplier).max(initial=0) >= 1 << hw.multiplier_width:
        raise ExportError(f"{what}: a multiplier needs more than multiplier_width "
                          f"{hw.multiplier_width} bits")
    return LinearImage(weights=matrix, pruning_block_shape=pruning_block,
                       bias=bias, multiplier=np.asarray(quantized.multiplier),
                       shift=np.asarray(quantized.shift),
                       weight_scale=np.asarray(quantized.weight_scale, dtype=np.float64),
                       input_scale=quantized.input_scale, output_scale=quantized.output_scale)


def assemble(state: ExportState) -> ExportState:
    """Build the image and params.json, encode it, and load the bytes back as a check."""
    topology = state.topology
    layers = []
    tokens = topology["tokens"]
    for index, integer in enumerate(state.integer_model.layers):
        linears = {role: _linear_image(state, f"layer {index} {role}", getattr(integer, role),
                                       state.pruning_blocks[index][role])
                   for role in TENSOR_ROLES}
        gather = state.token_pruning[index]
        token_keep = tokens if gather is None else gather.output_tokens(tokens)
        protected, fuse = (1, True) if gather is None else (gather.protected, gather.fuse)
        layers.append(LayerImage(
            index=index, head_dim=integer.head_dim, kept_heads=tuple(integer.kept_heads),
            kept_ffn=tuple(integer.kept_ffn), ffn_padding=state.ffn_padding[index],
            tokens=tokens, token_keep=token_keep,
            scales={point: float(integer.scales[point]) for point in SCALE_POINTS},
            ln1=integer.ln1, softmax=integer.softmax,
            context_multiplier=integer.context_multiplier,
            context_shift=integer.context_shift, residual1=integer.residual1, ln2=integer.ln2,
            gelu=integer.gelu, residual2=integer.residual2, linears=linears,
            program=layer_program(integer.kept_heads, tokens=tokens, token_keep=token_keep,
                                  protected=protected, fuse=fuse,
                                  norm=state.topology["norm"])))
        tokens = token_keep
    stage_linears = {"embedding": _linear_image(state, "embedding", state.embedding.linear),
                     "head": _linear_image(state, "head", state.head.classifier)}
    words_per_block = EngineParams.from_config(state.hardware).words_per_block
    most_blocks = max(linear.weights.nnz_blocks for linear in (
        *stage_linears.values(), *(linear for layer in layers
                                   for linear in layer.linears.values())))
    state.config = _params(state, weight_words=most_blocks * words_per_block)
    programs = {}
    for stage, linear in stage_linears.items():
        try:
            programs[stage] = stage_program(stage, stage_slot(stage, linear.weights.shape,
                                                              state.config))
        except ValueError as error:
            raise ExportError(str(error)) from None
    embedding, integer_model = state.embedding, state.integer_model
    state.image = WeightImage(
        config=state.config,
        model=ModelInfo(architecture=state.architecture, layers=topology["layers"],
                        hidden_size=topology["hidden_size"], num_heads=topology["num_heads"],
                        head_dim=topology["head_dim"], ffn_size=topology["ffn_size"],
                        tokens=topology["tokens"], input_scale=float(integer_model.input_scale),
                        final_scale=float(integer_model.final_scale)),
        final_layernorm=integer_model.final_layernorm,
        embedding=EmbeddingImage(
            patch_size=embedding.patch_size, channels=embedding.channels,
            image_size=topology["image_size"], protected=embedding.protected,
            residual=embedding.residual, position=embedding.position,
            linear=stage_linears["embedding"], program=programs["embedding"]),
        layers=tuple(layers),
        head=HeadImage(classes=state.head.classes, linear=stage_linears["head"],
                       program=programs["head"]))
    try:
        state.data = encode_image(state.image)
        state.image = parse_image(state.data, source="the exported image")
    except ImageError as error:
        raise ExportError(str(error)) from None
    return state


#: The export, in order.
STEPS = (
    ("read hardware config", read_hardware_config),
    ("locate model", locate_model),
    ("load model", load_torch_model),
    ("choose kept heads and FFN neurons", choose_kept_units),
    ("choose token gathers", choose_token_pruning),
    ("fit to the hardware", fit_to_hardware),
    ("choose calibration data", choose_calibration_data),
    ("quantize", quantize),
    ("quantize embedding and head", quantize_embedding_and_head),
    ("assemble image", assemble),
)


def export(request: ExportRequest, *, on_step=None) -> ExportState:
    """Run :data:`STEPS`; ``on_step(name)`` is called before each. Nothing is written.

    Raises
    ------
    ExportError
        At the first problem with the model, the report or the config.
    """
    state = ExportState(request=request)
    for name, step in STEPS:
        if on_step is not None:
            on_step(name)
        state = step(state)
    return state


# ------------------------------------------------------------------------------------------------
# Verification and output
# ------------------------------------------------------------------------------------------------

def verify(state: ExportState, images=None) -> dict:
    """Golden model from the image's bytes vs golden model quantized from the torch model.

    Both run on ``images`` (default: the calibration images). The encoder runs from the same
    int16 embeddings, and every layer's output and the final LayerNorm output are compared with
    ``==``; then the whole model, image in and int8 logits out, from the image's programs
    (``sw.image.golden.classify``) against the integer model with its stages
    (``sw.golden.model_stages.model_int``). Returns ``{"images", "layers": [{"index",
    "values", "differences"}], "final": {...}, "logits": {...}, "differences"}`` (total
    differing values), the float model's top-1 agreement with the integer encoder (float
    embedding and classifier) and with the whole integer model.
    """
    import torch

    from sw.golden.encoder_layer import encoder_layer_int
    from sw.golden.kernels import layernorm_int
    from sw.golden.model_stages import model_int
    from sw.image.golden import classify, encode
    images = state.calibration if images is None else images
    reference = state.integer_model
    from_bytes = parse_image(state.data, source="the exported image")
    x = reference.embed(images)
    traces: list[dict] = []
    image_output = encode(from_bytes, x, traces=traces)
    layers, total = [], 0
    for index, layer in enumerate(reference.layers):
        x = encoder_layer_int(layer, x, token_pruning=state.token_pruning[index])
        differences = int(np.count_nonzero(x != traces[index]["output"]))
        total += differences
        layers.append({"index": index, "values": int(x.size), "differences": differences})
    reference_output = layernorm_int(x, reference.final_layernorm)
    final = int(np.count_nonzero(reference_output != image_output))
    image_logits = classify(from_bytes, images)
    reference_logits = model_int(reference, state.embedding, state.head, images,
                                 token_pruning=state.token_pruning)
    logits = int(np.count_nonzero(image_logits != reference_logits))
    model = state.model
    if any(gather is not None for gather in state.token_pruning):     # the same gathers
        import copy

        from sw.pruning.tokens import TokenPruningArgs, patch_token_pruning
        entry = state.token_entry
        model = copy.deepcopy(state.model)
        patch_token_pruning(model, TokenPruningArgs.from_dict({
            key: entry[key] for key in ("keep_rate", "layers", "fuse")}))
    with torch.no_grad():
        float_top1 = model(pixel_values=images).logits.argmax(-1).numpy()
    integer_top1 = reference.logits(images, token_pruning=state.token_pruning).argmax(-1)
    whole_top1 = image_logits[:, :from_bytes.head.classes].argmax(-1)
    return {"images": int(len(images)), "layers": layers,
            "final": {"values": int(image_output.size), "differences": final},
            "logits": {"values": int(image_logits.size), "differences": logits},
            "differences": total + final + logits,
            "float_vs_integer_top1_agreement": float(np.mean(float_top1 == integer_top1)),
            "float_vs_whole_integer_top1_agreement": float(np.mean(float_top1 == whole_top1))}


def write(state: ExportState, out: Path) -> dict:
    """Write ``weights.bin``, ``params.json`` and ``manifest.json`` into ``out`` atomically.

    The directory is built under a temporary name and renamed into place, so a failure leaves
    the previous ``out`` (or none) untouched; an earlier replay's ``replay/`` in it is removed
    (stale: it measured the image replaced). Returns the manifest. Its ``"calibration"``
    entry records the calibration data (its :meth:`~sw.data.source.DataSource.to_dict`), the
    image count and size and the model directory:
    :func:`sw.data.calibration.load_recorded_calibration` reads it back.

    Raises
    ------
    ExportError
        If ``out`` exists and holds files other than the export's own.
    """
    out = Path(out)
    check_output_directory(out)
    document = manifest(state.image, image_crc32=zlib.crc32(state.data))
    document["calibration"] = {**state.calibration_data.to_dict(),
                               "images": int(len(state.calibration)),
                               "image_size": int(state.topology["image_size"]),
                               "model": str(Path(state.model_source).absolute())}

    def fill(staging: Path) -> None:
        (staging / "weights.bin").write_bytes(state.data)
        (staging / "params.json").write_text(state.config.to_json(), encoding="utf-8")
        (staging / "manifest.json").write_text(json.dumps(document, indent=2) + "\n",
                                               encoding="utf-8")
    try:
        replace_directory(out, fill)
    except OSError as error:
        raise ExportError(f"{out}: cannot write the export ({error.strerror or error})") from None
    return document


def _earlier_replay(directory: Path) -> bool:
    """Whether ``directory`` is a real directory holding nothing but an earlier replay's files
    (``replay.json``, and ``waves.vcd`` if traced)."""
    if directory.is_symlink():
        return False
    try:
        check_replay_directory(directory, manifest=REPLAY_RECORD,
                               contents=(REPLAY_RECORD, REPLAY_WAVES))
    except OutputRefused:
        return False
    return True


def check_output_directory(out: Path) -> None:
    """Refuse an ``out`` that :func:`write` could not fill: one holding files other than the
    export's and an earlier replay's ``replay/`` (:data:`REPLAY_DIR`, which the new export
    removes; one holding other files is refused), a file, a path under a file, or one whose
    (nearest existing) parent directory cannot be written (tried by creating and removing a
    directory there).

    Raises
    ------
    ExportError
        Naming ``out`` and the problem.
    """
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise ExportError(f"{out}: exists and is not a directory")
        others = sorted(entry.name for entry in out.iterdir() if entry.name not in OUTPUT_FILES
                        and not (entry.name == REPLAY_DIR and _earlier_replay(entry)))
        if others:
            raise ExportError(f"{out}: refusing to replace a directory that holds other files "
                              f"({', '.join(others[:5])})")
    parent = out.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ExportError(f"{out}: cannot create it: {parent} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".probe", dir=parent))
    except OSError as error:
        raise ExportError(f"{out}: cannot write in {parent} ({error.strerror})") from None
