"""Saving and reloading shrunk models: per-layer head counts and FFN widths HF configs can't state.

A model after :func:`~sw.pruning.surgery.apply_surgery` has, per layer, fewer heads and FFN
neurons than its config says. transformers 5 has neither ``prune_heads`` nor a config field for
pruned heads, so ``from_pretrained`` cannot rebuild it. A shrunk directory therefore holds, next
to the usual ``save_pretrained`` files (config of the unpruned shape; ``from_pretrained`` on it
fails with a shape mismatch instead of loading something wrong):

* ``surgery.json``: :meth:`SurgeryReport.to_dict` (kept / removed heads and neurons per layer);
* ``shrunk_state.safetensors``: the state dict under the model's own parameter names
  (transformers 5.23's ``save_pretrained`` writes v4 names and only ``from_pretrained`` maps
  them back).

:func:`load_shrunk` (and :func:`sw.models.load_model`, which calls it when ``surgery.json`` is
present) rebuilds the model from the config, repeats the recorded removals and loads the state
strictly.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from .surgery import SurgeryReport, prune_ffn, prune_heads

__all__ = ["SHRUNK_STATE", "SURGERY_FILE", "is_shrunk", "load_shrunk", "save_shrunk"]

SHRUNK_STATE = "shrunk_state.safetensors"
SURGERY_FILE = "surgery.json"


def save_shrunk(model: nn.Module, surgery: SurgeryReport, directory: str | Path) -> None:
    """Write a shrunk model into ``directory`` (which must be new or a staging directory)."""
    directory = Path(directory)
    model.save_pretrained(directory)
    save_file({key: value.contiguous() for key, value in model.state_dict().items()},
              str(directory / SHRUNK_STATE))
    (directory / SURGERY_FILE).write_text(json.dumps(surgery.to_dict(), indent=2) + "\n")


def is_shrunk(directory: str | Path) -> bool:
    """Whether ``directory`` holds a shrunk model written by :func:`save_shrunk`."""
    return (Path(directory) / SURGERY_FILE).is_file()


def load_shrunk(directory: str | Path) -> nn.Module:
    """Reload a model written by :func:`save_shrunk`, in eval mode.

    Raises
    ------
    FileNotFoundError
        If ``surgery.json`` or the state file is missing.
    """
    from transformers import AutoConfig

    from sw.models import auto_class_for

    directory = Path(directory)
    for name in (SURGERY_FILE, SHRUNK_STATE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory}: no {name} (not a shrunk model directory)")
    surgery = json.loads((directory / SURGERY_FILE).read_text())
    config = AutoConfig.from_pretrained(directory, local_files_only=True)
    model = auto_class_for(config).from_config(config)
    for layer in surgery["layers"]:
        prune_heads(model, layer["index"], layer["removed_heads"])
        prune_ffn(model, layer["index"], layer["removed_neurons"])
    model.load_state_dict(load_file(str(directory / SHRUNK_STATE)))
    return model.eval()
