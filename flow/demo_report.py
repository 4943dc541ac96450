"""The demo's report: measured dense vs pruned layer-engine cycles as JSON, Markdown and plots.

:func:`build_report` turns what ``make demo`` measured (``facts``: accuracies, the pruning
summary, the layer engine replays of the dense and the pruned model, step times, optionally the
``make bench`` pruning runs) into the report document; :func:`write_report` writes
``report.json``, ``report.md`` and three PNG plots into a directory, each atomically.

``facts`` holds:

``model``           ``{"name", "layers", "tokens", "hidden_size", "num_heads", "head_dim",
                    "ffn_size"}`` of the unpruned model
``hardware``        ``{"array_rows", "array_cols", "block_rows", "block_cols", "dense_config",
                    "pruned_config", "buffers"}``: the engine both models ran on (config names
                    and buffer depths of each)
``accuracy``        ``{"dense": {"float", "integer"}, "pruned": {...}, "validation_images",
                    "sources": {"dense": {"float", "integer"}, "pruned": {...}}}`` (a value
                    may be None when it was not measured; ``sources`` says where each comes
                    from)
``pruning``         ``{"linear_density", "heads_removed", "heads_total", "ffn_density",
                    "token_rows", "source"}`` (``token_rows``: per layer, the rows its
                    attention and its FFN see; optional)
``replays``         ``{"dense": [...], "pruned": [...]}``: one ``sim.layer_replay.replay``
                    result per layer, each instruction with ``nonzero_macs`` added (tokens times
                    the non-zero weights of a linear; every MAC of an attention product)
``steps``           ``[{"step", "seconds"}]`` wall times
``bench``           ``build/bench/pruning.json``'s document or None; ``bench_source`` its path

Utilization is non-zero MACs over ``array_rows x array_cols`` times cycles; speed-up and MAC
reduction are dense over pruned.
"""

from __future__ import annotations

import json
from pathlib import Path

from sw.atomic import write_text

__all__ = ["REPORT_VERSION", "PLOTS", "build_report", "markdown", "write_report"]

#: Version of the report's JSON layout.
REPORT_VERSION = 1

#: File names of the plots, by what they show.
PLOTS = {"units": "cycles_per_unit.png", "layers": "layers.png",
         "accuracy": "accuracy_vs_density.png"}

_MODELS = ("dense", "pruned")


def _ratio(numerator, denominator):
    """``numerator / denominator``, or None when either is 0 (a unit only one model runs)."""
    return numerator / denominator if denominator and numerator else None


def _replay_summary(result: dict, processing_elements: int) -> dict:
    units: dict = {}
    for entry in result["instructions"]:
        unit = units.setdefault(entry["unit"], {"cycles": 0, "model_cycles": 0,
                                                "nonzero_macs": 0, "instructions": 0})
        unit["cycles"] += entry["cycles"]
        unit["model_cycles"] += entry["model_cycles"]
        unit["nonzero_macs"] += entry["nonzero_macs"]
        unit["instructions"] += 1
    macs = sum(unit["nonzero_macs"] for unit in units.values())
    return {"name": result["name"], "cycles": result["cycles"],
            "model_cycles": result["model_cycles"], "bit_exact": bool(result["bit_exact"]),
            "cycle_exact": (result["cycles"] == result["model_cycles"] and all(
                e["cycles"] == e["model_cycles"] for e in result["instructions"])),
            "nonzero_macs": macs,
            "utilization": _ratio(macs, processing_elements * result["cycles"]),
            "sim_seconds": result["sim_seconds"], "units": units}


def _accuracy_points(facts: dict) -> list[dict]:
    accuracy, pruning = facts["accuracy"], facts["pruning"]
    points = []
    densities = {"dense": 1.0, "pruned": pruning["linear_density"]}
    labels = {"dense": "dense teacher", "pruned": "demo pruned"}
    for kind in ("float", "integer"):
        for model in _MODELS:
            if accuracy[model].get(kind) is not None:
                points.append({"label": f"{labels[model]} ({kind})",
                               "linear_density": densities[model],
                               "accuracy": accuracy[model][kind], "kind": kind,
                               "source": accuracy["sources"][model][kind]})
    bench = facts.get("bench")
    if bench:
        for run in bench.get("runs", []):
            kind = "bench filled" if run.get("filled") else "bench pruned"
            points.append({"label": f"{kind} (target {run['target_linear_density']:g})",
                           "linear_density": run["linear_density"],
                           "accuracy": run["accuracy"], "kind": kind,
                           "source": facts.get("bench_source", "build/bench/pruning.json")})
    return points


def build_report(facts: dict) -> dict:
    """The report document (see the module docstring for ``facts``).

    Raises
    ------
    ValueError
        If the dense and pruned replays do not cover the same number of layers.
    """
    hardware = dict(facts["hardware"])
    processing_elements = hardware["array_rows"] * hardware["array_cols"]
    hardware["processing_elements"] = processing_elements
    replays = {model: [_replay_summary(r, processing_elements) for r in facts["replays"][model]]
               for model in _MODELS}
    if len(replays["dense"]) != len(replays["pruned"]):
        raise ValueError(f"replays: {len(replays['dense'])} dense layers vs "
                         f"{len(replays['pruned'])} pruned layers")
    layers = []
    for index, (dense, pruned) in enumerate(zip(replays["dense"], replays["pruned"])):
        layers.append({"index": index, "dense": dense, "pruned": pruned,
                       "speedup": _ratio(dense["cycles"], pruned["cycles"]),
                       "mac_reduction": _ratio(dense["nonzero_macs"], pruned["nonzero_macs"])})
    names: list = []
    for model in _MODELS:
        for layer in replays[model]:
            names += [unit for unit in layer["units"] if unit not in names]
    units = []
    for unit in names:
        row = {"unit": unit}
        for model in _MODELS:
            found = [layer["units"][unit] for layer in replays[model] if unit in layer["units"]]
            row[f"{model}_cycles"] = sum(u["cycles"] for u in found)
            row[f"{model}_model_cycles"] = sum(u["model_cycles"] for u in found)
            row[f"{model}_nonzero_macs"] = sum(u["nonzero_macs"] for u in found)
            row[f"{model}_utilization"] = (
                _ratio(row[f"{model}_nonzero_macs"], processing_elements * row[f"{model}_cycles"])
                if row[f"{model}_nonzero_macs"] else None)
        row["speedup"] = _ratio(row["dense_cycles"], row["pruned_cycles"])
        units.append(row)
    total = {}
    for model in _MODELS:
        cycles = sum(layer["cycles"] for layer in replays[model])
        macs = sum(layer["nonzero_macs"] for layer in replays[model])
        total[f"{model}_cycles"] = cycles
        total[f"{model}_nonzero_macs"] = macs
        total[f"{model}_utilization"] = _ratio(macs, processing_elements * cycles)
    total["speedup"] = _ratio(total["dense_cycles"], total["pruned_cycles"])
    total["mac_reduction"] = _ratio(total["dense_nonzero_macs"], total["pruned_nonzero_macs"])
    steps = [dict(step) for step in facts["steps"]]
    return {
        "version": REPORT_VERSION, "model": dict(facts["model"]), "hardware": hardware,
        "accuracy": facts["accuracy"], "pruning": facts["pruning"],
        "bit_exact": {model: all(layer["bit_exact"] for layer in replays[model])
                      for model in _MODELS},
        "cycle_exact": {model: all(layer["cycle_exact"] for layer in replays[model])
                        for model in _MODELS},
        "total": total, "layers": layers, "units": units,
        "accuracy_points": _accuracy_points(facts), "steps": steps,
        "total_seconds": sum(step["seconds"] for step in steps),
        "plots": dict(PLOTS)}


def _number(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}"


def _table(header: list, rows: list, text_columns=(0,)) -> list[str]:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i in text_columns else "---:"
                            for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _buffer_lines(hardware: dict) -> list[str]:
    buffers = hardware.get("buffers")
    if not buffers:
        return []
    depths = "; ".join(f"{model} " + " / ".join(f"{value:,}" for value in buffers[model].values())
                       for model in _MODELS if model in buffers)
    names = " / ".join(next(iter(buffers.values())))
    return [f"Buffer depths ({names}): {depths}.", ""]


def markdown(report: dict) -> str:
    """The report as Markdown: summary, per layer, per unit, accuracy points, step times."""
    model, hardware, total = report["model"], report["hardware"], report["total"]
    accuracy, pruning = report["accuracy"], report["pruning"]
    lines = [f"# Demo report: {model['name']} on the layer engine", "",
             f"{model['layers']} encoder layers, {model['tokens']} tokens, hidden "
             f"{model['hidden_size']}, {model['num_heads']} heads of {model['head_dim']}, FFN "
             f"{model['ffn_size']}. Layer engine with a {hardware['array_rows']}x"
             f"{hardware['array_cols']} array ({hardware['processing_elements']} PEs), "
             f"{hardware['block_rows']}x{hardware['block_cols']} weight blocks; the pruned "
             f"image ran on config `{hardware['pruned_config']}`, the dense model on "
             f"`{hardware['dense_config']}` (same array, blocks and lanes; buffers sized for "
             f"each model).", "",
             *_buffer_lines(hardware),
             "Every layer of both models was replayed through the layer engine's RTL "
             "(Verilator): outputs compared with the golden model (`==`), every instruction's "
             "cycles with the cycle model (`sw/cycle_model/layer_engine.py`).", "",
             "## Summary", ""]
    summary = [
        ("float accuracy (dense / pruned)",
         f"{_number(accuracy['dense']['float'])} / {_number(accuracy['pruned']['float'])}"),
        ("integer accuracy (dense / pruned)",
         f"{_number(accuracy['dense']['integer'])} / {_number(accuracy['pruned']['integer'])}"),
        ("linear density", _number(pruning["linear_density"])),
        ("heads removed", f"{pruning['heads_removed']} of {pruning['heads_total']}"),
        ("FFN neurons kept", _number(pruning["ffn_density"])),
        *([("token rows per layer (attention -> FFN)",
            ", ".join(f"{a} -> {b}" for a, b in pruning["token_rows"]))]
          if pruning.get("token_rows") else []),
        ("cycles (dense / pruned)",
         f"{_number(total['dense_cycles'])} / {_number(total['pruned_cycles'])}"),
        ("speed-up (dense / pruned cycles)", f"{_number(total['speedup'], 2)}x"),
        ("non-zero MACs (dense / pruned)",
         f"{_number(total['dense_nonzero_macs'])} / {_number(total['pruned_nonzero_macs'])}"),
        ("MAC reduction (dense / pruned)", f"{_number(total['mac_reduction'], 2)}x"),
        ("utilization (dense / pruned)",
         f"{_number(total['dense_utilization'])} / {_number(total['pruned_utilization'])}"),
        ("bit-exact (dense / pruned)",
         f"{report['bit_exact']['dense']} / {report['bit_exact']['pruned']}"),
        ("cycle-exact (dense / pruned)",
         f"{report['cycle_exact']['dense']} / {report['cycle_exact']['pruned']}"),
    ]
    lines += _table(["quantity", "value"], summary)
    lines += ["", f"Accuracies: top-1 on {accuracy.get('validation_images', '?')} validation "
              f"images (sources: the accuracy table below). Utilization: non-zero MACs / (PEs x cycles), "
              f"all of a layer's cycles counted (LayerNorm, softmax, GELU, residuals too).", "",
              "## Per layer (measured cycles)", ""]
    rows = []
    for layer in report["layers"]:
        dense, pruned = layer["dense"], layer["pruned"]
        rows.append([layer["index"], _number(dense["cycles"]), _number(pruned["cycles"]),
                     _number(layer["speedup"], 2), _number(dense["nonzero_macs"]),
                     _number(pruned["nonzero_macs"]), _number(layer["mac_reduction"], 2),
                     _number(dense["utilization"]), _number(pruned["utilization"]),
                     "yes" if dense["bit_exact"] and pruned["bit_exact"] else "NO",
                     "yes" if dense["cycle_exact"] and pruned["cycle_exact"] else "NO"])
    lines += _table(["layer", "dense cycles", "pruned cycles", "speed-up", "dense MACs",
                     "pruned MACs", "MAC reduction", "dense util.", "pruned util.",
                     "bit-exact", "cycle-exact"], rows)
    lines += ["", "## Per unit (measured cycles, all layers)", ""]
    rows = [[u["unit"], _number(u["dense_cycles"]), _number(u["pruned_cycles"]),
             _number(u["speedup"], 2), _number(u["dense_utilization"]),
             _number(u["pruned_utilization"]),
             "yes" if (u["dense_cycles"], u["pruned_cycles"])
             == (u["dense_model_cycles"], u["pruned_model_cycles"]) else "NO"]
            for u in report["units"]]
    lines += _table(["unit", "dense cycles", "pruned cycles", "speed-up", "dense util.",
                     "pruned util.", "= model"], rows)
    lines += ["", "q k v o fc1 fc2: the block-sparse GEMMs; attention_scores / "
              "attention_context: QK^T and P.V of every kept head; control: the END "
              "instruction.", "", "## Accuracy vs linear density", ""]
    lines += _table(["point", "linear density", "accuracy", "source"],
                    [[p["label"], _number(p["linear_density"]), _number(p["accuracy"]),
                      p["source"]] for p in report["accuracy_points"]], text_columns=(0, 3))
    if not any(p["kind"].startswith("bench") for p in report["accuracy_points"]):
        lines += ["", "(`make bench` writes build/bench/pruning.json; its pruned and filled "
                  "runs join this table and the plot when it exists.)"]
    lines += ["", "## Wall time per step", ""]
    lines += _table(["step", "seconds"],
                    [[s["step"], f"{s['seconds']:.1f}"] for s in report["steps"]]
                    + [["all", f"{report['total_seconds']:.1f}"]])
    lines += ["", "## Plots", ""]
    lines += [f"![{what}]({name})" for what, name in report["plots"].items()]
    return "\n".join(lines) + "\n"


def _figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(figure, path: Path) -> None:
    # Through a temporary name: the plot appears complete or not at all. No timestamp in the
    # PNG's metadata keeps the bytes deterministic.
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    figure.savefig(staging, format="png", dpi=100, metadata={"Software": None})
    staging.replace(path)


def plot_units(report: dict, path: Path) -> None:
    """Grouped bars: measured cycles per unit, dense vs pruned (all layers)."""
    plt = _figure()
    units = report["units"]
    figure, axes = plt.subplots(figsize=(10, 4.5))
    positions = range(len(units))
    width = 0.4
    axes.bar([p - width / 2 for p in positions], [u["dense_cycles"] for u in units], width,
             label="dense", color="#888888")
    axes.bar([p + width / 2 for p in positions], [u["pruned_cycles"] for u in units], width,
             label="pruned", color="#1f77b4")
    axes.set_xticks(list(positions), [u["unit"] for u in units], rotation=45, ha="right")
    axes.set_ylabel("cycles (measured, all layers)")
    axes.set_title(f"{report['model']['name']}: layer engine cycles per unit")
    axes.legend()
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)


def plot_layers(report: dict, path: Path) -> None:
    """Per layer: utilization dense vs pruned, and the speed-up."""
    plt = _figure()
    layers = report["layers"]
    indices = [layer["index"] for layer in layers]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.4
    left.bar([i - width / 2 for i in indices], [layer["dense"]["utilization"] or 0
                                                for layer in layers],
             width, label="dense", color="#888888")
    left.bar([i + width / 2 for i in indices], [layer["pruned"]["utilization"] or 0
                                                for layer in layers],
             width, label="pruned", color="#1f77b4")
    left.set_xticks(indices, [f"layer {i}" for i in indices])
    left.set_ylabel("non-zero MACs / (PEs x cycles)")
    left.set_title("utilization")
    left.legend(loc="lower right")
    right.bar(indices, [layer["speedup"] or 0 for layer in layers], 0.5, color="#2ca02c")
    right.axhline(1.0, color="black", linewidth=0.8)
    right.set_xticks(indices, [f"layer {i}" for i in indices])
    right.set_ylabel("dense cycles / pruned cycles")
    right.set_title("speed-up")
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)


def plot_accuracy(report: dict, path: Path) -> None:
    """Accuracy vs linear density: dense teacher, the demo's pruned model, bench runs."""
    plt = _figure()
    styles = {"float": ("o", "#1f77b4"), "integer": ("s", "#ff7f0e"),
              "bench pruned": ("^", "#2ca02c"), "bench filled": ("v", "#d62728")}
    labels = {"float": "dense teacher / demo pruned, float", "integer":
              "dense teacher / demo pruned, integer (golden model)",
              "bench pruned": "make bench, pruned", "bench filled": "make bench, filled"}
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for kind, (marker, color) in styles.items():
        points = [p for p in report["accuracy_points"] if p["kind"] == kind]
        if points:
            axes.scatter([p["linear_density"] for p in points], [p["accuracy"] for p in points],
                         marker=marker, color=color, label=labels[kind], s=50)
    axes.set_xlabel("linear density (kept weights / dense weights)")
    axes.set_ylabel("top-1 accuracy (validation)")
    axes.set_xlim(0, 1.05)
    axes.set_title("accuracy vs density")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)


def write_report(report: dict, out_dir) -> dict:
    """Write ``report.json``, ``report.md`` and the plots into ``out_dir``; returns their paths
    by name."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md",
             **{what: out_dir / name for what, name in report["plots"].items()}}
    plot_units(report, paths["units"])
    plot_layers(report, paths["layers"])
    plot_accuracy(report, paths["accuracy"])
    write_text(paths["markdown"], markdown(report))
    write_text(paths["json"], json.dumps(report, indent=2) + "\n")
    return paths
