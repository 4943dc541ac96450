"""Token sequences for BERT classifiers: the digits as pixel-intensity sequences, and JSONL text.

The built-in task (no text corpus ships offline) is the scikit-learn digits read as text: each
8x8 image is its 64 pixel intensities (0..16) in row-major order, one word each, framed as
``[CLS] p0 ... p63 [SEP]`` (66 tokens). Its vocabulary is the four special tokens
(:data:`DIGITS_SPECIAL_TOKENS`) then the 17 intensities (:func:`digits_tokenizer` builds it as a
``tokenizers`` WordLevel tokenizer, saved beside the trained teacher).

Users bring text as a JSONL file, one ``{"text": str, "label": str | int}`` object a line, with
the tokenizer folder of their model (transformers' tokenizer files, or a bare ``tokenizers``
``tokenizer.json``): :class:`SequenceSource`. Labels are checked against the model's
``id2label``. Every loader returns a :class:`SequenceSplit` of padded token ids; padding is the
model's ``pad_token_id``, and :func:`sw.models.model_inputs` derives the attention mask from it.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sw.data.source import DataError

__all__ = ["DIGITS_GRID", "DIGITS_SEQUENCE_LENGTH", "DIGITS_SPECIAL_TOKENS", "DIGITS_VOCABULARY",
           "SequenceSplit", "SequenceSource", "TOKENIZER_FILES", "check_sequence_model_data",
           "digits_as_text", "digits_token_ids", "digits_tokenizer", "load_digits_sequence_split",
           "load_tokenizer", "read_jsonl", "shift_grid"]

#: Special tokens of the digits vocabulary, ids 0..3 (``[PAD]`` is BERT's default pad id 0).
DIGITS_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
#: The whole digits vocabulary, in id order: the special tokens, then the intensities 0..16.
DIGITS_VOCABULARY = DIGITS_SPECIAL_TOKENS + tuple(str(value) for value in range(17))
#: Rows and columns of a digit image; its sequence is the pixels in row-major order.
DIGITS_GRID = (8, 8)
#: ``[CLS]``, 64 pixels, ``[SEP]``.
DIGITS_SEQUENCE_LENGTH = DIGITS_GRID[0] * DIGITS_GRID[1] + 2
#: What a tokenizer's ``save_pretrained`` may write (the teacher folder's tokenizer files).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
_DIGITS_CLASSES = tuple(str(digit) for digit in range(10))
_PLACEHOLDER_LABEL = re.compile(r"^(LABEL_)?\d+$")
_PIXEL_OFFSET = len(DIGITS_SPECIAL_TOKENS)
_CLS, _SEP = DIGITS_VOCABULARY.index("[CLS]"), DIGITS_VOCABULARY.index("[SEP]")


@dataclass(frozen=True)
class SequenceSplit:
    """A train/validation split of padded token sequences.

    Members
    -------
    train_ids, val_ids : torch.Tensor
        ``(N, L)`` int64 token ids, padded with ``pad_token_id`` to the longest sequence.
    train_labels, val_labels : torch.Tensor
        ``(N,)`` int64 class indices.
    class_names : tuple of str
        Name of each class index.
    pad_token_id : int
    grid : tuple of int or None
        ``(rows, cols)`` when tokens ``1 .. rows * cols`` are the pixels of an image in
        row-major order (the digits), which lets training shift them as images; else None.
    """

    train_ids: torch.Tensor
    train_labels: torch.Tensor
    val_ids: torch.Tensor
    val_labels: torch.Tensor
    class_names: tuple[str, ...]
    pad_token_id: int = 0
    grid: tuple[int, int] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def train_inputs(self) -> torch.Tensor:
        return self.train_ids

    @property
    def val_inputs(self) -> torch.Tensor:
        return self.val_ids

    @property
    def sequence_length(self) -> int:
        return int(self.train_ids.shape[1])


# -- the digits as sequences ----------------------------------------------------------------

def digits_token_ids(images) -> torch.Tensor:
    """Raw ``(N, 8, 8)`` digits (integer intensities 0..16) -> ``(N, 66)`` token ids
    ``[CLS] p0 .. p63 [SEP]`` of :data:`DIGITS_VOCABULARY` (what :func:`digits_tokenizer` gives
    for :func:`digits_as_text`).

    Raises
    ------
    ValueError
        If the images are not ``(N, 8, 8)`` integers in 0..16.
    """
    pixels = np.asarray(images)
    if pixels.ndim != 3 or pixels.shape[1:] != DIGITS_GRID:
        raise ValueError(f"Digits must have shape (N, 8, 8), not {pixels.shape}")
    if not np.array_equal(pixels, np.round(pixels)) or pixels.min() < 0 or pixels.max() > 16:
        raise ValueError("Digit intensities must be integers from 0 to 16")
    body = torch.as_tensor(pixels.reshape(len(pixels), -1).astype(np.int64)) + _PIXEL_OFFSET
    column = torch.full((len(pixels), 1), _CLS, dtype=torch.int64)
    return torch.cat([column, body, torch.full_like(column, _SEP)], dim=1)


def digits_as_text(image) -> str:
    """One raw 8x8 digit as the text its sequence tokenizes from: 64 intensities and spaces."""
    return " ".join(str(int(value)) for value in np.asarray(image).reshape(-1))


def digits_tokenizer():
    """The digits vocabulary as a transformers fast tokenizer (WordLevel over whitespace,
    ``[CLS] $A [SEP]``); ``save_pretrained`` writes :data:`TOKENIZER_FILES` (some of them)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocabulary = {token: index for index, token in enumerate(DIGITS_VOCABULARY)}
    core = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", _CLS), ("[SEP]", _SEP)])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]",
                                   model_max_length=DIGITS_SEQUENCE_LENGTH)


def load_digits_sequence_split(val_fraction: float = 0.2, seed: int = 0) -> SequenceSplit:
    """The digits as 66-token sequences, split as the image digits are (the same stratified
    ``train_test_split``, so the same images land on each side as
    :func:`sw.data.digits.load_digits_split` with the same arguments).

    Raises
    ------
    ValueError
        If ``val_fraction`` is not strictly between 0 and 1.
    """
    from sklearn.datasets import load_digits

    from sw.data.image_folder import split_indices
    digits = load_digits()
    train_index, val_index = split_indices(digits.target, float(val_fraction), seed,
                                           source="digits")
    ids = digits_token_ids(digits.images)
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    train_index, val_index = torch.as_tensor(train_index), torch.as_tensor(val_index)
    return SequenceSplit(train_ids=ids[train_index], train_labels=labels[train_index],
                         val_ids=ids[val_index], val_labels=labels[val_index],
                         class_names=_DIGITS_CLASSES, pad_token_id=0, grid=DIGITS_GRID)


def shift_grid(ids: torch.Tensor, grid: tuple[int, int], max_shift: int,
               generator: torch.Generator, background: int) -> torch.Tensor:
    """Translate the image held by tokens ``1 .. rows * cols`` of each sequence by up to
    ``max_shift`` pixels, filling with the ``background`` token (the sequence analogue of
    :func:`sw.train_digits.random_shift`)."""
    if max_shift == 0:
        return ids
    rows, cols = grid
    pixels = ids[:, 1:1 + rows * cols].reshape(len(ids), rows, cols)
    padded = torch.nn.functional.pad(pixels, (max_shift,) * 4, value=background)
    offsets = torch.randint(0, 2 * max_shift + 1, (len(ids), 2), generator=generator)
    shifted = torch.stack([padded[i, y:y + rows, x:x + cols]
                           for i, (y, x) in enumerate(offsets.tolist())])
    out = ids.clone()
    out[:, 1:1 + rows * cols] = shifted.reshape(len(ids), -1)
    return out


# -- user text ----------------------------------------------------------------------------

def read_jsonl(path: str | os.PathLike) -> tuple[list[str], list, list[int]]:
    """The texts, raw labels and line numbers (from 1) of a JSONL file of ``{"text": str,
    "label": str | int}`` lines (blank lines skipped; other keys ignored).

    Raises
    ------
    DataError
        One line naming the file, the line number, the field, what was expected and found.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: JSONL file not found (expected 'digits' or a .jsonl file of "
                        f'{{"text", "label"}} lines)')
    texts, labels, numbers = [], [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read it: {error.strerror}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: expected a JSON object, found invalid JSON "
                            f"({error.msg} at column {error.colno})") from None
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object, found {type(record).__name__}")
        for key in ("text", "label"):
            if key not in record:
                raise DataError(f"{where}: field {key!r} missing (expected "
                                f'{{"text": str, "label": str or int}})')
        text, label = record["text"], record["label"]
        if not isinstance(text, str):
            raise DataError(f"{where}: field 'text': expected a string, found "
                            f"{type(text).__name__}")
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise DataError(f"{where}: field 'label': expected a string or an integer, found "
                            f"{type(label).__name__}")
        texts.append(text)
        labels.append(label)
        numbers.append(number)
    if not texts:
        raise DataError(f"{path}: no lines (expected one {{\"text\", \"label\"}} object a line)")
    return texts, labels, numbers


def _model_class_names(config) -> list[str] | None:
    """The model's label names when they say something (not ``LABEL_3`` placeholders)."""
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label.get(index, "")) for index in range(int(config.num_labels))]
    if not names or all(_PLACEHOLDER_LABEL.match(name) for name in names):
        return None
    return names


def _label_indices(path: Path, labels: list, numbers: list[int], config,
                   model: str) -> tuple[list[int], list[str]]:
    """Each raw label as a class index of the model, and the class names.

    With named labels (``id2label``) a label is one of the names; otherwise an integer
    ``0 .. num_labels - 1`` (or its decimal string).
    """
    count = int(config.num_labels)
    names = _model_class_names(config)
    if names is not None:
        lookup = {name: index for index, name in enumerate(names)}
        shown = ", ".join(repr(name) for name in names[:8]) + (", ..." if count > 8 else "")
    else:
        lookup = {str(index): index for index in range(count)}
        names = [str(index) for index in range(count)]
        shown = f"an integer from 0 to {count - 1}"
    indices = []
    for number, label in zip(numbers, labels):
        index = lookup.get(str(label))
        if index is None:
            raise DataError(f"{path}:{number}: field 'label': unknown label {label!r}: the "
                            f"model {model} has {count} labels, expected {shown} (config.json "
                            f"id2label)")
        indices.append(index)
    return indices, names


def load_tokenizer(folder: str | os.PathLike):
    """The tokenizer saved in ``folder`` (``AutoTokenizer``, local files only); a bare
    ``tokenizers`` file without a pad token gets ``[PAD]`` when its vocabulary has one.

    Raises
    ------
    DataError
        If the folder is missing, holds no tokenizer files, cannot be loaded, or the tokenizer
        has no pad token.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: tokenizer folder not found (expected a folder with "
                        f"tokenizer.json, or transformers' tokenizer files)")
    known = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
    if not any((folder / name).is_file() for name in known):
        raise DataError(f"{folder}: no tokenizer files (expected one of {', '.join(known)})")
    from transformers import AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as error:  # noqa: BLE001 - transformers reports bad files in many types
        text = " ".join(str(error).split()) or type(error).__name__
        raise DataError(f"{folder}: cannot load the tokenizer: "
                        f"{text if len(text) <= 200 else text[:197] + '...'}") from None
    if tokenizer.pad_token is None:
        if "[PAD]" not in tokenizer.get_vocab():
            raise DataError(f"{folder}: the tokenizer has no pad token (expected a pad_token in "
                            f"tokenizer_config.json, or [PAD] in its vocabulary)")
        tokenizer.pad_token = "[PAD]"
    return tokenizer


@dataclass(frozen=True)
class SequenceSource:
    """Where a sequence classifier's data comes from, and how it is split.

    Members
    -------
    path : Path or None
        A JSONL file of ``{"text", "label"}`` lines, or None for the digits as sequences.
    tokenizer : Path or None
        The tokenizer folder for ``path`` (unused for the digits, whose ids are fixed).
    val_fraction : float
        Fraction of each class held out for validation (stratified split).
    seed : int
        ``random_state`` of the split.
    """

    path: Path | None = None
    tokenizer: Path | None = None
    val_fraction: float = 0.2
    seed: int = 0

    @property
    def is_digits(self) -> bool:
        return self.path is None

    def describe(self) -> str:
        return "digits" if self.is_digits else str(self.path)

    def to_dict(self) -> dict:
        """The JSON record (``pruning_report.json``'s ``"data"``)."""
        source = ({"source": "digits_sequences"} if self.is_digits else
                  {"source": "jsonl", "path": str(self.path), "tokenizer": str(self.tokenizer)})
        return {**source, "val_fraction": self.val_fraction, "seed": self.seed}

    def train_samples(self) -> int:
        """Sequences in the train split (the step count of a run)."""
        if self.is_digits:
            from sklearn.datasets import load_digits
            total = len(load_digits().target)
        else:
            total = len(read_jsonl(self.path)[0])
        return total - math.ceil(self.val_fraction * total)

    def load_split(self, config, *, model: str = "the model") -> SequenceSplit:
        """Every sequence tokenized for the model of ``config`` (truncated to its
        ``max_position_embeddings``, padded with its ``pad_token_id``) and split.

        Raises
        ------
        DataError
            One line naming the file, the tokenizer or the model.
        """
        check_sequence_model_data(config, self, model=model)
        if self.is_digits:
            try:
                return load_digits_sequence_split(self.val_fraction, self.seed)
            except ValueError as error:
                raise DataError(str(error)) from None
        from sw.data.image_folder import split_indices
        texts, raw, numbers = read_jsonl(self.path)
        labels, names = _label_indices(self.path, raw, numbers, config, model)
        tokenizer = load_tokenizer(self.tokenizer)
        encoded = tokenizer(texts, truncation=True, padding="longest",
                            max_length=int(config.max_position_embeddings))
        ids = torch.as_tensor(encoded["input_ids"], dtype=torch.int64)
        labels = torch.as_tensor(labels, dtype=torch.int64)
        try:
            train, val = split_indices(labels.numpy(), self.val_fraction, self.seed,
                                       source=str(self.path))
        except ValueError as error:
            raise DataError(str(error).replace(" images ", " lines ")) from None
        train, val = torch.as_tensor(train), torch.as_tensor(val)
        return SequenceSplit(train_ids=ids[train], train_labels=labels[train],
                             val_ids=ids[val], val_labels=labels[val], class_names=tuple(names),
                             pad_token_id=int(tokenizer.pad_token_id))


def check_sequence_model_data(config, source: SequenceSource, *, model: str) -> None:
    """Check that ``source`` can be the input of the BERT classifier whose HF config is
    ``config`` (``model`` names it): for the digits, the digits vocabulary fits the model's
    and it has 10 labels and 66 positions; for a JSONL file, every label is one of the
    model's, the tokenizer loads, its ids fit the model's ``vocab_size`` and its pad id is the
    model's ``pad_token_id``.

    Raises
    ------
    DataError
        One line naming the data (file and line), the tokenizer or the model, and both values.
    """
    vocab_size, pad = int(config.vocab_size), getattr(config, "pad_token_id", None)
    if source.is_digits:
        needs = {"vocab_size": len(DIGITS_VOCABULARY), "num_labels": len(_DIGITS_CLASSES),
                 "max_position_embeddings": DIGITS_SEQUENCE_LENGTH}
        for field, least in needs.items():
            value = int(getattr(config, field))
            if (value != least) if field == "num_labels" else (value < least):
                relation = "" if field == "num_labels" else "at least "
                raise DataError(f"digits: the digits sequences need {field} {relation}{least}, "
                                f"but the model {model} has {value} (config.json {field})")
        if pad != 0:
            raise DataError(f"digits: the digits sequences pad with id 0, but the model {model} "
                            f"has pad_token_id {pad!r} (config.json)")
        names = _model_class_names(config)
        if names is not None and names != list(_DIGITS_CLASSES):
            raise DataError(f"digits: classes are 0..9, but the model {model} calls its labels "
                            f"{names[:4]}... (config.json id2label)")
        return
    _, labels, numbers = read_jsonl(source.path)
    _label_indices(source.path, labels, numbers, config, model)
    if source.tokenizer is None:
        raise DataError(f"{source.path}: text data needs a tokenizer folder (--tokenizer DIR, "
                        f"or tokenizer files in the teacher folder)")
    tokenizer = load_tokenizer(source.tokenizer)
    if int(tokenizer.pad_token_id) != pad:
        raise DataError(f"{source.tokenizer}: the tokenizer pads with id {tokenizer.pad_token_id}"
                        f", but the model {model} has pad_token_id {pad!r} (config.json)")
    largest = max(tokenizer.get_vocab().values())
    if largest >= vocab_size:
        raise DataError(f"{source.tokenizer}: the tokenizer has ids up to {largest}, but the "
                        f"model {model} has vocab_size {vocab_size} (config.json)")
