"""Fine-prune a DeiT / ViT with distillation from its dense teacher and write a pruning report.

Run ``python sw/prune.py --recipe recipes/digits_deit.json`` (see docs/pruning.md): the digits
DeiT on the digits. ``--teacher DIR --data DIR`` prunes the user's own ``save_pretrained``
image classifier on an image folder (one sub-folder per class), preprocessed at the model's
image size; its classes and image size are checked against the model first. Every
``PruningArgs`` field is also a flag under nn_pruning's name (``--final_threshold 0.1``); the
same command runs under ``torchrun --nproc_per_node N`` or ``accelerate launch`` (see
:mod:`sw.pruning.trainer`). A recipe's optional ``"tokens"`` section adds EViT-style token
pruning to the same run (:mod:`sw.pruning.tokens`, docs/token-pruning.md); ``--keep-rate``
overrides its keep rate.

A BERT teacher (``BertForSequenceClassification``, say the digits BERT of
``sw/train_digits.py --arch bert``) prunes the same way on token sequences: ``--data digits`` is
the digits as pixel-intensity sequences, ``--data FILE.jsonl`` a JSONL file of ``{"text",
"label"}`` lines tokenized by ``--tokenizer DIR`` (default: the teacher folder's tokenizer
files); see :mod:`sw.data.sequences`. A missing teacher is trained on the digits as a DeiT, or
with ``--arch bert`` as the digits BERT.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script path, the repository root is not on sys.path; make `sw` importable anyway.
_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))
if __name__ == "__main__":     # Ctrl-C while torch loads: one line, not a traceback
    from sw.cli import exit_130_on_interrupt_during_imports
    exit_130_on_interrupt_during_imports("prune.py")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

import torch  # noqa: E402

from sw.atomic import OutputRefused, check_output_directory, replace_directory  # noqa: E402
from sw.build_files import BUILD_ROOT, DIGITS_TEACHER  # noqa: E402
from sw.cli import (BAD_INPUT, OneLineArgumentParser, exit_130_on_interrupt,  # noqa: E402
                    one_line)
from sw.data.digits import load_digits_split  # noqa: E402
from sw.data.sequences import SequenceSource, check_sequence_model_data  # noqa: E402
from sw.data.source import DIGITS, DataError, DataSource, check_model_data  # noqa: E402
from sw.models import SEQUENCE_MODEL_TYPES, load_model  # noqa: E402
from sw.pruning.methods import PruningArgs  # noqa: E402
from sw.pruning.artifacts import save_shrunk  # noqa: E402
from sw.pruning.recipe import RecipeError, read_recipe  # noqa: E402
from sw.pruning.recipe import resolve_recipe as resolve_whole_recipe  # noqa: E402
from sw.pruning.report import (  # noqa: E402
    dense_baseline, plot_accuracy, plot_density, pruning_report)
from sw.settings import (SettingsFileError, check_integer, check_number, found,  # noqa: E402
                         read_json)
from sw.pruning.tokens import TokenPruningArgs, patch_token_pruning  # noqa: E402
from sw.progress import limit_library_bars  # noqa: E402
from sw.pruning.trainer import PruneResult, TrainingOptions, fine_prune  # noqa: E402
from sw.train_digits import evaluate  # noqa: E402

__all__ = ["DEFAULT_OUT", "DEFAULT_RECIPE", "DEFAULT_TEACHER", "OUTPUT_FILES", "check_data",
           "check_output", "check_teacher", "data_source", "main", "prune", "resolve_recipe",
           "resolve_token_recipe", "split_for"]

DEFAULT_RECIPE = _REPO_ROOT / "recipes" / "digits_deit.json"
DEFAULT_TEACHER = DIGITS_TEACHER
DEFAULT_OUT = BUILD_ROOT / "pruning" / "digits_deit"
REPORT = "pruning_report.json"
#: Everything a run writes into ``out``; the report is the manifest a later run recognises.
OUTPUT_FILES = ("pruned", "shrunk", "filled", REPORT, "recipe.json", "density_per_layer.png",
                "accuracy.png")
PROG = "prune.py"


def resolve_recipe(recipe: dict, pruning_overrides: dict | None = None,
                   training_overrides: dict | None = None) -> tuple[PruningArgs, TrainingOptions]:
    """Recipe ``{"pruning": {...}, "training": {...}}`` plus overrides -> validated settings.

    The whole recipe is validated (:func:`sw.pruning.recipe.resolve_recipe`), its ``"tokens"``
    section included.

    Raises
    ------
    ValueError
        On an unknown section or key, or an invalid value (:class:`~sw.pruning.recipe.RecipeError`).
    """
    whole = resolve_whole_recipe(recipe, pruning_overrides=pruning_overrides,
                                 training_overrides=training_overrides)
    return whole.pruning, whole.training


def resolve_token_recipe(recipe: dict, overrides: dict | None = None) -> TokenPruningArgs | None:
    """The recipe's ``"tokens"`` section plus overrides, or None when it has none.

    Raises
    ------
    ValueError
        On an unknown key or an invalid value.
    """
    return resolve_whole_recipe(recipe, token_overrides=overrides).tokens


def check_output(out) -> None:
    """Raise :class:`~sw.atomic.OutputRefused` unless ``out`` is absent, empty or an earlier
    output of this tool (a ``pruning_report.json`` and nothing but :data:`OUTPUT_FILES`)."""
    check_output_directory(out, manifest=REPORT, contents=OUTPUT_FILES)


def _teacher_record(teacher_dir: Path) -> dict:
    """The teacher's ``training.json`` (what :mod:`sw.train_digits` wrote), checked; ``{}``
    when there is none.

    Raises
    ------
    ValueError
        One line naming the file and the field path.
    """
    path = Path(teacher_dir) / "training.json"
    if not path.exists():
        return {}
    record = read_json(path)
    if not isinstance(record, dict):
        raise SettingsFileError(f"{one_line(path)}: must be a JSON object, not {found(record)}")
    for section in ("options", "data"):
        if not isinstance(record.get(section, {}), dict):
            raise SettingsFileError(f"{one_line(path)}: {section} must be an object, not "
                                    f"{found(record[section])}")
    options, data = record.get("options", {}), record.get("data", {})
    try:
        if "val_fraction" in options:
            check_number("options.val_fraction", options["val_fraction"],
                         "a number between 0 and 1 (exclusive)", lambda value: 0 < value < 1)
        if "split_seed" in options:
            check_integer("options.split_seed", options["split_seed"], minimum=0,
                          maximum=2 ** 32 - 1)
        if data.get("train_samples") is not None:
            check_integer("data.train_samples", data["train_samples"], minimum=1)
    except ValueError as error:
        raise SettingsFileError(f"{one_line(path)}: {error}") from None
    return record


def check_teacher(teacher_dir: Path) -> None:
    """Check what can be checked of the teacher before any work: its ``config.json`` is a JSON
    object and its ``training.json`` is sound; a missing teacher will be trained into
    ``teacher_dir``, so that must be a place :mod:`sw.train_digits` may write.

    Raises
    ------
    ValueError
        One line naming the file.
    """
    teacher_dir = Path(teacher_dir)
    config = teacher_dir / "config.json"
    if not config.exists():
        from sw.train_digits import check_output as check_teacher_output
        check_teacher_output(teacher_dir)
        return
    document = read_json(config)
    if not isinstance(document, dict):
        raise SettingsFileError(f"{one_line(config)}: must be a JSON object, not "
                                f"{found(document)}")
    _teacher_record(teacher_dir)


def _teacher(directory: Path, progress: bool, arch: str = "deit"):
    if not (directory / "config.json").exists():
        from sw.train_digits import train
        print(f"training the dense digits {'BERT' if arch == 'bert' else 'DeiT'} teacher into "
              f"{directory} (about {'two minutes' if arch == 'bert' else 'a minute'})...",
              flush=True)
        train(directory, progress=progress, arch=arch)
    try:
        return load_model(directory)
    except FileNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001 - transformers and huggingface_hub report a
        # malformed config.json in many exception types; one line names the folder
        raise _cannot_load(directory, error) from None


def _cannot_load(directory: Path, error: Exception) -> ValueError:
    """One line naming the teacher folder and the library's (often multi-line) complaint."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = text or type(error).__name__
    return ValueError(f"{one_line(directory)}: cannot load the teacher model: "
                      f"{one_line(text if len(text) <= 200 else text[:197] + '...')}")


def _process_state():
    """Accelerate's view of the processes of this run (see :mod:`sw.pruning.trainer`)."""
    from accelerate import PartialState
    return PartialState(cpu=not torch.cuda.is_available())


def split_for(teacher_dir: Path, image_size: int):
    """The teacher's own train/validation split (``training.json``), else the default one."""
    options = _teacher_record(teacher_dir).get("options", {})
    return load_digits_split(image_size, options.get("val_fraction", 0.2),
                             options.get("split_seed", 0))


def _sequence_teacher(teacher_dir: Path, arch: str = "deit") -> bool:
    """Whether the teacher's ``config.json`` names a sequence classifier (BERT); when there
    is no teacher yet, whether ``arch`` (the digits teacher to train) is one; False when its
    config is unreadable (the loader reports that)."""
    config = Path(teacher_dir) / "config.json"
    if not config.exists():
        return arch in SEQUENCE_MODEL_TYPES
    try:
        document = json.loads(config.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("model_type") in SEQUENCE_MODEL_TYPES


def data_source(teacher_dir: Path, data: str | os.PathLike | DataSource | SequenceSource = DIGITS,
                tokenizer: str | os.PathLike | None = None, *,
                arch: str = "deit") -> DataSource | SequenceSource:
    """``data`` (``"digits"``, an image folder's path, or a :class:`DataSource`) as a source;
    the digits are split as the teacher's ``training.json`` records (:func:`split_for`).
    For a BERT teacher, ``data`` is ``"digits"`` (the digits as sequences) or a JSONL file,
    tokenized by ``tokenizer`` (default: the teacher folder), as a
    :class:`~sw.data.sequences.SequenceSource`. ``arch`` is the digits teacher trained when
    ``teacher_dir`` holds none.

    Raises
    ------
    DataError
        If the image folder does not exist.
    """
    if isinstance(data, (DataSource, SequenceSource)):
        return data
    options = _teacher_record(Path(teacher_dir)).get("options", {})
    split = {"val_fraction": float(options.get("val_fraction", 0.2)),
             "seed": options.get("split_seed", 0)}
    if _sequence_teacher(teacher_dir, arch):
        if isinstance(data, str) and data == DIGITS:
            return SequenceSource(None, None, **split)
        return SequenceSource(Path(data).absolute(),
                              Path(tokenizer if tokenizer is not None else teacher_dir).absolute(),
                              **split)
    if tokenizer is not None:
        raise DataError(f"--tokenizer {tokenizer}: only a BERT teacher takes a tokenizer; "
                        f"{teacher_dir} is not one")
    source = DataSource.parse(data)
    if source.is_digits:
        source = DataSource(None, split["val_fraction"], split["seed"])
    return source


def check_data(teacher_dir: Path, data: str | os.PathLike | DataSource | SequenceSource = DIGITS,
               tokenizer: str | os.PathLike | None = None, *,
               arch: str = "deit") -> DataSource | SequenceSource:
    """Check before any work that ``data`` can train the teacher's model: the same number of
    classes, and an image size the model takes (:func:`sw.data.source.check_model_data`); for
    a BERT, labels, tokenizer, vocabulary and pad id
    (:func:`sw.data.sequences.check_sequence_model_data`). A missing teacher is trained on the
    digits by :mod:`sw.train_digits`, so other data needs an existing one. Returns the
    source.

    Raises
    ------
    DataError
        One line naming the data, the teacher and both values.
    """
    source = data_source(teacher_dir, data, tokenizer, arch=arch)
    config_path = Path(teacher_dir) / "config.json"
    if not config_path.exists():
        if not source.is_digits:
            raise DataError(f"{teacher_dir}: no teacher model there (sw/train_digits.py only "
                            f"makes the digits teacher); --data {source.describe()} needs a "
                            f"save_pretrained image classifier as --teacher")
        return source
    from transformers import AutoConfig
    try:
        config = AutoConfig.from_pretrained(teacher_dir, local_files_only=True)
    except Exception as error:  # noqa: BLE001 - a malformed config.json raises many types
        raise DataError(str(_cannot_load(Path(teacher_dir), error))) from None
    _check_model_data(config, source, model=str(teacher_dir))
    return source


def _check_model_data(config, source: DataSource | SequenceSource, *, model: str) -> None:
    if isinstance(source, SequenceSource):
        check_sequence_model_data(config, source, model=model)
    else:
        check_model_data(config, source, model=model)


def prune(args: PruningArgs, options: TrainingOptions, *, teacher_dir: Path = DEFAULT_TEACHER,
          out: Path | None = DEFAULT_OUT, progress: bool = True,
          tokens: TokenPruningArgs | None = None,
          data: str | os.PathLike | DataSource | SequenceSource = DIGITS,
          tokenizer: str | os.PathLike | None = None,
          arch: str = "deit") -> tuple[PruneResult, dict]:
    """Fine-prune a copy of the teacher with distillation; write ``out``; return result, report.

    ``data`` is ``"digits"`` (split as the teacher's ``training.json`` says), an image folder's
    path or a :class:`~sw.data.source.DataSource`; its images are preprocessed at the
    teacher's image size, and its classes must be the teacher's (:func:`check_data`). The
    report records it (``"data"``): ``sw/export_sparse.py`` calibrates on it by default, and
    ``DataSource.from_dict(report["data"], ...).load_split(image_size)`` gives the validation
    images the report's accuracies were measured on. For a BERT teacher ``data`` is
    ``"digits"`` (as sequences) or a JSONL file tokenized by ``tokenizer`` (see
    :func:`data_source`); the report's ``"data"`` then records the sequence length. A missing
    teacher is trained on the digits as ``arch`` (``"deit"`` or ``"bert"``).

    With ``tokens``, the student also prunes tokens (the teacher sees every token); the keep
    rate warms up along the pruning schedule and the report gains a ``"tokens"`` entry.

    ``out`` receives ``pruned/`` (``save_pretrained``: dense shapes, masked weights zero),
    ``shrunk/`` (the same function with removed heads and FFN neurons gone and the in-head block
    sparsity kept as zeros: what the accelerator runs), ``filled/`` (with ``final_finetune``:
    shrunk and fine-tuned without masks), ``pruning_report.json``, ``recipe.json``,
    ``density_per_layer.png`` and ``accuracy.png``. ``shrunk/`` and ``filled/`` reload with
    :func:`sw.models.load_model` (see :mod:`sw.pruning.artifacts`), token gathers included: each
    folder computes what the report measured (``accuracy``, ``shrunk.accuracy``,
    ``filled.accuracy``). The directory appears only once complete.

    Raises
    ------
    ValueError
        On bad settings or data (:class:`~sw.data.source.DataError`), before any training.
    """
    teacher_dir = Path(teacher_dir)
    limit_library_bars(progress)
    if out is not None:
        check_output(out)
    source = check_data(teacher_dir, data, tokenizer, arch=arch)
    with _process_state().main_process_first():
        teacher = _teacher(teacher_dir, progress, arch)
    if isinstance(source, SequenceSource):
        split = source.load_split(teacher.config, model=str(teacher_dir))
        shape = {"sequence_length": split.sequence_length}
    else:
        check_model_data(teacher.config, source, model=str(teacher_dir))
        split = source.load_split(int(teacher.config.image_size))
        shape = {"image_size": split.image_size}
    dense_accuracy = evaluate(teacher, split.val_inputs, split.val_labels)
    baseline = dense_baseline(teacher)
    student = load_model(teacher_dir)
    token_patch = None if tokens is None else patch_token_pruning(
        student, tokens, initial_warmup=args.initial_warmup, final_warmup=args.final_warmup,
        warmup_epochs=options.warmup_epochs, epochs=options.epochs,
        finetune_epochs=options.final_finetune_epochs)
    if tokens is not None and tokens.warmup_stage == "finetune" and not args.final_finetune:
        raise ValueError("tokens.warmup_stage \"finetune\" needs pruning.final_finetune: true")
    use_teacher = args.distil_alpha_teacher > 0
    result = fine_prune(student, teacher if use_teacher else None, split, args, options,
                        progress=progress,
                        on_step=None if token_patch is None else token_patch.on_step,
                        on_finetune_step=None if token_patch is None
                        else token_patch.on_finetune_step)
    block_shapes = {name: info.block_shape for name, info in result.patch.patched.items()}
    report = pruning_report(
        pruned=result.pruned, masks=result.masks, block_shapes=block_shapes, baseline=baseline,
        dense_accuracy=dense_accuracy, accuracy=result.accuracy, surgery=result.surgery,
        filled=result.filled, filled_accuracy=result.filled_accuracy, history=result.history)
    device = next(result.shrunk.parameters()).device
    report["shrunk"] = {"accuracy": evaluate(result.shrunk, split.val_inputs.to(device),
                                             split.val_labels.to(device))}
    report["data"] = {**source.to_dict(), **shape,
                      "classes": list(split.class_names),
                      "train_samples": len(split.train_labels),
                      "val_samples": len(split.val_labels)}
    report["seconds"] = round(result.seconds, 2)
    report["processes"] = result.processes
    recipe = {"pruning": args.to_dict(), "training": dataclasses.asdict(options),
              "teacher": str(teacher_dir), "data": source.describe()}
    if token_patch is not None:
        recipe["tokens"] = tokens.to_dict()
        config = teacher.config
        sequence = (config.image_size // config.patch_size) ** 2 + token_patch.protected
        report["tokens"] = {**tokens.to_dict(), "protected": token_patch.protected,
                            "tokens_per_layer": token_patch.kept_tokens(
                                sequence, config.num_hidden_layers)}
    report["recipe"] = recipe
    if out is not None and _process_state().is_main_process:
        def write(staging: Path) -> None:
            result.pruned.save_pretrained(staging / "pruned")
            save_shrunk(result.shrunk, result.surgery, staging / "shrunk")
            if result.filled is not None:
                save_shrunk(result.filled, result.surgery, staging / "filled")
            (staging / REPORT).write_text(json.dumps(report, indent=2) + "\n")
            (staging / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
            plot_density(report, staging / "density_per_layer.png")
            plot_accuracy(result.history, staging / "accuracy.png",
                          dense_accuracy=dense_accuracy,
                          eval_with_current_patch_params=args.eval_with_current_patch_params)
        check_output(out)       # again: files may have appeared there during the run
        replace_directory(Path(out), write)
    return result, report


def check_schedule(args: PruningArgs, options: TrainingOptions, *,
                   teacher_dir: Path = DEFAULT_TEACHER,
                   data: str | os.PathLike | DataSource | SequenceSource = DIGITS) -> None:
    """Raise ``ValueError`` now, before any training, if the threshold schedule does not fit
    the run's steps (``initial_warmup + final_warmup`` longer than the run, say)."""
    source = data_source(teacher_dir, data)
    if source.is_digits:
        samples = _teacher_record(Path(teacher_dir)).get("data", {}).get("train_samples")
    else:
        samples = source.train_samples()
    if samples is None:
        return  # the split is unknown until the teacher exists; fine_prune checks again
    if options.max_train_samples is not None:
        samples = min(samples, options.max_train_samples)
    steps_per_epoch = -(-samples // options.batch_size)
    try:
        args.schedule(warmup_steps=options.warmup_epochs * steps_per_epoch,
                      total_steps=options.epochs * steps_per_epoch)
    except ValueError as error:
        raise ValueError(f"{error} ({options.epochs} epochs of {steps_per_epoch} steps; the "
                         f"warmups count in units of warmup_epochs="
                         f"{options.warmup_epochs} epochs)") from None


def _flag_type(default):
    if isinstance(default, bool):
        def boolean(text: str) -> bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(text)      # argparse: "invalid boolean value: 'yes'"
            return text.lower() == "true"
        boolean.__name__ = "boolean"
        return boolean
    if isinstance(default, float):
        return float
    if isinstance(default, int):
        return int
    return str


def _parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE,
                        help=f"recipe JSON (default: {DEFAULT_RECIPE.relative_to(_REPO_ROOT)})")
    parser.add_argument("--teacher", type=Path, default=DEFAULT_TEACHER,
                        help="dense teacher directory; trained first if missing")
    parser.add_argument("--arch", choices=("deit", "bert"), default=None,
                        help="the digits teacher to train when --teacher is missing (default "
                             "deit); an existing teacher must be of this architecture")
    parser.add_argument("--data", default=DIGITS, metavar="DIR|FILE.jsonl|digits",
                        help="training data: an image folder (one sub-folder per class) or "
                             "'digits' (default); checked against the teacher's classes and "
                             "image size. A BERT teacher takes 'digits' (as sequences) or a "
                             "JSONL file of {\"text\", \"label\"} lines")
    parser.add_argument("--tokenizer", type=Path, default=None, metavar="DIR",
                        help="tokenizer folder for --data FILE.jsonl (transformers' tokenizer "
                             "files or a tokenizers tokenizer.json; default: the teacher folder)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output directory: absent, empty, or an earlier output of this tool "
                             "(then replaced)")
    parser.add_argument("--epochs", type=int, help="pruning epochs (recipe: training.epochs)")
    parser.add_argument("--max-train-samples", type=int, dest="max_train_samples",
                        help="use only the first N training images")
    parser.add_argument("--final-finetune-epochs", type=int, dest="final_finetune_epochs")
    parser.add_argument("--keep-rate", type=float, dest="keep_rate",
                        help="token keep rate (recipe: tokens.keep_rate; adds token pruning)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    seed = parser.add_argument_group("pruning arguments (nn_pruning names; override the recipe)")
    for spec in dataclasses.fields(PruningArgs):
        kind = _flag_type(spec.default) if spec.default is not None else str
        seed.add_argument(f"--{spec.name}", type=kind, default=None,
                          help=f"nn_pruning default: {spec.default!r}")
    return parser


@exit_130_on_interrupt(PROG)
def main(argv: list[str] | None = None) -> int:
    """Bad input (the recipe, the teacher folder, an ``--out`` that must not be replaced) ends
    with one ``error:`` line and status 2 before any work; Ctrl-C with one line and status 130,
    the previous ``--out`` intact."""
    parser = _parser()
    options = vars(parser.parse_args(argv))
    recipe_path = options["recipe"]
    if options["no_progress"]:      # transformers' own bars too (loading, writing shards)
        from transformers.utils import logging as transformers_logging
        transformers_logging.disable_progress_bar()

    def fail(message: str):
        parser.exit(BAD_INPUT, f"{PROG}: error: {message}\n")

    pruning_overrides = {spec.name: options[spec.name] for spec in dataclasses.fields(PruningArgs)
                         if options[spec.name] is not None}
    training_overrides = {name: options[name] for name in
                          ("epochs", "max_train_samples", "final_finetune_epochs")
                          if options[name] is not None}
    try:
        recipe = resolve_whole_recipe(
            read_recipe(recipe_path), pruning_overrides=pruning_overrides,
            training_overrides=training_overrides,
            token_overrides=(None if options["keep_rate"] is None
                             else {"keep_rate": options["keep_rate"]}))
    except SettingsFileError as error:
        fail(str(error))
    except RecipeError as error:
        fail(f"{one_line(recipe_path)}: {error}")
    args, training, tokens = recipe.pruning, recipe.training, recipe.tokens
    try:
        check_output(options["out"])
    except OutputRefused as error:
        fail(f"argument --out: {error}")
    try:
        check_teacher(options["teacher"])
    except OutputRefused as error:
        fail(f"argument --teacher: {error}")
    except ValueError as error:
        fail(str(error))
    arch = options["arch"] or "deit"
    config_path = Path(options["teacher"]) / "config.json"
    if options["arch"] is not None and config_path.exists() \
            and _sequence_teacher(options["teacher"]) != (arch in SEQUENCE_MODEL_TYPES):
        fail(f"argument --arch: {arch}, but the teacher {one_line(options['teacher'])} is "
             f"{'a BERT' if _sequence_teacher(options['teacher']) else 'not a BERT'} "
             f"(config.json model_type)")
    try:
        data = check_data(options["teacher"], options["data"], options["tokenizer"], arch=arch)
    except DataError as error:
        fail(one_line(error))
    try:
        check_schedule(args, training, teacher_dir=options["teacher"], data=data)
    except SettingsFileError as error:
        fail(str(error))
    except ValueError as error:
        fail(f"{one_line(recipe_path)}: {error}")
    try:
        result, report = prune(args, training, teacher_dir=options["teacher"],
                               out=options["out"], progress=not options["no_progress"],
                               tokens=tokens, data=data, arch=arch)
    except OutputRefused as error:      # files appeared in --out (or the teacher's) meanwhile
        fail(str(error))
    except (ValueError, FileNotFoundError) as error:
        # Settings that only the model can check (layer indices, block shapes that do not
        # divide its matrices, an unsupported architecture): one line, nothing written.
        fail(one_line(error))
    except OSError as error:
        fail(f"cannot write {one_line(options['out'])}: {one_line(error.strerror or error)}")
    main_process = _process_state().is_main_process
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if not main_process:
        return 0
    filled = report.get("filled")
    print(f"dense accuracy {report['dense_accuracy']:.4f}; pruned: linear density "
          f"{report['linear_density']:.3f}, accuracy {report['accuracy']:.4f}, heads removed "
          f"{report['heads_removed']}/{report['heads_total']}"
          + (f"; filled: linear density {filled['linear_density']:.3f}, accuracy "
             f"{filled['accuracy']:.4f}" if filled else "")
          + (f"; tokens per layer {report['tokens']['tokens_per_layer']}"
             if "tokens" in report else "")
          + f"; {report['seconds']:.0f} s; written to {options['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
