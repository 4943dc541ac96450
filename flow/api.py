"""The flow as Python functions a notebook can call: a model in, pruned, exported, generated as
RTL and replayed on it, with report objects out (docs/api.md).

The functions wrap the ones the command-line tools run (``sw/train_digits.py``, ``sw/prune.py``,
``sw/export_sparse.py``, ``python -m hw.generate``, ``sim/replay.py``) and take the same settings
as keywords. Models are HF models: :func:`load_model` reads a ``save_pretrained`` directory and
the models returned save with ``save_pretrained``. :func:`export` is hls4ml's ``convert``: it
returns an :class:`ExportedModel` with a ``config`` and a ``predict`` of the integer model;
:func:`replay` and :func:`read_replay_report` give a :class:`~sim.replay.ReplayReport` as
hls4ml's ``build`` and ``read_vivado_report`` give theirs. Bad input raises ``ValueError``
subclasses with one line naming the problem.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from hw.generate import GeneratedDesign
from sim.replay import ReplayReport
from sw.config import AcceleratorConfig
from sw.image.format import WeightImage

__all__ = ["RECIPES", "DEFAULT_RECIPE", "load_model", "build_model", "train_digits", "prune",
           "PruningRun", "read_pruning_report", "export", "ExportedModel", "generate",
           "replay", "read_replay_report", "ReplayReport"]

#: The recipes that ship with the project (``recipes/``).
RECIPES = Path(__file__).resolve().parents[1] / "recipes"
#: What :func:`prune` runs without a ``recipe``: ``recipes/digits_deit.json``.
DEFAULT_RECIPE = RECIPES / "digits_deit.json"

PathLike = str | os.PathLike


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------

def load_model(directory: PathLike):
    """The image classifier saved in ``directory`` (``save_pretrained``, a ``prune`` output's
    ``pruned/``, ``shrunk/`` or ``filled/``), in eval mode; nothing is downloaded
    (:func:`sw.models.load_model`)."""
    from sw.models import load_model as load
    return load(directory)


def build_model(config=None, **sizes):
    """A freshly initialised image classifier: from a transformers config (``DeiTConfig``,
    ``ViTConfig``: ``AutoModelForImageClassification.from_config``), or without one a small DeiT
    whose sizes are :func:`sw.models.small_deit_config`'s keywords (``image_size=32,
    hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128, num_labels=10``, ...).
    Seed torch first for fixed weights; save it with ``model.save_pretrained(directory)``."""
    if config is not None:
        if sizes:
            raise ValueError(f"build_model takes a config or sizes, not both "
                             f"({', '.join(sorted(sizes))})")
        import copy

        from transformers import AutoModelForImageClassification
        config = copy.deepcopy(config)
        # transformers 5's from_config iterates config.architectures, None in a fresh config
        config.architectures = config.architectures or []
        return AutoModelForImageClassification.from_config(config).eval()
    from sw.models import build_small_deit, small_deit_config
    return build_small_deit(small_deit_config(**sizes)).eval()


def train_digits(out: PathLike | None = None, *, progress: bool = False, **options):
    """Train the digits DeiT from scratch (``python sw/train_digits.py``) and save it into
    ``out``; ``options`` are :class:`sw.train_digits.TrainOptions` fields (``epochs=40``,
    ``max_train_samples=None``, ``arch="bert"`` for the digits BERT, ...). Returns a :class:`sw.train_digits.TrainResult`
    (``.model``, ``.val_accuracy``, ``.history``)."""
    from sw.train_digits import train
    return train(out, progress=progress, **options)


# ------------------------------------------------------------------------------------------------
# Pruning
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class PruningRun:
    """A pruning run: its models and its report (``pruning_report.json``)."""

    report: dict
    model: object                     #: dense shapes, pruned weights zero (``pruned/``)
    shrunk: object = None             #: heads and neurons removed (``shrunk/``)
    directory: Path | None = None     #: where it was written

    @property
    def accuracy(self) -> float:
        """Validation accuracy of the pruned model (token pruning included, if any)."""
        return self.report["accuracy"]

    @property
    def dense_accuracy(self) -> float:
        """Validation accuracy of the dense teacher."""
        return self.report["dense_accuracy"]


def prune(teacher: PathLike, out: PathLike | None = None, *,
          recipe: PathLike | dict = DEFAULT_RECIPE, pruning: dict | None = None,
          training: dict | None = None, tokens: dict | None = None, data="digits",
          tokenizer: PathLike | None = None, arch: str = "deit",
          progress: bool = False) -> PruningRun:
    """Fine-prune the model in ``teacher`` with distillation from it (``python sw/prune.py``)
    and write ``out`` (``pruned/``, ``shrunk/``, ``filled/``, ``pruning_report.json``, ...).

    ``recipe``: a recipe file or its document (``recipes/*.json``: ``pruning``, ``training``
    and optional ``tokens`` sections); ``pruning`` / ``training`` / ``tokens`` override its
    keys, as the command line's flags do. ``data``: ``"digits"`` (the default: the teacher's
    split; a missing ``teacher`` is trained first) or an image folder's path (one sub-folder per
    class, ``--data DIR``), preprocessed at the teacher's image size; its classes must be the
    teacher's labels. The report records it, and :func:`export` calibrates on it by default.
    A BERT teacher takes ``"digits"`` (as sequences) or a JSONL file of ``{"text", "label"}``
    lines tokenized by ``tokenizer`` (default: the teacher folder; ``--data``, ``--tokenizer``);
    ``arch="bert"`` trains a missing teacher as the digits BERT (``--arch``).
    """
    from sw.prune import prune as run
    from sw.pruning.recipe import read_recipe, resolve_recipe
    document = recipe if isinstance(recipe, dict) else read_recipe(recipe)
    settings = resolve_recipe(document, pruning_overrides=pruning,
                              training_overrides=training, token_overrides=tokens)
    result, report = run(settings.pruning, settings.training, teacher_dir=Path(teacher),
                         out=None if out is None else Path(out), progress=progress,
                         tokens=settings.tokens, data=data, tokenizer=tokenizer, arch=arch)
    return PruningRun(report=report, model=result.pruned, shrunk=result.shrunk,
                      directory=None if out is None else Path(out))


def read_pruning_report(directory: PathLike) -> dict:
    """``pruning_report.json`` of a :func:`prune` output."""
    return json.loads((Path(directory) / "pruning_report.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class ExportedModel:
    """A model converted for the accelerator: its weight image, its accelerator config (the
    ``params.json``) and the integer model the hardware computes."""

    config: AcceleratorConfig         #: sized from the pruned model: ``generate`` takes it
    image: WeightImage
    directory: Path | None = None     #: where ``weights.bin``, ``params.json`` and the manifest are
    manifest: dict | None = None
    notes: tuple = ()                 #: what the exporter wants the user to know
    verification: dict | None = None  #: with ``verify=True``: ``sw.image.export.verify``
    state: object = field(default=None, repr=False)   #: the exporter's ExportState

    def predict(self, pixel_values):
        """Class logits ``(N, classes)`` of the integer model (the golden model of the image,
        token pruning included) for normalised images ``(N, channels, size, size)``."""
        state = self.state
        return state.integer_model.logits(pixel_values, token_pruning=state.token_pruning)

    @property
    def calibration(self):
        """The images the integer model was calibrated on."""
        return self.state.calibration


def export(model: PathLike, config: str | PathLike = "tiny", out: PathLike | None = None, *,
           name: str | None = None, calibration=None, calibration_images: int | None = None,
           verify: bool = False, progress: bool = False) -> ExportedModel:
    """Quantize and pack a pruned model for the accelerator ``config`` (a preset name, e.g.
    ``"tiny"``, or a config JSON), as ``python sw/export_sparse.py`` does, and write ``out``
    (``weights.bin``, ``params.json``, ``manifest.json``) if given.

    ``model``: a :func:`prune` output or a ``save_pretrained`` directory. ``calibration``:
    ``"digits"`` or an image folder's path (``--calibration DIR|digits``), preprocessed at the
    model's image size; by default the data recorded with the model (the pruning report's, or
    ``sw/train_digits.py``'s), never the digits behind the user's back. ``out``'s
    ``manifest.json`` records it, so :func:`replay` needs no model. ``verify``: also compare
    the golden model from the image's bytes with the one quantized from torch.

    Raises
    ------
    sw.image.export.ExportError
        One line naming the problem with the model, the config or ``out``.
    """
    from sw.image.export import (DEFAULT_CALIBRATION_IMAGES, ExportRequest, export as run,
                                 verify as check, write)
    request = ExportRequest(
        model_dir=Path(model), config=os.fspath(config),
        out=None if out is None else Path(out), name=name, progress=progress,
        calibration=calibration,
        calibration_images=(DEFAULT_CALIBRATION_IMAGES if calibration_images is None
                            else calibration_images))
    state = run(request)
    verification = check(state) if verify else None
    manifest = write(state, Path(out)) if out is not None else None
    return ExportedModel(config=state.config, image=state.image,
                         directory=None if out is None else Path(out), manifest=manifest,
                         notes=tuple(state.notes), verification=verification, state=state)


# ------------------------------------------------------------------------------------------------
# Hardware
# ------------------------------------------------------------------------------------------------

def _accelerator_config(source) -> AcceleratorConfig:
    """``source``: an :class:`AcceleratorConfig`, an :class:`ExportedModel`, an export's
    directory (its ``params.json``), a config JSON file or a preset name."""
    from sw.config import load_config
    if isinstance(source, AcceleratorConfig):
        return source
    if isinstance(source, ExportedModel):
        return source.config
    path = Path(source)
    if path.is_dir():
        return load_config(path / "params.json")
    return load_config(os.fspath(source))


def generate(source, out_dir: PathLike | None = None, *,
             top: str = "layer_engine") -> GeneratedDesign:
    """Write the Verilog of ``top`` (default: the layer engine, the whole accelerator) for
    ``source`` into ``out_dir`` (default ``build/<config name>/``), as ``make verilog
    CONFIG=...`` does; returns the paths (``.verilog``, ``.config``).

    ``source``: an export's directory or :class:`ExportedModel`, a config JSON, a preset name
    or an :class:`~sw.config.AcceleratorConfig`.

    Raises
    ------
    sw.config.ConfigError, hw.generate.OutputError
        One line naming the problem.
    """
    from hw.generate import generate as write_verilog
    config = _accelerator_config(source)
    if top == "layer_engine":
        config.check_layer_engine()
    return write_verilog(config, None if out_dir is None else Path(out_dir), top=top)


def replay(image, *, layers="all", inputs: int = 1, waves: bool = False,
           model: PathLike | None = None, whole: bool = False,
           progress: bool = False) -> ReplayReport:
    """Replay ``layers`` (``"all"``, ``"0,1"`` or a list) of an exported image on the layer
    engine's RTL, generated from its ``params.json`` and built with Verilator (cached), as
    ``python sim/replay.py`` does: each layer fed the golden model's input from each of the
    first ``inputs`` calibration images recorded in the image's ``manifest.json``, embedded by
    the model recorded there (``model``: where that model is now, if it moved), checked
    bit-exact and cycle-exact. Writes ``<image>/replay/replay.json`` (and
    ``waves.vcd`` with ``waves``) and returns the report (``.layers``, ``.exact``,
    ``.table()``). ``whole``: the whole model, image in and int8 logits out (``--whole``:
    ``.stages``, ``.images``).

    ``image``: the export's directory or its :class:`ExportedModel`.

    Raises
    ------
    sim.replay.ReplayError
        One line naming bad input (nothing written).
    sim.replay.ReplayFailed
        If the Verilator build fails or the simulation ends without results.
    """
    from sim.replay import replay_image
    directory = image.directory if isinstance(image, ExportedModel) else image
    if directory is None:
        raise ValueError("replay needs an image written to a directory: export(..., out=DIR)")
    return replay_image(Path(directory), model_dir=None if model is None else Path(model),
                        layers=layers, inputs=inputs, waves=waves, whole=whole,
                        on_step=(lambda text: print(f"- {text}", flush=True)) if progress
                        else None)


def read_replay_report(image: PathLike) -> ReplayReport:
    """The report of the last replay of the image in directory ``image``
    (``image/replay/replay.json``)."""
    from sim.replay import read_report
    return read_report(Path(image))
