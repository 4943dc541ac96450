"""The demo's report: accuracy and measured layer-engine cycles, dense vs pruned, as JSON,
Markdown, a console summary and plots; each leads with the answer.

:func:`build_report` turns what ``make demo`` measured (``facts``: accuracies, the pruning
summary, the layer engine replays of the dense and the pruned model, step times, optionally the
``make bench`` runs) into the report document; :func:`write_report` writes ``report.json``,
``report.md`` and three PNG plots into a directory, each atomically; :func:`console_summary` is
what ``make demo`` prints last.

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
``whole_images``    optional, ``{"dense": {...}, "pruned": {...}}``: each whole encoder run on
                    the RTL for several validation images, layers chained on chip
                    (``flow.demo._replay``: ``images``, ``bit_exact``, ``cycle_exact``,
                    ``logits_equal`` (the logits from the RTL's output == the integer
                    model's), ``top1_rtl``, ``top1_integer``, ``cycles`` and ``predicted``
                    per image, ``labels``); ``replays`` holds the first image's layers
``steps``           ``[{"step", "seconds"}]`` wall times
``bench``           ``make bench``'s runs as points or None: ``[{"label", "kind", "accuracy",
                    "linear_density", "cycles", "source"}]`` (``cycles``: the cycle model's
                    per image on the same engine, all encoder layers; None when not known)
``clocks``          optional, ``{"dense": {"clock", "note"}, "pruned": {...}}``: the clock of
                    each model's layer engine (``hw.synth.throughput.EngineClock.to_dict()``:
                    the Fmax of its placed and routed synthesis report, or a given one, labelled
                    so), or None and ``note``, the one line saying why there is none and which
                    command measures it (``hw.synth.throughput.missing_clock``)

Utilization is non-zero MACs over ``array_rows x array_cols`` times cycles; speed-up and MAC
reduction are dense over pruned; cycles are per image (every program ``replays`` holds: the
encoder layers and, where the demo ran whole images, the patch embedding and the head too). With a clock, each
layer and the image also get ``at_fmax`` (``hw.synth.throughput.at_fmax``): latency in
microseconds, layers or images per second, effective GOP/s (twice the dense model's MACs of that
layer or image, as its replay executed them, per second of this model's run: dense-equivalent)
and GOP/s per MULT18X18D of the engine's synthesis report; without one they are None and the
report gives the note instead.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from hw.synth.throughput import EngineClock
from sw.atomic import write_text

__all__ = ["REPORT_VERSION", "PLOTS", "build_report", "console_summary", "headline",
           "markdown", "write_report"]

#: Version of the report's JSON layout (2: accuracy points carry cycles, ``bench`` is points).
REPORT_VERSION = 2

#: File names of the plots, by what they show.
PLOTS = {"accuracy": "accuracy_vs_cycles.png", "layers": "speedup_vs_mac_reduction.png",
         "units": "cycles_per_unit.png"}

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
    return {"name": result["name"], "part": result.get("part"), "cycles": result["cycles"],
            "macs": sum(entry["macs"] for entry in result["instructions"]),
            "model_cycles": result["model_cycles"], "bit_exact": bool(result["bit_exact"]),
            "cycle_exact": (result["cycles"] == result["model_cycles"] and all(
                e["cycles"] == e["model_cycles"] for e in result["instructions"])),
            "nonzero_macs": macs,
            "utilization": _ratio(macs, processing_elements * result["cycles"]),
            "sim_seconds": result["sim_seconds"], "units": units}


def _accuracy_points(facts: dict, cycles: dict) -> list[dict]:
    accuracy, pruning = facts["accuracy"], facts["pruning"]
    points = []
    densities = {"dense": 1.0, "pruned": pruning["linear_density"]}
    labels = {"dense": "dense teacher", "pruned": "demo pruned"}
    for kind in ("float", "integer"):
        for model in _MODELS:
            if accuracy[model].get(kind) is not None:
                points.append({"label": f"{labels[model]} ({kind})", "model": model,
                               "linear_density": densities[model], "cycles": cycles[model],
                               "accuracy": accuracy[model][kind], "kind": kind,
                               "source": accuracy["sources"][model][kind]})
    points += [dict(point) for point in facts.get("bench") or []]
    return points


#: The note when ``facts`` brings no clock and no note of its own.
NO_CLOCK = "no time at Fmax: no clock of the layer engine was measured"


def _time_at_fmax(clocks: dict, layers: list[dict], total: dict) -> dict:
    """Add ``at_fmax`` to each layer's model and ``<model>_at_fmax`` to ``total``; return the
    clocks as the report keeps them, ``{model: {"clock", "note"}}``."""
    dense_macs = [layer["dense"]["macs"] for layer in layers]
    total["dense_equivalent_macs"] = sum(dense_macs)
    kept = {}
    for model in _MODELS:
        given = clocks.get(model) or {}
        clock = EngineClock(**given["clock"]) if given.get("clock") else None
        kept[model] = {"clock": None if clock is None else clock.to_dict(),
                       "note": None if clock is not None else (given.get("note") or NO_CLOCK)}
        for layer, macs in zip(layers, dense_macs):
            layer[model]["at_fmax"] = (None if clock is None
                                       else clock.at(layer[model]["cycles"], dense_macs=macs))
        total[f"{model}_at_fmax"] = (None if clock is None else clock.at(
            total[f"{model}_cycles"], dense_macs=total["dense_equivalent_macs"]))
    return kept


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
        layers.append({"index": index, "label": dense["part"] or index,
                       "dense": dense, "pruned": pruned,
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
    clocks = _time_at_fmax(facts.get("clocks") or {}, layers, total)
    steps = [dict(step) for step in facts["steps"]]
    return {
        "version": REPORT_VERSION, "model": dict(facts["model"]), "hardware": hardware,
        "accuracy": facts["accuracy"], "pruning": facts["pruning"],
        "bit_exact": {model: all(layer["bit_exact"] for layer in replays[model])
                      for model in _MODELS},
        "cycle_exact": {model: all(layer["cycle_exact"] for layer in replays[model])
                        for model in _MODELS},
        "whole_images": facts.get("whole_images"),
        "total": total, "layers": layers, "units": units, "clocks": clocks,
        "accuracy_points": _accuracy_points(
            facts, {model: total[f"{model}_cycles"] for model in _MODELS}), "steps": steps,
        "total_seconds": sum(step["seconds"] for step in steps),
        "plots": dict(PLOTS)}


def _number(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.{digits}f}"


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


def _yes(flag) -> str:
    return "yes" if flag else "NO"


def _points(value) -> str:
    return "-" if value is None else f"{100 * value:+.1f} points"


def headline(report: dict) -> str:
    """The answer in one paragraph: accuracy dense vs pruned, speed-up beside MAC reduction,
    utilization, exactness."""
    accuracy, total, pruning = report["accuracy"], report["total"], report["pruning"]
    exact = all(report["bit_exact"].values()) and all(report["cycle_exact"].values())
    tokens = ""
    if pruning.get("token_rows"):
        rows = [pruning["token_rows"][0][0]] + [ffn for _, ffn in pruning["token_rows"]]
        tokens = f", token rows {' -> '.join(str(row) for row in rows)}"
    return (f"Pruned to {_number(pruning['linear_density'])} of its linear weights "
            f"({pruning['heads_removed']} of {pruning['heads_total']} heads removed{tokens}), "
            f"the {report['model']['name']} reaches top-1 {_number(accuracy['pruned']['float'])} "
            f"(dense {_number(accuracy['dense']['float'])}; integer model "
            f"{_number(accuracy['pruned']['integer'])} vs {_number(accuracy['dense']['integer'])})"
            f" and runs {_number(total['speedup'], 2)}x faster on the layer engine RTL "
            f"({_number(total['dense_cycles'])} -> {_number(total['pruned_cycles'])} cycles per "
            f"image) for {_number(total['mac_reduction'], 2)}x fewer MACs; utilization "
            f"{_number(total['dense_utilization'])} dense, {_number(total['pruned_utilization'])}"
            f" pruned. " + _whole_sentence(report)
            + ("Every layer of both models ran bit-exact to the golden model and "
                            "cycle-exact to the cycle model." if exact else
                            "NOT every layer was bit-exact and cycle-exact: see the tables.")
            + _time_sentence(report))


def _whole_sentence(report: dict) -> str:
    """``Both whole models ran on N images ...`` when the report has whole images."""
    whole = report.get("whole_images")
    if not whole:
        return ""
    equal = all(whole[m]["logits_equal"] for m in _MODELS)
    return (f"Both whole models ran on the RTL for {whole['pruned']['images']} validation "
            f"images, image in and logits out, program to program on chip (the host loads "
            f"only the patch rows and the position table): logits "
            f"{'equal' if equal else 'NOT equal'} to the integer model's on every image, "
            f"top-1 on them {_number(whole['pruned']['top1_rtl'])} pruned, "
            f"{_number(whole['dense']['top1_rtl'])} dense. ")


def _time_sentence(report: dict) -> str:
    """`` At the measured Fmax of ...: ... µs per image ...`` for the pruned model, or ``""``
    without its clock."""
    clock, at = report["clocks"]["pruned"]["clock"], report["total"]["pruned_at_fmax"]
    if clock is None:
        return ""
    how = "measured Fmax" if clock["measured"] else "given (not measured) clock"
    return (f" At the {how} of {clock['fmax_mhz']:g} MHz: {at['latency_us']:,.1f} µs per "
            f"image, {at['per_second']:,.1f} images per second, "
            f"{at['effective_gops']:.3f} effective (dense-equivalent) GOP/s.")


def clock_lines(report: dict) -> list[str]:
    """One line per model: its engine's clock and where it comes from, or why there is none
    and the command that measures it."""
    lines = []
    for model in _MODELS:
        entry = report["clocks"][model]
        config = report["hardware"][f"{model}_config"]
        if entry["clock"] is None:
            lines.append(f"{model} (`{config}`): {entry['note']}")
        else:
            lines.append(f"{model} (`{config}`): {EngineClock(**entry['clock']).describe()}")
    return lines


def answer_rows(report: dict) -> list[list[str]]:
    """``[quantity, dense, pruned, pruned vs dense]`` rows of the answer table."""
    accuracy, total = report["accuracy"], report["total"]
    rows = []
    for kind, what in (("float", "top-1 accuracy, float (torch)"),
                       ("integer", "top-1 accuracy, integer (golden model = RTL)")):
        dense, pruned = accuracy["dense"][kind], accuracy["pruned"][kind]
        change = None if dense is None or pruned is None else pruned - dense
        rows.append([what, _number(dense), _number(pruned), _points(change)])
    rows += [
        ["cycles per image (measured)", _number(total["dense_cycles"]),
         _number(total["pruned_cycles"]), f"{_number(total['speedup'], 2)}x speed-up"],
        ["non-zero MACs per image", _number(total["dense_nonzero_macs"]),
         _number(total["pruned_nonzero_macs"]), f"{_number(total['mac_reduction'], 2)}x fewer"],
        ["utilization (non-zero MACs / PE cycles)", _number(total["dense_utilization"]),
         _number(total["pruned_utilization"]), ""],
        ["bit-exact (RTL == golden model)", _yes(report["bit_exact"]["dense"]),
         _yes(report["bit_exact"]["pruned"]), ""],
        ["cycle-exact (RTL == cycle model)", _yes(report["cycle_exact"]["dense"]),
         _yes(report["cycle_exact"]["pruned"]), ""],
    ]
    whole = report.get("whole_images")
    if whole:
        rows += [
            [f"whole model on the RTL, {whole['pruned']['images']} images: logits == integer "
             f"model", *(_yes(whole[m]["logits_equal"] and whole[m]["bit_exact"]
                              and whole[m]["cycle_exact"]) for m in _MODELS), ""],
            ["top-1 of those images, RTL (integer model)",
             *(f"{_number(whole[m]['top1_rtl'])} ({_number(whole[m]['top1_integer'])})"
               for m in _MODELS), ""]]
    return rows + time_rows(report)


def time_rows(report: dict) -> list[list[str]]:
    """The answer table's rows of time at Fmax; none when neither model has a clock."""
    clocks, total = report["clocks"], report["total"]
    if all(clocks[model]["clock"] is None for model in _MODELS):
        return []
    at = {model: total[f"{model}_at_fmax"] or {} for model in _MODELS}

    def cells(key, digits):
        return [_number(at[model].get(key), digits) for model in _MODELS]

    def fmax(model):
        clock = clocks[model]["clock"]
        return "-" if clock is None else (f"{clock['fmax_mhz']:g}"
                                          + ("" if clock["measured"] else " (given)"))

    both = all(at[model] for model in _MODELS)
    faster = (f"{_number(at['dense']['latency_us'] / at['pruned']['latency_us'], 2)}x faster"
              if both else "")
    return [["Fmax of the engine (MHz)", fmax("dense"), fmax("pruned"), ""],
            ["latency per image (µs)", *cells("latency_us", 1), faster],
            ["images per second", *cells("per_second", 1), ""],
            ["effective GOP/s (dense-equivalent)", *cells("effective_gops", 3), ""],
            ["GOP/s per MULT18X18D", *cells("gops_per_dsp", 4), ""]]


def console_summary(report: dict) -> str:
    """What ``make demo`` prints last: the answer, then cycles per layer."""
    rows = [["", "dense", "pruned", "pruned vs dense"], *answer_rows(report)]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = [textwrap.fill(headline(report), width=96), ""]
    for row in rows:
        lines.append(f"  {row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}"
                     f"  {row[3]}".rstrip())
    lines += [f"  clock, {line}" for line in clock_lines(report)]
    lines += ["", f"  {'program':<8}{'dense cycles':>12}{'pruned cycles':>15}{'speed-up':>10}"
              f"{'MAC reduction':>15}{'util. dense':>13}{'util. pruned':>14}"]
    for layer in report["layers"]:
        dense, pruned = layer["dense"], layer["pruned"]
        lines.append(f"  {str(layer.get('label', layer['index'])):<10}"
                     f"{_number(dense['cycles']):>10}"
                     f"{_number(pruned['cycles']):>15}{_number(layer['speedup'], 2):>9}x"
                     f"{_number(layer['mac_reduction'], 2):>14}x"
                     f"{_number(dense['utilization']):>13}{_number(pruned['utilization']):>14}")
    return "\n".join(lines)


def markdown(report: dict) -> str:
    """The report as Markdown: the answer first, then pruning, per layer, per unit, accuracy
    points, step times."""
    model, hardware = report["model"], report["hardware"]
    accuracy, pruning = report["accuracy"], report["pruning"]
    lines = [f"# Demo report: {model['name']} on the layer engine", "",
             headline(report), ""]
    lines += _table(["", "dense", "pruned", "pruned vs dense"], answer_rows(report),
                    text_columns=(0, 3))
    lines += ["", f"Accuracies: top-1 on {accuracy.get('validation_images', '?')} validation "
              f"images (sources: the accuracy table below); the integer model is the golden "
              f"model the RTL matches bit for bit. Cycles: every program of one image (the "
              f"patch embedding, each encoder layer and the head where whole images ran), "
              f"replayed through the layer engine's RTL (Verilator); utilization counts all of "
              f"a layer's cycles (LayerNorm, softmax, GELU, residuals too).", "",
              *[f"- Clock, {line}." for line in clock_lines(report)], "",
              "## What was pruned, on which engine", ""]
    summary = [
        ("linear density (kept / dense weights)", _number(pruning["linear_density"])),
        ("heads removed", f"{pruning['heads_removed']} of {pruning['heads_total']}"),
        ("FFN neurons kept", _number(pruning["ffn_density"])),
        *([("token rows per layer (attention -> FFN)",
            ", ".join(f"{a} -> {b}" for a, b in pruning["token_rows"]))]
          if pruning.get("token_rows") else []),
    ]
    lines += _table(["quantity", "value"], summary)
    lines += ["", f"{model['layers']} encoder layers, {model['tokens']} tokens, hidden "
              f"{model['hidden_size']}, {model['num_heads']} heads of {model['head_dim']}, FFN "
              f"{model['ffn_size']}. Layer engine with a {hardware['array_rows']}x"
              f"{hardware['array_cols']} array ({hardware['processing_elements']} PEs), "
              f"{hardware['block_rows']}x{hardware['block_cols']} weight blocks; the pruned "
              f"image ran on config `{hardware['pruned_config']}`, the dense model on "
              f"`{hardware['dense_config']}` (same array, blocks and lanes; buffers sized for "
              f"each model).", "", *_buffer_lines(hardware),
              "Every layer of both models ran through the layer engine's RTL (Verilator), "
              "chained on chip where the report has whole images (only layer 0's input "
              "loaded): outputs compared with the golden model (`==`), every instruction's "
              "cycles with the cycle model (`sw/cycle_model/layer_engine.py`). The tables "
              "below are the first image's layers.", "",
              "## Per program (measured cycles)", ""]
    rows = []
    for layer in report["layers"]:
        dense, pruned = layer["dense"], layer["pruned"]
        rows.append([layer.get("label", layer["index"]), _number(dense["cycles"]),
                     _number(pruned["cycles"]),
                     _number(layer["speedup"], 2), _number(dense["nonzero_macs"]),
                     _number(pruned["nonzero_macs"]), _number(layer["mac_reduction"], 2),
                     _number(dense["utilization"]), _number(pruned["utilization"]),
                     "yes" if dense["bit_exact"] and pruned["bit_exact"] else "NO",
                     "yes" if dense["cycle_exact"] and pruned["cycle_exact"] else "NO"])
    lines += _table(["program", "dense cycles", "pruned cycles", "speed-up", "dense MACs",
                     "pruned MACs", "MAC reduction", "dense util.", "pruned util.",
                     "bit-exact", "cycle-exact"], rows)
    lines += ["", *_time_section(report)]
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
              "instruction.", "", "## Accuracy against cycles", ""]
    lines += _table(["point", "linear density", "cycles per image", "accuracy", "source"],
                    [[p["label"], _number(p["linear_density"]), _number(p.get("cycles")),
                      _number(p["accuracy"]), p["source"]]
                     for p in report["accuracy_points"]], text_columns=(0, 4))
    lines += ["", "Demo points: cycles measured on the RTL. `make bench` points: cycles of the "
              "cycle model (equal to the RTL's wherever the demo and the tests replay), for "
              "the same engine."]
    if not any(p["kind"].startswith("bench") for p in report["accuracy_points"]):
        lines += ["", "(`make bench` writes build/bench/pruning.json and tokens.json; their "
                  "pruned runs join this table and the plot when they exist.)"]
    lines += ["", "## Wall time per step", ""]
    lines += _table(["step", "seconds"],
                    [[s["step"], f"{s['seconds']:.1f}"] for s in report["steps"]]
                    + [["all", f"{report['total_seconds']:.1f}"]])
    lines += ["", "## Plots", ""]
    lines += [f"![{what}]({name})" for what, name in report["plots"].items()]
    return "\n".join(lines) + "\n"


def _time_section(report: dict) -> list[str]:
    """``## Per layer at Fmax``: microseconds and effective GOP/s per layer and per image."""
    lines = ["## Per layer at Fmax (measured cycles at each engine's clock)", ""]
    if all(report["clocks"][model]["clock"] is None for model in _MODELS):
        return lines + [" ".join(f"Clock, {line}." for line in clock_lines(report))]
    rows = []
    for name, dense, pruned in (
            *[(layer.get("label", layer["index"]), layer["dense"]["at_fmax"],
               layer["pruned"]["at_fmax"])
              for layer in report["layers"]],
            ("image", report["total"]["dense_at_fmax"], report["total"]["pruned_at_fmax"])):
        dense, pruned = dense or {}, pruned or {}
        rows.append([name, _number(dense.get("latency_us"), 1),
                     _number(pruned.get("latency_us"), 1),
                     _number(dense.get("effective_gops"), 3),
                     _number(pruned.get("effective_gops"), 3),
                     _number(pruned.get("gops_per_dsp"), 4)])
    lines += _table(["layer", "dense µs", "pruned µs", "dense GOP/s", "pruned GOP/s",
                     "pruned GOP/s per MULT18X18D"], rows)
    return lines + ["", "GOP/s: effective (dense-equivalent), twice the dense model's "
                    f"multiply-accumulates ({report['total']['dense_equivalent_macs']:,} per "
                    "image) per second of each model's run. "
                    + " ".join(f"Clock, {line}." for line in clock_lines(report))]


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
    """Grouped bars: measured cycles per unit, dense vs pruned (all layers of one image)."""
    plt = _figure()
    units = report["units"]
    figure, axes = plt.subplots(figsize=(10, 4.8))
    positions = range(len(units))
    width = 0.4
    axes.bar([p - width / 2 for p in positions], [u["dense_cycles"] for u in units], width,
             label="dense", color="#888888")
    axes.bar([p + width / 2 for p in positions], [u["pruned_cycles"] for u in units], width,
             label="pruned", color="#1f77b4")
    axes.set_xticks(list(positions), [u["unit"] for u in units], rotation=45, ha="right")
    axes.set_ylabel("cycles per image (measured, all layers)")
    axes.yaxis.set_major_formatter(_thousands())
    axes.set_title(f"{report['model']['name']}: where the layer engine's cycles go, per unit")
    axes.grid(axis="y", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)


def _thousands():
    from matplotlib.ticker import FuncFormatter
    return FuncFormatter(lambda value, _: f"{value:,.0f}")


def plot_layers(report: dict, path: Path) -> None:
    """Per layer and for the whole model: measured speed-up beside MAC reduction (left), and
    utilization dense vs pruned (right)."""
    plt = _figure()
    layers = report["layers"]
    total = report["total"]
    names = [str(layer["label"]) if isinstance(layer.get("label"), str)
             else f"layer {layer['index']}" for layer in layers] + ["all layers"]
    speedups = [layer["speedup"] or 0 for layer in layers] + [total["speedup"] or 0]
    reductions = [layer["mac_reduction"] or 0 for layer in layers] + [total["mac_reduction"] or 0]
    positions = list(range(len(names)))
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5),
                                         gridspec_kw={"width_ratios": [3, 2]})
    width = 0.38
    bars = left.bar([p - width / 2 for p in positions], reductions, width,
                    label="MAC reduction (dense / pruned non-zero MACs)", color="#ff7f0e")
    left.bar_label(bars, [f"{value:.2f}x" for value in reductions], fontsize=8)
    bars = left.bar([p + width / 2 for p in positions], speedups, width,
                    label="measured speed-up (dense / pruned cycles)", color="#2ca02c")
    left.bar_label(bars, [f"{value:.2f}x" for value in speedups], fontsize=8)
    left.axhline(1.0, color="black", linewidth=0.8)
    left.set_xticks(positions, names)
    left.set_ylabel("dense / pruned")
    left.set_ylim(0, max(reductions + speedups + [1.0]) * 1.25)
    left.set_title("speed-up beside MAC reduction")
    left.legend(loc="upper left", fontsize=8)
    dense_utilization = ([layer["dense"]["utilization"] or 0 for layer in layers]
                         + [total["dense_utilization"] or 0])
    pruned_utilization = ([layer["pruned"]["utilization"] or 0 for layer in layers]
                          + [total["pruned_utilization"] or 0])
    right.bar([p - width / 2 for p in positions], dense_utilization, width, label="dense",
              color="#888888")
    right.bar([p + width / 2 for p in positions], pruned_utilization, width, label="pruned",
              color="#1f77b4")
    right.set_xticks(positions, names)
    right.set_ylim(0, 1.1)
    right.set_ylabel("non-zero MACs / (PEs x cycles)")
    right.set_title("utilization of the PE array")
    right.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)


def plot_accuracy(report: dict, path: Path) -> None:
    """Accuracy against cycles per image: dense teacher and demo pruned (measured on the RTL),
    ``make bench``'s runs (cycle model) when present."""
    plt = _figure()
    styles = {"float": ("o", "#1f77b4", "demo: dense / pruned, float (torch)"),
              "integer": ("s", "#ff7f0e", "demo: dense / pruned, integer (golden model = RTL)"),
              "bench pruned": ("^", "#2ca02c", "make bench: block pruning runs"),
              "bench tokens": ("v", "#9467bd", "make bench: token pruning runs")}
    points = [p for p in report["accuracy_points"] if p.get("cycles") is not None]
    figure, axes = plt.subplots(figsize=(8, 5))
    for kind, (marker, color, label) in styles.items():
        chosen = [p for p in points if p["kind"] == kind]
        if chosen:
            axes.scatter([p["cycles"] for p in chosen], [p["accuracy"] for p in chosen],
                         marker=marker, color=color, label=label, s=60, zorder=3)
    accuracy, total = report["accuracy"], report["total"]
    notes = {"dense": "dense", "pruned": f"pruned: {_number(total['speedup'], 2)}x fewer cycles"}
    for model in _MODELS:
        if total[f"{model}_cycles"]:
            values = ", ".join(f"{_number(accuracy[model][kind])} {kind}"
                               for kind in ("float", "integer")
                               if accuracy[model][kind] is not None)
            axes.annotate(f"{notes[model]}\n({values})",
                          (total[f"{model}_cycles"], max(
                              (accuracy[model][kind] for kind in ("float", "integer")
                               if accuracy[model][kind] is not None), default=0)),
                          textcoords="offset points", xytext=(0, -42), ha="center",
                          fontsize=9)
    axes.set_xlim(0, max([p["cycles"] for p in points] + [1]) * 1.2)
    axes.set_ylim(0, 1.02)
    axes.xaxis.set_major_formatter(_thousands())
    axes.set_xlabel("layer-engine cycles per image (all encoder layers)")
    axes.set_ylabel("top-1 accuracy (validation split)")
    axes.set_title(f"{report['model']['name']}: accuracy against cycles "
                   f"(up and to the left is better)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
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
