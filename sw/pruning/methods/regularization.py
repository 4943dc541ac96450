"""Mask-score regularization (movement pruning's soft L1, hard-concrete L0) as nn_pruning sums it.

Per module, the term is a mean over that module's score entries:

* ``l1``: ``mean(sigmoid(scores))``;
* ``l0``: ``mean(P(gate != 0)) = mean(sigmoid(scores - beta * log(-l / r)))``.

Modules are split into attention and dense groups. nn_pruning averages each group over its
modules, weights it by ``attention_lambda / n`` or ``dense_lambda / n``, ``n`` the number of
groups that hold a module (2 when both are pruned, 1 when one method is ``disabled``: its
linears are then not patched, nn_pruning's ``n = len(info)`` counts only patched groups), and
adds the groups::

    loss = attention_lambda / n * mean_attention + dense_lambda / n * mean_dense

The trainer then adds ``regularization_lambda(step) * loss`` (see ``schedule``) to the task loss.
Worked examples (``l1``, ``attention_lambda=1``): one attention module of scores ``[0, 0]`` and
no dense module gives ``1 / 1 * mean(sigmoid([0, 0])) = 0.5``; with a dense module of scores
``[0]`` as well (``dense_lambda=1``), ``1 / 2 * 0.5 + 1 / 2 * 0.5 = 0.5``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .binarizers import l0_expected_gates

__all__ = ["REGULARIZATIONS", "module_regularization", "regularization_loss"]

REGULARIZATIONS = ("disabled", "l1", "l0")


def module_regularization(scores: Tensor, mode: str) -> Tensor:
    """One module's regularization term: a mean over its score entries.

    Raises
    ------
    ValueError
        If ``mode`` is not ``l1`` or ``l0``.
    """
    if mode == "l1":
        return torch.sigmoid(scores).mean()
    if mode == "l0":
        return l0_expected_gates(scores).mean()
    raise ValueError(f"Unknown regularization {mode!r}; known: l1, l0")


def regularization_loss(
    *, attention_scores: Sequence[Tensor], dense_scores: Sequence[Tensor], mode: str,
    attention_lambda: float = 1.0, dense_lambda: float = 1.0,
) -> Tensor:
    """Regularization loss over all mask-score tensors, grouped as nn_pruning groups them.

    Pass each score tensor once (a score vector shared by FC1 and FC2 is one module). A group
    with no module contributes nothing and is not counted in ``n`` (see the module docstring).
    ``mode="disabled"`` returns a zero tensor.

    Raises
    ------
    ValueError
        If ``mode`` is not one of ``REGULARIZATIONS``.
    """
    if mode not in REGULARIZATIONS:
        raise ValueError(
            f"Unknown regularization {mode!r}; known: {', '.join(REGULARIZATIONS)}")
    loss = torch.zeros(())
    if mode == "disabled":
        return loss
    groups = [(group, group_lambda) for group, group_lambda in (
        (attention_scores, attention_lambda), (dense_scores, dense_lambda)) if len(group)]
    for group, group_lambda in groups:
        group_sum = sum(module_regularization(scores, mode) for scores in group)
        loss = loss + group_lambda / len(groups) * group_sum / len(group)
    return loss
