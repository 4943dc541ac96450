"""BERT benchmark: the digits-sequence BERT pruned and quantized, and a pruned bert_base (post-LN)
layer against the dense one on the same RTL.

The accuracy part (``bench.bert_model.run_accuracy``): the dense digits BERT (trained when
missing), pruned to 25 % linear density with ``recipes/digits_bert.json``, float and integer
(``sw.golden.bert_int``) accuracy and integer-vs-float agreement on the validation sequences.
The layer part of issue 19: ``configs/bert_base.json`` (hidden 768, 12 heads of 64, FFN 3072,
128 tokens, ``norm: "post"``) builds the same layer engine as a pre-LN preset of its shape, and
its post-LN program (``sw.image.program.layer_program``) runs on it. The dense layer and the one
pruned as ``sim.layer_replay.BERT_BENCH_PRUNING`` says (7 of 12 heads, 30 % of the 32 x 32
blocks, every token kept) replay in one co-simulation (``bench.layer.measure_layer``): each
bit-exact to the golden post-LN layer and every instruction's cycles equal to the cycle model,
or the benchmark fails. The model part (``bench.bert_whole.measure_whole``): the pruned digits
BERT of the accuracy part (its ``shrunk/`` model, FFN padded to whole blocks with inert
neurons) run whole on the RTL for the first 32 validation sequences in one co-simulation, on an
engine of its shape (hidden 64, 4 heads, FFN 128, 66 tokens, post-LN; tiny's 4 x 4 array): the
embedding LayerNorm program, both layers and the pooler program chained on chip, every program
bit-exact and cycle-exact, the int8 pooler output and the logits the host makes of it (tanh and
the float classifier) ``==`` the integer model's. Writes ``build/bench/bert.json``::

    {"task", "dense_accuracy", "runs", "integer_agreement",
     "layer": {"config", "tokens", "bit_exact", "cycles", "model_cycles", "utilization",
               "speedup", "mac_reduction", ... (every field of bench.layer's document)},
     "model": {"sequences", "logits_bit_exact", "cycles_equal_model", "cycles_per_sequence",
               "dense_model_cycles_per_sequence", "top1_rtl", "top1_integer",
               "cosim_seconds", ... (every field of bench.bert_whole's document)},
     "model_note"}

``task`` .. ``integer_agreement`` and the keys beside them are ``run_accuracy``'s document.
``layer``'s fields are those of ``build/bench/layer.json`` (``bench.layer``: ``utilization`` =
non-zero MACs / (PEs x cycles), ``speedup`` = dense cycles / cycles, ``mac_reduction`` = dense
MACs / pruned MACs). ``model`` (the whole small BERT on the RTL) is null, with a note saying
why. The first run trains and prunes the digits BERT (about 40 min on 2 cores) and builds the
bert_base engine (about 20 min); later runs reuse both.
"""

from __future__ import annotations

from pathlib import Path

from bench.bert_model import run_accuracy
from bench.bert_whole import measure_whole
from bench.layer import measure_layer
from sim.layer_replay import BERT_BENCH_PRUNING
from sw.build_files import BENCH_ROOT, write_json
from sw.config import load_config

OUTPUT = BENCH_ROOT / "bert.json"

#: What the whole-model part measures and what it leaves to the host.
MODEL_NOTE = ("the pruned digits BERT whole on the RTL: the host's embedding sum (a table lookup, "
              "int16) loaded, the embedding LayerNorm, both post-LN layers and the pooler dense "
              "as engine programs; the pooler's tanh and the classifier on the host (float), "
              "not in the cycles; the layers are taken from the model in memory (BERT does not "
              "export to a weight image yet); dense cycles from the cycle model")


def run(output: Path = OUTPUT) -> dict:
    accuracy = run_accuracy()
    config = load_config("bert_base")
    layer, _ = measure_layer(config, BERT_BENCH_PRUNING, BENCH_ROOT / "bert_layer")
    model = measure_whole()             # the pruned model of run_accuracy's first target
    document = {**accuracy, "layer": layer, "model": model, "model_note": MODEL_NOTE}
    write_json(document, output)
    for run in accuracy["runs"]:
        print(f"bert: digits-sequence BERT dense {accuracy['dense_accuracy']:.4f}; at "
              f"{run['linear_density']:.3f} linear density {run['accuracy']:.4f} "
              f"({run['heads_removed']} of {run['heads_total']} heads removed), integer "
              f"{run['integer_accuracy']:.4f}; integer-vs-float agreement "
              f"{run['integer_agreement']:.4f}")
    print(f"bert: bert_base layer ({layer['norm']}-LN, {layer['tokens']} tokens) "
          f"{layer['cycles']:,} cycles (model {layer['model_cycles']:,}), dense "
          f"{layer['dense_cycles']:,}; speed-up {layer['speedup']:.2f} vs MAC reduction "
          f"{layer['mac_reduction']:.2f}; utilization {layer['utilization']:.3f}; "
          f"bit-exact {layer['bit_exact']}; co-simulation {layer['cosim_seconds']:.0f} s "
          f"(dense {layer['dense_cosim_seconds']:.0f} s)")
    print(f"bert: the pruned digits BERT whole on the RTL, {model['sequences']} sequences: "
          f"logits == integer model {model['logits_bit_exact']}, cycles == model "
          f"{model['cycles_equal_model']}; {model['cycles_per_sequence']:,} cycles per sequence "
          f"(dense {model['dense_model_cycles_per_sequence']:,} by the cycle model); top-1 RTL "
          f"{model['top1_rtl']:.4f}, integer {model['top1_integer']:.4f}; co-simulation "
          f"{model['cosim_seconds']:.0f} s")
    return document


if __name__ == "__main__":
    run()
