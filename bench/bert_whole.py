"""The trained, pruned digits BERT run whole on the layer engine's RTL (issue 19's model part of
``build/bench/bert.json``).

:func:`measure_whole` takes the digits BERT pruned by ``bench.bert_model`` (the ``shrunk/``
model of ``recipes/digits_bert.json`` at 25 % linear density, heads and FFN neurons removed;
trained and pruned first when missing), quantizes it as ``bench.bert_model`` does
(``sw.golden.bert_int.quantize_bert``, calibrated on the first 256 training sequences), and
runs the first ``sequences`` validation sequences through one co-simulation on an engine of
the digits BERT's shape (:func:`engine_config`: hidden 64, 4 heads of 16, FFN 128, 66 tokens,
2 layers, post-LN, on the ``tiny`` preset's 4 x 4 array and 8 x 8 blocks): per sequence the
embedding LayerNorm program (the host's int16 embedding sum loaded), both post-LN layers and
the pooler program, chained on chip (``sim.encoder_replay.bert_cases``). Every program is
bit-exact and its cycles equal the cycle model's, or the testbench fails. The int8 pooler
output read back is compared with ``IntegerBert.pooled`` (``==``), and the logits the host
makes of it (``IntegerBert.head``: tanh and the float classifier, ``docs/numerics.md``
"Integer BERT") with ``IntegerBert.logits`` (``==``)::

    {"sequences", "logits_bit_exact", "pooled_bit_exact", "cycles_equal_model",
     "cycles_per_sequence", "model_cycles_per_sequence", "dense_model_cycles_per_sequence",
     "speedup", "macs_per_sequence", "mac_reduction", "utilization", "stage_cycles",
     "load_words_per_sequence", "top1_rtl", "top1_integer", "top1_float",
     "predictions_equal", "predicted_rtl", "labels", "cosim_seconds", "build_seconds",
     "config", "heads_kept", "ffn_kept", "ffn_padding", "calibration_sequences",
     "pruned_model"}

The shrunk model's kept FFN neurons are padded with inert neurons (zero FC1 row and bias, zero
FC2 column: :func:`pad_ffn`) to whole 8 x 8 blocks, as the exporter pads a DeiT's; the padded
integer model's logits are checked ``==`` the unpadded one's. ``dense_model_cycles_per_sequence``
is the cycle model's count of the dense teacher on the same engine (not simulated);
``speedup`` is that over ``cycles_per_sequence``, ``mac_reduction`` the dense MACs over the
pruned ones and ``utilization`` the pruned MACs over PEs x cycles. Cycles are engine cycles;
the load-port words between programs (programs, block structure, constants, the embedding
sum) are counted apart (``load_words_per_sequence``).

Command (from the repository root)::

    .venv/bin/python -m bench.bert_whole [--sequences 32]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench.bert_model import CALIBRATION_SEQUENCES, RUNS_DIR, TARGET_DENSITIES, TEACHER
from sw.build_files import BENCH_ROOT, shown_path
from sw.config import AcceleratorConfig, ModelTopology, load_config, minimum_buffers
from sw.engine_params import EngineParams

#: Validation sequences of the measurement.
SEQUENCES = 32
WORK = BENCH_ROOT / "bert_whole"


def _check_count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")
    return value


def _bert_layers(model) -> list:
    backbone = getattr(model, "bert", None)
    if backbone is None or getattr(backbone, "pooler", None) is None:
        raise ValueError(f"needs a BertForSequenceClassification with a pooler, not "
                         f"{type(model).__name__}")
    return list(backbone.encoder.layer)


def engine_config(model, *, tokens: int, name: str = "digits_bert",
                  base: str = "tiny") -> AcceleratorConfig:
    """The layer engine that runs ``model`` (an HF BERT classifier, dense or pruned) at up to
    ``tokens`` tokens: its hidden size, heads, head width and layers, the widest FFN of its
    layers rounded up to whole blocks, ``norm: "post"``; the array, block shape and units of
    config ``base``, the buffers :func:`sw.config.minimum_buffers` of that topology, with room
    for a dense FFN weight (so a dense model of the same shape runs on it too)."""
    _check_count(tokens, "Tokens")
    layers = _bert_layers(model)
    base_config = load_config(base)
    hw = base_config.hardware
    step = EngineParams.from_config(base_config).ffn_step
    config = model.config
    ffn = max(layer.intermediate.dense.out_features for layer in layers)
    topology = ModelTopology(
        hidden_size=config.hidden_size, num_heads=config.num_attention_heads,
        head_dim=config.hidden_size // config.num_attention_heads,
        ffn_size=-(-ffn // step) * step, tokens=tokens, layers=len(layers), norm="post")
    shape = {key: getattr(hw, key) for key in ("array_rows", "array_cols", "block_rows",
                                                "block_cols")}
    buffers = minimum_buffers(topology, **shape)
    buffers["weight_buffer_depth"] = max(
        buffers["weight_buffer_depth"],
        topology.hidden_size * topology.ffn_size // hw.array_cols)
    return base_config.replace(name=name, model=topology, hardware=buffers)


def pad_ffn(model, step: int) -> tuple[torch.nn.Module, list[int]]:
    """A copy of ``model`` whose every layer's FFN has a multiple of ``step`` neurons: inert
    neurons (FC1 row and bias zero, FC2 column zero) appended, whose outputs are exactly zero,
    in float and in integers; and the count appended per layer. The model is not changed."""
    _check_count(step, "FFN step")
    padded = copy.deepcopy(model)
    added = []
    for layer in _bert_layers(padded):
        fc1, fc2 = layer.intermediate.dense, layer.output.dense
        need = -fc1.out_features % step
        added.append(need)
        if not need:
            continue
        wide1 = torch.nn.Linear(fc1.in_features, fc1.out_features + need,
                                bias=fc1.bias is not None, dtype=fc1.weight.dtype)
        wide2 = torch.nn.Linear(fc2.in_features + need, fc2.out_features,
                                bias=fc2.bias is not None, dtype=fc2.weight.dtype)
        with torch.no_grad():
            wide1.weight.zero_()
            wide1.weight[:fc1.out_features] = fc1.weight
            if fc1.bias is not None:
                wide1.bias.zero_()
                wide1.bias[:fc1.out_features] = fc1.bias
            wide2.weight.zero_()
            wide2.weight[:, :fc2.in_features] = fc2.weight
            if fc2.bias is not None:
                wide2.bias.copy_(fc2.bias)
        layer.intermediate.dense, layer.output.dense = wide1, wide2
    return padded.eval(), added


def chain_model_cycles(config, chain) -> tuple[int, int]:
    """The cycle model's engine cycles and MACs of one chain of cases
    (``sim.layer_replay.model_cycles`` of each program, summed)."""
    from sim.layer_replay import model_cycles
    entries = [entry for case in chain for entry in model_cycles(config, case)]
    return sum(entry.cycles for entry in entries), sum(entry.macs for entry in entries)


def run_whole(config, integer, input_ids, labels, work_dir: Path) -> dict:
    """Run ``input_ids`` (``(N, T)``) through ``integer`` (an ``IntegerBert``) whole on
    ``config``'s engine, one co-simulation; compare with the integer model (see the module
    docstring). Returns the measurements (no dense part).

    Raises
    ------
    sim.harness.TestbenchFailed
        If a program is not bit-exact or its cycles differ from the cycle model's.
    AssertionError
        If the pooler output or logits read back differ from the integer model's.
    """
    from sim.encoder_replay import bert_cases, replay_encoders
    from sim.harness import build
    ids = torch.as_tensor(input_ids)
    labels = np.asarray(labels)
    started = time.monotonic()
    design = build(config, "layer_engine")
    build_seconds = time.monotonic() - started
    chains = bert_cases(config, integer, ids, name=config.name)
    modelled = [chain_model_cycles(config, chain)[0] for chain in chains]
    started = time.monotonic()
    runs = replay_encoders(design, chains, work_dir)
    seconds = time.monotonic() - started
    for run in runs:
        if not (run.bit_exact and run.cycle_exact):
            raise AssertionError(f"{run.name}: not bit-exact or not cycle-exact")
    pooled_rtl = np.concatenate([run.output for run in runs])
    pooled = integer.pooled(ids)
    logits = integer.head(pooled)
    logits_rtl = integer.head(pooled_rtl)
    predicted_rtl, predicted = logits_rtl.argmax(-1), logits.argmax(-1)
    cycles = [run.cycles for run in runs]
    macs = [run.macs for run in runs]
    hw = config.hardware
    stages = [case.part for case in chains[0]]
    return {
        "sequences": len(runs),
        "logits_bit_exact": bool(np.array_equal(logits_rtl, logits)),
        "pooled_bit_exact": bool(np.array_equal(pooled_rtl, pooled)),
        "cycles_equal_model": all(run.cycle_exact and run.cycles == run.model_cycles == model
                                  for run, model in zip(runs, modelled)),
        "cycles_per_sequence": round(float(np.mean(cycles))),
        "cycles_per_sequence_range": [min(cycles), max(cycles)],
        "model_cycles_per_sequence": round(float(np.mean(modelled))),
        "macs_per_sequence": round(float(np.mean(macs))),
        "utilization": round(float(np.sum(macs)) / (hw.array_rows * hw.array_cols)
                             / float(np.sum(cycles)), 4),
        "stage_cycles": {stage: round(float(np.mean([run.layers[i]["cycles"] for run in runs])))
                         for i, stage in enumerate(stages)},
        "load_words_per_sequence": round(float(np.mean([run.load_words for run in runs]))),
        "top1_rtl": float(np.mean(predicted_rtl == labels)),
        "top1_integer": float(np.mean(predicted == labels)),
        "predictions_equal": bool(np.array_equal(predicted_rtl, predicted)),
        "predicted_rtl": predicted_rtl.tolist(), "labels": labels.tolist(),
        "cosim_seconds": round(seconds, 1), "build_seconds": round(build_seconds, 1)}


def measure_whole(sequences: int = SEQUENCES, *, teacher_dir=TEACHER, pruned_dir=None,
                  target: float = TARGET_DENSITIES[0], calibration: int = CALIBRATION_SEQUENCES,
                  work_dir: Path = WORK, progress: bool = False) -> dict:
    """The model part of ``build/bench/bert.json`` (see the module docstring): the digits BERT
    pruned to ``target`` (``pruned_dir``: its ``sw/prune.py`` output, default
    ``build/bench/bert_model/density_<target>``, pruned there first when missing) on the first
    ``sequences`` validation sequences."""
    from bench.bert_model import _pruned_run, digits_split
    from sw.golden.bert_int import quantize_bert
    from sw.models import load_model
    _check_count(sequences, "Sequences")
    teacher_dir = Path(teacher_dir)
    pruned_dir = RUNS_DIR / f"density_{target}" if pruned_dir is None else Path(pruned_dir)
    _pruned_run(target, teacher_dir, pruned_dir, progress)   # trains and prunes when missing
    dense = load_model(teacher_dir).eval()
    shrunk = load_model(pruned_dir / "shrunk").eval()
    split = digits_split(teacher_dir, dense)
    if sequences > len(split.val_ids):
        raise ValueError(f"Sequences must be at most the {len(split.val_ids)} validation "
                         f"sequences, not {sequences}")
    ids, labels = split.val_ids[:sequences], split.val_labels[:sequences].numpy()
    config = engine_config(dense, tokens=ids.shape[1])
    padded, added = pad_ffn(shrunk, EngineParams.from_config(config).ffn_step)
    calibration_ids = split.train_ids[:calibration]
    integer = quantize_bert(padded, calibration_ids, progress=False)
    unpadded = quantize_bert(shrunk, calibration_ids, progress=False)
    if not np.array_equal(integer.logits(ids), unpadded.logits(ids)):
        raise AssertionError("the inert FFN padding changed the integer model's logits")
    document = run_whole(config, integer, ids, labels, work_dir)
    with torch.no_grad():
        float_logits = shrunk(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    dense_integer = quantize_bert(dense, calibration_ids, progress=False)
    from sim.encoder_replay import bert_cases
    (dense_chain,) = bert_cases(config, dense_integer, ids[:1], name=f"{config.name}_dense")
    dense_cycles, dense_macs = chain_model_cycles(config, dense_chain)
    document.update({
        "top1_float": float((float_logits.argmax(-1).numpy() == labels).mean()),
        "dense_model_cycles_per_sequence": dense_cycles,
        "speedup": round(dense_cycles / document["cycles_per_sequence"], 4),
        "mac_reduction": round(dense_macs / document["macs_per_sequence"], 4),
        "config": config.to_dict(),
        "heads_kept": [len(layer.kept_heads) for layer in integer.layers],
        "ffn_kept": [layer.fc1.weight.shape[0] - pad
                     for layer, pad in zip(integer.layers, added)],
        "ffn_padding": added, "calibration_sequences": calibration,
        "pruned_model": shown_path(pruned_dir / "shrunk")})
    return document


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=SEQUENCES)
    parser.add_argument("--teacher", type=Path, default=TEACHER)
    parser.add_argument("--pruned", type=Path,
                        help="an sw/prune.py output of recipes/digits_bert.json to reuse")
    options = parser.parse_args(argv)
    try:
        document = measure_whole(options.sequences, teacher_dir=options.teacher,
                                 pruned_dir=options.pruned)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
