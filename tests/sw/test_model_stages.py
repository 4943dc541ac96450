"""The model around the encoder in integers (``sw.golden.model_stages``): the patch rows are the
convolution's, the embedding and head programs compute what the stage functions say, and the
integer stages track the float model."""

import dataclasses

import numpy as np
import pytest
import torch

from sw.golden.deit_int import quantize_model
from sw.golden.layer_program import ProgramError, run_layer_program
from sw.config import load_config
from sw.golden.model_stages import (IntegerHead, embedding_int, engine_layer, head_int,
                                    patch_rows, quantize_patches, quantize_stages, stage_role)
from sw.golden.synthetic_layer import synthetic_layer
from sw.image.program import Buffer, embedding_program, head_program
from sw.models import build_small_deit, small_deit_config

BLOCK = (8, 8)


@pytest.fixture(scope="module")
def model_and_stages():
    torch.manual_seed(0)
    model = build_small_deit(small_deit_config(num_layers=2)).eval()
    images = torch.randn(40, 3, 32, 32)
    integer = quantize_model(model, images[:32], progress=False)
    embedding, head = quantize_stages(integer, images[:32], block_rows=BLOCK[0])
    return model, integer, embedding, head, images[32:]


def _template():
    return synthetic_layer(hidden=64, head_dim=16, heads=4, ffn=128, kept_heads=range(4),
                           kept_ffn=128, block=BLOCK, density=1.0)


def test_patch_rows_through_the_linear_are_the_convolution(model_and_stages):
    model, *_, images = model_and_stages
    conv = model.deit.embeddings.patch_embeddings.projection
    rows = patch_rows(images.numpy(), 4)
    assert rows.shape == (8, 64, 48)
    weight = conv.weight.detach().double().numpy().reshape(64, -1)
    linear = rows @ weight.T + conv.bias.detach().double().numpy()
    with torch.no_grad():
        reference = model.deit.embeddings.patch_embeddings(images).double().numpy()
    np.testing.assert_allclose(linear, reference, rtol=1e-5, atol=1e-5)


def test_the_integer_embedding_tracks_the_float_one(model_and_stages):
    model, integer, embedding, _, images = model_and_stages
    patches = quantize_patches(images.numpy(), embedding)
    assert patches.shape == (8, 66, 48) and not patches[:, :2].any()    # CLS, distillation
    x = embedding_int(patches, embedding) * integer.input_scale
    with torch.no_grad():
        reference = model.deit.embeddings(images).double().numpy()
    error = np.abs(x - reference).max()
    assert error < 0.02 * np.abs(reference).max(), error
    # the class and distillation rows: token + position, though no patch feeds them
    np.testing.assert_allclose(x[:, :2], reference[:, :2],
                               atol=0.01 * np.abs(reference).max())


@pytest.mark.parametrize("roles", [("o", "q"), ("fc2", "fc1")])
def test_the_programs_compute_the_stage_functions(model_and_stages, roles):
    """``run_layer_program`` of each stage's program on its stand-in layer is the stage
    function, value for value, whichever tensor slots hold the stages' weights (the
    co-simulation then holds the RTL to the program)."""
    _, integer, embedding, head, images = model_and_stages
    embedding_role, head_role = roles
    patches = quantize_patches(images.numpy()[:2], embedding)
    template = _template()
    stand_in = engine_layer(embedding, template, BLOCK, embedding_role)
    assert getattr(stand_in, embedding_role) is embedding.linear
    assert stand_in.residual1 is embedding.residual
    assert stand_in.k.weight.shape == BLOCK and not stand_in.k.weight.any()
    program = embedding_program(embedding_role)
    head_layer = engine_layer(head, template, BLOCK, head_role)
    for rows in patches:
        x = run_layer_program(program, stand_in, np.zeros((66, 64), np.int64),
                              preload={program[0].src_a: rows,
                                       Buffer.RESIDUAL1: embedding.position})
        assert np.array_equal(x, embedding_int(rows, embedding))
        head_steps = head_program(head_role)
        logits = run_layer_program(head_steps, head_layer, x[:1], result=head_steps[1].dst)
        assert np.array_equal(logits, head_int(x, head)) and logits.shape == (1, 16)
    with pytest.raises(ProgramError, match="is read before it is written"):
        run_layer_program(program, stand_in, np.zeros((66, 64), np.int64))


def test_each_stage_takes_the_first_tensor_slot_that_holds_it(model_and_stages):
    _, _, embedding, head, _ = model_and_stages
    tiny = load_config("tiny")                  # attention width 64, FFN 128
    assert (stage_role(embedding, tiny), stage_role(head, tiny)) == ("o", "q")
    pruned = tiny.replace(name="pruned_ffn", model={"ffn_size": 32})   # the demo's FFN width
    assert (stage_role(embedding, pruned), stage_role(head, pruned)) == ("o", "q")
    # patch features beyond the attention width (8 x 8 patches of 3 channels would give 192;
    # here 96): FC2's slot, as wide as the FFN
    wide = dataclasses.replace(embedding, linear=dataclasses.replace(
        embedding.linear, weight=np.zeros((64, 96), np.int64)))
    assert stage_role(wide, tiny) == "fc2"
    with pytest.raises(ValueError, match=r"^pruned_ffn: the patch embedding weight 64x96 fits "
                                         r"no tensor slot of the engine \(o 64x64, fc2 64x32\)$"):
        stage_role(wide, pruned)


def test_the_integer_head_classifies_like_the_float_model(model_and_stages):
    model, integer, embedding, head, images = model_and_stages
    x = embedding_int(quantize_patches(images.numpy(), embedding), embedding)
    from sw.golden.encoder_layer import encoder_layer_int
    for layer in integer.layers:
        x = encoder_layer_int(layer, x)
    logits = head.logits(head_int(x, head)[:, 0])
    assert logits.shape == (8, 10) and isinstance(head, IntegerHead)
    with torch.no_grad():
        reference = model(pixel_values=images).logits.double().numpy()
    cosine = (logits * reference).sum(1) / (np.linalg.norm(logits, axis=1)
                                            * np.linalg.norm(reference, axis=1))
    assert cosine.min() > 0.9, cosine.min()
    # the padding rows of the classifier give zero logits and are dropped
    assert not head_int(x, head)[:, 0, 10:].any()


def test_engine_layer_takes_stages_only():
    with pytest.raises(TypeError, match="^not a model stage: str$"):
        engine_layer("head", _template(), BLOCK, "q")
