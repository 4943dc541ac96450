"""Golden integer token pruning: top-k selection on the CLS attention row and the fused token.

This is the arithmetic the ``TokenGather`` unit reproduces bit for bit (``docs/numerics.md``,
"Token selection and fusion"). The float training-time version is ``sw.pruning.tokens``; both
take their keep counts from :func:`keep_count`, so the shapes the hardware is generated for are
the shapes the model was fine-tuned with.

A layer that prunes tokens, after its attention and first residual add (EViT's place):

1. ``score[j] = sum over the kept heads h of probs[h, 0, j]``: the CLS row of the unsigned Q0.8
   attention probabilities, summed (not averaged: the same ranking, no division).
2. The first ``protected`` tokens (CLS, and DeiT's distillation token) are always kept. Of the
   others (the candidates), the ``keep`` with the highest score are kept; equal scores go to the
   lower token index.
3. Kept rows leave in their original order (protected tokens first, then the kept candidates by
   increasing index), followed, with ``fuse``, by one fused token: the average of the dropped
   rows weighted by ``w[j] = score[j] + 1``, computed as ``requantize(sum(w * x), 2**K //
   sum(w), K)`` with ``K = FUSION_RECIP_BITS`` (a reciprocal, then one multiply per element).
   The ``+ 1`` keeps the weights from summing to zero when every dropped token's probabilities
   round to 0 (then the average is an unweighted mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sw.numerics import requantize

#: ``K``: fraction bits of the fused token's reciprocal ``2**K // sum(w)``.
FUSION_RECIP_BITS = 46
#: Largest weight sum for which the reciprocal keeps the fused token's error below 2**-8 LSB of
#: a 16-bit row and ``sum(w * x) * recip`` within int64 (``2**15 * 2**K < 2**62``).
FUSION_MAX_WEIGHT_SUM = (1 << 23) - 1


def keep_count(candidates: int, keep_rate: float) -> int:
    """Candidates a layer keeps at ``keep_rate``: ``ceil(keep_rate * candidates)``, at least 1.

    The product is rounded to 9 decimals first, so ``0.28 * 25`` gives 7, not 8.

    Raises
    ------
    ValueError
        If ``candidates`` is not a positive integer or ``keep_rate`` is not in ``(0, 1]``.
    """
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise ValueError(f"Candidate tokens must be a positive integer, not {candidates!r}")
    if not (isinstance(keep_rate, (int, float)) and 0.0 < keep_rate <= 1.0):
        raise ValueError(f"Token keep rate must lie in (0, 1], not {keep_rate!r}")
    return max(1, min(candidates, math.ceil(round(keep_rate * candidates, 9))))


@dataclass(frozen=True)
class TokenPruning:
    """What one layer's token gather does.

    Attributes
    ----------
    keep : int
        Candidate tokens kept (``keep_count`` of the candidates and the keep rate).
    protected : int
        Leading tokens always kept: 1 (CLS) for ViT, 2 (CLS and distillation) for DeiT.
    fuse : bool
        Append the fused token of the dropped candidates (EViT), or just drop them.
    """

    keep: int
    protected: int = 1
    fuse: bool = True

    def __post_init__(self):
        for name, low in (("keep", 1), ("protected", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Token pruning {name} must be an integer >= {low}, "
                                 f"not {value!r}")

    def output_tokens(self, tokens: int) -> int:
        """Rows after the gather of a ``tokens``-row input."""
        self.check(tokens)
        dropped = tokens - self.protected - self.keep
        return self.protected + self.keep + (1 if self.fuse and dropped > 0 else 0)

    def check(self, tokens: int) -> None:
        """Raise ``ValueError`` unless a ``tokens``-row input has room for this gather."""
        if self.protected + self.keep > tokens:
            raise ValueError(f"Token pruning keeps {self.protected} protected + {self.keep} "
                             f"tokens, more than the {tokens} the layer has")


def cls_attention_scores(probs) -> np.ndarray:
    """``(..., h, T, T)`` Q0.8 probabilities -> ``(..., T)`` CLS-row scores summed over heads."""
    probs = np.asarray(probs, dtype=np.int64)
    if probs.ndim < 3 or probs.shape[-1] != probs.shape[-2]:
        raise ValueError(f"Attention probabilities must have shape (..., heads, T, T), not "
                         f"{probs.shape}")
    return probs[..., 0, :].sum(axis=-2)


def select_tokens(scores, pruning: TokenPruning) -> np.ndarray:
    """Indices ``(..., protected + keep)`` of the kept tokens, in increasing order.

    The ``keep`` candidates with the highest score; equal scores go to the lower index.
    """
    scores = np.asarray(scores, dtype=np.int64)
    tokens = scores.shape[-1]
    pruning.check(tokens)
    candidates = scores[..., pruning.protected:]
    # A stable sort of the negated scores puts equal scores in increasing index order.
    order = np.argsort(-candidates, axis=-1, kind="stable")[..., :pruning.keep]
    kept = np.sort(order, axis=-1) + pruning.protected
    protected = np.broadcast_to(np.arange(pruning.protected),
                                (*scores.shape[:-1], pruning.protected))
    return np.concatenate([protected, kept], axis=-1)


def keep_mask(scores, pruning: TokenPruning) -> np.ndarray:
    """Boolean ``(..., T)``: True for the tokens :func:`select_tokens` keeps."""
    scores = np.asarray(scores, dtype=np.int64)
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, select_tokens(scores, pruning), True, axis=-1)
    return mask


def fusion_weights(scores, mask) -> np.ndarray:
    """``score + 1`` for the dropped tokens, 0 for the kept ones (``(..., T)``)."""
    return np.where(mask, 0, np.asarray(scores, dtype=np.int64) + 1)


def fuse_tokens(x, scores, mask, *, out_width: int = 16) -> np.ndarray:
    """The fused token ``(..., d)`` of the rows of ``x`` ``(..., T, d)`` that ``mask`` drops.

    Raises
    ------
    ValueError
        If no token is dropped, or the weights sum beyond ``FUSION_MAX_WEIGHT_SUM``.
    """
    x = np.asarray(x, dtype=np.int64)
    weights = fusion_weights(scores, mask)
    total = weights.sum(axis=-1, keepdims=True)
    if total.size and (total.min() < 1 or total.max() > FUSION_MAX_WEIGHT_SUM):
        raise ValueError(f"Fusion weight sums must lie in 1..{FUSION_MAX_WEIGHT_SUM} (at least "
                         f"one dropped token), found {int(total.min())}..{int(total.max())}")
    accumulated = (weights[..., :, None] * x).sum(axis=-2)          # exact in int64
    reciprocal = (1 << FUSION_RECIP_BITS) // total
    return requantize(accumulated, reciprocal, FUSION_RECIP_BITS, out_width=out_width)


def gather_tokens(x, probs, pruning: TokenPruning, *, out_width: int = 16,
                  trace: dict | None = None) -> np.ndarray:
    """Apply ``pruning`` to rows ``x`` ``(..., T, d)`` with the layer's probabilities
    ``(..., h, T, T)``; returns ``(..., pruning.output_tokens(T), d)``.

    ``trace``: if given, receives ``token_scores``, ``kept_tokens`` and (with fusion)
    ``fused_token``.
    """
    x = np.asarray(x, dtype=np.int64)
    scores = cls_attention_scores(probs)
    if scores.shape != x.shape[:-1]:
        raise ValueError(f"Attention of shape {np.shape(probs)} does not match rows of shape "
                         f"{x.shape}")
    return gather_by_scores(x, scores, pruning, out_width=out_width, trace=trace)


def gather_by_scores(x, scores, pruning: TokenPruning, *, out_width: int = 16,
                     trace: dict | None = None) -> np.ndarray:
    """:func:`gather_tokens` from the summed CLS scores ``(..., T)`` (what ``TokenGather``
    is loaded with)."""
    x = np.asarray(x, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.int64)
    kept = select_tokens(scores, pruning)
    record = trace if trace is not None else {}
    record.update(token_scores=scores, kept_tokens=kept)
    rows = np.take_along_axis(x, kept[..., None], axis=-2)
    if not pruning.fuse or pruning.output_tokens(x.shape[-2]) == kept.shape[-1]:
        return rows
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, kept, True, axis=-1)
    fused = record["fused_token"] = fuse_tokens(x, scores, mask, out_width=out_width)
    return np.concatenate([rows, fused[..., None, :]], axis=-2)
