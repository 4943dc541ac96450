"""``sw/train_digits.py --arch bert``: the small BERT on the digits as intensity sequences."""

import json

import pytest
import torch
from transformers import BertForSequenceClassification

from sw.data.sequences import DIGITS_VOCABULARY, load_digits_sequence_split, load_tokenizer
from sw.models import load_model
from sw.train_digits import TrainOptions, evaluate, main, ordinal_intensity_embeddings, train

TINY = dict(arch="bert", epochs=1, max_train_samples=96, batch_size=32, hidden_size=32,
            num_layers=2, num_heads=2, intermediate_size=64, progress=False)


@pytest.fixture(scope="module")
def split():
    return load_digits_sequence_split()


def test_bert_trains_saves_its_tokenizer_and_reloads(tmp_path, split):
    torch.set_num_threads(1)
    out = tmp_path / "digits_bert"
    result = train(out, **TINY)
    assert sorted(path.name for path in out.iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "training.json"]
    record = json.loads((out / "training.json").read_text())
    assert record["options"]["arch"] == "bert"
    assert "image_size" not in record["options"] and "patch_size" not in record["options"]
    assert record["data"]["sequence_length"] == 66
    assert record["data"]["vocabulary"] == list(DIGITS_VOCABULARY)
    model = load_model(out)
    assert isinstance(model, BertForSequenceClassification)
    assert model.config.vocab_size == 21 and model.config.max_position_embeddings == 66
    assert evaluate(model, split.val_ids, split.val_labels) == record["val_accuracy"] \
        == result.val_accuracy
    # The saved tokenizer turns the digits' text into the ids the model was trained on.
    from sklearn.datasets import load_digits
    from sw.data.sequences import digits_as_text, digits_token_ids
    images = load_digits().images[:3]
    assert load_tokenizer(out)([digits_as_text(image) for image in images])["input_ids"] == \
        digits_token_ids(images).tolist()


def test_bert_same_seed_same_logits(split):
    torch.set_num_threads(1)
    first, second = train(**TINY).model, train(**TINY).model
    other = train(**{**TINY, "seed": 1}).model
    ids = split.val_ids[:16]
    with torch.no_grad():
        logits = [model(input_ids=ids).logits for model in (first, second, other)]
    assert torch.equal(logits[0], logits[1])
    assert not torch.equal(logits[0], logits[2])


def test_ordinal_embeddings_lie_on_a_line():
    from sw.models import build_small_bert, small_bert_config
    torch.manual_seed(0)
    weight = ordinal_intensity_embeddings(build_small_bert(small_bert_config())) \
        .get_input_embeddings().weight.detach()
    steps = weight[5:21] - weight[4:20]
    torch.testing.assert_close(steps, steps[:1].expand_as(steps), rtol=1e-4, atol=1e-6)
    assert steps.abs().sum() > 0


def test_arch_is_checked(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"arch must be one of deit, bert, not 'gpt'"):
        TrainOptions(arch="gpt")
    with pytest.raises(SystemExit) as stopped:
        main(["--out", str(tmp_path / "m"), "--arch", "gpt"])
    assert stopped.value.code == 2
    assert "invalid choice: 'gpt'" in capsys.readouterr().err


@pytest.mark.slow
def test_full_digits_bert_reaches_its_documented_accuracy(tmp_path):
    """The default run of docs/training.md (40 epochs, hidden 64, 2 layers, 4 heads)."""
    torch.set_num_threads(1)
    result = train(arch="bert", max_shift=0, progress=False)
    assert result.val_accuracy >= 0.90     # 0.9111 measured (docs/training.md)
