"""Train a small DeiT or BERT on the scikit-learn digits on CPU; save it with ``save_pretrained``.

Run ``python sw/train_digits.py --out build/models/digits_deit`` (see docs/training.md), or call
:func:`train` from code. ``--arch bert`` trains a small ``BertForSequenceClassification`` on the
digits read as 66-token sequences of pixel intensities (:mod:`sw.data.sequences`) and saves the
digits tokenizer beside it.
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
    exit_130_on_interrupt_during_imports("train_digits.py")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

from sw.atomic import OutputRefused, check_output_directory, replace_directory  # noqa: E402
from sw.cli import (BAD_INPUT, OneLineArgumentParser, exit_130_on_interrupt,  # noqa: E402
                    one_line)
from sw.data import ImageSplit, iterate_batches  # noqa: E402
from sw.data.digits import DIGITS_MEAN, DIGITS_STD, load_digits_split  # noqa: E402
from sw.data.sequences import (DIGITS_VOCABULARY, TOKENIZER_FILES, SequenceSplit,  # noqa: E402
                               digits_tokenizer, load_digits_sequence_split, shift_grid)
from sw.models import (build_small_bert, build_small_deit, model_inputs,  # noqa: E402
                       small_bert_config, small_deit_config)
from sw.progress import progress_bar  # noqa: E402
from sw.settings import InvalidSetting, check_integer, check_number  # noqa: E402

__all__ = ["ARCHITECTURES", "InvalidOption", "OUTPUT_FILES", "TRAINING_RECORD", "TrainOptions",
           "TrainResult", "augment", "check_output", "evaluate", "main",
           "ordinal_intensity_embeddings", "train"]

#: The record of a run, and the manifest by which a later run recognises its own output.
TRAINING_RECORD = "training.json"
#: Everything a run writes into ``out`` (``save_pretrained``'s files and the record).
OUTPUT_FILES = ("config.json", "model.safetensors", TRAINING_RECORD) + TOKENIZER_FILES
PROG = "train_digits.py"
#: ``--arch`` values: the digits as 32x32 images (DeiT) or as 66-token sequences (BERT).
ARCHITECTURES = ("deit", "bert")
#: Options that only the DeiT reads (left out of a BERT's record).
_IMAGE_OPTIONS = ("image_size", "patch_size")


@dataclass(frozen=True)
class TrainOptions:
    """Everything that determines a training run; written to ``training.json``.

    ``arch`` ``"bert"`` ignores ``image_size`` and ``patch_size``; its ``max_shift`` shifts
    the 8x8 grid of intensities (background 0), not an upscaled image. ``max_shift`` None
    (the default) is 2 for the DeiT (pixels of the 32x32 image) and 0 for BERT (a shift of
    whole digit pixels cost accuracy: docs/training.md).
    """

    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 2
    seed: int = 0
    split_seed: int = 0
    val_fraction: float = 0.2
    image_size: int = 32
    patch_size: int = 4
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    max_shift: int | None = None
    max_train_samples: int | None = None
    arch: str = "deit"

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise InvalidOption("arch", f"arch must be one of {', '.join(ARCHITECTURES)}, not "
                                        f"{self.arch!r}")
        if self.max_shift is None:      # frozen: the resolved default is what the record says
            object.__setattr__(self, "max_shift", 0 if self.arch == "bert" else 2)
        for name in ("epochs", "batch_size", "image_size", "patch_size", "hidden_size",
                     "num_layers", "num_heads", "intermediate_size"):
            check_integer(name, getattr(self, name), minimum=1)
        for name in ("warmup_epochs", "max_shift"):
            check_integer(name, getattr(self, name), minimum=0)
        check_integer("seed", self.seed, minimum=0, maximum=2 ** 63 - 1)        # torch's range
        check_integer("split_seed", self.split_seed, minimum=0, maximum=2 ** 32 - 1)  # numpy's
        if self.max_train_samples is not None:
            check_integer("max_train_samples", self.max_train_samples, minimum=1)
        check_number("lr", self.lr, "a finite number > 0", lambda value: value > 0)
        check_number("weight_decay", self.weight_decay, "a finite number >= 0",
                     lambda value: value >= 0)
        check_number("val_fraction", self.val_fraction, "a number between 0 and 1 (exclusive)",
                     lambda value: 0 < value < 1)
        try:        # the model's own shape rules (heads divide the width, patches the image)
            if self.arch == "bert":
                small_bert_config(hidden_size=self.hidden_size, num_heads=self.num_heads)
                return
            small_deit_config(image_size=self.image_size, patch_size=self.patch_size,
                              hidden_size=self.hidden_size, num_layers=self.num_layers,
                              num_heads=self.num_heads,
                              intermediate_size=self.intermediate_size)
        except ValueError as error:
            raise InvalidOption(
                "patch_size" if "patch size" in str(error) else "num_heads", str(error)) from None


#: A :class:`TrainOptions` field out of its domain; ``field`` names it.
InvalidOption = InvalidSetting


@dataclass
class TrainResult:
    """The trained model (eval mode), its final validation accuracy and per-epoch history."""

    model: torch.nn.Module
    val_accuracy: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    out: Path | None = None


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 256) -> float:
    """Top-1 accuracy of an image classifier (``images``), or of a sequence classifier
    (``images`` are then padded token ids, see :func:`sw.models.model_inputs`). Puts the
    model in eval mode."""
    model.eval()
    correct = 0
    for batch_images, batch_labels in iterate_batches(images, labels, batch_size):
        logits = model(**model_inputs(model, batch_images)).logits
        correct += int((logits.argmax(dim=-1) == batch_labels).sum())
    return correct / len(labels)


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels, filling with the background value."""
    if max_shift == 0:
        return images
    size = images.shape[-1]
    padded = F.pad(images, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (len(images), 2), generator=generator)
    return torch.stack([padded[i, :, y:y + size, x:x + size]
                        for i, (y, x) in enumerate(offsets.tolist())])


def augment(split, inputs: torch.Tensor, max_shift: int,
            generator: torch.Generator) -> torch.Tensor:
    """A training batch of ``split`` shifted by up to ``max_shift`` pixels: images
    (:func:`random_shift`), or the digits sequences' 8x8 grid (background intensity 0);
    sequences that hold no image (text) are returned as they are."""
    if isinstance(split, SequenceSplit):
        if split.grid is None:
            return inputs
        return shift_grid(inputs, split.grid, max_shift, generator,
                          background=DIGITS_VOCABULARY.index("0"))
    return random_shift(inputs, max_shift, generator)


@torch.no_grad()
def ordinal_intensity_embeddings(model: torch.nn.Module) -> torch.nn.Module:
    """Re-initialise the word embeddings of the 17 digit intensities on one line, from the
    random vector of ``"0"`` to that of ``"16"`` in equal steps, so that close intensities
    start close (the prior the DeiT's linear patch embedding has built in; independent
    embeddings train to 0.853 instead of 0.936, docs/training.md). Mutates the model and
    returns it."""
    weight = model.get_input_embeddings().weight
    first = DIGITS_VOCABULARY.index("0")
    low, high = weight[first].clone(), weight[first + 16].clone()
    for value in range(17):
        weight[first + value] = low + (high - low) * (value / 16)
    return model


def _schedule(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def check_output(out: str | os.PathLike) -> None:
    """Raise :class:`~sw.atomic.OutputRefused` unless ``out`` is absent, empty or an earlier
    output of this tool (a ``training.json`` and nothing but :data:`OUTPUT_FILES`)."""
    check_output_directory(out, manifest=TRAINING_RECORD, contents=OUTPUT_FILES)


def _save_atomically(model: torch.nn.Module, record: dict, out: Path, tokenizer=None) -> None:
    """Write the model (and tokenizer) and its training record into a sibling temporary
    directory, then rename it over ``out`` (checked again: files may have appeared there during
    the training)."""
    check_output(out)

    def write(staging: Path) -> None:
        model.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        (staging / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    replace_directory(out, write)


def train(out: str | os.PathLike | None = None, *, split: ImageSplit | SequenceSplit | None = None,
          progress: bool = True, **options) -> TrainResult:
    """Train a small DeiT (or, ``arch="bert"``, a small BERT) from scratch and, if ``out`` is
    given, save it there.

    ``options`` are the fields of :class:`TrainOptions`. ``split`` defaults to the digits
    (:func:`sw.data.digits.load_digits_split`, or for BERT
    :func:`sw.data.sequences.load_digits_sequence_split`, with ``split_seed`` and
    ``val_fraction``); any :class:`~sw.data.ImageSplit` works for the DeiT, any
    :class:`~sw.data.sequences.SequenceSplit` for BERT (the model's vocabulary and positions
    are sized to it). The same options give the same weights: the seed fixes
    initialisation, shuffling and augmentation, and deterministic algorithms are enabled for the
    run (and restored afterwards).

    ``out`` receives the ``save_pretrained`` files plus ``training.json`` (and for BERT on the
    digits, the digits tokenizer's files); the directory appears
    only once complete, replacing an earlier output of this function. Any other existing ``out``
    is refused before the training starts (:func:`check_output`).

    Raises
    ------
    ValueError
        If an option is invalid (:class:`InvalidOption`, see :class:`TrainOptions`) or ``out``
        is refused (:class:`~sw.atomic.OutputRefused`).
    """
    opts = TrainOptions(**options)
    if out is not None:
        check_output(out)
    started = time.perf_counter()
    bert = opts.arch == "bert"
    if split is None:
        try:
            split = (load_digits_sequence_split(opts.val_fraction, opts.split_seed) if bert
                     else load_digits_split(opts.image_size, opts.val_fraction, opts.split_seed))
        except ValueError as error:         # too few images on one side for every class
            raise InvalidOption("val_fraction", f"val_fraction {opts.val_fraction}: "
                                                f"{error}") from None
    if bert != isinstance(split, SequenceSplit):
        raise ValueError(f"arch {opts.arch!r} takes "
                         f"{'a SequenceSplit' if bert else 'an ImageSplit'}, not "
                         f"{type(split).__name__}")
    train_images, train_labels = split.train_inputs, split.train_labels
    if opts.max_train_samples is not None:
        train_images = train_images[:opts.max_train_samples]
        train_labels = train_labels[:opts.max_train_samples]
    if bert:
        vocab_size = max(int(split.train_ids.max()), int(split.val_ids.max()),
                         split.pad_token_id) + 1
        if split.grid is not None:
            vocab_size = max(vocab_size, len(DIGITS_VOCABULARY))
        config = small_bert_config(
            vocab_size=vocab_size, max_position_embeddings=split.sequence_length,
            hidden_size=opts.hidden_size, num_layers=opts.num_layers, num_heads=opts.num_heads,
            intermediate_size=opts.intermediate_size, num_labels=split.num_classes,
            pad_token_id=split.pad_token_id)
    else:
        config = small_deit_config(
            image_size=split.image_size, patch_size=opts.patch_size,
            hidden_size=opts.hidden_size, num_layers=opts.num_layers, num_heads=opts.num_heads,
            intermediate_size=opts.intermediate_size, num_labels=split.num_classes)
    config.id2label = dict(enumerate(split.class_names))
    config.label2id = {name: index for index, name in enumerate(split.class_names)}

    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(opts.seed)
        model = build_small_bert(config) if bert else build_small_deit(config)
        if bert and split.grid is not None:
            ordinal_intensity_embeddings(model)
        generator = torch.Generator().manual_seed(opts.seed)
        steps_per_epoch = math.ceil(len(train_labels) / opts.batch_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=opts.lr,
                                      weight_decay=opts.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(
            opts.epochs * steps_per_epoch, opts.warmup_epochs * steps_per_epoch))
        history = []
        for epoch in range(1, opts.epochs + 1):
            model.train()
            loss_sum, correct, seen = 0.0, 0, 0
            bar = progress_bar(iterate_batches(train_images, train_labels, opts.batch_size,
                                               generator=generator), enabled=progress,
                               total=steps_per_epoch, desc=f"epoch {epoch}/{opts.epochs}",
                               leave=False, dynamic_ncols=True)
            for batch_images, batch_labels in bar:
                batch_images = augment(split, batch_images, opts.max_shift, generator)
                logits = model(**model_inputs(model, batch_images)).logits
                loss = F.cross_entropy(logits, batch_labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(batch_labels)
                correct += int((logits.argmax(dim=-1) == batch_labels).sum())
                seen += len(batch_labels)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
            bar.close()
            val_accuracy = evaluate(model, split.val_inputs, split.val_labels)
            history.append({"epoch": epoch, "train_loss": loss_sum / seen,
                            "train_accuracy": correct / seen, "val_accuracy": val_accuracy})
            if progress:
                tqdm.write(f"epoch {epoch}/{opts.epochs}: loss {loss_sum / seen:.4f} "
                           f"train acc {correct / seen:.4f} val acc {val_accuracy:.4f}")
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    model.eval()
    seconds = time.perf_counter() - started
    out_path = None
    if out is not None:
        out_path = Path(out)
        options = dataclasses.asdict(opts)
        data = {"train_samples": len(train_labels), "val_samples": len(split.val_labels),
                "class_names": list(split.class_names)}
        if bert:
            for name in _IMAGE_OPTIONS:
                del options[name]
            data["sequence_length"] = split.sequence_length
            if split.grid is not None:
                data["vocabulary"] = list(DIGITS_VOCABULARY)
                data["intensity_embeddings"] = "ordinal"
        else:
            data["digits_normalisation"] = {"mean": DIGITS_MEAN, "std": DIGITS_STD}
        record = {
            "val_accuracy": val_accuracy,
            "epochs": opts.epochs,
            "seconds": round(seconds, 2),
            "options": options,
            "data": data,
            "history": history,
        }
        tokenizer = digits_tokenizer() if bert and split.grid is not None else None
        _save_atomically(model, record, out_path, tokenizer)
    return TrainResult(model=model, val_accuracy=val_accuracy, history=history,
                       seconds=seconds, out=out_path)


def _parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path,
                        help="directory to save the model into: absent, empty, or an earlier "
                             "output of this tool (then replaced)")
    defaults = TrainOptions()
    for spec in dataclasses.fields(TrainOptions):
        flag = "--" + spec.name.replace("_", "-")
        default = getattr(defaults, spec.name)
        if spec.name == "arch":
            parser.add_argument(flag, choices=ARCHITECTURES, default=default,
                                help=f"deit: the digits as images; bert: as sequences of pixel "
                                     f"intensities (default: {default})")
            continue
        kind = float if isinstance(default, float) else int
        if spec.name == "max_shift":
            parser.add_argument(flag, type=int, default=None,
                                help="default: 2 for deit, 0 for bert")
            continue
        parser.add_argument(flag, type=kind, default=default, help=f"default: {default}")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


@exit_130_on_interrupt(PROG)
def main(argv: list[str] | None = None) -> int:
    """Bad options or an ``--out`` that must not be replaced end with one ``error:`` line and
    status 2 before any work; Ctrl-C with one line and status 130, the previous ``--out`` intact.
    """
    parser = _parser()
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    progress = not args.pop("no_progress")
    try:
        TrainOptions(**args)
    except InvalidOption as error:
        parser.exit(BAD_INPUT, f"{PROG}: error: argument --{error.field.replace('_', '-')}: "
                               f"{error}\n")
    try:
        result = train(out, progress=progress, **args)
    except InvalidOption as error:
        parser.exit(BAD_INPUT, f"{PROG}: error: argument --{error.field.replace('_', '-')}: "
                               f"{error}\n")
    except OutputRefused as error:
        parser.exit(BAD_INPUT, f"{PROG}: error: argument --out: {error}\n")
    except ValueError as error:     # what only the data can tell (a split too small, say)
        parser.exit(BAD_INPUT, f"{PROG}: error: {one_line(error)}\n")
    except OSError as error:        # the disk, once the model is trained
        parser.exit(BAD_INPUT, f"{PROG}: error: cannot write {one_line(out)}: "
                               f"{one_line(error.strerror or error)}\n")
    print(f"val accuracy {result.val_accuracy:.4f} after {len(result.history)} epochs "
          f"in {result.seconds:.1f} s; saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
