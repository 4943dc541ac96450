"""Replay whole encoder layers through the layer engine's RTL (cocotb + Verilator).

A :class:`LayerCase` is one layer (the golden model's ``IntegerEncoderLayer``), its int16
input rows and its program. Cases come from a weight image (every layer of an exported model,
each fed the golden model's input for it) or are synthetic (random weights with a chosen
pruning pattern, ``sw.golden.synthetic_layer``). :func:`replay` runs cases in one testbench run
on one build; the testbench (``sim.tb_layer_engine``) checks every output against the golden
layer and every instruction's cycles against ``sw.cycle_model.layer_engine``.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.harness import BuiltDesign, run_testbench
from sw.golden.encoder_layer import IntegerEncoderLayer
from sw.golden.synthetic_layer import synthetic_input, synthetic_layer
from sw.golden.token_select import TokenPruning
from sw.image.program import Buffer, layer_program

__all__ = ["LayerCase", "synthetic_case", "image_cases", "replay", "model_cycles",
           "BENCH_PRUNING", "BERT_BENCH_PRUNING", "bench_cases"]

#: The pruned deit_b16 layer of the benchmark and the slow test: 7 of 12 heads kept (5, 42 %,
#: removed), 30 % of the 32 x 32 blocks of every remaining weight (a linear density of about
#: 0.26 of the dense layer's weights), and DeiT token pruning after attention at keep rate 0.7
#: (CLS and distillation tokens protected, the dropped tokens fused).
BENCH_PRUNING = {"kept_heads": (0, 2, 3, 5, 7, 8, 10), "density": 0.3, "keep_rate": 0.7,
                 "protected": 2, "seed": 0}

#: The pruned bert_base layer of the BERT benchmark (issue 19): the same 7 of 12 heads and 30 %
#: of the blocks, all 128 tokens kept (no token pruning: ``keep_rate`` None).
BERT_BENCH_PRUNING = {**BENCH_PRUNING, "keep_rate": None, "protected": 1}


@dataclass(frozen=True, eq=False)
class LayerCase:
    """One layer to replay."""

    name: str
    layer: IntegerEncoderLayer
    x: np.ndarray              #: (tokens, hidden) int16 layer input
    program: tuple
    token_pruning: object = None   #: the layer's TokenPruning (when its program gathers)
    weight_file: str | None = None  #: the image file its weights stream from, if any
    stream_bases: dict | None = None  #: that file's WEIGHT_STREAM offset of each linear
    #: The input is the previous case's OUTPUT, left in the scratchpad (layers chain in place:
    #: ``sw.engine_params``); the testbench does not load it, and ``x`` is only the golden
    #: model's input to compare with.
    chained: bool = False
    #: ``(Buffer, rows)`` pairs the testbench loads besides INPUT (the embedding program's patch
    #: rows and position table: ``sw.golden.model_stages``).
    loads: tuple = ()
    #: The buffer read back and compared (the head program's logits are in GELU).
    result: int = Buffer.OUTPUT
    #: Which program of a model this is when not a layer (``sw.golden.model_stages.STAGE_UNITS``:
    #: ``"embedding"``, ``"head"``, ``"embedding_layernorm"``, ``"pooler"``).
    stage: str | None = None

    @property
    def part(self) -> str:
        """The program's name within its model: its stage, or the last part of its name
        (``layer<i>``)."""
        return self.stage or self.name.rsplit(".", 1)[-1]

    def expected(self, trace: dict | None = None) -> np.ndarray:
        """The golden layer's output (the same program run by ``sw.golden.layer_program``)."""
        from sw.golden.layer_program import run_layer_program
        return run_layer_program(self.program, self.layer, self.x, trace=trace,
                                 preload=dict(self.loads), result=self.result)


def synthetic_case(config, *, kept_heads, kept_ffn: int, density: float, seed: int = 0,
                   token_pruning: TokenPruning | None = None,
                   name: str | None = None) -> LayerCase:
    """A random layer of ``config``'s shape keeping ``kept_heads`` heads (indices) and
    ``kept_ffn`` FFN neurons, each linear at ``density`` of its hardware blocks, with
    ``token_pruning`` after its attention if given."""
    m, hw = config.model, config.hardware
    layer = synthetic_layer(hidden=m.hidden_size, head_dim=m.head_dim, heads=m.num_heads,
                            ffn=m.ffn_size, kept_heads=kept_heads, kept_ffn=kept_ffn,
                            block=(hw.block_rows, hw.block_cols), density=density, seed=seed,
                            norm=m.norm)
    x = synthetic_input(tokens=m.tokens, hidden=m.hidden_size, seed=seed, norm=m.norm)
    keep = m.tokens
    protected, fuse = 1, True
    if token_pruning is not None:
        keep = token_pruning.output_tokens(m.tokens)
        protected, fuse = token_pruning.protected, token_pruning.fuse
    program = layer_program(layer.kept_heads, tokens=m.tokens, token_keep=keep,
                            protected=protected, fuse=fuse, norm=m.norm)
    name = name or (f"{config.name}_h{len(layer.kept_heads)}_f{kept_ffn}_d{density:g}"
                    f"_t{keep}_s{seed}")
    return LayerCase(name=name, layer=layer, x=x, program=program,
                     token_pruning=token_pruning)


def model_cycles(config, case: LayerCase, memory=None) -> list:
    """``sw.cycle_model.layer_engine.program_cycles`` of ``case`` on ``config``'s engine, its
    weights streamed from ``memory`` (a ``sw.cycle_model.weight_stream.MemoryTiming``; the
    co-simulation's AXI RAM by default)."""
    from hw.layer.loading import load_plan
    from hw.layer.memory_map import LayerMemoryMap
    from sw.cycle_model.layer_engine import LayerShapes, program_cycles
    from sw.cycle_model.weight_stream import AXI_RAM
    plan = load_plan(config, case.layer)
    shapes = LayerShapes(tokens=case.x.shape[0], ffn=case.layer.fc1.weight.shape[0],
                         keys=LayerMemoryMap.from_config(config).keys,
                         masks={t.name: t.mask for t in plan.tensors})
    return program_cycles(config, case.program, shapes,
                          AXI_RAM if memory is None else memory)


def bench_cases(config, pruning: dict = BENCH_PRUNING) -> tuple[LayerCase, LayerCase]:
    """The dense layer and the layer pruned as ``pruning`` says (:data:`BENCH_PRUNING` by
    default; ``keep_rate`` None: no token gather) of ``config``, same seed."""
    from sw.golden.token_select import keep_count
    m, p = config.model, pruning
    pruning = None if p["keep_rate"] is None else TokenPruning(
        keep=keep_count(m.tokens - p["protected"], p["keep_rate"]), protected=p["protected"],
        fuse=True)
    dense = synthetic_case(config, kept_heads=range(m.num_heads), kept_ffn=m.ffn_size,
                           density=1.0, seed=p["seed"], name=f"{config.name}_dense")
    pruned = synthetic_case(config, kept_heads=p["kept_heads"], kept_ffn=m.ffn_size,
                            density=p["density"], seed=p["seed"], token_pruning=pruning,
                            name=f"{config.name}_pruned")
    return dense, pruned


def image_cases(image, x, *, chained: bool = False, name: str | None = None) -> list[LayerCase]:
    """Every layer of a weight image, fed the golden model's input for it (``x``: the int16
    encoder input of one image, ``(tokens, hidden)``). An image read from a file
    (``load_image``) streams its weights from that file itself: the co-simulation's AXI memory
    holds the file's bytes, and each linear is fetched from its WEIGHT_STREAM section.

    ``chained``: the whole encoder runs on chip, only layer 0's input loaded; every later layer
    reads what the layer before it left (``LayerCase.chained``), so the RTL's own outputs feed
    it and the golden inputs are only compared with. ``name`` prefixes the cases' names
    (default: the config's)."""
    from sw.image.format import SectionKind, TENSOR_ROLES
    from sw.image.golden import integer_layer
    from sw.golden.layer_program import run_layer_program
    cases = []
    x = np.asarray(x, dtype=np.int64)
    for layer_image in image.layers:
        layer = integer_layer(layer_image, image.config.model.norm)
        bases = None
        if image.path is not None:
            bases = {TENSOR_ROLES[e.tensor]: e.offset for e in image.sections
                     if e.kind == SectionKind.WEIGHT_STREAM and e.layer == layer_image.index}
        cases.append(LayerCase(name=f"{name or image.config.name}.layer{layer_image.index}",
                               layer=layer, x=x, program=tuple(layer_image.program),
                               weight_file=image.path, stream_bases=bases,
                               chained=chained and bool(cases)))
        x = run_layer_program(layer_image.program, layer, x)
    return cases


def replay(design: BuiltDesign, cases: list[LayerCase], work_dir: Path, *,
           waves: bool = False, pause_seed: int | None = None) -> list[dict]:
    """Run ``cases`` in sequence on ``design``; return each case's measurements.

    ``waves``: also trace every signal into ``work_dir / sim.harness.TRACE_FILE`` (``design``
    built with ``waves=True``). ``pause_seed``: the external memory pauses at random (see
    ``sim.tb_layer_engine``), and the cycles are checked against a bound instead.

    Raises
    ------
    sim.harness.TestbenchFailed
        If an output is not bit-exact or an instruction's cycles differ from the model.
    """
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, case in enumerate(cases):
        path = work_dir / f"case_{index}.pkl"
        with open(path, "wb") as handle:
            pickle.dump(case, handle)
        paths.append(str(path))
    result = work_dir / "result.json"
    env = {"LAYER_CASE": os.pathsep.join(paths), "LAYER_RESULT": str(result),
           "LAYER_OUTPUTS": str(work_dir)}
    if pause_seed is not None:
        env["AXI_PAUSE_SEED"] = str(pause_seed)
    run_testbench(design, "sim.tb_layer_engine", work_dir, extra_env=env, waves=waves)
    return json.loads(result.read_text())
