"""Replay the layers of any exported weight image on the layer engine's RTL, from the command line.

    python sim/replay.py --image DIR [--layers 0,1|all] [--inputs N] [--whole] [--waves]
                         [--model MODEL] [--fmax-mhz MHZ]
    python -m sim.replay ...                                   (the same)

``DIR`` is an ``export_sparse.py`` output (``weights.bin``, ``params.json``, ``manifest.json``).
The layer engine is generated from ``DIR/params.json`` and built with Verilator (cached under
``build/sim/``, as ``sim.harness.build`` caches every build); each chosen layer runs on it fed the
golden model's input for that layer, computed from the first ``N`` of the calibration images
recorded with the image in ``manifest.json`` (:func:`encoder_inputs`; ``--model`` overrides the
recorded model directory); with every layer chosen (``--layers all``, the default) the layers
are chained on chip instead: only layer 0's input is loaded, each later layer runs on what the
one before it left in the scratchpad (``sim.encoder_replay``), while its golden input is still
what its output is compared with. ``--whole`` runs the whole model instead, image in and int8
logits out (the patch embedding and the head as programs of the same engine, from the image's
EMBEDDING and HEAD sections; it needs only the image and the recorded calibration images, not
the model), and reports each input's class and whether its logits equal the whole integer
model's (``sw.image.golden``). The testbench checks every output against the golden model (``==``)
and every instruction's cycles against the cycle model. A per-layer table goes to standard
output; ``DIR/replay/`` receives ``replay.json`` (``layers: [{index, bit_exact, cycles,
model_cycles, utilization, at_fmax, ...}]``, ``per_image``, ``clock``) and with ``--waves`` the
trace of every signal, ``waves.vcd``.

Time beside the cycles: at the Fmax of the placed and routed layer engine of the image's config
(``build/<config>/synth/layer_engine.json``, written by ``make synth CONFIG=DIR/params.json``),
or at ``--fmax-mhz``, labelled as given, not measured. Each layer's ``at_fmax``
(``hw.synth.throughput.at_fmax``): latency in microseconds, layers per second, effective
(dense-equivalent) GOP/s, that is twice the unpruned layer's multiply-accumulates
(``dense_layer_macs``, the cycle model's dense layer of the image's model topology) per second
of the pruned run, and GOP/s per MULT18X18D of the engine's synthesis report; ``per_image`` the
same for all layers (when all were replayed), with images per second. Without a clock the
table says so in one line naming the command that measures it, and those fields are null.

``DIR/replay/`` is replaced whole, and only if it holds nothing but an earlier replay's files.
The simulation works in ``build/replay/<config>-*/``, removed when every layer is exact and
kept, with its ``sim.log``, when not.

Exit status: 0 when every layer is bit-exact and cycle-exact; 1 when one is not (replay.json says
which) or when the build or the simulation fails (one ``error:`` line); 2 with one ``error:``
line on bad input (nothing written); 130 after Ctrl-C (``DIR/replay/`` as it was).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script path, the repository root is not on sys.path; make the packages importable.
_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

if __name__ == "__main__":
    from sw.cli import exit_130_on_interrupt_during_imports
    exit_130_on_interrupt_during_imports("sim/replay.py")

import dataclasses  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402

from sw.build_files import BUILD_ROOT  # noqa: E402
from sw.atomic import OutputRefused, check_output_directory, replace_directory  # noqa: E402
from sw.cli import (BAD_INPUT, OneLineArgumentParser, exit_130_on_interrupt,  # noqa: E402
                    one_line)
from sw.config import AcceleratorConfig, ConfigError, load_config  # noqa: E402
from sw.image.export import REPLAY_DIR, REPLAY_RECORD, REPLAY_WAVES  # noqa: E402
from sw.image.format import ImageError, WeightImage  # noqa: E402
from sw.image.loader import load_image  # noqa: E402

__all__ = ["REPLAY_DIR", "RESULT_FILE", "WAVES_FILE", "ReplayError", "ReplayFailed", "LayerResult",
           "ReplayReport", "parse_layers", "load_replay_image", "encoder_inputs",
           "nonzero_macs", "dense_layer_macs", "replay_clock", "layer_results", "replay_image",
           "read_report", "main"]

PROG = "sim/replay.py"
#: The replay's own directory inside the image directory, and what it holds (named by the
#: exporter, which removes it when it replaces the image).
RESULT_FILE = REPLAY_RECORD
WAVES_FILE = REPLAY_WAVES
#: The exit status when a layer is not bit-exact or not cycle-exact, or the build or the
#: simulation fails.
MISMATCH = 1


class ReplayError(ValueError):
    """The image, the model or a choice cannot be replayed; one line naming the problem."""


class ReplayFailed(RuntimeError):
    """The Verilator build failed, or the simulation ended without results; one line."""


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------

def parse_layers(text: str, count: int) -> tuple[int, ...]:
    """The layer indices ``text`` chooses of an image with ``count`` layers: ``"all"`` or
    comma-separated indices (``"0,1"``), returned sorted and without repeats.

    Raises
    ------
    ReplayError
        If ``text`` is neither, or names a layer the image does not have.
    """
    if text.strip() == "all":
        return tuple(range(count))
    indices = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdecimal() or not part.isascii():
            raise ReplayError(f"--layers: {one_line(text)!r} is not 'all' or layer indices "
                              f"separated by commas (e.g. 0,1)")
        index = int(part)
        if index >= count:
            raise ReplayError(f"--layers: layer {index} is out of range; the image has {count} "
                              f"layers (0 to {count - 1})")
        indices.append(index)
    return tuple(sorted(set(indices)))


def load_replay_image(image_dir: Path) -> tuple[WeightImage, AcceleratorConfig]:
    """The image of ``image_dir`` and its ``params.json``, which must be the image's own config.

    Raises
    ------
    ReplayError
        If the directory, ``weights.bin`` or ``params.json`` is missing or invalid.
    """
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise ReplayError(f"{one_line(image_dir)}: image directory not found")
    for name in ("weights.bin", "params.json"):
        if not (image_dir / name).is_file():
            raise ReplayError(f"{one_line(image_dir)}: no {name} (not an export_sparse.py "
                              f"output directory)")
    try:
        image = load_image(image_dir / "weights.bin")
    except ImageError as error:
        raise ReplayError(str(error)) from None
    try:     # also checks params.json against the image beside it; the message names the file
        config = load_config(image_dir / "params.json")
    except ConfigError as error:
        raise ReplayError(str(error)) from None
    return image, config


def recorded_calibration(image_dir: Path, count: int):
    """The calibration recorded with the image (``manifest.json``,
    ``sw.data.calibration.load_recorded_calibration``), holding at least ``count`` images: its
    first ``count`` are what ``--whole`` feeds the whole model.

    Raises
    ------
    ReplayError
        If none is recorded, the data changed, or it has fewer than ``count`` images.
    """
    from sw.data.calibration import load_recorded_calibration
    from sw.data.source import DataError
    try:
        recorded = load_recorded_calibration(image_dir)
    except DataError as error:
        raise ReplayError(str(error)) from None
    if len(recorded.images) < count:
        raise ReplayError(f"--inputs {count}: the image was calibrated on "
                          f"{len(recorded.images)} images; at most that many inputs")
    return recorded


def encoder_inputs(image_dir: Path, image: WeightImage, count: int, *,
                   model_dir: Path | None = None) -> np.ndarray:
    """The golden model's int16 encoder inputs ``(count, tokens, hidden)`` of the first
    ``count`` calibration images the image in ``image_dir`` was exported with.

    The image holds the encoder only; its input is the model's float patch embedding of the
    calibration images, quantized with the image's calibrated input scale
    (``sw.golden.deit_int.IntegerDeiT.embed``). ``manifest.json`` records the calibration data
    and the model directory (:func:`sw.data.calibration.load_recorded_calibration`); the images
    are read back exactly as the exporter calibrated on them. ``model_dir`` overrides the
    recorded model directory (a model moved since the export; a pruning output or a
    ``save_pretrained`` directory); it is not re-exported to prove it is the same model, as
    only its patch embedding is used, and the shape of the inputs is checked against the
    image. This is the one function that reads where the inputs come from.

    Raises
    ------
    ReplayError
        If the image has no calibration record (exported before it was recorded), the data
        changed, there are fewer than ``count`` calibration images, or the model is missing or
        does not fit the image.
    """
    from sw.golden.deit_int import IntegerDeiT
    from sw.models import load_model
    recorded = recorded_calibration(image_dir, count)
    images = recorded.images[:count]
    where = "--model" if model_dir is not None else "the model recorded in manifest.json"
    directory = Path(model_dir) if model_dir is not None else recorded.model_dir
    if (directory / "pruned" / "config.json").is_file():      # a pruning output, as exported
        directory = directory / "pruned"
    from transformers.utils import logging as transformers_logging
    transformers_logging.disable_progress_bar()     # "Loading weights" bars are no progress here
    try:
        model = load_model(directory, token_pruning=False)
    except Exception as error:     # noqa: BLE001 (whatever the user's files make the library raise)
        hint = "" if model_dir is not None else "; pass --model with where it is now"
        raise ReplayError(f"{where}: {one_line(error)}{hint}") from None
    golden = IntegerDeiT(model=model, layers=[], input_scale=image.model.input_scale,
                         final_layernorm=image.final_layernorm,
                         final_scale=image.model.final_scale)
    try:
        import torch
        with torch.no_grad():
            x = golden.embed(images)
    except Exception as error:     # noqa: BLE001 (a model of another image size or shape)
        raise ReplayError(f"{where}: {one_line(directory)}: cannot embed the calibration "
                          f"images ({type(error).__name__}: {one_line(error)})") from None
    expected = (image.model.tokens, image.model.hidden_size)
    if x.shape[1:] != expected:
        raise ReplayError(f"{where}: {one_line(directory)} embeds an image into "
                          f"{x.shape[1]} tokens x {x.shape[2]}, the image's layer 0 takes "
                          f"{expected[0]} x {expected[1]}: not the model it was exported from")
    return x


# ------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------

def nonzero_macs(case, instruction: dict) -> int:
    """Multiply-accumulates of one replayed instruction with a non-zero weight: the token rows
    it works on times the non-zero weights of a linear, every MAC of an attention product (its
    "weights" are activations), none for the other units."""
    if instruction["opcode"] == "GEMM":
        # a stage's GEMM keeps the tensor slot it ran in (``sim.encoder_replay``)
        weight = getattr(case.layer, instruction.get("role", instruction["unit"])).weight
        return int(instruction["rows"]) * int(np.count_nonzero(weight))
    return int(instruction["macs"])


def dense_layer_macs(image: WeightImage, config: AcceleratorConfig) -> int | None:
    """Multiply-accumulates of one unpruned layer of the image's model (every head, every FFN
    neuron, every token, every weight), by the layer cycle model: the dense-equivalent work that
    effective GOP/s counts. The buffers grow to hold the unpruned layer where the image's
    config sized them for the pruned one (the MACs do not depend on them). None when the
    unpruned model does not fit the engine's block shape (then no effective GOP/s)."""
    from sw.config import ModelTopology, minimum_buffers
    from sw.cycle_model.layer import LayerPruning, layer_cycles
    m, hw = image.model, config.hardware
    topology = ModelTopology(hidden_size=m.hidden_size, num_heads=m.num_heads,
                             head_dim=m.head_dim, ffn_size=m.ffn_size, tokens=m.tokens,
                             layers=m.layers, norm=config.model.norm)
    try:
        minimum = minimum_buffers(topology, array_rows=hw.array_rows,
                                  array_cols=hw.array_cols, block_rows=hw.block_rows,
                                  block_cols=hw.block_cols)
        dense = config.replace(model=topology, hardware={
            knob: max(getattr(hw, knob), depth) for knob, depth in minimum.items()})
        return layer_cycles(dense, LayerPruning.dense(dense)).macs
    except ValueError:         # ConfigError: e.g. an unpruned FFN width the blocks do not divide
        return None


def replay_clock(image_dir: Path, config: AcceleratorConfig, fmax_mhz: float | None = None):
    """The layer engine's clock for the image in ``image_dir`` (``--fmax-mhz`` when given, else
    the placed Fmax of ``make synth CONFIG=DIR/params.json``), and when there is none the one
    line saying so: ``(EngineClock | None, note | None)``.

    Raises
    ------
    ReplayError
        If ``fmax_mhz`` is not a positive number.
    """
    from hw.synth import report_path
    from hw.synth.throughput import ENGINE_TOP, engine_clock, missing_clock
    report = report_path(config, ENGINE_TOP)
    try:
        clock = engine_clock(report, given_mhz=fmax_mhz)
    except ValueError as error:
        raise ReplayError(f"--fmax-mhz: {error}") from None
    if clock is not None:
        return clock, None
    command = f"make synth CONFIG={one_line(Path(image_dir) / 'params.json')}"
    return None, missing_clock(report, command) + " (or give one: --fmax-mhz MHZ)"


@dataclass(frozen=True)
class LayerResult:
    """One replayed layer, measured over every input."""

    index: int
    tokens: int                  #: token rows in
    token_keep: int              #: token rows out (after the layer's gather, if any)
    inputs: int
    bit_exact: bool              #: every output value equal to the golden model's, every input
    cycle_exact: bool            #: every instruction's cycles equal to the cycle model's
    cycles: int                  #: the engine's cycles for the layer (the largest over inputs)
    model_cycles: int            #: the cycle model's
    nonzero_macs: int            #: MACs with a non-zero weight (one input)
    utilization: float           #: nonzero_macs / (processing elements x cycles)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ReplayReport:
    """What a replay measured (``replay.json``); ``exact`` says whether everything matched."""

    image: str
    config: str
    processing_elements: int
    inputs: int
    layers: tuple[LayerResult, ...]
    build_seconds: float
    sim_seconds: float
    directory: Path | None = None        #: ``DIR/replay`` where it was written
    waves: Path | None = None            #: the trace, with ``--waves``
    log: Path | None = None              #: the simulation's log, kept when not exact
    image_layers: int | None = None      #: layers in the image (all replayed: per image)
    chained: bool = False                #: layers ran one after another on chip (all chosen)
    dense_layer_macs: int | None = None  #: :func:`dense_layer_macs`
    clock: object = None                 #: ``hw.synth.throughput.EngineClock`` or None
    clock_note: str | None = None        #: why there is no clock, and how to measure it
    #: ``--whole``: the embedding and head programs ran too, image in and int8 logits out;
    #: ``stages``: ``({"name", "cycles", "model_cycles", "bit_exact", "cycle_exact"}, ...)``
    #: over every input; ``images``: per input ``{"input", "predicted", "integer_predicted",
    #: "logits_equal", "cycles", "model_cycles"}`` (every program of the image)
    whole: bool = False
    stages: tuple = ()
    images: tuple = ()

    @property
    def exact(self) -> bool:
        return (all(layer.bit_exact and layer.cycle_exact for layer in self.layers)
                and all(stage["bit_exact"] and stage["cycle_exact"] for stage in self.stages)
                and all(image["logits_equal"] for image in self.images))

    @property
    def whole_image(self) -> bool:
        """Whether every layer of the image was replayed (then the totals are per image)."""
        return self.image_layers is not None and len(self.layers) == self.image_layers

    def layer_at_fmax(self, layer: LayerResult) -> dict | None:
        """``at_fmax`` of one layer (None without a clock)."""
        if self.clock is None:
            return None
        return self.clock.at(layer.cycles, dense_macs=self.dense_layer_macs)

    def replayed_at_fmax(self) -> dict | None:
        """``at_fmax`` of the replayed layers one after another (None without a clock)."""
        if self.clock is None:
            return None
        dense = (None if self.dense_layer_macs is None
                 else self.dense_layer_macs * len(self.layers))
        cycles = sum(layer.cycles for layer in self.layers)
        return self.clock.at(cycles + sum(stage["cycles"] for stage in self.stages),
                             dense_macs=dense)

    def per_image(self) -> dict | None:
        """``at_fmax`` of all layers of one image (None without a clock, or when not all
        layers were replayed)."""
        return self.replayed_at_fmax() if self.whole_image else None

    def to_dict(self) -> dict:
        return {"image": self.image, "config": self.config,
                "processing_elements": self.processing_elements, "inputs": self.inputs,
                "exact": self.exact,
                "layers": [{**layer.to_dict(), "at_fmax": self.layer_at_fmax(layer)}
                           for layer in self.layers],
                "image_layers": self.image_layers, "chained": self.chained,
                "whole": self.whole, "stages": list(self.stages), "images": list(self.images),
                "dense_layer_macs": self.dense_layer_macs,
                "clock": None if self.clock is None else self.clock.to_dict(),
                "clock_note": self.clock_note, "per_image": self.per_image(),
                "build_seconds": round(self.build_seconds, 2),
                "sim_seconds": round(self.sim_seconds, 2),
                "waves": self.waves.name if self.waves is not None else None,
                "log": str(self.log) if self.log is not None else None}

    @classmethod
    def from_dict(cls, document: dict, directory: Path | None = None) -> "ReplayReport":
        """The report of a ``replay.json`` document (``directory``: where it lies)."""
        from hw.synth.throughput import EngineClock
        waves = document.get("waves")
        clock = document.get("clock")
        fields = {field.name for field in dataclasses.fields(LayerResult)}
        return cls(image=document["image"], config=document["config"],
                   processing_elements=document["processing_elements"],
                   inputs=document["inputs"],
                   layers=tuple(LayerResult(**{key: value for key, value in layer.items()
                                               if key in fields})
                                for layer in document["layers"]),
                   build_seconds=document["build_seconds"],
                   sim_seconds=document["sim_seconds"], directory=directory,
                   waves=None if waves is None or directory is None else directory / waves,
                   log=None if document.get("log") is None else Path(document["log"]),
                   image_layers=document.get("image_layers"),
                   chained=document.get("chained", False),
                   whole=document.get("whole", False),
                   stages=tuple(document.get("stages", ())),
                   images=tuple(document.get("images", ())),
                   dense_layer_macs=document.get("dense_layer_macs"),
                   clock=None if clock is None else EngineClock(**clock),
                   clock_note=document.get("clock_note"))

    def table(self) -> str:
        """The per-layer table the command prints: cycles, and with a clock microseconds and
        effective GOP/s beside them; then the clock (or why there is none) and, for a whole
        image, images per second."""
        timed = self.clock is not None
        lines = [f"{'layer':<7}{'tokens':>10}{'cycles':>12}{'model cycles':>14}"
                 f"{'bit-exact':>11}{'utilization':>13}"
                 + (f"{'us':>12}{'GOP/s':>10}" if timed else "")]

        def time_columns(at: dict | None) -> str:
            if at is None:
                return ""
            gops = at.get("effective_gops")
            return f"{at['latency_us']:>12,.3f}" + (f"{gops:>10.3f}" if gops is not None
                                                     else f"{'-':>10}")

        for layer in self.layers:
            tokens = f"{layer.tokens}->{layer.token_keep}"
            lines.append(f"{layer.index:<7}{tokens:>10}{layer.cycles:>12,}"
                         f"{layer.model_cycles:>14,}{'yes' if layer.bit_exact else 'NO':>11}"
                         f"{layer.utilization:>13.3f}" + time_columns(self.layer_at_fmax(layer)))
        for stage in self.stages:            # --whole: the embedding and head programs
            lines.append(f"{stage['name']:<10}{'':>7}{stage['cycles']:>12,}"
                         f"{stage['model_cycles']:>14,}"
                         f"{'yes' if stage['bit_exact'] else 'NO':>11}")
        cycles = sum(layer.cycles for layer in self.layers) + sum(
            stage["cycles"] for stage in self.stages)
        model = sum(layer.model_cycles for layer in self.layers) + sum(
            stage["model_cycles"] for stage in self.stages)
        macs = sum(layer.nonzero_macs for layer in self.layers)
        image = self.per_image()
        lines.append(f"{'image' if self.whole_image else 'all':<7}{'':>10}{cycles:>12,}"
                     f"{model:>14,}"
                     f"{'yes' if all(l.bit_exact for l in self.layers) else 'NO':>11}"
                     f"{macs / (self.processing_elements * cycles):>13.3f}"
                     + time_columns(self.replayed_at_fmax()))
        if self.whole:
            lines.append("whole model on chip: the host loaded each image's int8 patch rows and "
                         "the position table; embedding, layers and head ran one after another")
            for image in self.images:
                lines.append(f"input {image['input']}: class {image['predicted']} (integer "
                             f"model: {image['integer_predicted']}), int8 logits == integer "
                             f"model: {'yes' if image['logits_equal'] else 'NO'}, "
                             f"{image['cycles']:,} cycles (model {image['model_cycles']:,})")
        elif self.chained:
            lines.append("layers chained on chip: only layer 0's input loaded, each later layer "
                         "ran on the rows the one before it left in the scratchpad")
        if not timed:
            if self.clock_note:
                lines.append(self.clock_note)
            return "\n".join(lines)
        lines.append(f"clock: {self.clock.describe()}")
        if image is not None and "effective_gops" in image:
            per_dsp = (f", {image['gops_per_dsp']:.4f} GOP/s per MULT18X18D ({self.clock.dsp})"
                       if "gops_per_dsp" in image else "")
            lines.append(f"per image: {image['latency_us']:,.3f} us, "
                         f"{image['per_second']:,.2f} images/s, "
                         f"{image['effective_gops']:.3f} GOP/s effective (dense-equivalent: "
                         f"{2 * self.dense_layer_macs * len(self.layers):,} operations of the "
                         f"unpruned model){per_dsp}")
        return "\n".join(lines)


def layer_results(image: WeightImage, config: AcceleratorConfig, cases: list,
                   results: list[dict]) -> tuple[LayerResult, ...]:
    """Per layer, the measurements of every input's run folded together (``cases``: the
    ``(layer index, LayerCase)`` pairs replayed, ``results``: ``sim.layer_replay.replay``'s
    measurements of each, in the same order)."""
    elements = config.hardware.array_rows * config.hardware.array_cols
    by_layer: dict[int, list] = {}
    for (index, case), result in zip(cases, results):
        by_layer.setdefault(index, []).append((case, result))
    layers = []
    for index, runs in by_layer.items():
        case, first = runs[0]
        macs = sum(nonzero_macs(case, entry) for entry in first["instructions"])
        cycles = max(result["cycles"] for _, result in runs)
        cycle_exact = all(result["cycles"] == result["model_cycles"]
                          and all(entry["cycles"] == entry["model_cycles"]
                                  for entry in result["instructions"]) for _, result in runs)
        layer = image.layers[index]
        layers.append(LayerResult(
            index=index, tokens=layer.tokens, token_keep=layer.token_keep, inputs=len(runs),
            bit_exact=all(result["bit_exact"] for _, result in runs), cycle_exact=cycle_exact,
            cycles=cycles, model_cycles=first["model_cycles"], nonzero_macs=macs,
            utilization=macs / (elements * cycles) if cycles else 0.0))
    return tuple(layers)


# ------------------------------------------------------------------------------------------------
# The replay
# ------------------------------------------------------------------------------------------------

def replay_image(image_dir, *, model_dir=None, layers="all", inputs: int = 1,
                 waves: bool = False, fmax_mhz: float | None = None, whole: bool = False,
                 on_step=None) -> ReplayReport:
    """Replay ``layers`` (``"all"``, ``"0,1"`` or a list of indices) of the image in
    ``image_dir`` on the layer engine generated from its ``params.json``, each fed the golden
    model's input from each of the first ``inputs`` calibration images recorded with the image
    (``model_dir``: where the exported model is now, default the recorded directory:
    :func:`encoder_inputs`); write ``image_dir/replay/`` and return the report, with time at
    the engine's measured Fmax or at ``fmax_mhz`` (:func:`replay_clock`). ``on_step(text)``
    hears progress.

    ``whole``: run the whole model instead, image in and int8 logits out: the embedding
    program, every layer and the head program chained on chip per input
    (``sim.encoder_replay.model_cases``, the stages from the image), on the first ``inputs``
    recorded calibration images; each input's logits are compared with the whole integer
    model's (``report.images``).

    A layer that is not bit-exact or cycle-exact is recorded as such (``report.exact`` is
    False), not raised.

    Raises
    ------
    ReplayError
        On bad input (nothing written).
    ReplayFailed
        If the build fails or the simulation ends without results (nothing written).
    """
    from sim.harness import TRACE_FILE, TestbenchFailed, build
    from sim.layer_replay import image_cases, replay
    say = on_step or (lambda text: None)
    image_dir = Path(image_dir)
    image, config = load_replay_image(image_dir)
    chosen = (parse_layers(layers, len(image.layers)) if isinstance(layers, str)
              else parse_layers(",".join(str(int(i)) for i in layers), len(image.layers)))
    if isinstance(inputs, bool) or not isinstance(inputs, int) or inputs < 1:
        raise ReplayError(f"--inputs must be a positive integer, not {inputs!r}")
    clock, clock_note = replay_clock(image_dir, config, fmax_mhz)
    dense_macs = dense_layer_macs(image, config)
    out = image_dir / REPLAY_DIR
    try:
        check_output_directory(out, manifest=RESULT_FILE, contents={RESULT_FILE, WAVES_FILE})
    except OutputRefused as error:
        raise ReplayError(str(error)) from None
    if whole and len(chosen) != len(image.layers):
        raise ReplayError("--whole runs every layer: leave --layers out (or give 'all')")
    if whole:
        say(f"the whole model on {inputs} calibration image{'s' * (inputs > 1)}")
        calibration = recorded_calibration(image_dir, inputs).images[:inputs]
    else:
        say(f"golden model inputs from {inputs} calibration image{'s' * (inputs > 1)}")
        x = encoder_inputs(image_dir, image, inputs, model_dir=model_dir)
    # every layer: the whole encoder runs on chip, each layer on what the one before it left
    chained = len(chosen) == len(image.layers)
    cases, chains = [], []
    if whole:
        from sim.encoder_replay import model_cases
        chains = model_cases(image, calibration)
        cases = [(case.part, case) for chain in chains for case in chain]
    for number in range(0 if whole else inputs):
        for layer, case in zip(image.layers, image_cases(image, x[number], chained=chained)):
            index = layer.index
            if index in chosen:
                cases.append((index, dataclasses.replace(
                    case, name=f"{case.name}.input{number}")))
    hw = config.hardware
    say(f"layer engine of '{config.name}' ({hw.array_rows}x{hw.array_cols} array, "
        f"{hw.block_rows}x{hw.block_cols} blocks{', traced' if waves else ''}): generating and "
        f"building with Verilator (cached after the first time)")
    try:
        design = build(config, "layer_engine", waves=waves)
    except RuntimeError as error:         # cocotb's runner: "Command failed with return code"
        raise ReplayFailed(f"the Verilator build of '{config.name}' failed ({error}); see "
                           f"build.log in build/sim/layer_engine-{config.name}*/") from None
    say(f"replaying layer{'s' * (len(chosen) > 1)} {', '.join(map(str, chosen))} "
        f"x {inputs} input{'s' * (inputs > 1)} on the RTL")
    # The simulation's work files (pickled cases, log) stay out of the image directory: in
    # build/replay/, deleted when every layer is exact, kept (and named) when not.
    (BUILD_ROOT / "replay").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{config.name}-", dir=BUILD_ROOT / "replay"))
    report = None

    def fill(staging: Path) -> None:
        nonlocal report
        started = time.monotonic()
        try:
            results = replay(design, [case for _, case in cases], work, waves=waves)
        except TestbenchFailed:
            if not (work / "result.json").is_file():
                raise
            results = json.loads((work / "result.json").read_text())
        if waves:
            shutil.move(work / TRACE_FILE, staging / WAVES_FILE)
        stage_results, image_results = (), ()
        if whole:
            stage_results, image_results = _whole_results(cases, results, chains,
                                                          image.head.classes)
        layer_pairs = [(pair, result) for pair, result in zip(cases, results)
                       if isinstance(pair[0], int) or pair[0].startswith("layer")]
        report = ReplayReport(
            image=str(image_dir), config=config.name,
            processing_elements=hw.array_rows * hw.array_cols, inputs=inputs,
            layers=layer_results(image, config,
                                 [(_layer_index(index), case) for (index, case), _ in layer_pairs],
                                 [result for _, result in layer_pairs]),
            build_seconds=design.build_seconds, sim_seconds=time.monotonic() - started,
            directory=out, waves=out / WAVES_FILE if waves else None,
            image_layers=len(image.layers), chained=chained, dense_layer_macs=dense_macs,
            clock=clock, clock_note=clock_note, whole=whole, stages=stage_results,
            images=image_results)
        if not report.exact:
            report = dataclasses.replace(report, log=work / "sim.log")
        (staging / RESULT_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n",
                                           encoding="utf-8")
    try:
        replace_directory(out, fill)
    except TestbenchFailed:
        raise ReplayFailed(f"the simulation ended without results; see "
                           f"{work / 'sim.log'}") from None
    except BaseException:            # Ctrl-C, a full disk: nothing to look at afterwards
        shutil.rmtree(work, ignore_errors=True)
        raise
    if report.exact:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _layer_index(index) -> int:
    """A layer's index from its case key (an int, or ``"layer<i>"`` in a whole-model chain)."""
    return index if isinstance(index, int) else int(index.removeprefix("layer"))


def _whole_results(cases, results, chains, classes: int) -> tuple[tuple, tuple]:
    """``(stages, images)`` of a ``--whole`` replay (:class:`ReplayReport`): the embedding's
    and the head's measurements folded over the inputs, and per input the predicted class
    from the RTL's int8 logits against the integer model's (``==``)."""
    from sw.golden.model_stages import STAGE_UNITS
    folded = {}
    for (key, case), result in zip(cases, results):
        if key in STAGE_UNITS:
            cycle_exact = result["cycles"] == result["model_cycles"] and all(
                e["cycles"] == e["model_cycles"] for e in result["instructions"])
            entry = folded.setdefault(key, {"name": key, "cycles": 0, "model_cycles": 0,
                                            "bit_exact": True, "cycle_exact": True})
            entry["cycles"] = max(entry["cycles"], result["cycles"])
            entry["model_cycles"] = result["model_cycles"]
            entry["bit_exact"] &= bool(result["bit_exact"])
            entry["cycle_exact"] &= cycle_exact
    images, start = [], 0
    for number, chain in enumerate(chains):
        measured = results[start:start + len(chain)]
        start += len(chain)
        expected = chain[-1].expected()[0, :classes]
        found = np.load(measured[-1]["output_file"])[0, :classes]
        images.append({"input": number, "predicted": int(found.argmax()),
                       "integer_predicted": int(expected.argmax()),
                       "logits_equal": bool(np.array_equal(found, expected)),
                       "cycles": sum(r["cycles"] for r in measured),
                       "model_cycles": sum(r["model_cycles"] for r in measured)})
    return tuple(folded[name] for name in STAGE_UNITS if name in folded), tuple(images)


def read_report(image_dir) -> ReplayReport:
    """The report of the last replay of the image in ``image_dir`` (``replay/replay.json``).

    Raises
    ------
    ReplayError
        If there is none, or it cannot be read.
    """
    directory = Path(image_dir) / REPLAY_DIR
    path = directory / RESULT_FILE
    try:
        return ReplayReport.from_dict(json.loads(path.read_text(encoding="utf-8")), directory)
    except FileNotFoundError:
        raise ReplayError(f"{one_line(path)}: no such file (replay the image first)") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ReplayError(f"{one_line(path)}: not a replay report "
                          f"({type(error).__name__}: {one_line(error)})") from None


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------

def _parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, required=True,
                        help="an export_sparse.py output directory (weights.bin, params.json)")
    parser.add_argument("--model", type=Path, default=None,
                        help="where the model the image was exported from is now (default: the "
                             "directory recorded in DIR/manifest.json; its patch embedding "
                             "turns the recorded calibration images into the inputs)")
    parser.add_argument("--layers", default="all",
                        help="'all' (default) or layer indices separated by commas: 0,1")
    parser.add_argument("--inputs", type=int, default=1, metavar="N",
                        help="replay each layer with the inputs of the first N calibration "
                             "images (default 1)")
    parser.add_argument("--whole", action="store_true",
                        help="run the whole model, image in and int8 logits out: the patch "
                             "embedding, every layer and the head (final LayerNorm and "
                             "classifier) as programs chained on chip; report each input's "
                             "class and whether its logits equal the integer model's")
    parser.add_argument("--waves", action="store_true",
                        help=f"trace every signal into DIR/{REPLAY_DIR}/{WAVES_FILE} (a separate "
                             f"traced build; open with GTKWave or Surfer)")
    parser.add_argument("--fmax-mhz", type=float, default=None, metavar="MHZ",
                        help="turn cycles into time at this clock, reported as given, not "
                             "measured (default: the Fmax of the placed and routed layer "
                             "engine, make synth CONFIG=DIR/params.json, when it exists)")
    return parser


@exit_130_on_interrupt(PROG)
def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    started = time.monotonic()
    try:
        report = replay_image(options.image, model_dir=options.model, layers=options.layers,
                              inputs=options.inputs, waves=options.waves,
                              whole=options.whole,
                              fmax_mhz=options.fmax_mhz,
                              on_step=lambda text: print(f"- {text}", flush=True))
    except ReplayError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return BAD_INPUT
    except ReplayFailed as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return MISMATCH
    print(report.table())
    print(f"wrote {report.directory / RESULT_FILE}"
          + (f" and {report.waves}" if report.waves is not None else "")
          + f" ({time.monotonic() - started:.0f} s)")
    if not report.exact:
        wrong = [str(layer.index) for layer in report.layers
                 if not (layer.bit_exact and layer.cycle_exact)]
        print(f"{PROG}: error: layer{'s' * (len(wrong) > 1)} {', '.join(wrong)} not bit-exact "
              f"or not cycle-exact; see {report.log}",
              file=sys.stderr)
        return MISMATCH
    return 0


if __name__ == "__main__":
    sys.exit(main())
