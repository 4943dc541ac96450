import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DeiTConfig,
    DeiTForImageClassification,
    DeiTModel,
    GPT2Config,
    GPT2Model,
    ViTConfig,
    ViTForImageClassification,
)
from transformers.pytorch_utils import Conv1D

from sw.data import ImageSplit
from sw.pruning.structures import (
    ROLES,
    encoder_layers,
    find_linears,
    layer_structure,
    linear_modules,
    structure_for,
    weight_out_in,
)

ARCHITECTURES = ("deit", "vit", "bert")
HIDDEN, HEADS, INTERMEDIATE, LAYERS = 32, 4, 64, 2


def tiny_split(seed: int = 0) -> ImageSplit:
    """32 training and 8 validation random 8 x 8 images of 3 classes, for ``tiny_model("deit")``."""
    generator = torch.Generator().manual_seed(seed)
    return ImageSplit(train_images=torch.randn(32, 3, 8, 8, generator=generator),
                      train_labels=torch.randint(0, 3, (32,), generator=generator),
                      val_images=torch.randn(8, 3, 8, 8, generator=generator),
                      val_labels=torch.randint(0, 3, (8,), generator=generator),
                      class_names=("a", "b", "c"))


def tiny_model(architecture: str) -> nn.Module:
    """A 2-layer, hidden-32, 4-head model of ``architecture`` with random weights, in eval mode."""
    torch.manual_seed(0)
    common = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  intermediate_size=INTERMEDIATE, num_labels=3)
    if architecture == "deit":
        model = DeiTForImageClassification(DeiTConfig(image_size=8, patch_size=4, **common))
    elif architecture == "vit":
        model = ViTForImageClassification(ViTConfig(image_size=8, patch_size=4, **common))
    elif architecture == "bert":
        model = BertForSequenceClassification(
            BertConfig(vocab_size=50, max_position_embeddings=16, **common))
    else:
        raise ValueError(architecture)
    return model.eval()


def tiny_inputs(architecture: str) -> dict:
    generator = torch.Generator().manual_seed(1)
    if architecture == "bert":
        return {"input_ids": torch.randint(0, 50, (2, 7), generator=generator)}
    return {"pixel_values": torch.randn(2, 3, 8, 8, generator=generator)}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_all_roles_found_in_every_layer(architecture):
    model = tiny_model(architecture)
    linears = linear_modules(model)
    assert sorted(linears) == list(range(LAYERS))
    expected_shapes = {"q": (HIDDEN, HIDDEN), "k": (HIDDEN, HIDDEN), "v": (HIDDEN, HIDDEN),
                       "o": (HIDDEN, HIDDEN), "fc1": (INTERMEDIATE, HIDDEN),
                       "fc2": (HIDDEN, INTERMEDIATE)}
    modules_seen = set()
    for index, layer in linears.items():
        assert tuple(layer) == ROLES
        for role, (name, module) in layer.items():
            assert isinstance(module, nn.Linear)
            assert model.get_submodule(name) is module
            assert f".{index}." in name
            assert tuple(weight_out_in(module).shape) == expected_shapes[role]
            modules_seen.add(id(module))
    assert len(modules_seen) == LAYERS * len(ROLES)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_heads_and_head_dim_from_config(architecture):
    model = tiny_model(architecture)
    structure = structure_for(model)
    assert structure.model_type == architecture
    assert structure.num_heads(model.config) == HEADS
    assert structure.head_dim(model.config) == HIDDEN // HEADS


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_layernorms_and_norm_placement(architecture):
    model = tiny_model(architecture)
    structure = structure_for(model)
    assert structure.norm == ("post" if architecture == "bert" else "pre")
    for layer in encoder_layers(model)[1]:
        for name in structure.layernorms:
            assert isinstance(layer.get_submodule(name), nn.LayerNorm)
        # the layer alone names its table (ViT shares DeiT's layout, hence DeiT's table)
        assert layer_structure(layer).layernorms == structure.layernorms
        assert layer_structure(layer).roles == structure.roles
    with pytest.raises(ValueError, match="matches no encoder layer structure"):
        layer_structure(nn.Linear(2, 2))


def test_task_head_and_base_model_both_found():
    name, layers = encoder_layers(tiny_model("deit"))
    assert name == "deit.layers" and len(layers) == LAYERS
    base = DeiTModel(DeiTConfig(image_size=8, patch_size=4, hidden_size=HIDDEN,
                                num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                intermediate_size=INTERMEDIATE))
    name, layers = encoder_layers(base)
    assert name == "layers" and len(layers) == LAYERS
    assert linear_modules(base)[1]["fc2"][0] == "layers.1.mlp.fc2"
    bert_o_name = linear_modules(tiny_model("bert"))[0]["o"][0]
    assert bert_o_name == "bert.encoder.layer.0.attention.output.dense"


def test_unsupported_architecture_fails_clearly():
    model = GPT2Model(GPT2Config(n_embd=32, n_layer=1, n_head=4, vocab_size=50, n_positions=16))
    with pytest.raises(ValueError, match=r"model type 'gpt2' is not defined; "
                                         r"supported model types: bert, deit, vit"):
        structure_for(model)
    with pytest.raises(ValueError, match="supported model types"):
        linear_modules(model)
    with pytest.raises(ValueError, match=r"model type None is not defined"):
        structure_for(nn.Linear(2, 2))


def test_find_linears_reports_matches_and_raises_on_nothing():
    model = tiny_model("vit")
    matched = find_linears(model, ["fc1", "fc2"])
    assert sorted(matched) == ["vit.layers.0.mlp.fc1", "vit.layers.0.mlp.fc2",
                               "vit.layers.1.mlp.fc1", "vit.layers.1.mlp.fc2"]
    assert len(find_linears(model)) == LAYERS * len(ROLES)
    with pytest.raises(ValueError, match=r"No linear matched roles \[\]"):
        find_linears(model, [])
    with pytest.raises(ValueError, match=r"Unknown roles \['query'\]"):
        find_linears(model, ["query"])


def test_weight_out_in_normalises_conv1d():
    conv = Conv1D(nf=5, nx=3)
    assert tuple(conv.weight.shape) == (3, 5)
    assert tuple(weight_out_in(conv).shape) == (5, 3)
    assert torch.equal(weight_out_in(conv), conv.weight.t())
    linear = nn.Linear(3, 5)
    assert weight_out_in(linear) is linear.weight
    with pytest.raises(TypeError, match="Cannot read an \\(out, in\\) weight from a Conv2d"):
        weight_out_in(nn.Conv2d(1, 1, 1))
