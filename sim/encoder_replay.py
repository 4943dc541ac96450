"""Whole encoders on the layer engine's RTL: every layer chained on chip, image after image.

A layer replay (``sim.layer_replay``) loads each layer's golden input into the scratchpad. Here
only the first layer's input is loaded: the scratchpad's OUTPUT region is its INPUT region
(``sw.engine_params`` checks it for every config), so layer ``i + 1`` runs on the rows layer
``i`` left behind, as many as its token gather kept. Between layers the testbench loads the
next layer's program, block structure, constants, LayerNorm parameters and GELU table through
the load port (``load_words`` counts them, one cycle each); its weights stream from the AXI
memory as always. Every layer's output is still compared with the golden model's (``==``), and
every instruction's cycles with the cycle model's.

:func:`replay_encoders` runs the encoder of a weight image for several images and returns, per
image, the RTL's last-layer output (read back from the scratchpad) with the cycle totals; the
host turns that output into logits (``sw.golden.deit_int.IntegerDeiT.head``: the final
LayerNorm and the classifier, not yet on the accelerator). :func:`synthetic_encoder` builds a
whole random encoder of a config (the deit_b16 benchmark's twelve pruned layers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.layer_replay import LayerCase, image_cases, replay
from sw.golden.layer_program import run_layer_program
from sw.golden.model_stages import STAGE_UNITS
from sw.golden.synthetic_layer import synthetic_input, synthetic_layer
from sw.golden.token_select import TokenPruning, keep_count
from sw.image.program import layer_program
from sw.isa import TENSOR_ROLES

__all__ = ["EncoderRun", "encoder_cases", "model_cases", "whole_model_outcome", "stage_cases",
           "bert_cases", "replay_encoders", "synthetic_encoder", "measure_encoder"]


@dataclass(frozen=True, eq=False)
class EncoderRun:
    """One image through the whole encoder on the RTL."""

    name: str
    layers: tuple                #: each layer's measurements (``sim.layer_replay.replay``)
    output: np.ndarray           #: the last layer's OUTPUT rows as read back, int16 (T', d)
    expected: np.ndarray         #: the golden model's last-layer output

    @property
    def bit_exact(self) -> bool:
        """Every layer's output equal to the golden model's (the last one read here too)."""
        return all(r["bit_exact"] for r in self.layers) and \
            np.array_equal(self.output, self.expected)

    @property
    def cycle_exact(self) -> bool:
        return all(r["cycles"] == r["model_cycles"]
                   and all(e["cycles"] == e["model_cycles"] for e in r["instructions"])
                   for r in self.layers)

    @property
    def cycles(self) -> int:
        """Engine cycles of all layers (load-port time excluded: :attr:`load_words`)."""
        return sum(r["cycles"] for r in self.layers)

    @property
    def model_cycles(self) -> int:
        return sum(r["model_cycles"] for r in self.layers)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of every instruction run, as the cycle model counts them
        (``macs`` of each instruction's result)."""
        return sum(e["macs"] for r in self.layers for e in r["instructions"])

    @property
    def load_words(self) -> int:
        """Load-port words of the image: layer 0's input rows and every layer's program,
        block structure and constants (one cycle each)."""
        return sum(r["load_words"] for r in self.layers)

    def to_dict(self) -> dict:
        return {"name": self.name, "bit_exact": self.bit_exact,
                "cycle_exact": self.cycle_exact, "cycles": self.cycles,
                "model_cycles": self.model_cycles, "load_words": self.load_words,
                "layers": len(self.layers),
                "inputs_loaded": sum(r["input_loaded"] for r in self.layers)}


def encoder_cases(image, inputs, *, name: str | None = None) -> list[list[LayerCase]]:
    """Per encoder input (``inputs``: int16 ``(N, tokens, hidden)``), the image's layers chained
    (``sim.layer_replay.image_cases`` with ``chained``), named ``<name>.input<n>.layer<i>``."""
    name = name or image.config.name
    return [image_cases(image, x, chained=True, name=f"{name}.input{number}")
            for number, x in enumerate(np.asarray(inputs, dtype=np.int64))]


def replay_encoders(design, chains: list[list[LayerCase]], work_dir: Path) -> list[EncoderRun]:
    """Run every chain of :func:`encoder_cases` (or :func:`synthetic_encoder`) in one
    simulation on ``design``; return each chain's :class:`EncoderRun`.

    Raises
    ------
    sim.harness.TestbenchFailed
        If a layer is not bit-exact or an instruction's cycles differ from the model.
    """
    for chain in chains:
        if not chain or (chain[0].chained and not chain[0].loads) or \
                not all(case.chained for case in chain[1:]):
            raise ValueError("each chain loads its first program's input and no other")
    flat = [case for chain in chains for case in chain]
    results = replay(design, flat, work_dir)
    for case, result in zip(flat, results):         # the stages' units by their own names
        names = STAGE_UNITS.get(case.stage, {})
        for entry in result["instructions"]:
            if entry["unit"] in names:
                entry["role"], entry["unit"] = entry["unit"], names[entry["unit"]]
    runs, start = [], 0
    for chain in chains:
        measured = results[start:start + len(chain)]
        start += len(chain)
        last = chain[-1]
        runs.append(EncoderRun(name=last.name.rsplit(".", 1)[0], layers=tuple(measured),
                               output=np.load(measured[-1]["output_file"]),
                               expected=last.expected()))
    return runs


def model_cases(image, pixel_values, *, name: str | None = None) -> list[list[LayerCase]]:
    """Per image of ``pixel_values``, the image's whole model as one chain of programs on the
    engine: the embedding program (its patch rows and position table loaded, nothing else),
    every layer and the head program (row count 1), each on what the one before it left; names
    ``<name>.input<n>.embedding``, ``.layer<i>``, ``.head``. The stages are the image's
    (EMBEDDING, HEAD, their linears and programs; ``sw.image.golden``), and an image read from a
    file streams their weights from their WEIGHT_STREAM sections, as it does the layers'. The
    head's result is the int8 logits."""
    from sw.golden.model_stages import embedding_int, quantize_patches
    from sw.image.golden import integer_embedding, integer_head
    embedding, head = integer_embedding(image), integer_head(image)
    chains = []
    for number, patches in enumerate(quantize_patches(pixel_values, embedding)):
        prefix = f"{name or image.config.name}.input{number}"
        x = embedding_int(patches, embedding)
        layers = image_cases(image, x, chained=True, name=prefix)
        first, final = stage_cases(image.config, embedding, head, patches, layers[-1].expected(),
                                   template=layers[0].layer, prefix=prefix)
        first, final = (dataclasses.replace(case, weight_file=image.path,
                                            stream_bases=_stage_streams(image, case))
                        for case in (first, final))
        chains.append([first, dataclasses.replace(layers[0], chained=True), *layers[1:],
                       final])
    return chains


def whole_model_outcome(runs: list[EncoderRun], golden_logits, classes: int, labels) -> dict:
    """What whole-model runs (:func:`model_cases` through :func:`replay_encoders`) gave against
    the integer model's int8 logits ``golden_logits`` ``(N, classes padded)`` and the true
    ``labels``: ``logits_bit_exact`` (``==`` over every image's real classes), each image's
    ``predicted`` and ``integer_predicted`` class, ``top1_rtl``, ``top1_integer`` and
    ``top1_equal`` (the RTL's classes are the integer model's)."""
    rtl = np.concatenate([run.output for run in runs])[:, :classes]
    golden = np.asarray(golden_logits)[:, :classes]
    predicted, integer = rtl.argmax(-1), golden.argmax(-1)
    labels = np.asarray(labels)
    return {"logits_bit_exact": bool(np.array_equal(rtl, golden)),
            "predicted": predicted.tolist(), "integer_predicted": integer.tolist(),
            "top1_rtl": float(np.mean(predicted == labels)),
            "top1_integer": float(np.mean(integer == labels)),
            "top1_equal": bool(np.array_equal(predicted, integer))}


def _stage_streams(image, case: LayerCase) -> dict | None:
    """The stream base of each tensor slot of a stage's case: its own slot's WEIGHT_STREAM
    section in the image file, every other slot empty (no blocks, nothing fetched)."""
    if image.path is None:
        return None
    from sw.image.format import NO_LAYER, STAGE_TENSORS, SectionKind
    from sw.image.golden import stage_role_of
    offset = next(e.offset for e in image.sections if e.kind == SectionKind.WEIGHT_STREAM
                  and e.layer == NO_LAYER and e.tensor == STAGE_TENSORS[case.stage])
    role = stage_role_of(case.program)
    return {slot: offset if slot == role else 0 for slot in TENSOR_ROLES}


def stage_cases(config, embedding, head, patches, encoder_output, *, template,
                prefix: str) -> tuple[LayerCase, LayerCase]:
    """The embedding program's case of one image's int8 patch rows (``patches``, from
    ``sw.golden.model_stages.quantize_patches``) and the head program's case of the last
    layer's output (``encoder_output``) on ``config``'s engine, each stage's GEMM in the tensor
    slot that holds it (``stage_role``); ``template``: a real layer of the model, whose
    constants fill what the stages do not use. Names ``<prefix>.embedding``, ``.head``."""
    from sw.golden.model_stages import engine_layer, stage_role
    from sw.image.program import HEAD_SLOTS, Buffer, embedding_program, head_program
    hw = config.hardware
    block = (hw.block_rows, hw.block_cols)
    embedding_role, head_role = stage_role(embedding, config), stage_role(head, config)
    program = embedding_program(embedding_role)
    rows = np.asarray(patches).shape[0]
    first = LayerCase(name=f"{prefix}.embedding",
                      layer=engine_layer(embedding, template, block, embedding_role),
                      x=np.zeros((rows, embedding.linear.weight.shape[0]), np.int64),
                      program=program, chained=True,
                      loads=((program[0].src_a, patches),
                             (Buffer.RESIDUAL1, embedding.position)), stage="embedding")
    final = LayerCase(name=f"{prefix}.head",
                      layer=engine_layer(head, template, block, head_role),
                      x=np.asarray(encoder_output)[:1], program=head_program(head_role),
                      chained=True, result=HEAD_SLOTS[head_role][2], stage="head")
    return first, final


def bert_cases(config, integer_bert, input_ids, *, name: str = "bert"
               ) -> list[list[LayerCase]]:
    """Per sequence of ``input_ids`` (``(N, T)``, ``T`` at most the engine's tokens: a
    sequence runs at its true length), a whole BERT (``sw.golden.bert_int.IntegerBert``) as
    one chain on ``config``'s engine: the embedding LayerNorm program (the host's int16
    embedding sum loaded into RESIDUAL1), every post-LN layer and the pooler program (row count
    1), each on what the one before it left; the result is the int8 pooler output, before the
    host's tanh and classifier. Names ``<name>.input<n>.embedding_layernorm``, ``.layer<i>``,
    ``.pooler``."""
    from sw.golden.encoder_layer import encoder_layer_int
    from sw.golden.kernels import layernorm_int
    from sw.golden.model_stages import stand_in_layer
    from sw.image.program import Buffer, embedding_layernorm_program, pooler_program
    hw = config.hardware
    block = (hw.block_rows, hw.block_cols)
    template = integer_bert.layers[0]
    chains = []
    for number, total in enumerate(integer_bert.embed(input_ids)):
        prefix = f"{name}.input{number}"
        chain = [LayerCase(name=f"{prefix}.embedding_layernorm",
                           layer=stand_in_layer(template, block,
                                                ln1=integer_bert.embedding_layernorm),
                           x=np.zeros_like(total), program=embedding_layernorm_program(),
                           chained=True, loads=((Buffer.RESIDUAL1, total),),
                           stage="embedding_layernorm")]
        x = layernorm_int(total, integer_bert.embedding_layernorm)
        for index, layer in enumerate(integer_bert.layers):
            program = layer_program(layer.kept_heads, tokens=x.shape[0], token_keep=x.shape[0],
                                    norm="post")
            chain.append(LayerCase(name=f"{prefix}.layer{index}", layer=layer, x=x,
                                   program=program, chained=True))
            x = encoder_layer_int(layer, x)
        chain.append(LayerCase(name=f"{prefix}.pooler",
                               layer=stand_in_layer(template, block, q=integer_bert.pooler),
                               x=x[:1], program=pooler_program(), chained=True,
                               result=Buffer.Q, stage="pooler"))
        chains.append(chain)
    return chains


def synthetic_encoder(config, pruning: dict, *, layers: int | None = None,
                      gather_layers=(3, 6, 9), name: str | None = None,
                      golden_inputs: bool = True, x=None) -> list[LayerCase]:
    """A random encoder of ``config``'s topology, chained: ``layers`` layers (default the
    config's), layer ``i`` drawn with seed ``pruning["seed"] + i``, keeping
    ``pruning["kept_heads"]`` at ``pruning["density"]`` of the blocks (every FFN neuron), and
    the layers of ``gather_layers`` pruning tokens after their attention at
    ``pruning["keep_rate"]`` (``pruning["protected"]`` tokens protected, the dropped ones
    fused; ``keep_rate`` None: no gather). Dense (``sim.layer_replay.BENCH_PRUNING``'s
    counterpart): every head, density 1, ``keep_rate`` None.

    ``golden_inputs`` False: the layers' ``x`` are zeros of the right shape, not the golden
    model's chain (enough for the cycle model, ``sim.layer_replay.model_cycles``; no gather
    then, as which rows a gather keeps depends on the values). ``x``: layer 0's input (default
    random, ``synthetic_input``)."""
    m, hw = config.model, config.hardware
    count = m.layers if layers is None else layers
    name = name or config.name
    if x is None:
        x = synthetic_input(tokens=m.tokens, hidden=m.hidden_size, seed=pruning["seed"],
                            norm=m.norm)
    cases = []
    for index in range(count):
        layer = synthetic_layer(hidden=m.hidden_size, head_dim=m.head_dim, heads=m.num_heads,
                                ffn=m.ffn_size, kept_heads=pruning["kept_heads"],
                                kept_ffn=m.ffn_size, block=(hw.block_rows, hw.block_cols),
                                density=pruning["density"], seed=pruning["seed"] + index,
                                norm=m.norm)
        tokens, keep, gather = x.shape[0], x.shape[0], None
        if pruning["keep_rate"] is not None and index in gather_layers:
            gather = TokenPruning(keep=keep_count(tokens - pruning["protected"],
                                                  pruning["keep_rate"]),
                                  protected=pruning["protected"], fuse=True)
            keep = gather.output_tokens(tokens)
        program = layer_program(layer.kept_heads, tokens=tokens, token_keep=keep,
                                protected=pruning["protected"], fuse=True, norm=m.norm)
        cases.append(LayerCase(name=f"{name}.layer{index}", layer=layer, x=x, program=program,
                               token_pruning=gather, chained=index > 0))
        if golden_inputs:
            x = run_layer_program(program, layer, x)
        elif gather is not None:
            raise ValueError("a gather needs the golden inputs (golden_inputs=True)")
    return cases


def measure_encoder(config, pruning: dict, *, gather_layers, work_dir: Path,
                    layers: int | None = None, stages: dict | None = None) -> dict:
    """A random encoder of ``config`` pruned as ``pruning`` says (:func:`synthetic_encoder`)
    chained on its engine's RTL, beside the dense encoder by the cycle model: ``{"layers",
    "bit_exact", "cycles_equal_model", "cycles_pruned", "model_cycles_pruned",
    "cycles_dense_model", "speedup", "mac_reduction", "utilization", "cosim_seconds",
    "build_seconds", "load_words", "tokens_per_layer", "cycles_per_layer", ...}`` (speed-up:
    dense over pruned cycles; MAC reduction: the cycle model's MACs, dense over pruned;
    utilization: the pruned MACs over PEs x cycles).

    ``stages`` (``{"channels", "patch_size", "classes", "protected"}``): the whole model
    instead, image in and int8 logits out: a random patch embedding and head of that shape
    (``sw.golden.synthetic_layer.synthetic_stages``) run as the embedding program before the
    layers (only the patch rows and the position table loaded) and the head program after
    them, in the same chain; the dense model has the same stages (they are not pruned), and
    ``stage_cycles`` gives each stage's cycles."""
    import time
    from sim.harness import build
    from sim.layer_replay import model_cycles
    from sw.golden.model_stages import embedding_int
    from sw.golden.synthetic_layer import synthetic_patches, synthetic_stages
    started = time.monotonic()
    design = build(config, "layer_engine")
    build_seconds = time.monotonic() - started
    m, seed = config.model, pruning["seed"]
    x = parts = None
    if stages is not None:
        parts = synthetic_stages(tokens=m.tokens, hidden=m.hidden_size,
                                 block_rows=config.hardware.block_rows, seed=seed, **stages)
        patches = synthetic_patches(tokens=m.tokens, features=parts[0].patch_features,
                                    protected=stages["protected"], seed=seed)
        x = embedding_int(patches, parts[0])
    cases = synthetic_encoder(config, pruning, layers=layers, gather_layers=gather_layers,
                              name=f"{config.name}_pruned", x=x)
    dense_pruning = {**pruning, "kept_heads": range(config.model.num_heads), "density": 1.0,
                     "keep_rate": None}
    dense_model = [model_cycles(config, case) for case in synthetic_encoder(
        config, dense_pruning, layers=layers, name=f"{config.name}_dense", golden_inputs=False)]
    chain = cases
    last = cases[-1].expected()                     # the encoder's golden output
    if parts is not None:
        first, final = stage_cases(config, *parts, patches, last, template=cases[0].layer,
                                   prefix=f"{config.name}_pruned")
        chain = [first, dataclasses.replace(cases[0], chained=True), *cases[1:], final]
        dense_model += [model_cycles(config, first), model_cycles(config, final)]
    started = time.monotonic()
    (run,) = replay_encoders(design, [chain], work_dir)
    seconds = time.monotonic() - started
    dense_cycles = sum(entry.cycles for entries in dense_model for entry in entries)
    dense_macs = sum(entry.macs for entries in dense_model for entry in entries)
    macs = run.macs
    hw = config.hardware
    tokens = [int(case.x.shape[0]) for case in cases] + [int(last.shape[0])]
    layer_results = [result for case, result in zip(chain, run.layers) if case.stage is None]
    extra = {} if parts is None else {
        "stage_cycles": {case.stage: result["cycles"] for case, result in zip(chain, run.layers)
                         if case.stage is not None},
        "classes": parts[1].classes, "patch_features": parts[0].patch_features}
    return {
        **extra,
        "layers": len(cases), "bit_exact": run.bit_exact, "cycles_equal_model": run.cycle_exact,
        "cycles_pruned": run.cycles, "model_cycles_pruned": run.model_cycles,
        "cycles_dense_model": dense_cycles,
        "speedup": round(dense_cycles / run.cycles, 4),
        "mac_reduction": round(dense_macs / macs, 4),
        "utilization": round(macs / (hw.array_rows * hw.array_cols) / run.cycles, 4),
        "cosim_seconds": round(seconds, 1), "build_seconds": round(build_seconds, 1),
        "load_words": run.load_words,
        "tokens_per_layer": [[rows_in, rows_out] for rows_in, rows_out in zip(tokens,
                                                                              tokens[1:])],
        "cycles_per_layer": [layer["cycles"] for layer in layer_results],
        "heads_kept": len(pruning["kept_heads"]), "density": pruning["density"],
        "keep_rate": pruning["keep_rate"], "gather_layers": list(gather_layers)}
