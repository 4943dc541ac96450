# amaranth: UnusedElaboratable=no
"""cocotb testbench of the layer engine: load one layer, run its program, check everything.

Transaction level: the layer's on-chip constants, program and input rows go in through the
load port and its streamed weights into cocotbext-axi's ``AxiRamRead`` behind the engine's AXI4
read port (``axi__*``), one job runs the whole program (no Python per clock of ours while it
runs; the AXI model serves the engine's reads), then the output rows, every instruction's cycle count (the trace memory) and the engine's total are read back.
The scoreboard compares the output with the golden layer (``sw.golden.layer_program``, ``==``)
and each instruction's cycles (the trace memory), each opcode's cycle counter and the total
with ``sw.cycle_model.layer_engine`` (``==``); on a mismatch it also reads every buffer and
names the first one that differs.

With ``AXI_PAUSE_SEED`` set, the AXI RAM pauses its AR and R channels at random (a quarter of
the cycles each, from that seed): the outputs must stay bit-exact and the cycles lie between the
model's (a memory that never pauses) and the model's plus the cycles in which a channel paused
(each pause delays what follows by at most one cycle); ``sw.cycle_model.weight_stream``.

Environment: ``ACCEL_CONFIG`` (config JSON), ``LAYER_CASE`` (a pickled ``sim.layer_replay.
LayerCase``), ``LAYER_RESULT`` (JSON written with the measurements), ``LAYER_OUTPUTS`` (a
directory: each case's OUTPUT rows as read back, ``output_<case index>.npy``),
``AXI_PAUSE_SEED``. A chained case (``LayerCase.chained``) runs on what the case before it left
in the scratchpad: its input is not loaded.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import time

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiRamRead, AxiReadBus

from hw.gemm.geometry import LoadTarget as GemmTarget
from hw.layer.engine import CONSTANT_CHUNK, COUNTER_WIDTH, EngineTarget, LayerEngine
from hw.layer.loading import TENSORS, load_plan
from hw.layer.memory_map import LANE_WIDTH
from sim.layer_replay import model_cycles
from sim.transactions import TransactionTB, field_offsets
from sw.config import AcceleratorConfig
from sw.golden.encoder_layer import encoder_layer_int
from sw.image.program import Buffer, Opcode, encode_program
from sw.packing import pack_lanes, unpack_lanes
from sw.scratchpad_regions import intact_at_end

_GEMM_TARGETS = {"row_ptr": GemmTarget.ROW_PTR,
                 "col_idx": GemmTarget.COL_IDX, "quant": GemmTarget.QUANT}
#: Buffers read back for diagnosis, in program order, with the golden trace's names.
_DIAGNOSE = (("ln1", Buffer.LN1), ("q", Buffer.Q), ("k", Buffer.K), ("v", Buffer.V),
             ("context", Buffer.CONTEXT), ("residual1", Buffer.RESIDUAL1), ("ln2", Buffer.LN2),
             ("gelu", Buffer.GELU))


class LayerEngineTB(TransactionTB):
    """Drivers and scoreboard of one layer engine."""

    def __init__(self, dut, config: AcceleratorConfig):
        super().__init__(dut)
        self.config = config
        self.engine = LayerEngine(config)
        self.map = self.engine.memory_map
        self.load_offsets = field_offsets(self.engine.load_layout)
        gemm_load = self.engine.gemm.signature.members["load"].signature.members["payload"]
        self.gemm_offsets = field_offsets(gemm_load.shape)
        self.memory = None
        self.paused = 0                  # cycles in which the AXI RAM paused a channel
        self.memory_pauses = False
        self.external_bytes = 0
        self.memory_file = None          # the image file the AXI RAM holds, if any
        self.load_words = 0              # load-port words written (one cycle each)

    def _pauses(self, rng: random.Random):
        while True:
            pause = rng.random() < 0.25
            self.paused += pause
            yield pause

    def attach_memory(self, cases, pause_seed: int | None = None) -> None:
        """The external memory: an AXI RAM as large as the densest layer's streamed weights or
        the largest weight image the cases stream from."""
        params = self.engine.params
        size = max([params.gemm_capacity["weight"] * params.word_bytes
                    + len(TENSORS) * params.burst_bytes]
                   + [os.path.getsize(c.weight_file) for c in cases if c.weight_file])
        self.memory = AxiRamRead(AxiReadBus.from_prefix(self.dut, "axi_"), self.dut.clk,
                                 size=-(-size // 4096) * 4096)
        logging.getLogger("cocotb.layer_engine.axi_").setLevel(logging.WARNING)
        if pause_seed is not None:
            rng = random.Random(pause_seed)
            self.memory.ar_channel.set_pause_generator(self._pauses(rng))
            self.memory.r_channel.set_pause_generator(self._pauses(rng))

    async def load(self, target: EngineTarget, items) -> None:
        """Write ``(addr, data)`` items of ``target``, one per cycle (counted in
        ``load_words``)."""
        dut, o = self.dut, self.load_offsets
        head = target.value << o["target"]
        for addr, word in items:
            self.load_words += 1
            dut.load__valid.value = 1
            dut.load__payload.value = head | (addr << o["addr"]) | (word << o["data"])
            await RisingEdge(dut.clk)
        dut.load__valid.value = 0

    async def read_buffer(self, buffer: Buffer, rows: int, width: int) -> np.ndarray:
        region, c = self.map.regions[buffer], self.map.lanes
        words = -(-width // c)
        vectors = []
        for row in range(rows):          # row by row: strides may exceed the width
            vectors += await self.read_words(words, region.address(row))
        values = unpack_lanes(vectors, c, LANE_WIDTH).reshape(rows, words * c)
        return values[:, :width]

    def constants(self, layer, plan, tokens: int) -> int:
        engine = self.engine
        ln = [engine.layernorm.constant_values(layer.ln1),
              engine.layernorm.constant_values(layer.ln2)]
        residual = [{"multiplier_a": r.multiplier_a, "multiplier_b": r.multiplier_b,
                     "shift": r.shift} for r in (layer.residual1, layer.residual2)]
        tensors = [{"row_ptr_base": t.row_ptr_base, "quant_base": t.quant_base,
                    "weight_base": t.weight_base, "stream_base": t.stream_base,
                    "stream_words": t.stream_words, "in_tiles": t.in_tiles,
                    "out_block_rows": t.out_block_rows} for t in plan.tensors]
        values = {"tokens": tokens, "ffn": layer.fc1.weight.shape[0], "layernorm": ln,
                  "softmax": engine.softmax.constant_values(layer.softmax, tokens),
                  "residual": residual,
                  "tensors": tensors}
        return engine.constants_layout.const(values).as_value().value

    async def load_layer(self, case) -> dict:
        """Everything the program needs; returns the load plan."""
        engine, layer = self.engine, case.layer
        plan = load_plan(self.config, layer, case.stream_bases)
        if case.weight_file is None:
            self.memory.write(0, plan.external)
            self.memory_file = None
        elif case.weight_file != self.memory_file:         # the image file itself
            with open(case.weight_file, "rb") as handle:
                self.memory.write(0, handle.read())
            self.memory_file = case.weight_file
        self.external_bytes = plan.linear_words * self.engine.params.word_bytes
        o = self.gemm_offsets
        gemm_items = []
        for name, items in plan.gemm_words.items():
            head = _GEMM_TARGETS[name].value << o["target"]
            gemm_items += [(0, head | (addr << o["addr"]) | (word << o["data"]))
                           for addr, word in items]
        await self.load(EngineTarget.GEMM, gemm_items)
        packed = self.constants(layer, plan, case.x.shape[0])
        size = engine.constants_layout.size
        await self.load(EngineTarget.CONSTANTS, [
            (n, (packed >> (CONSTANT_CHUNK * n)) & ((1 << CONSTANT_CHUNK) - 1))
            for n in range(-(-size // CONSTANT_CHUNK))])
        affine = engine.layernorm.signature.members["affine"].signature.members["payload"].shape
        items = []
        for index, constants in enumerate((layer.ln1, layer.ln2)):
            for word in engine.layernorm.affine_words(constants):
                items.append((index * engine.affine_beats + word["addr"],
                              affine.const(word).as_value().value))
        await self.load(EngineTarget.AFFINE, items)
        await self.load(EngineTarget.GELU_TABLE, plan.gelu_table)
        await self.load(EngineTarget.PROGRAM, [(i, encode(instruction))
                                               for i, instruction in enumerate(case.program)])
        loads = list(case.loads)
        if not case.chained:        # chained: the previous layer's OUTPUT is this INPUT already
            loads.insert(0, (Buffer.INPUT, case.x))
        for buffer, rows in loads:
            await self.load_rows(Buffer(buffer), rows)
        return plan

    async def load_rows(self, buffer: Buffer, rows) -> None:
        """Write ``rows`` (2-D, any width up to the region's) into ``buffer``'s region."""
        region, c = self.map.regions[buffer], self.map.lanes
        x = np.asarray(rows, dtype=np.int64)
        x = np.pad(x, ((0, 0), (0, -x.shape[1] % c)))
        words = pack_lanes(x.reshape(-1, c), LANE_WIDTH)
        per_row = x.shape[1] // c
        await self.load(EngineTarget.SCRATCH, [
            (region.address(i // per_row, i % per_row), w) for i, w in enumerate(words)])

    async def run(self, case, output_file: str | None = None) -> dict:
        """Load and run ``case``, check it; ``output_file``: also save the OUTPUT rows read
        back (``.npy``)."""
        started = time.monotonic()
        words_before = self.load_words
        await self.load_layer(case)
        load_words = self.load_words - words_before
        load_seconds = time.monotonic() - started
        started = time.monotonic()
        paused_before = self.paused
        cycles = await self.send_job(1)
        paused = self.paused - paused_before
        sim_seconds = time.monotonic() - started
        if int(self.dut.error.value):
            self.fail("the engine stopped on an instruction it does not run")
        trace = {}
        expected = case.expected(trace)
        if case.token_pruning is not None:          # the program is the golden layer's too
            assert np.array_equal(expected, encoder_layer_int(
                case.layer, case.x, token_pruning=case.token_pruning))
        found = await self.read_buffer(Buffer(case.result), expected.shape[0],
                                       expected.shape[1])
        mismatches = int(np.count_nonzero(found != expected))
        if output_file is not None:
            np.save(output_file, found)
        if mismatches:
            self.fail(f"{case.name}: {mismatches} output values differ from the golden layer")
            intact = intact_at_end(case.program, self.map)   # the rest share vectors
            for name, buffer in _DIAGNOSE:
                if buffer not in intact:
                    continue
                golden = trace[name]
                seen = await self.read_buffer(buffer, golden.shape[0], golden.shape[1])
                if not np.array_equal(seen, golden):
                    where = tuple(int(i) for i in np.argwhere(seen != golden)[0])
                    self.log.error("first differing buffer: %s at %s (found %d, expected %d)",
                                   name, where, seen[where], golden[where])
                    break
        model = model_cycles(self.config, case)
        total = int(self.dut.cycles.value)
        model_total = sum(e.cycles for e in model)
        # END has no trace entry: its cycles are what the engine's total leaves over
        measured = await self.read_words(len(model) - 1, addr="trace_addr", data="trace_data")
        measured.append(total - sum(measured))
        if self.memory_pauses:
            self.check_paused(case.name, total, model_total, paused)
        instructions = []
        for entry, value in zip(model, measured):
            instructions.append({"index": entry.index, "opcode": entry.opcode.name,
                                 "unit": entry.unit, "cycles": value,
                                 "model_cycles": entry.cycles, "macs": entry.macs,
                                 "rows": entry.rows})
            if not self.memory_pauses:
                self.check(f"{case.name}: instruction {entry.index} ({entry.unit}) cycles",
                           value, entry.cycles)
        # the engine's per-opcode counters: every traced instruction's cycles, by opcode
        counters = int(self.dut.opcode_cycles.value)
        for opcode in Opcode:
            found = (counters >> (COUNTER_WIDTH * int(opcode))) & ((1 << COUNTER_WIDTH) - 1)
            expected = sum(e.cycles for e in model
                           if e.opcode == opcode and opcode != Opcode.END)
            if not self.memory_pauses:
                self.check(f"{case.name}: {opcode.name} counter", found, expected)
        if not self.memory_pauses:
            self.check(f"{case.name}: total cycles", total, model_total)
            self.check(f"{case.name}: cycles to done", cycles, model_total)
        return {"name": case.name, "cycles": total, "model_cycles": model_total,
                "instructions": instructions, "mismatches": mismatches,
                "bit_exact": mismatches == 0, "sim_seconds": sim_seconds,
                "load_seconds": load_seconds, "load_words": load_words,
                "input_loaded": not case.chained, "output_file": output_file,
                "pause_cycles": paused,
                "external_bytes": self.external_bytes}

    def check_paused(self, name: str, total: int, model_total: int, paused: int) -> None:
        """With a pausing memory: the model's cycles <= total <= those plus the pauses."""
        if not model_total <= total <= model_total + paused:
            self.fail(f"{name}: {total} cycles with {paused} paused memory cycles, outside "
                      f"[{model_total}, {model_total + paused}]")


def encode(instruction) -> int:
    """The 64-bit word of one instruction: its bytes in the image (``sw.image.program``)."""
    return int.from_bytes(encode_program([instruction])[-8:], "little")


@cocotb.test()
async def replay_layer(dut):
    """Run every case of ``LAYER_CASE`` (paths separated by os.pathsep) in sequence."""
    config = AcceleratorConfig.from_json_file(os.environ["ACCEL_CONFIG"])
    tb = LayerEngineTB(dut, config)
    await tb.reset(trace_addr=0)
    seed = os.environ.get("AXI_PAUSE_SEED")
    tb.memory_pauses = seed is not None
    cases = []
    for path in os.environ["LAYER_CASE"].split(os.pathsep):
        with open(path, "rb") as handle:
            cases.append(pickle.load(handle))
    tb.attach_memory(cases, None if seed is None else int(seed))
    outputs = os.environ.get("LAYER_OUTPUTS")
    results = [await tb.run(case, None if outputs is None
                            else os.path.join(outputs, f"output_{index}.npy"))
               for index, case in enumerate(cases)]
    with open(os.environ["LAYER_RESULT"], "w") as handle:
        json.dump(results, handle, indent=2)
    assert tb.errors == 0, f"{tb.errors} scoreboard errors (see log)"
