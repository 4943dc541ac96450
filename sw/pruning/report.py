"""The pruning report: densities per layer and overall against the dense teacher, and its plots.

Densities (all over the weights of the Q, K, V, O, FC1, FC2 linears; biases excluded):

* *block density* of a linear: the fraction of its ``block_rows x block_cols`` tiles (the block
  shape its scores used) that keep at least one weight: what a block-skipping GEMM must compute;
* *linear density* of a linear, a layer or the model: kept weights over the weights of the same
  linears in the dense baseline, the **unpruned teacher** (its full ``H*d`` and FFN widths).
  For a filled model every weight of the shrunk linears counts as kept.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from .structures import ROLES, linear_modules, structure_for
from .surgery import SurgeryReport

__all__ = ["block_density", "dense_baseline", "filled_linear_density", "plot_accuracy",
           "plot_density", "pruning_report"]


def block_density(mask: Tensor, block_shape: tuple[int, int]) -> float:
    """Fraction of ``block_shape`` tiles of a ``(rows, cols)`` mask holding a kept entry."""
    rows, cols = mask.shape
    block_rows, block_cols = block_shape
    tiles = mask.reshape(rows // block_rows, block_rows, cols // block_cols, block_cols)
    return float(tiles.any(dim=3).any(dim=1).float().mean())


def dense_baseline(model: nn.Module) -> dict[int, dict[str, int]]:
    """Weight count of every role linear, per layer, of the (unpruned) ``model``."""
    return {index: {role: module.weight.numel() for role, (_, module) in layer.items()}
            for index, layer in linear_modules(model).items()}


def filled_linear_density(model: nn.Module, baseline: dict[int, dict[str, int]]) -> float:
    """Weights of the role linears of a (shrunk) model over the dense baseline's."""
    kept = sum(module.weight.numel() for layer in linear_modules(model).values()
               for _, module in layer.values())
    return kept / sum(sum(layer.values()) for layer in baseline.values())


def pruning_report(*, pruned: nn.Module, masks: dict[str, Tensor],
                   block_shapes: dict[str, tuple[int, int]], baseline: dict[int, dict[str, int]],
                   dense_accuracy: float | None, accuracy: float,
                   surgery: SurgeryReport | None = None, filled: nn.Module | None = None,
                   filled_accuracy: float | None = None, history: list[dict] | None = None,
                   include_masks: bool = True) -> dict:
    """JSON-ready report of a pruned model (dense shapes, masked weights zero).

    ``masks`` and ``block_shapes`` are keyed by full names (``"<linear>.weight"`` /
    ``"<linear>"``); a linear absent from ``masks`` counts as fully kept. Heads and FFN neurons
    kept are those :func:`~sw.pruning.surgery.apply_surgery` keeps (from ``surgery``).
    """
    structure = structure_for(pruned)
    num_heads = structure.num_heads(pruned.config)
    layers, kept_total, baseline_total = [], 0, 0
    surgery_layers = {layer.index: layer for layer in surgery.layers} if surgery else {}
    for index, linears in linear_modules(pruned).items():
        entry = {"index": index, "linears": {}}
        layer_kept = 0
        for role in ROLES:
            name, module = linears[role]
            mask = masks.get(f"{name}.weight")
            if mask is None:
                mask = torch.ones(module.weight.shape, dtype=torch.bool)
            mask = mask & (module.weight.detach() != 0)
            kept = int(mask.sum())
            layer_kept += kept
            block = tuple(block_shapes.get(name, (1, 1)))
            entry["linears"][role] = {
                "shape": list(mask.shape), "block_shape": list(block),
                "block_density": block_density(mask.cpu(), block),
                "linear_density": kept / baseline[index][role],
            }
        layer_baseline = sum(baseline[index].values())
        entry["linear_density"] = layer_kept / layer_baseline
        if index in surgery_layers:
            done = surgery_layers[index]
            entry["kept_heads"] = len(done.kept_heads)
            entry["kept_head_indices"] = list(done.kept_heads)
            entry["kept_ffn_neurons"] = len(done.kept_neurons)
            entry["ffn_neurons"] = len(done.kept_neurons) + len(done.removed_neurons)
        entry["heads"] = num_heads
        kept_total += layer_kept
        baseline_total += layer_baseline
        layers.append(entry)
    heads_removed = sum(len(layer.removed_heads) for layer in surgery.layers) if surgery else None
    neurons = [(len(layer.kept_neurons), len(layer.kept_neurons) + len(layer.removed_neurons))
               for layer in surgery.layers] if surgery else []
    report = {
        "dense_baseline": {"description": "Q/K/V/O/FC1/FC2 weights of the unpruned teacher",
                           "weights": baseline_total},
        "dense_accuracy": dense_accuracy,
        "accuracy": accuracy,
        "linear_density": kept_total / baseline_total,
        "heads_removed": heads_removed,
        "heads_total": num_heads * len(layers),
        "ffn_density": (sum(kept for kept, _ in neurons) / sum(total for _, total in neurons)
                        if neurons else None),
        "layers": layers,
    }
    if filled is not None:
        report["filled"] = {"accuracy": filled_accuracy,
                            "linear_density": filled_linear_density(filled, baseline)}
    if surgery is not None:
        report["surgery"] = surgery.to_dict(include_masks=include_masks)
    if history is not None:
        report["history"] = history
    return report


def plot_density(report: dict, path: str | Path) -> None:
    """Bar chart: linear density of each role per layer, and the layer's overall density."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report["layers"]
    figure, axes = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / (len(ROLES) + 1)
    for offset, role in enumerate(ROLES):
        axes.bar([layer["index"] + offset * width for layer in layers],
                 [layer["linears"][role]["linear_density"] for layer in layers],
                 width=width, label=role)
    axes.bar([layer["index"] + len(ROLES) * width for layer in layers],
             [layer["linear_density"] for layer in layers], width=width, label="layer",
             color="black")
    axes.set_xticks([layer["index"] + 0.4 - width / 2 for layer in layers],
                    [f"layer {layer['index']}" for layer in layers])
    axes.set_ylabel("linear density (vs dense)")
    axes.set_ylim(0, 1.05)
    axes.set_title(f"overall linear density {report['linear_density']:.3f}")
    axes.legend(ncol=4, fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_accuracy(history: list[dict], path: str | Path, *,
                  dense_accuracy: float | None = None,
                  eval_with_current_patch_params: bool = False) -> None:
    """Validation accuracy per epoch over the pruning and final fine-tune stages."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.5))
    position = 0
    for stage in dict.fromkeys(entry["stage"] for entry in history):
        entries = [entry for entry in history if entry["stage"] == stage]
        xs = list(range(position + 1, position + len(entries) + 1))
        axes.plot(xs, [entry["val_accuracy"] for entry in entries], marker=".", label=stage)
        position += len(entries)
    if dense_accuracy is not None:
        axes.axhline(dense_accuracy, color="grey", linestyle="--", label="dense teacher")
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation accuracy")
    # nn_pruning semantics: unless eval_with_current_patch_params, evaluation during pruning
    # applies the final threshold's masks, so early epochs show the final sparsity untrained
    axes.set_title("pruning evaluated at the current threshold" if eval_with_current_patch_params
                   else "pruning evaluated at the final sparsity "
                        "(eval_with_current_patch_params off)", fontsize=9)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
