"""Fidelity benchmark: the integer model against the float model on digits, and the golden
model's speed on a deit_b16-sized layer. Writes ``build/bench/fidelity.json``.

``top1_int`` and ``top1_agreement``: the integer encoder between the float patch embedding and
the float classifier (``sw.golden.deit_int``); ``whole_model``: the whole model in integers as
the layer engine runs it, int8 patch rows in and int8 logits out
(``sw.golden.model_stages.model_int``, the stages calibrated on the same images; blocks of 8
rows for the classifier's padding, which does not change the logits).

The digits DeiT is read from ``build/models/digits_deit`` (trained there first, about a
minute, if absent). Calibration: the first ``CALIBRATION_IMAGES`` training images.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from sw.build_files import BENCH_ROOT, DIGITS_TEACHER, write_json
from sw.data.digits import load_digits_split
from sw.golden.deit_int import predict, quantize_model
from sw.golden.encoder_layer import RESIDUAL_BITS, encoder_layer_int, quantize_encoder_layer
from sw.golden.model_stages import (embedding_int, head_int, model_int, quantize_patches,
                                    quantize_stages)
from sw.models import load_model
from sw.quantize.calibration import calibrate, encoder_layers

OUTPUT = BENCH_ROOT / "fidelity.json"
MODEL_DIR = DIGITS_TEACHER
CALIBRATION_IMAGES = 256


def digits_model():
    """The trained digits DeiT, training it first if it is not there yet."""
    if not (MODEL_DIR / "config.json").exists():
        from sw.train_digits import train
        print(f"training the digits DeiT into {MODEL_DIR} (about a minute)...", flush=True)
        train(MODEL_DIR)
    return load_model(MODEL_DIR)


def golden_layer_seconds(tokens: int = 197, repeats: int = 3) -> float:
    """Median wall time of one golden deit_b16-sized layer (random weights) on one image."""
    from transformers import DeiTConfig, DeiTForImageClassification
    torch.manual_seed(0)
    config = DeiTConfig(hidden_size=768, num_hidden_layers=1, num_attention_heads=12,
                        intermediate_size=3072, image_size=224, patch_size=16, num_labels=10)
    model = DeiTForImageClassification(config).eval()
    ranges = calibrate(model, torch.randn(2, 3, 224, 224), progress=False)
    layer = quantize_encoder_layer(encoder_layers(model)[0], ranges[0], head_dim=64)
    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << (RESIDUAL_BITS - 1)), 1 << (RESIDUAL_BITS - 1), (1, tokens, 768))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        encoder_layer_int(layer, x)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(output: Path = OUTPUT) -> dict:
    model = digits_model()
    split = load_digits_split()
    integer = quantize_model(model, split.train_images[:CALIBRATION_IMAGES])
    int_logits = predict(integer, split.val_images)
    with torch.no_grad():
        float_logits = model(pixel_values=split.val_images).logits.double().numpy()
    labels = split.val_labels.numpy()
    cosine = (float_logits * int_logits).sum(1) / (np.linalg.norm(float_logits, axis=1)
                                                  * np.linalg.norm(int_logits, axis=1))
    # the whole model in integers, as the engine runs it: embedding and head too
    embedding, head = quantize_stages(integer, split.train_images[:CALIBRATION_IMAGES],
                                      block_rows=8)
    whole = model_int(integer, embedding, head, split.val_images.numpy())[:, :head.classes]
    # where the whole model's extra differences come from: one stage in integers at a time
    integer_embedding = embedding_int(quantize_patches(split.val_images.numpy(), embedding),
                                      embedding)
    float_embedding = integer.embed(split.val_images)
    for layer in integer.layers:
        integer_embedding = encoder_layer_int(layer, integer_embedding)
        float_embedding = encoder_layer_int(layer, float_embedding)
    document = {
        "dataset": "digits",
        "validation_images": int(len(labels)),
        "calibration_images": CALIBRATION_IMAGES,
        "top1_float": float((float_logits.argmax(1) == labels).mean()),
        "top1_int": float((int_logits.argmax(1) == labels).mean()),
        "top1_agreement": float((float_logits.argmax(1) == int_logits.argmax(1)).mean()),
        "logits_cosine": float(cosine.mean()),
        "logits_cosine_min": float(cosine.min()),
        "whole_model": {
            "top1_int": float((whole.argmax(1) == labels).mean()),
            "top1_agreement": float((float_logits.argmax(1) == whole.argmax(1)).mean()),
            "top1_agreement_with_encoder_only": float(
                (int_logits.argmax(1) == whole.argmax(1)).mean()),
            "agreement_integer_embedding_float_head": float(
                (integer.head(integer_embedding).argmax(1) == float_logits.argmax(1)).mean()),
            "agreement_float_embedding_integer_head": float(
                (head_int(float_embedding, head)[:, 0, :head.classes].argmax(1)
                 == float_logits.argmax(1)).mean())},
        "golden_layer_seconds_deit_b16": golden_layer_seconds(),
    }
    write_json(document, output)
    for key, value in document.items():
        print(f"{key:>32}: {value}")
    print(f"wrote {output}")
    return document
