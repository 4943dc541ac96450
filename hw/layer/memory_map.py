"""Where each on-chip buffer of the layer engine lives in its scratchpad, from the config alone.

The scratchpad is one memory of *vectors*: ``C = array_cols`` lanes of 32-bit signed values
(int8 activations, int16 residual values, int32 scores and Q0.8 probabilities all sign- or
zero-extended). Every buffer of ``sw.image.program.Buffer`` is a region of ``tokens`` rows;
row ``r``, vector ``w`` of a buffer is at ``base + r * stride + w``, with ``stride`` the
vectors of the buffer's widest row. That is the GEMM engine's row-major activation and output
layout, so a GEMM reads its input from, and writes its output into, the regions directly; a
head's columns of Q, K, V or CONTEXT start ``head * head_dim / C`` vectors into the row.

Scores and probabilities are rows over the *keys*, padded to ``keys`` (a multiple of the
block shape and the array) because the key and value matrices become GEMM weights.
Pure Python: the engine generator, the driver and the cycle model all import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sw.config import AcceleratorConfig, ConfigError
from sw.cycle_model.layer_engine import padded_keys
from sw.image.program import Buffer

#: Bits of one scratchpad lane.
LANE_WIDTH = 32

_HIDDEN = (Buffer.INPUT, Buffer.LN1, Buffer.ATTN, Buffer.RESIDUAL1, Buffer.LN2, Buffer.FC2,
           Buffer.OUTPUT)
_ATTENTION = (Buffer.Q, Buffer.K, Buffer.V, Buffer.CONTEXT)
_KEYS = (Buffer.SCORES, Buffer.PROBS)
_FFN = (Buffer.FC1, Buffer.GELU)


class LayerEngineError(ValueError):
    """The config cannot be built as a layer engine (the message names the field)."""


@dataclass(frozen=True)
class Region:
    """One buffer: ``rows`` rows of ``stride`` vectors from ``base``."""

    base: int
    stride: int
    rows: int

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

    @classmethod
    def from_config(cls, config: AcceleratorConfig) -> "LayerMemoryMap":
        """The map of ``config``.

        Raises
        ------
        LayerEngineError
            If the config's shapes do not fit the engine's layout
            (``AcceleratorConfig.check_layer_engine``'s message).
        """
        try:
            config.check_layer_engine()          # the engine's limits live with the config's
        except ConfigError as error:
            raise LayerEngineError(str(error)) from None
        m, c = config.model, config.hardware.array_cols
        keys = padded_keys(config)
        widths = {**{b: m.hidden_size for b in _HIDDEN},
                  **{b: m.num_heads * m.head_dim for b in _ATTENTION},
                  **{b: keys for b in _KEYS}, **{b: m.ffn_size for b in _FFN}}
        regions, base = {}, 0
        for buffer in Buffer:
            stride = math.ceil(widths[buffer] / c)
            regions[buffer] = Region(base=base, stride=stride, rows=m.tokens)
            base += stride * m.tokens
        return cls(lanes=c, tokens=m.tokens, keys=keys, hidden=m.hidden_size,
                   head_dim=m.head_dim, heads=m.num_heads, ffn=m.ffn_size, regions=regions)

    @property
    def depth(self) -> int:
        """Vectors of the scratchpad."""
        return max(r.base + r.stride * r.rows for r in self.regions.values())

    def head_offset(self, slot: int) -> int:
        """Vectors from a row's start to head slot ``slot``'s columns in Q, K, V, CONTEXT."""
        return slot * self.head_dim // self.lanes
