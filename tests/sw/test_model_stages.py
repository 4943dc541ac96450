"""The model around the encoder in integers (``sw.golden.model_stages``): the patch rows are the
convolution's, the embedding and head programs compute what the stage functions say, and the
integer stages track the float model."""

import numpy as np
import pytest
import torch

from sw.golden.deit_int import quantize_model
from sw.golden.layer_program import ProgramError, run_layer_program
from sw.golden.model_stages import (EMBEDDING_ROLE, HEAD_ROLE, IntegerHead, embedding_int,
                                    engine_layer, head_int, patch_rows, quantize_patches,
                                    quantize_stages)
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


def test_the_programs_compute_the_stage_functions(model_and_stages):
    """``run_layer_program`` of each stage's program on its stand-in layer is the stage
    function, value for value (the co-simulation then holds the RTL to the program)."""
    _, integer, embedding, head, images = model_and_stages
    patches = quantize_patches(images.numpy()[:2], embedding)
    template = _template()
    stand_in = engine_layer(embedding, template, BLOCK)
    assert stand_in.fc2 is embedding.linear and stand_in.residual1 is embedding.residual
    assert stand_in.q.weight.shape == BLOCK and not stand_in.q.weight.any()
    for rows in patches:
        x = run_layer_program(embedding_program(), stand_in, np.zeros((66, 64), np.int64),
                              preload={Buffer.GELU: rows, Buffer.RESIDUAL1: embedding.position})
        assert np.array_equal(x, embedding_int(rows, embedding))
        logits = run_layer_program(head_program(), engine_layer(head, template, BLOCK), x[:1],
                                   result=Buffer.GELU)
        assert np.array_equal(logits, head_int(x, head)) and logits.shape == (1, 16)
    assert (EMBEDDING_ROLE, HEAD_ROLE) == ("fc2", "fc1")
    with pytest.raises(ProgramError, match="buffer GELU is read before it is written"):
        run_layer_program(embedding_program(), stand_in, np.zeros((66, 64), np.int64))


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
        engine_layer("head", _template(), BLOCK)
