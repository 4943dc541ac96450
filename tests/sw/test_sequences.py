"""Tests for the BERT sequence data: the digits as intensity sequences, JSONL text, tokenizers."""

import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from sw.data.digits import load_digits_split
from sw.data.sequences import (DIGITS_SEQUENCE_LENGTH, DIGITS_VOCABULARY, SequenceSource,
                               check_sequence_model_data, digits_as_text, digits_token_ids,
                               digits_tokenizer, load_digits_sequence_split, load_tokenizer,
                               read_jsonl, shift_grid)
from sw.data.source import DataError
from sw.models import small_bert_config

WORDS = ("red", "green", "blue", "cat", "dog", "bird")


def word_level_tokenizer(folder, *, bare: bool = False):
    """A tiny WordLevel tokenizer over :data:`WORDS`, saved into ``folder``: transformers'
    files, or (``bare``) only the ``tokenizers`` file without a pad token set."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocabulary = {token: index for index, token in
                  enumerate(("[PAD]", "[UNK]", "[CLS]", "[SEP]") + WORDS)}
    core = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    folder.mkdir(parents=True, exist_ok=True)
    if bare:
        core.save(str(folder / "tokenizer.json"))
    else:
        PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]",
                                cls_token="[CLS]", sep_token="[SEP]").save_pretrained(folder)
    return folder


def write_corpus(path, count: int = 30, classes=("colour", "animal")):
    """``count`` lines: colour words are class 0, animal words class 1, 1 to 4 words each."""
    rng = np.random.default_rng(0)
    with path.open("w") as file:
        for index in range(count):
            label = index % 2
            pool = WORDS[:3] if label == 0 else WORDS[3:]
            words = rng.choice(pool, size=int(rng.integers(1, 5)))
            file.write(json.dumps({"text": " ".join(words), "label": classes[label]}) + "\n")
    return path


def test_digits_ids_are_what_the_digits_tokenizer_gives():
    images = load_digits().images[:5]
    ids = digits_token_ids(images)
    assert ids.shape == (5, DIGITS_SEQUENCE_LENGTH) == (5, 66)
    tokenizer = digits_tokenizer()
    assert len(tokenizer) == len(DIGITS_VOCABULARY) == 21
    from_text = tokenizer([digits_as_text(image) for image in images])["input_ids"]
    assert ids.tolist() == from_text
    assert tokenizer.decode(ids[0, 1:9].tolist()) == " ".join(
        str(int(value)) for value in images[0, 0])


def test_digits_sequences_split_like_the_digit_images():
    sequences = load_digits_sequence_split(0.2, 0)
    images = load_digits_split(8, 0.2, 0)
    assert torch.equal(sequences.train_labels, images.train_labels)
    assert torch.equal(sequences.val_labels, images.val_labels)
    # Same images in the same order: intensity is monotone in the (upscaled) pixel value.
    first = sequences.train_ids[0, 1:65].reshape(8, 8) - 4
    assert torch.equal(first.argsort(stable=True).flatten(),
                       images.train_images[0, 0].argsort(stable=True).flatten())
    assert sequences.grid == (8, 8) and sequences.sequence_length == 66


def test_shift_grid_is_a_translation_with_background():
    ids = load_digits_sequence_split().train_ids[:8]
    generator = torch.Generator().manual_seed(3)
    assert torch.equal(shift_grid(ids, (8, 8), 0, generator, background=4), ids)
    shifted = shift_grid(ids, (8, 8), 1, generator, background=4)
    assert torch.equal(shifted[:, [0, 65]], ids[:, [0, 65]])
    for before, after in zip(ids, shifted):
        image = before[1:65].reshape(8, 8)
        padded = torch.nn.functional.pad(image, (1, 1, 1, 1), value=4)
        candidates = [padded[y:y + 8, x:x + 8] for y in range(3) for x in range(3)]
        assert any(torch.equal(after[1:65].reshape(8, 8), candidate)
                   for candidate in candidates)
    assert not torch.equal(shifted, ids)


def test_jsonl_split_is_the_tokenizers_ids(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    tokenizer_dir = word_level_tokenizer(tmp_path / "tokenizer")
    config = small_bert_config(vocab_size=10, max_position_embeddings=8, num_labels=2)
    config.id2label, config.label2id = {0: "colour", 1: "animal"}, {"colour": 0, "animal": 1}
    split = SequenceSource(corpus, tokenizer_dir, 0.2, 0).load_split(config)
    assert split.class_names == ("colour", "animal")
    assert len(split.train_labels) + len(split.val_labels) == 30
    texts, labels, _ = read_jsonl(corpus)
    tokenizer = load_tokenizer(tokenizer_dir)
    expected = tokenizer(texts, padding="longest")["input_ids"]
    every = sorted(split.train_ids.tolist() + split.val_ids.tolist())
    assert every == sorted(expected)
    # Labels follow the model's id2label, and each line keeps its own label.
    by_ids = {tuple(ids): ["colour", "animal"].index(label)
              for ids, label in zip(expected, labels)}
    for ids, label in zip(split.train_ids.tolist(), split.train_labels.tolist()):
        assert by_ids[tuple(ids)] == label
    assert split.pad_token_id == 0 and split.grid is None


def test_bare_tokenizers_file_gets_its_pad_token(tmp_path):
    tokenizer = load_tokenizer(word_level_tokenizer(tmp_path / "bare", bare=True))
    assert tokenizer.pad_token == "[PAD]" and tokenizer.pad_token_id == 0


@pytest.mark.parametrize("line, message", [
    ('{"text": "red", "label": "colour"', r"corpus.jsonl:2: expected a JSON object, found "
                                          r"invalid JSON"),
    ('["red", "colour"]', r"corpus.jsonl:2: expected a JSON object, found list"),
    ('{"label": "colour"}', r"corpus.jsonl:2: field 'text' missing"),
    ('{"text": 3, "label": "colour"}', r"corpus.jsonl:2: field 'text': expected a string, "
                                       r"found int"),
    ('{"text": "red", "label": null}', r"corpus.jsonl:2: field 'label': expected a string or "
                                       r"an integer, found NoneType"),
])
def test_malformed_jsonl_line_names_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"text": "red", "label": "colour"}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        read_jsonl(path)


def test_unknown_label_names_the_model_labels(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", classes=("0", "7"))
    source = SequenceSource(corpus, word_level_tokenizer(tmp_path / "tok"), 0.2, 0)
    config = small_bert_config(vocab_size=10, max_position_embeddings=8, num_labels=2)
    with pytest.raises(DataError, match=r"corpus.jsonl:2: field 'label': unknown label '7': "
                                        r"the model m has 2 labels, expected an integer from "
                                        r"0 to 1"):
        check_sequence_model_data(config, source, model="m")


@pytest.mark.parametrize("change, message", [
    ({"vocab_size": 6}, r"tok: the tokenizer has ids up to 9, but the model m has vocab_size 6"),
    ({"pad_token_id": 1}, r"tok: the tokenizer pads with id 0, but the model m has "
                          r"pad_token_id 1"),
])
def test_tokenizer_must_fit_the_model(tmp_path, change, message):
    corpus = write_corpus(tmp_path / "corpus.jsonl", classes=("0", "1"))
    source = SequenceSource(corpus, word_level_tokenizer(tmp_path / "tok"), 0.2, 0)
    config = small_bert_config(vocab_size=10, max_position_embeddings=8, num_labels=2)
    for key, value in change.items():
        setattr(config, key, value)
    with pytest.raises(DataError, match=message):
        check_sequence_model_data(config, source, model="m")


def test_missing_or_empty_tokenizer_folder(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: tokenizer folder not found"):
        load_tokenizer(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no tokenizer files \(expected one of "
                                        r"tokenizer.json"):
        load_tokenizer(tmp_path / "empty")


def test_digits_need_a_model_that_fits_them():
    source = SequenceSource()
    check_sequence_model_data(small_bert_config(), source, model="m")
    with pytest.raises(DataError, match=r"digits: the digits sequences need "
                                        r"max_position_embeddings at least 66, but the model m "
                                        r"has 64"):
        check_sequence_model_data(small_bert_config(max_position_embeddings=64), source,
                                  model="m")
    with pytest.raises(DataError, match=r"need num_labels 10, but the model m has 3"):
        check_sequence_model_data(small_bert_config(num_labels=3), source, model="m")


def test_model_inputs_hide_the_padding():
    from sw.models import build_small_bert, model_inputs
    torch.manual_seed(0)
    model = build_small_bert(small_bert_config(vocab_size=10, max_position_embeddings=8,
                                               hidden_size=32, num_heads=2,
                                               num_labels=2)).eval()
    alone = torch.tensor([[2, 5, 6, 3]])
    batch = torch.tensor([[2, 5, 6, 3, 0, 0], [2, 7, 8, 9, 4, 3]])
    with torch.no_grad():     # the last hidden states of the real tokens (logits of an
        # untrained classifier are too small to tell apart)
        expected = model(**model_inputs(model, alone), output_hidden_states=True)
        padded = model(**model_inputs(model, batch), output_hidden_states=True)
        unmasked = model(input_ids=batch, output_hidden_states=True)
    expected = expected.hidden_states[-1][0]
    torch.testing.assert_close(padded.hidden_states[-1][0, :4], expected, rtol=1e-4, atol=1e-4)
    # Without the mask the padding changes them (by little in an untrained model, by far more
    # than the masked run's rounding).
    assert (unmasked.hidden_states[-1][0, :4] - expected).abs().max() > 1e-3
