"""Score-to-mask binarizers of movement pruning (emmental) and block pruning (nn_pruning).

Every mask function here shares one signature, so a registry can dispatch on the method name::

    mask_fn(scores, threshold, *, weight=None, min_fraction=0.0, training=False, copies=1)
        -> Tensor

``scores`` is a learned score tensor (any shape; for block pruning one score per block) and the
returned mask has the same shape and dtype. The learned methods (``topK``, ``threshold``,
``sigmoied_threshold``) pass the gradient straight through the hard mask to the scores
(``d mask / d scores := 1``), which is what makes the scores "movement" scores. ``l0`` is a
differentiable hard-concrete gate. ``magnitude`` ignores ``scores`` and masks ``weight``.

Rounding and tie-breaking (pinned by tests):

* ``topK`` and ``magnitude`` keep ``int(threshold * numel)`` entries, i.e. the product is
  truncated towards zero as nn_pruning's ``TopKBinarizer`` does (``threshold=0.29`` of 10
  entries keeps 2, not 3). Ties are broken by position (a stable sort: the earlier flat index
  wins), so a constant score tensor keeps its first entries.
* ``threshold`` and ``sigmoied_threshold`` keep entries strictly above the threshold.
* ``copies``: for ``1d`` / ``1d_alt`` scores (one per row or column), nn_pruning binarizes the
  score vector expanded to a matrix, each score repeated ``copies`` times (the other dimension
  of the weight). Only the ``linear_min_parameters`` floor depends on it
  (:func:`min_kept_entries`); the other methods ignore it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "HARD_CONCRETE_BETA",
    "HARD_CONCRETE_LEFT",
    "HARD_CONCRETE_RIGHT",
    "l0_expected_gates",
    "l0_mask",
    "magnitude_mask",
    "min_kept_entries",
    "sigmoied_threshold_mask",
    "threshold_mask",
    "top_k_mask",
]

# Hard-concrete stretch interval (l, r) and temperature beta of Louizos et al. (2018), the values
# nn_pruning hard-codes for its "l0" method.
HARD_CONCRETE_LEFT = -0.1
HARD_CONCRETE_RIGHT = 1.1
HARD_CONCRETE_BETA = 2.0 / 3.0

# Clamp for the uniform noise so that log(u) and log(1 - u) stay finite.
_NOISE_EPS = 1e-4


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1], not {value!r}")


def _top_entries(values: Tensor, count: int) -> Tensor:
    """0/1 tensor shaped like ``values`` with ones at its ``count`` largest entries.

    Stable descending sort, so ties go to the lower flat index.
    """
    flat = values.detach().flatten()
    order = torch.sort(flat, descending=True, stable=True).indices
    keep = torch.zeros_like(flat)
    keep[order[:count]] = 1
    return keep.view_as(values)


def min_kept_entries(numel: int, min_fraction: float, *, copies: int = 1) -> int:
    """Number of entries a threshold mask must keep at least, as nn_pruning counts it.

    nn_pruning's ``ThresholdBinarizer`` floors its matrix of ``N = numel * copies`` entries at
    ``nb_min = int(min_fraction * N) + 1`` (none when ``min_fraction`` is zero): when fewer pass,
    it keeps the entries strictly above the ``(N - nb_min)``-th smallest. With ``copies = 1``
    and distinct scores that is ``nb_min`` entries (a 0.5 % floor on a 100-entry tensor keeps
    1). With ``copies > 1`` (a ``1d`` / ``1d_alt`` score vector, every score repeated along the
    other dimension) the strict ``>`` drops the partly covered row: ``nb_min // copies`` rows
    (a 0.005 floor on 3072 rows of 768 columns: ``11797 // 768 = 15`` rows, not 16). Never more
    than ``numel`` (where nn_pruning, floored at every entry, keeps one fewer).
    """
    _check_fraction("min_fraction", min_fraction)
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ValueError(f"copies must be a positive integer, not {copies!r}")
    if min_fraction == 0:
        return 0
    return min((int(min_fraction * numel * copies) + 1) // copies, numel)


class _TopKBinarizer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores: Tensor, keep_fraction: float) -> Tensor:
        return _top_entries(scores, int(keep_fraction * scores.numel()))

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        return grad_output, None


class _ThresholdBinarizer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores: Tensor, threshold: float, sigmoid: bool, min_count: int) -> Tensor:
        compared = torch.sigmoid(scores) if sigmoid else scores
        mask = (compared > threshold).to(scores.dtype)
        if mask.sum().item() < min_count:
            # Too sparse: fall back to the top-scoring entries (nn_pruning's linear_min_parameters).
            mask = _top_entries(scores, min_count)
        return mask

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        return grad_output, None, None, None


def top_k_mask(
    scores: Tensor, threshold: float, *, weight: Tensor | None = None,
    min_fraction: float = 0.0, training: bool = False, copies: int = 1,
) -> Tensor:
    """Keep the top ``threshold`` fraction of ``scores`` (``topK``); straight-through gradient.

    ``threshold`` is the fraction *kept*: ``1.0`` keeps everything, ``0.25`` keeps
    ``int(0.25 * numel)`` entries. ``weight``, ``min_fraction``, ``training`` and ``copies``
    are unused (nn_pruning's ``int(t * numel * copies)`` entries of an expanded ``1d`` matrix
    cover ``int(t * numel)`` whole rows plus a partial one; the partial row is not kept here).

    Raises
    ------
    ValueError
        If ``threshold`` is not in [0, 1].
    """
    _check_fraction("topK threshold (fraction kept)", threshold)
    return _TopKBinarizer.apply(scores, float(threshold))


def threshold_mask(
    scores: Tensor, threshold: float, *, weight: Tensor | None = None,
    min_fraction: float = 0.0, training: bool = False, copies: int = 1,
) -> Tensor:
    """Keep ``scores > threshold`` (``threshold``, hard); straight-through gradient.

    If fewer than :func:`min_kept_entries` ``(numel, min_fraction, copies=copies)`` entries pass,
    the mask keeps that many top-scoring entries instead (nn_pruning applies
    ``linear_min_parameters`` to both threshold methods). ``weight`` and ``training`` are unused.
    """
    return _ThresholdBinarizer.apply(
        scores, float(threshold), False,
        min_kept_entries(scores.numel(), min_fraction, copies=copies))


def sigmoied_threshold_mask(
    scores: Tensor, threshold: float, *, weight: Tensor | None = None,
    min_fraction: float = 0.0, training: bool = False, copies: int = 1,
) -> Tensor:
    """Keep ``sigmoid(scores) > threshold`` (``sigmoied_threshold``); straight-through gradient.

    ``threshold`` lives in [0, 1]. The ``min_fraction`` floor (``linear_min_parameters``) works
    as in :func:`threshold_mask`. ``weight`` and ``training`` are unused.

    Raises
    ------
    ValueError
        If ``threshold`` is not in [0, 1].
    """
    _check_fraction("sigmoied_threshold threshold", threshold)
    return _ThresholdBinarizer.apply(
        scores, float(threshold), True,
        min_kept_entries(scores.numel(), min_fraction, copies=copies))


def l0_mask(
    scores: Tensor, threshold: float = 0.0, *, weight: Tensor | None = None,
    min_fraction: float = 0.0, training: bool = False, copies: int = 1,
) -> Tensor:
    """Hard-concrete gates with ``log_alpha = scores`` (``l0``); differentiable, values in [0, 1].

    In training a gate is ``clamp(sigmoid((log u - log(1 - u) + log_alpha) / beta) * (r - l) + l,
    0, 1)`` with fresh ``u ~ U(0, 1)`` (drawn from torch's global generator). At eval it is the
    deterministic ``clamp(sigmoid(log_alpha) * (r - l) + l, 0, 1)``, as in nn_pruning. The gates
    are not binary: a gate strictly between 0 and 1 scales its weight. ``threshold``, ``weight``,
    ``min_fraction`` and ``copies`` are unused (sparsity is driven by the L0 penalty, not a
    threshold).
    """
    if training:
        noise = torch.rand_like(scores).clamp(_NOISE_EPS, 1.0 - _NOISE_EPS)
        gate = torch.sigmoid((noise.log() - (1.0 - noise).log() + scores) / HARD_CONCRETE_BETA)
    else:
        gate = torch.sigmoid(scores)
    stretched = gate * (HARD_CONCRETE_RIGHT - HARD_CONCRETE_LEFT) + HARD_CONCRETE_LEFT
    return stretched.clamp(0.0, 1.0)


def l0_expected_gates(scores: Tensor) -> Tensor:
    """Probability that each hard-concrete gate is non-zero.

    ``P(gate != 0) = sigmoid(log_alpha - beta * log(-l / r))``.

    Its sum is the expected L0 norm of the gates (the ``l0`` regularization term).
    """
    shift = HARD_CONCRETE_BETA * math.log(-HARD_CONCRETE_LEFT / HARD_CONCRETE_RIGHT)
    return torch.sigmoid(scores - shift)


def magnitude_mask(
    scores: Tensor | None, threshold: float, *, weight: Tensor | None = None,
    min_fraction: float = 0.0, training: bool = False, copies: int = 1,
) -> Tensor:
    """Keep the top ``threshold`` fraction of ``|weight|`` (``magnitude``); no gradient.

    ``scores`` is ignored (may be ``None``): the criterion is the weight itself, entry by entry,
    so block shapes do not apply (nn_pruning skips block expansion for this method). The mask is
    detached: magnitude pruning learns nothing. ``copies`` is unused.

    Raises
    ------
    ValueError
        If ``weight`` is missing or ``threshold`` is not in [0, 1].
    """
    if weight is None:
        raise ValueError("magnitude pruning needs the weight; pass weight=")
    _check_fraction("magnitude threshold (fraction kept)", threshold)
    with torch.no_grad():
        return _top_entries(weight.abs(), int(float(threshold) * weight.numel()))
