"""Every value the layer engine derives from its config, computed once: :class:`EngineParams`.

The exporter, the golden program, the cycle model, the loading plan, the hardware generator and
the co-simulation all take their derived numbers (words per block, role shapes, padded keys, the
FFN rounding step, the scratchpad's memory map, memory capacities, the engine's limits) from
``EngineParams.from_config(config)``, the way coreblocks' components take theirs from one
``GenParams``; nobody recomputes them. Pure Python: no Amaranth.

The scratchpad holds *vectors*: ``C = array_cols`` lanes, each read as a :data:`LANE_WIDTH`-bit
signed value. Each buffer of ``sw.isa.Buffer`` has an element type (:func:`element_types`:
int8 activations, int16 residual values, int32 scores, unsigned 8-bit Q0.8 probabilities), and
the buffers of one element type live in one physical memory of ``C`` lanes that wide
(:class:`ScratchMemory`); reads sign- or zero-extend the lanes back to 32 bits. The memories
share one flat vector address space: the top bits of an address (from ``offset_bits`` up) pick
the memory, the rest is the vector within it. Every buffer is a region of ``tokens`` rows; row
``r``, vector ``w`` of a buffer is at ``base + r * stride + w``, with ``stride`` the vectors of
the buffer's widest row. That is the GEMM engine's row-major activation and output layout, so a
GEMM reads its input from, and writes its output into, the regions directly; a head's columns of
Q, K, V or CONTEXT start ``head * head_dim / C`` vectors into the row. Scores and probabilities
are rows over the *keys*, padded to ``keys`` (a multiple of the block shape and the array)
because the key and value matrices become GEMM weights. Regions of one memory whose live ranges
in the densest program (``sw.scratchpad_regions``) never overlap share vectors: first fit,
largest region first.

>>> from sw.config import load_config
>>> params = EngineParams.from_config(load_config("tiny"))
>>> params.words_per_block, params.keys, params.ffn_step, params.memory_map.depth
(16, 24, 8, 6246)
>>> [(memory.name, memory.depth) for memory in params.memory_map.memories]
[('int16', 544), ('int8', 1088), ('int32', 102), ('uint8', 102)]
>>> params.role_shapes["fc1"], params.role_shapes["keys"]
((128, 64), (24, 16))
>>> EngineParams.from_config(load_config("tiny")) is params       # built once per config
True
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from sw.config import NORMS, AcceleratorConfig, ConfigError, block_words
from sw.golden.encoder_layer import PROBABILITY_BITS, RESIDUAL_BITS
from sw.isa import TENSOR_ROLES, Buffer
from sw.scratchpad_regions import first_fit, live_ranges, overwritten_reads, program_of
from sw.image.program import (EMBEDDING_SLOTS, HEAD_SLOTS, embedding_layernorm_program,
                              embedding_program, head_program, pooler_program)

__all__ = ["LANE_WIDTH", "ENGINE_TENSORS", "KEYS", "VALUES", "LayerEngineError",
           "ElementType", "element_types", "ScratchMemory", "Region", "LayerMemoryMap",
           "EngineParams"]

#: Bits of one scratchpad lane.
LANE_WIDTH = 32

#: The engine's tensor table in order: the program's GEMM tensor ids (``sw.isa.TENSOR_ROLES``),
#: then the two attention products, whose weights the engine stages per head.
ENGINE_TENSORS = (*TENSOR_ROLES, "keys", "values")
KEYS, VALUES = ENGINE_TENSORS.index("keys"), ENGINE_TENSORS.index("values")

_HIDDEN = (Buffer.INPUT, Buffer.LN1, Buffer.RESIDUAL1, Buffer.LN2, Buffer.OUTPUT)
_ATTENTION = (Buffer.Q, Buffer.K, Buffer.V, Buffer.CONTEXT)
_KEYS = (Buffer.SCORES, Buffer.PROBS)
_FFN = (Buffer.GELU,)
_RESIDUAL_STREAM = (Buffer.INPUT, Buffer.RESIDUAL1, Buffer.OUTPUT)


class LayerEngineError(ValueError):
    """The config cannot be built as a layer engine (the message names the field)."""


@dataclass(frozen=True, order=True)
class ElementType:
    """What one lane of a buffer holds: ``bits`` bits, two's complement when ``signed``."""

    bits: int
    signed: bool

    @property
    def name(self) -> str:
        return f"{'int' if self.signed else 'uint'}{self.bits}"


def element_types(config: AcceleratorConfig) -> dict:
    """``{Buffer: ElementType}``, the one table of what each buffer's lanes hold.

    The golden layer (``sw.golden.encoder_layer``) bounds every value: the residual stream
    (INPUT, RESIDUAL1, OUTPUT) is ``RESIDUAL_BITS`` signed; SCORES are the GEMM's raw
    ``acc_width``-bit sums; PROBS are ``softmax_int``'s unsigned Q0.``PROBABILITY_BITS``
    probabilities, saturated to ``[0, 2**PROBABILITY_BITS - 1]``; everything else is a
    requantized ``data_width``-bit activation (LayerNorm, GEMM, GELU outputs).
    """
    hw = config.hardware
    types = {buffer: ElementType(hw.data_width, True) for buffer in Buffer}
    types.update({buffer: ElementType(RESIDUAL_BITS, True) for buffer in _RESIDUAL_STREAM})
    types[Buffer.SCORES] = ElementType(hw.acc_width, True)
    types[Buffer.PROBS] = ElementType(PROBABILITY_BITS, False)
    return types


@dataclass(frozen=True)
class ScratchMemory:
    """One physical memory of the scratchpad: ``depth`` vectors of ``element`` lanes, at
    addresses ``index << offset_bits`` onwards of the flat address space."""

    index: int
    element: ElementType
    depth: int

    @property
    def name(self) -> str:
        return self.element.name


@dataclass(frozen=True)
class Region:
    """One buffer: ``rows`` rows of ``stride`` vectors from ``base`` (a flat address), in
    scratchpad memory ``memory`` (an index of ``LayerMemoryMap.memories``)."""

    base: int
    stride: int
    rows: int
    memory: int

    @property
    def vectors(self) -> int:
        return self.stride * self.rows

    def address(self, row: int, vector: int = 0) -> int:
        return self.base + row * self.stride + vector


@dataclass(frozen=True)
class LayerMemoryMap:
    """Regions of every buffer and the sizes the engine is built for."""

    lanes: int                 #: vector lanes (``array_cols``)
    tokens: int
    keys: int                  #: tokens padded for the key / value weights
    hidden: int
    head_dim: int
    heads: int
    ffn: int
    regions: dict              #: Buffer -> Region
    memories: tuple            #: ScratchMemory per element type, by index
    offset_bits: int           #: address bits within one memory; the bits above pick it

    @classmethod
    def from_config(cls, config: AcceleratorConfig) -> "LayerMemoryMap":
        """``EngineParams.from_config(config).memory_map``.

        Raises
        ------
        LayerEngineError
            If the config's shapes do not fit the engine's layout
            (``AcceleratorConfig.check_layer_engine``'s message).
        """
        return EngineParams.from_config(config).memory_map

    @property
    def depth(self) -> int:
        """Flat addresses of the scratchpad: one past its highest vector address."""
        return max(r.base + r.stride * r.rows for r in self.regions.values())

    def memory_of(self, buffer: Buffer) -> ScratchMemory:
        """The physical memory that holds ``buffer``'s region."""
        return self.memories[self.regions[buffer].memory]

    def split(self, address: int) -> tuple[int, int]:
        """``(memory index, vector within that memory)`` of a flat address."""
        return address >> self.offset_bits, address & ((1 << self.offset_bits) - 1)

    @property
    def max_stride(self) -> int:
        """Vectors of the widest buffer row."""
        return max(r.stride for r in self.regions.values())

    def head_offset(self, slot: int) -> int:
        """Vectors from a row's start to head slot ``slot``'s columns in Q, K, V, CONTEXT."""
        return slot * self.head_dim // self.lanes


@dataclass(frozen=True)
class EngineParams:
    """The derived parameters of ``config``'s layer engine (see the module docstring).

    Build it with :meth:`from_config`, which checks the engine's limits and returns the same
    object for equal configs.
    """

    config: AcceleratorConfig
    array_rows: int
    lanes: int                 #: ``array_cols``: lanes of a scratchpad vector
    block_rows: int
    block_cols: int
    words_per_block: int       #: weight words (of ``lanes`` operands) of one pruning block
    ffn_step: int              #: kept FFN neurons come in multiples of this (whole blocks)
    tokens: int
    keys: int                  #: tokens padded to whole blocks and array tiles
    hidden: int
    heads: int
    head_dim: int
    ffn: int
    role_shapes: dict          #: ENGINE_TENSORS name -> largest (out, in): the dense layer
    memory_map: LayerMemoryMap
    gemm_capacity: dict        #: words of each GEMM memory: weight, row_ptr, col_idx, quant
    program_capacity: int      #: instructions of the program memory
    staged_words: int          #: on-chip weight words: the staged keys and values
    word_bytes: int            #: bytes of one weight word: the AXI data bus
    burst_beats: int           #: beats (weight words) of one AXI read burst
    max_outstanding: int       #: AXI read bursts in flight
    stream_words: int          #: weight words of the on-chip weight stream buffer

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def from_config(config: AcceleratorConfig) -> "EngineParams":
        """The parameters of ``config``'s layer engine, derived once per config.

        Raises
        ------
        LayerEngineError
            If the config cannot be built as a layer engine
            (``AcceleratorConfig.check_layer_engine``'s message).
        """
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"Config must be an AcceleratorConfig, not {config!r}")
        try:
            config.check_layer_engine()
        except ConfigError as error:
            raise LayerEngineError(str(error)) from None
        m, hw = config.model, config.hardware
        lanes = hw.array_cols
        step = math.lcm(hw.block_rows, hw.block_cols, lanes)
        keys = math.ceil(m.tokens / step) * step
        attention = m.num_heads * m.head_dim
        role_shapes = {"q": (attention, m.hidden_size), "k": (attention, m.hidden_size),
                       "v": (attention, m.hidden_size), "o": (m.hidden_size, attention),
                       "fc1": (m.ffn_size, m.hidden_size), "fc2": (m.hidden_size, m.ffn_size),
                       "keys": (keys, m.head_dim), "values": (m.head_dim, keys)}
        capacity = {"weight": 0, "row_ptr": 0, "col_idx": 0, "quant": 0}
        for out_features, in_features in role_shapes.values():
            capacity["weight"] += out_features * in_features // lanes
            capacity["row_ptr"] += out_features // hw.block_rows + 1
            capacity["col_idx"] += (out_features // hw.block_rows) * (in_features // hw.block_cols)
            capacity["quant"] += out_features // lanes
        program = program_of(config)
        return EngineParams(
            config=config, array_rows=hw.array_rows, lanes=lanes, block_rows=hw.block_rows,
            block_cols=hw.block_cols,
            words_per_block=block_words(hw.block_rows, hw.block_cols, lanes),
            ffn_step=math.lcm(hw.block_rows, hw.block_cols), tokens=m.tokens, keys=keys,
            hidden=m.hidden_size, heads=m.num_heads, head_dim=m.head_dim, ffn=m.ffn_size,
            role_shapes=role_shapes, memory_map=_memory_map(config, keys),
            gemm_capacity=capacity, program_capacity=len(program) + 1,
            staged_words=sum(out * inner // lanes for out, inner in
                             (role_shapes["keys"], role_shapes["values"])),
            word_bytes=lanes * hw.data_width // 8, burst_beats=hw.axi_burst_beats,
            max_outstanding=hw.axi_max_outstanding,
            stream_words=hw.weight_stream_bytes // (lanes * hw.data_width // 8))

    @property
    def burst_bytes(self) -> int:
        """Bytes of one full AXI read burst: streamed weights start on a multiple of it."""
        return self.burst_beats * self.word_bytes

    @property
    def external_words(self) -> int:
        """Most weight words one layer's linears occupy in external memory: the dense linears'
        words, each padded to whole bursts (``hw.layer.loading.LoadPlan.external`` lays them
        out so)."""
        return sum(-(-(out * inner // self.lanes) // self.burst_beats) * self.burst_beats
                   for name, (out, inner) in self.role_shapes.items()
                   if name not in ("keys", "values"))

    @property
    def head_vectors(self) -> int:
        """Scratchpad vectors of one head's columns (a head slot's offset step)."""
        return self.head_dim // self.lanes

    @property
    def hidden_vectors(self) -> int:
        """Scratchpad vectors of one hidden-width row."""
        return self.hidden // self.lanes


def _memory_map(config: AcceleratorConfig, keys: int) -> LayerMemoryMap:
    m, lanes = config.model, config.hardware.array_cols
    widths = {**{b: m.hidden_size for b in _HIDDEN},
              **{b: m.num_heads * m.head_dim for b in _ATTENTION},
              **{b: keys for b in _KEYS}, **{b: m.ffn_size for b in _FFN}}
    strides = {buffer: math.ceil(widths[buffer] / lanes) for buffer in Buffer}
    types = element_types(config)
    elements = list(dict.fromkeys(types[buffer] for buffer in Buffer))   # first use decides
    ranges = live_ranges(program_of(config))
    offsets, depths = {}, []
    for element in elements:
        sizes = {b: strides[b] * m.tokens for b in Buffer if types[b] == element}
        offsets.update(first_fit(sizes, ranges))
        depths.append(max(offsets[b] + sizes[b] for b in sizes))
    offset_bits = max(1, max(depth - 1 for depth in depths).bit_length())
    memories = tuple(ScratchMemory(index, element, depth)
                     for index, (element, depth) in enumerate(zip(elements, depths)))
    regions = {}
    for buffer in Buffer:
        index = elements.index(types[buffer])
        regions[buffer] = Region(base=(index << offset_bits) + offsets[buffer],
                                 stride=strides[buffer], rows=m.tokens, memory=index)
    memory_map = LayerMemoryMap(lanes=lanes, tokens=m.tokens, keys=keys, hidden=m.hidden_size,
                                head_dim=m.head_dim, heads=m.num_heads, ffn=m.ffn_size,
                                regions=regions, memories=memories, offset_bits=offset_bits)
    # layers chain in place: a layer's OUTPUT is the next layer's INPUT, vector for vector, so
    # a whole encoder runs without moving its residual stream (first fit puts both at the
    # int16 memory's start, as their live ranges are disjoint; checked, not assumed)
    if regions[Buffer.OUTPUT] != regions[Buffer.INPUT]:
        raise LayerEngineError(f"{config.name}: the scratchpad's memory map puts OUTPUT at "
                               f"{regions[Buffer.OUTPUT]} and INPUT at "
                               f"{regions[Buffer.INPUT]}: layers cannot chain in place")
    # the map is laid out by the pre-LN program; every norm's densest program must run on it
    # (a few milliseconds for deit_b16), so the engine does not depend on ``model.norm``
    for norm in NORMS:
        problems = overwritten_reads(program_of(config, norm), memory_map)
        if problems:
            raise LayerEngineError(f"{config.name}: the scratchpad's memory map is unsafe for "
                                   f"a {norm}-LN layer: {problems[0]}")
    # and for the programs around the encoder (sw.golden.model_stages)
    stages = [(f"embedding ({role})", embedding_program(role), (rows, Buffer.RESIDUAL1),
               Buffer.OUTPUT) for role, (_, rows) in EMBEDDING_SLOTS.items()]
    stages += [(f"head ({role})", head_program(role), (Buffer.INPUT,), logits)
               for role, (_, _, logits) in HEAD_SLOTS.items()]
    stages += [("embedding LayerNorm", embedding_layernorm_program(), (Buffer.RESIDUAL1,),
                Buffer.OUTPUT), ("pooler", pooler_program(), (Buffer.INPUT,), Buffer.Q)]
    for what, program, loaded, result in stages:
        problems = overwritten_reads(program, memory_map, loaded, result)
        if problems:
            raise LayerEngineError(f"{config.name}: the scratchpad's memory map is unsafe for "
                                   f"the {what} program: {problems[0]}")
    return memory_map
