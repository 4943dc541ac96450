"""The recipe schema and reader: every bad recipe is one RecipeError line naming the field path;
hypothesis throws arbitrary JSON, values and bytes at it."""

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sw.pruning.methods import PruningArgs
from sw.pruning.recipe import RECIPE_SECTIONS, Recipe, RecipeError, read_recipe, resolve_recipe
from sw.pruning.tokens import TokenPruningArgs
from sw.pruning.trainer import TrainingOptions
from sw.settings import SettingsFileError

REPO_ROOT = Path(__file__).resolve().parents[3]
RECIPE = json.loads((REPO_ROOT / "recipes" / "digits_deit_tokens.json").read_text())


def test_the_shipped_recipes_resolve():
    for path in sorted((REPO_ROOT / "recipes").glob("*.json")):
        recipe = resolve_recipe(read_recipe(path))
        assert isinstance(recipe, Recipe)
        assert isinstance(recipe.pruning, PruningArgs)
        assert isinstance(recipe.training, TrainingOptions)
    assert resolve_recipe(RECIPE).tokens == TokenPruningArgs(keep_rate=0.7, layers=(0, 1))
    assert resolve_recipe({}).tokens is None
    assert resolve_recipe({}, token_overrides={"keep_rate": 0.5}).tokens.keep_rate == 0.5


@pytest.mark.parametrize("document, message", [
    # wrong types: a string, a float or a bool is not what the field declares
    ({"training": {"lr": "0.001"}}, "training.lr must be a finite number > 0, not '0.001'"),
    ({"training": {"max_train_samples": "10"}},
     "training.max_train_samples must be a positive integer, not '10'"),
    ({"training": {"max_train_samples": 10.5}},
     "training.max_train_samples must be a positive integer, not 10.5"),
    ({"training": {"epochs": True}}, "training.epochs must be a positive integer, not True"),
    ({"training": {"weight_decay": "x"}},
     "training.weight_decay must be a finite number >= 0, not 'x'"),
    ({"training": {"tie_attention_heads": "yes"}},
     "training.tie_attention_heads must be true or false, not 'yes'"),
    ({"training": {"tie_attention_heads": 1}},
     "training.tie_attention_heads must be true or false, not 1"),
    ({"pruning": {"bias_mask": 1}}, "pruning.bias_mask must be a bool, not 1"),
    ({"tokens": {"fuse": "yes"}}, "tokens.fuse must be true or false, not 'yes'"),
    # out of range, infinite
    ({"training": {"lr": math.inf}}, "training.lr must be a finite number > 0, not inf"),
    ({"training": {"lr": -1}}, "training.lr must be a finite number > 0, not -1"),
    ({"training": {"weight_decay": -0.1}},
     "training.weight_decay must be a finite number >= 0, not -0.1"),
    ({"training": {"mixup_alpha": math.nan}},
     "training.mixup_alpha must be a finite number >= 0, not nan"),
    ({"training": {"seed": 2 ** 64}},
     "training.seed must be an integer in [0, 9223372036854775807], not 18446744073709551616"),
    ({"training": {"epochs": -10 ** 40}},
     "training.epochs must be a positive integer, not an integer of about 41 digits"),
    ({"pruning": {"final_threshold": math.inf}},
     "pruning.final_threshold must be a finite real number, not inf"),
    ({"training": {"finetune_average_epochs": 3, "final_finetune_epochs": 2}},
     "training.finetune_average_epochs (3) exceeds final_finetune_epochs (2)"),
    # the shape of the document
    (3, "a recipe must be a JSON object with sections pruning, training, tokens, description; "
        "found 3"),
    ([{"pruning": {}}], "a recipe must be a JSON object with sections pruning, training, "
                       "tokens, description; found a list of 1 items"),
    ({"pruning": [1, 2]}, "pruning must be an object of settings, not a list of 2 items"),
    ({"training": None}, "training must be an object of settings, not None"),
    ({"description": 5}, "description must be a string, not 5"),
    ({"prunning": {}}, "Unknown recipe sections ['prunning']; known: pruning, training, tokens, "
                       "description"),
    ({"training": {"epoch": 1}}, "training: Unknown training options ['epoch']; known: epochs, "
                                 "batch_size, lr, weight_decay, warmup_epochs, seed, max_shift, "
                                 "max_train_samples, final_finetune_epochs, final_finetune_lr, "
                                 "finetune_average_epochs, mixup_alpha, tie_attention_heads"),
    # keys echoed from the file cannot forge a line or colour the terminal
    ({"training": {"x\x1b[31m\nerror: forged": 1}},
     "training: Unknown training options ['x\\x1b[31m\\nerror: forged']; known: epochs, "
     "batch_size, lr, weight_decay, warmup_epochs, seed, max_shift, max_train_samples, "
     "final_finetune_epochs, final_finetune_lr, finetune_average_epochs, mixup_alpha, "
     "tie_attention_heads"),
])
def test_bad_recipe_is_one_line_naming_the_field(document, message):
    with pytest.raises(RecipeError) as error:
        resolve_recipe(document)
    assert str(error.value) == message


def test_an_override_that_is_wrong_is_blamed_on_the_command_line():
    with pytest.raises(RecipeError, match=r"^training\.epochs must be a positive integer, not 0 "
                                          r"\(set on the command line\)$"):
        resolve_recipe({"training": {"epochs": 3}}, training_overrides={"epochs": 0})


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe{}", "not UTF-8 text (byte 0xff at offset 0)"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON: nested too deeply"),
    (b'{"training": {"epochs": 1,}}', "not valid JSON: Expecting property name enclosed in "
                                       "double quotes at line 1 column 27"),
    (b"1" * 5000, "not valid JSON: an integer literal of more than 4300 digits"),
])
def test_unreadable_recipe_file_is_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "recipe.json"
    path.write_bytes(content)
    with pytest.raises(SettingsFileError) as error:
        read_recipe(path)
    assert str(error.value) == f"{path}: {message}"
    with pytest.raises(SettingsFileError, match=r": cannot read it: No such file or directory$"):
        read_recipe(tmp_path / "missing.json")


# --- hypothesis: any document, any value, any bytes: a Recipe or one RecipeError line ----------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12)


def _resolves_or_one_line(document):
    try:
        resolve_recipe(document)
    except RecipeError as error:
        message = str(error)
        assert message and message.isprintable(), message   # one line, nothing raw echoed
    # anything else (TypeError, KeyError, RecursionError...) fails the test


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=JSON)
def test_any_json_document_resolves_or_is_one_line(document):
    _resolves_or_one_line(document)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(section=st.sampled_from(sorted(RECIPE_SECTIONS)), data=st.data(), value=JSON)
def test_any_value_for_any_field_resolves_or_is_one_line(section, data, value):
    """The shipped recipe with one field of one section set to an arbitrary JSON value."""
    names = sorted(spec for spec in RECIPE_SECTIONS[section].__dataclass_fields__)
    key = data.draw(st.sampled_from(names) | st.text(max_size=8))
    document = json.loads(json.dumps(RECIPE))
    document[section][key] = value
    _resolves_or_one_line(document)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.lists(st.tuples(st.integers(min_value=0, max_value=10 ** 6),
                                  st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.integers(min_value=0, max_value=10 ** 6)))
def test_corrupted_recipe_bytes_resolve_or_are_one_line(tmp_path_factory, changes, cut):
    data = bytearray((REPO_ROOT / "recipes" / "digits_deit_tokens.json").read_bytes())
    for position, value in changes:
        data[position % len(data)] = value
    if cut is not None:
        data = data[:cut % len(data)]
    path = tmp_path_factory.mktemp("recipe") / "recipe.json"
    path.write_bytes(bytes(data))
    try:
        document = read_recipe(path)
    except SettingsFileError as error:
        assert str(error).startswith(f"{path}: ") and str(error).isprintable()
        return
    _resolves_or_one_line(document)
