"""How many bytes of on-chip memory a layer engine holds, memory by memory.

:func:`onchip_memories` lists every memory of ``config``'s layer engine (``hw.layer.engine``),
named by its path in the design hierarchy, with its depth (words), word width (bits) and read
ports, all taken from ``sw.engine_params.EngineParams`` and the unit timings of
``sw.cycle_model.units`` (the same objects the hardware is sized from); the test
``tests/hw/test_onchip_memory.py`` elaborates the engine and checks each figure against the
memories actually in the design, with ``==``.

Bytes are ``depth * width / 8`` exactly (a word is not rounded up to whole bytes, so a figure
may end in .125). :attr:`OnChipMemory.dp16kd` estimates ECP5 block RAMs: one copy of the memory
per read port (each copy behind the one write port), each copy tiled by the DP16KD aspect ratio
(16384 x 1 ... 512 x 36, 18 Kbit) that needs the fewest blocks. Synthesis may map small
memories (FIFOs, short tables) to LUT RAM or flip-flops instead; the figure is what they would
take as block RAM.

The scratchpad is one memory per element type (``sw.engine_params``: ``scratchpad.int8``,
``scratchpad.int16``, ...), each vector ``lanes`` elements of that width, its regions sharing
vectors where their live ranges allow.

``python -m sw.onchip_memory --config deit_b16 [--regions]`` prints the table that
``make verilog`` prints, without generating anything; ``--regions`` adds the scratchpad's regions
(memory, offset, bytes and live range in the densest program, ``sw.scratchpad_regions``), the
pairs that share memory, and the scratchpad's bytes in 32-bit lanes, packed, and packed and
shared.

>>> from sw.config import load_config
>>> memories = onchip_memories(load_config("tiny"))
>>> for memory in memories[:4]:
...     print(memory.name, memory.depth, memory.width, memory.bytes)
scratchpad.int16 544 64 4352.0
scratchpad.int8 1088 32 4352.0
scratchpad.int32 102 128 1632.0
scratchpad.uint8 102 32 408.0
"""

from __future__ import annotations

import inspect
import itertools
import math
import sys
from dataclasses import dataclass

from sw.cli import BAD_INPUT, OneLineArgumentParser, exit_130_on_interrupt, one_line
from sw.config import AcceleratorConfig, ConfigError, load_config
from sw.cycle_model.units import unit_timings
from sw.engine_params import LANE_WIDTH, EngineParams, LayerEngineError
from sw.golden.encoder_layer import RESIDUAL_BITS
from sw.golden.kernels import layernorm_constants
from sw.isa import INSTRUCTION_BITS
from sw.numerics import SHIFT_WIDTH

__all__ = ["DP16KD_SHAPES", "TRACE_WIDTH", "FIFO_DEPTH", "BETA_WIDTH", "OnChipMemory",
           "onchip_memories", "total_bytes", "total_dp16kd", "memory_table", "region_table",
           "main"]

#: (depth, width) configurations of one ECP5 DP16KD block RAM (18 Kbit).
DP16KD_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))

#: Bits of one entry of the sequencer's trace memory (its cycle counters' width).
TRACE_WIDTH = 32

#: Entries of the GEMM's tile-descriptor queue and of each row reader's vector queue.
FIFO_DEPTH = 4

#: Signed width of a quantized LayerNorm beta (``layernorm_constants`` keeps ``|beta| < 2**40``).
BETA_WIDTH = 41


@dataclass(frozen=True)
class OnChipMemory:
    """One memory of the engine: ``depth`` words of ``width`` bits, read by ``read_ports``."""

    name: str          #: path in the design (``scratchpad.int8``, ``gemm.weight_mem``)
    depth: int
    width: int
    read_ports: int
    what: str          #: what it holds, in a few words

    @property
    def bits(self) -> int:
        return self.depth * self.width

    @property
    def bytes(self) -> float:
        """``depth * width / 8``, exactly."""
        return self.bits / 8

    @property
    def dp16kd(self) -> int:
        """ECP5 DP16KD blocks: one copy per read port, each tiled by the best aspect ratio."""
        if not self.bits:
            return 0
        copy = min(math.ceil(self.depth / depth) * math.ceil(self.width / width)
                   for depth, width in DP16KD_SHAPES)
        return copy * self.read_ports

    def to_dict(self) -> dict:
        return {"name": self.name, "depth": self.depth, "width": self.width,
                "read_ports": self.read_ports, "bytes": self.bytes, "dp16kd": self.dp16kd,
                "what": self.what}


def _bits_for(count: int) -> int:
    """Bits of an unsigned value in ``range(count)`` (at least 1), as ``hw.gemm.geometry``."""
    return max(1, (count - 1).bit_length())


def _range_bits(count: int) -> int:
    """Bits of Amaranth's shape of ``range(count)``."""
    return max(0, (count - 1).bit_length())


def onchip_memories(config: AcceleratorConfig) -> tuple[OnChipMemory, ...]:
    """Every memory of ``config``'s layer engine, largest parts first (see the module docstring).

    Raises
    ------
    sw.engine_params.LayerEngineError
        If the config cannot be built as a layer engine.
    """
    params = EngineParams.from_config(config)
    hw, mm = config.hardware, params.memory_map
    lanes = params.lanes
    capacity = params.gemm_capacity
    softmax, _, layernorm = unit_timings(config)
    gamma_width = inspect.signature(layernorm_constants).parameters["gamma_width"].default
    # the GEMM engine's geometry inside the layer engine (hw.layer.engine.engine_gemm_geometry)
    max_inner = max(config.max_gemm_inner, params.keys)
    max_outer = max(config.max_gemm_outer, params.keys)
    max_blocks = capacity["col_idx"]             # stored blocks: weight words / words per block
    quant_record = hw.acc_width + hw.multiplier_width + SHIFT_WIDTH
    tile_descriptor = (_bits_for(max_inner // hw.array_rows) + _bits_for(max_outer // lanes)
                       + _bits_for(capacity["weight"]) + 4)
    affine_word = (gamma_width + BETA_WIDTH) * layernorm.lanes
    memory = OnChipMemory
    return (
        *(memory(f"scratchpad.{s.name}", s.depth, lanes * s.element.bits, 3,
                 "regions " + " ".join(b.name for b, r in mm.regions.items()
                                       if r.memory == s.index))
          for s in mm.memories),
        memory("gemm.weight_mem", params.staged_words, lanes * hw.data_width, 1,
               "staged keys and values of one head (the linears stream)"),
        memory("fetcher.buffer.storage", params.stream_words - 1,
               lanes * hw.data_width, 1, "weight stream buffer (AXI read data)"),
        memory("gemm.row_ptr_mem", capacity["row_ptr"], _bits_for(max_blocks + 1), 1,
               "BCSR row pointers"),
        memory("gemm.col_idx_mem", max_blocks, _bits_for(max_inner // hw.block_cols), 1,
               "BCSR block column indices"),
        memory("gemm.quant_mem", capacity["quant"], lanes * quant_record, 1,
               "bias, multiplier, shift per output"),
        memory("gemm.acc_mem", params.tokens, lanes * hw.acc_width, 1,
               "int32 partial sums of one output tile"),
        memory("gemm.tile_queue.storage", FIFO_DEPTH, tile_descriptor, 1,
               "tile descriptor queue"),
        memory("softmax.rows", softmax.slots * softmax.max_beats, softmax.lanes * hw.acc_width,
               2, "softmax row buffers"),
        memory("layernorm.rows", layernorm.slots * layernorm.max_beats,
               layernorm.lanes * RESIDUAL_BITS, 1, "LayerNorm row buffers"),
        memory("layernorm.affine_mem", layernorm.max_beats, affine_word, 1,
               "gamma / beta of the running LayerNorm"),
        memory("loader.program", params.program_capacity, INSTRUCTION_BITS, 1,
               "the layer program"),
        memory("loader.affine", 2 * layernorm.max_beats,
               _range_bits(layernorm.max_beats) + affine_word, 1,
               "gamma / beta of both LayerNorms"),
        memory("trace", params.program_capacity, TRACE_WIDTH, 1,
               "cycles of each instruction"),
        *(memory(f"{unit}_reader.queue.storage", FIFO_DEPTH, lanes * LANE_WIDTH, 1,
                 "row reader vector queue")
          for unit in ("layernorm", "softmax")),
        *(memory(f"epilogue.gelu_table_{lane}", 1 << hw.data_width, hw.data_width, 1,
                 "GELU of every int8 input (FC1's epilogue), one copy per lane")
          for lane in range(lanes)),
        memory("gather_stage.gather.row_mem", params.tokens, params.hidden * RESIDUAL_BITS, 1,
               "token gather rows"),
        memory("gather_stage.gather.index_mem", params.tokens, _range_bits(params.tokens), 1,
               "token gather kept indices"),
    )


def total_bytes(memories) -> float:
    """Bytes of all ``memories`` (``depth * width / 8`` summed)."""
    return sum(memory.bits for memory in memories) / 8


def total_dp16kd(memories) -> int:
    return sum(memory.dp16kd for memory in memories)


def memory_table(memories) -> str:
    """A text table: one line per memory, then the total in bytes and MiB."""
    lines = [f"{'memory':34} {'depth':>9} {'width':>6} {'reads':>5} {'bytes':>14} "
             f"{'DP16KD':>7}"]
    for memory in memories:
        lines.append(f"{memory.name:34} {memory.depth:9d} {memory.width:6d} "
                     f"{memory.read_ports:5d} {memory.bytes:14,.3f} {memory.dp16kd:7d}")
    total = total_bytes(memories)
    lines.append(f"{'total':34} {'':9} {'':6} {'':5} {total:14,.3f} "
                 f"{total_dp16kd(memories):7d}  ({total / 2**20:.3f} MiB)")
    return "\n".join(lines)


def region_table(config: AcceleratorConfig) -> str:
    """The scratchpad's regions (``sw.engine_params`` memory map, live ranges of the densest
    program from ``sw.scratchpad_regions``): memory, vector offset in it, vectors, bytes, live
    range; then the pairs of regions sharing vectors, and the scratchpad's bytes with every
    element in a 32-bit lane, packed by element type, and packed and shared."""
    from sw.scratchpad_regions import live_ranges, peak_live, program_of
    mm = EngineParams.from_config(config).memory_map
    ranges = live_ranges(program_of(config))
    lines = [f"{'region':10} {'memory':7} {'offset':>8} {'vectors':>8} {'bytes':>12} "
             f"{'live':>9}"]
    packed = {}
    for buffer, region in mm.regions.items():
        memory = mm.memory_of(buffer)
        _, offset = mm.split(region.base)
        packed[buffer] = region.vectors * mm.lanes * memory.element.bits // 8
        live = ranges[buffer]
        lines.append(f"{buffer.name:10} {memory.name:7} {offset:8d} {region.vectors:8d} "
                     f"{packed[buffer]:12,d} {live.first:4d}..{live.last:<3d}")
    shared = []
    for a, b in itertools.combinations(mm.regions, 2):
        ra, rb = mm.regions[a], mm.regions[b]
        if ra.memory == rb.memory and ra.base < rb.base + rb.vectors \
                and rb.base < ra.base + ra.vectors:
            shared.append(f"{a.name}/{b.name}")
    lines.append(f"{len(shared)} region pairs share vectors: {' '.join(shared)}")
    lanes32 = sum(r.vectors for r in mm.regions.values()) * mm.lanes * LANE_WIDTH // 8
    memories = sum(s.depth * mm.lanes * s.element.bits for s in mm.memories) // 8
    position, peak = peak_live(ranges, packed)
    for what, total in (("in 32-bit lanes", lanes32), ("packed", sum(packed.values())),
                        ("packed and shared", memories),
                        (f"live at once at most (instruction {position})", peak)):
        lines.append(f"scratchpad bytes {what}: {total:,d} ({total / 2**20:.3f} MiB)")
    return "\n".join(lines)


@exit_130_on_interrupt("python -m sw.onchip_memory")
def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog="python -m sw.onchip_memory",
                                   description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True,
                        help="a preset name (tiny, deit_b16, ...) or the path of a config JSON")
    parser.add_argument("--regions", action="store_true",
                        help="also the scratchpad's regions, packed sizes and live ranges")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        memories = onchip_memories(config)
    except (ConfigError, LayerEngineError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return BAD_INPUT
    print(f"{config.name}: layer engine on-chip memory (bytes = depth x width / 8)")
    print(memory_table(memories))
    if args.regions:
        print(region_table(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
