"""Cycles of one encoder layer per unit, dense or pruned: the layer engine's model, by unit.

``python -m sw.cycle_model.layer --config deit_b16 --kept-heads 7 --density 0.25`` prints where
a layer's cycles go. A :class:`LayerPruning` (heads, FFN neurons, tokens, block density or
explicit block masks) becomes the layer program the exporter would write
(``sw.image.program.layer_program``) and random-free block masks (:func:`spread_mask`), and
``sw.cycle_model.layer_engine.program_cycles`` (exact: the co-simulation of the generated
layer engine checks it instruction by instruction) gives each instruction's cycles, summed
here per unit:

====================  =========================================================================
unit                  instructions (each with its fetch and decode)
====================  =========================================================================
layernorm1            LAYERNORM with the first constant set (gamma / beta load included): of
                      the ``T`` input rows before Q, K, V (pre-LN), or of the ``T'`` rows
                      after the attention's residual add (post-LN, BERT)
q, k, v               the GEMM engine on the kept heads' ``(h' * dh) x d`` block-sparse weights
attention_scores      per kept head: stage ``K_h`` as a dense weight, then ``Q_h K_h^T``
softmax               per kept head, ``T`` rows of ``T`` scores
attention_context     per kept head: stage ``V_h^T``, then ``P_h V_h``
o                     GEMM of the ``d x (h' * dh)`` weight; its epilogue adds the layer input
token_gather          when the layer keeps ``T' < T`` rows: scores and rows into the
                      ``TokenGather`` unit, its job, the rows back
layernorm2            the second set, on ``T'`` rows: before FC1 (pre-LN), or of the FFN's
                      residual sum, the layer output (post-LN)
fc1, fc2              the FFN on ``T'`` rows and the kept ``f'`` neurons; GELU is FC1's
                      epilogue, the second residual add FC2's (no cycles of their own)
control               the END instruction
====================  =========================================================================

Head removal shrinks q/k/v/o and the attention rows; block density shrinks only the six
weight GEMMs; token pruning shrinks everything after the gather. LayerNorm does not shrink with
heads or density, and the attention products shrink with heads only.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field

import numpy as np

from sw.config import AcceleratorConfig, load_config
from sw.cycle_model.layer_engine import LayerShapes, program_cycles
from sw.engine_params import EngineParams
from sw.image.program import layer_program
from sw.isa import TENSOR_ROLES

LINEARS = TENSOR_ROLES

#: Units of the breakdown, in a pre-LN layer's execution order (the engine model's unit names).
UNITS = ("layernorm1", "q", "k", "v", "attention_scores", "softmax", "attention_context",
         "o", "token_gather", "layernorm2", "fc1", "fc2", "control")


@dataclass(frozen=True)
class LayerPruning:
    """What pruning left of one layer.

    Attributes
    ----------
    kept_heads : int
        Attention heads left after head removal.
    kept_ffn : int
        FFN neurons left (rows of FC1, columns of FC2).
    tokens : int
        Tokens entering the layer.
    kept_tokens : int
        Tokens left after this layer's token gather (``tokens`` when it prunes none), the fused
        token included.
    protected_tokens : int
        Leading tokens the gather always keeps (1: CLS; 2 for DeiT's CLS and distillation).
    fused_token : bool
        Whether one of the ``kept_tokens`` is the fused token of the dropped ones.
    block_density : float
        Stored-block fraction of each remaining weight, when ``masks`` does not give it.
    masks : dict
        Optional exact block masks per linear (``q k v o fc1 fc2``), shaped for the remaining
        weight in the config's block shape.
    """

    kept_heads: int
    kept_ffn: int
    tokens: int
    kept_tokens: int
    block_density: float = 1.0
    protected_tokens: int = 1
    fused_token: bool = True
    masks: dict = field(default_factory=dict)

    @classmethod
    def dense(cls, config: AcceleratorConfig) -> "LayerPruning":
        m = config.model
        return cls(kept_heads=m.num_heads, kept_ffn=m.ffn_size, tokens=m.tokens,
                   kept_tokens=m.tokens)


def spread_mask(rows: int, cols: int, density: float) -> np.ndarray:
    """A block mask with ``round(density * rows * cols)`` blocks spread as evenly as possible
    over the block rows (no block row empty unless there are fewer blocks than rows)."""
    total = round(density * rows * cols)
    per_row = np.full(rows, total // rows)
    per_row[: total % rows] += 1
    return np.arange(cols)[None, :] < per_row[:, None]


@dataclass(frozen=True)
class LayerCycles:
    """Cycles per unit of one layer, in execution order, and the multiply-accumulates."""

    units: dict
    macs: int

    @property
    def total(self) -> int:
        return sum(self.units.values())


def layer_cycles(config: AcceleratorConfig, pruning: LayerPruning) -> LayerCycles:
    """Cycles of one encoder layer of ``config`` pruned as ``pruning``.

    Raises
    ------
    ValueError
        If the config exceeds the layer engine's limits (a ``ConfigError`` from
        ``AcceleratorConfig.check_layer_engine``), or the pruning does not fit the model (more
        heads, neurons or tokens than it has, a kept FFN width or head width the block shape
        does not divide, a mask of the wrong shape).
    """
    config.check_layer_engine()              # its ConfigError, before the params' own error
    params = EngineParams.from_config(config)
    m, hw = config.model, config.hardware
    p = pruning
    checks = [("kept_heads", p.kept_heads, 1, m.num_heads), ("kept_ffn", p.kept_ffn, 1, m.ffn_size),
              ("tokens", p.tokens, 1, m.tokens), ("kept_tokens", p.kept_tokens, 1, p.tokens)]
    for name, value, low, high in checks:
        if not low <= value <= high:
            raise ValueError(f"{name} ({value}) must lie in {low}..{high}")
    if not 0.0 <= p.block_density <= 1.0:
        raise ValueError(f"block_density ({p.block_density}) must lie in 0..1")
    if p.kept_ffn % params.ffn_step:
        raise ValueError(f"kept_ffn ({p.kept_ffn}) must be a multiple of the "
                         f"{hw.block_rows}x{hw.block_cols} block")
    attn = p.kept_heads * m.head_dim
    shapes = {"q": (attn, m.hidden_size), "k": (attn, m.hidden_size),
              "v": (attn, m.hidden_size), "o": (m.hidden_size, attn),
              "fc1": (p.kept_ffn, m.hidden_size), "fc2": (m.hidden_size, p.kept_ffn)}
    masks = {}
    for name in LINEARS:
        out_features, in_features = shapes[name]
        grid = (out_features // hw.block_rows, in_features // hw.block_cols)
        mask = p.masks.get(name)
        mask = spread_mask(*grid, p.block_density) if mask is None else np.asarray(mask, bool)
        if mask.shape != grid:
            raise ValueError(f"mask of {name} has shape {mask.shape}, expected {grid}")
        masks[name] = mask
    if p.kept_tokens < p.tokens and p.kept_tokens - p.protected_tokens - int(p.fused_token) < 1:
        raise ValueError(f"kept_tokens ({p.kept_tokens}) leaves no candidate beside "
                         f"{p.protected_tokens} protected tokens")
    program = layer_program(range(p.kept_heads), tokens=p.tokens, token_keep=p.kept_tokens,
                            protected=p.protected_tokens, fuse=p.fused_token, norm=m.norm)
    instructions = program_cycles(config, program, LayerShapes(
        tokens=p.tokens, ffn=p.kept_ffn, keys=params.keys, masks=masks))
    units = {name: 0 for name in UNITS}
    for entry in instructions:
        units[entry.unit] += entry.cycles
    return LayerCycles(units=units, macs=sum(entry.macs for entry in instructions))


def breakdown_table(config: AcceleratorConfig, pruning: LayerPruning) -> str:
    """Dense vs pruned cycles per unit, with shares and speed-ups, as text."""
    dense = layer_cycles(config, LayerPruning.dense(config))
    pruned = layer_cycles(config, pruning)
    hw = config.hardware
    lines = [f"{config.name}: {hw.array_rows}x{hw.array_cols} array, {hw.block_rows}x"
             f"{hw.block_cols} blocks, lanes softmax/layernorm "
             f"{hw.softmax_lanes}/{hw.layernorm_lanes}",
             f"pruned: {pruning.kept_heads}/{config.model.num_heads} heads, "
             f"{pruning.kept_ffn}/{config.model.ffn_size} FFN neurons, block density "
             f"{pruning.block_density:.2f}, tokens {pruning.tokens} -> {pruning.kept_tokens}",
             f"{'unit':<20} {'dense':>12} {'share':>6} {'pruned':>12} {'share':>6} "
             f"{'speed-up':>8}"]
    for unit in dense.units:
        d, q = dense.units[unit], pruned.units[unit]
        speedup = f"{d / q:.2f}" if d and q else "-"        # a unit absent on one side
        lines.append(f"{unit:<20} {d:>12,} {d / dense.total:>6.1%} {q:>12,} "
                     f"{q / pruned.total:>6.1%} {speedup:>8}")
    lines.append(f"{'total':<20} {dense.total:>12,} {'':>6} {pruned.total:>12,} {'':>6} "
                 f"{dense.total / pruned.total:>8.2f}")
    lines.append(f"MACs: dense {dense.macs:,}, pruned {pruned.macs:,} "
                 f"(reduction {dense.macs / pruned.macs:.2f}x)")
    return "\n".join(lines)


def _command_line_pruning(config: AcceleratorConfig, args: argparse.Namespace) -> LayerPruning:
    """The :class:`LayerPruning` the options describe; ``ValueError`` naming the option that is
    out of range (a NaN is out of every range)."""
    m = config.model
    kept_heads = m.num_heads if args.kept_heads is None else args.kept_heads
    if not 1 <= kept_heads <= m.num_heads:
        raise ValueError(f"--kept-heads must lie in 1..{m.num_heads} (the config's num_heads), "
                         f"not {kept_heads}")
    kept_ffn = args.kept_ffn
    if not 0 < kept_ffn <= m.ffn_size or (kept_ffn > 1 and not kept_ffn.is_integer()):
        raise ValueError(f"--kept-ffn must be a fraction in (0, 1] or a neuron count in "
                         f"2..{m.ffn_size}, not {kept_ffn:g}")
    block = EngineParams.from_config(config).ffn_step
    if kept_ffn <= 1:
        fraction, kept_ffn = kept_ffn, round(kept_ffn * m.ffn_size / block) * block
        if kept_ffn == 0:
            raise ValueError(f"--kept-ffn {fraction:g} keeps no whole block of {block} of the "
                             f"{m.ffn_size} FFN neurons")
    else:
        kept_ffn = int(kept_ffn)
    if not 0 <= args.density <= 1:
        raise ValueError(f"--density must lie in 0..1, not {args.density:g}")
    if not 0 < args.keep_rate <= 1:
        raise ValueError(f"--keep-rate must lie in (0, 1], not {args.keep_rate:g}")
    return LayerPruning(kept_heads=kept_heads, kept_ffn=kept_ffn, tokens=m.tokens,
                        kept_tokens=max(1, math.ceil(args.keep_rate * m.tokens)),
                        block_density=args.density)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sw.cycle_model.layer",
                                     description="Cycles per unit of one encoder layer.")
    parser.add_argument("--config", default="deit_b16", help="preset name or config JSON path")
    parser.add_argument("--kept-heads", type=int, help="heads left (default: all)")
    parser.add_argument("--kept-ffn", type=float, default=1.0,
                        help="FFN neurons left: a count, or a fraction when <= 1")
    parser.add_argument("--density", type=float, default=1.0,
                        help="stored-block fraction of the remaining weights")
    parser.add_argument("--keep-rate", type=float, default=1.0,
                        help="fraction of tokens this layer keeps (CLS included)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        config.check_layer_engine()
        pruning = _command_line_pruning(config, args)
        print(breakdown_table(config, pruning))
    except ValueError as error:                 # ConfigError included
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
