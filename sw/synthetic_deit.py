"""Tiny pruned DeiTs built in code (random weights, no training) for the weight-image tests and
the co-simulation.

``save_pruned_deit`` writes what ``sw/prune.py`` writes for the exporter: ``pruned/`` (dense
shapes, pruned weights exactly zero) and ``pruning_report.json`` with the surgery's kept heads
and neurons, each linear's pruning block shape and the data (the digits).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from sw.models import build_small_deit, small_deit_config
from sw.pruning.structures import linear_modules


def save_pruned_deit(directory: Path, *, removed_heads: dict, removed_neurons: dict,
                     block_density: float = 0.5, block: tuple = (8, 8), image_size: int = 16,
                     hidden_size: int = 64, num_heads: int = 4, intermediate_size: int = 128,
                     num_layers: int = 2, seed: int = 0, report: bool = True,
                     tokens: dict | None = None) -> Path:
    """A random small DeiT with whole heads, whole FFN neurons and ``block`` blocks zeroed.

    ``removed_heads[i]`` / ``removed_neurons[i]`` list what layer ``i`` loses (weights and biases
    of Q, K, V rows and O columns; FC1 rows and biases and FC2 columns); ``block_density`` of
    the remaining blocks of every linear are kept. Returns ``directory``.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    config = small_deit_config(image_size=image_size, patch_size=4, hidden_size=hidden_size,
                               num_layers=num_layers, num_heads=num_heads,
                               intermediate_size=intermediate_size)
    model = build_small_deit(config).eval()
    head_dim = hidden_size // num_heads
    surgery = []
    with torch.no_grad():
        for index, linears in linear_modules(model).items():
            modules = {role: module for role, (_, module) in linears.items()}
            for role, module in modules.items():
                rows, cols = module.weight.shape
                grid = (rows // block[0], cols // block[1])
                keep = rng.random(grid) < block_density
                mask = np.kron(keep, np.ones(block, dtype=bool))
                module.weight.mul_(torch.as_tensor(mask, dtype=module.weight.dtype))
            heads = removed_heads.get(index, [])
            for head in heads:
                rows = slice(head * head_dim, (head + 1) * head_dim)
                for role in ("q", "k", "v"):
                    modules[role].weight[rows] = 0
                    modules[role].bias[rows] = 0
                modules["o"].weight[:, rows] = 0
            neurons = removed_neurons.get(index, [])
            modules["fc1"].weight[neurons] = 0
            modules["fc1"].bias[neurons] = 0
            modules["fc2"].weight[:, neurons] = 0
            surgery.append({
                "index": index,
                "kept_heads": [h for h in range(num_heads) if h not in heads],
                "removed_heads": list(heads),
                "kept_neurons": [n for n in range(intermediate_size) if n not in neurons],
                "removed_neurons": list(neurons), "folded_neurons": []})
    directory = Path(directory)
    if report:
        model.save_pretrained(directory / "pruned")
        (directory / "pruning_report.json").write_text(json.dumps({
            "surgery": {"layers": surgery, "num_heads": num_heads, "head_dim": head_dim},
            "layers": [{"index": index, "linears": {
                role: {"block_shape": list(block)} for role in ("q", "k", "v", "o", "fc1",
                                                                 "fc2")}}
                for index in range(num_layers)],
            # what sw/prune.py records: the exporter calibrates on it by default
            "data": {"source": "digits", "val_fraction": 0.2, "seed": 0},
            **({"tokens": tokens} if tokens is not None else {})}, indent=2))
    else:
        model.save_pretrained(directory)
    return directory
