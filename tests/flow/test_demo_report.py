"""The demo's report from a small fabricated measurement: the answer first (Markdown and
console), JSON fields, accuracy points with cycles, plots."""

import json

import pytest

from flow.demo_report import PLOTS, build_report, console_summary, headline, markdown, write_report


def _instruction(index, opcode, unit, cycles, nonzero_macs=0, model_cycles=None):
    return {"index": index, "opcode": opcode, "unit": unit, "cycles": cycles,
            "model_cycles": cycles if model_cycles is None else model_cycles,
            "macs": nonzero_macs, "nonzero_macs": nonzero_macs}


def _layer(name, q_cycles, q_macs, heads, *, bit_exact=True):
    instructions = [_instruction(0, "LAYERNORM", "layernorm1", 100),
                    _instruction(1, "GEMM", "q", q_cycles, q_macs)]
    for head in range(heads):
        instructions.append(_instruction(2 + head, "ATTENTION_SCORES", "attention_scores",
                                         50, 400))
    instructions.append(_instruction(2 + heads, "END", "control", 2))
    cycles = sum(entry["cycles"] for entry in instructions)
    return {"name": name, "cycles": cycles, "model_cycles": cycles,
            "instructions": instructions, "bit_exact": bit_exact, "mismatches": 0,
            "sim_seconds": 0.5, "load_seconds": 0.1}


def _facts(*, bench=None, pruned_exact=True):
    return {
        "model": {"name": "toy", "layers": 2, "tokens": 4, "hidden_size": 8, "num_heads": 2,
                  "head_dim": 4, "ffn_size": 16},
        "hardware": {"array_rows": 2, "array_cols": 2, "block_rows": 4, "block_cols": 4,
                     "dense_config": "toy_dense", "pruned_config": "toy_pruned",
                     "buffers": {"dense": {"act_buffer_depth": 64, "weight_buffer_depth": 2048},
                                 "pruned": {"act_buffer_depth": 64, "weight_buffer_depth": 512}}},
        "accuracy": {"dense": {"float": 0.9, "integer": 0.875},
                     "pruned": {"float": 0.8, "integer": None}, "validation_images": 40,
                     "sources": {"dense": {"float": "report.json", "integer": "golden dense"},
                                 "pruned": {"float": "report.json", "integer": "golden"}}},
        "pruning": {"linear_density": 0.25, "heads_removed": 1, "heads_total": 4,
                    "ffn_density": 0.5},
        # dense: 100 + 400 + 2 * 50 + 2 = 602 cycles, 1600 + 2 * 400 = 2400 MACs per layer;
        # pruned layer 0: 100 + 148 + 50 + 2 = 300 cycles, 400 + 400 = 800 MACs;
        # pruned layer 1: 100 + 200 + 2 * 50 + 2 = 402 cycles, 600 + 800 = 1400 MACs
        "replays": {"dense": [_layer("d0", 400, 1600, 2), _layer("d1", 400, 1600, 2)],
                    "pruned": [_layer("p0", 148, 400, 1),
                               _layer("p1", 200, 600, 2, bit_exact=pruned_exact)]},
        "steps": [{"step": "prune", "seconds": 1.5}, {"step": "replay", "seconds": 2.25}],
        "bench": bench}


def test_report_numbers():
    report = build_report(_facts())
    assert report["hardware"]["processing_elements"] == 4
    total = report["total"]
    assert (total["dense_cycles"], total["pruned_cycles"]) == (1204, 702)
    assert total["speedup"] == pytest.approx(1204 / 702)
    assert (total["dense_nonzero_macs"], total["pruned_nonzero_macs"]) == (4800, 2200)
    assert total["mac_reduction"] == pytest.approx(4800 / 2200)
    assert total["dense_utilization"] == pytest.approx(4800 / (4 * 1204))
    assert total["pruned_utilization"] == pytest.approx(2200 / (4 * 702))
    first = report["layers"][0]
    assert (first["dense"]["cycles"], first["pruned"]["cycles"]) == (602, 300)
    assert first["speedup"] == pytest.approx(602 / 300)
    assert first["mac_reduction"] == pytest.approx(2400 / 800)
    assert first["pruned"]["utilization"] == pytest.approx(800 / (4 * 300))
    assert first["pruned"]["units"]["attention_scores"]["instructions"] == 1
    units = {row["unit"]: row for row in report["units"]}
    assert list(units) == ["layernorm1", "q", "attention_scores", "control"]
    assert (units["q"]["dense_cycles"], units["q"]["pruned_cycles"]) == (800, 348)
    assert units["q"]["pruned_utilization"] == pytest.approx(1000 / (4 * 348))
    assert units["layernorm1"]["dense_utilization"] is None
    assert units["attention_scores"]["speedup"] == pytest.approx(200 / 150)
    assert report["bit_exact"] == {"dense": True, "pruned": True}
    assert report["cycle_exact"] == {"dense": True, "pruned": True}
    assert report["total_seconds"] == pytest.approx(3.75)


def test_exactness_flags_follow_the_replays():
    facts = _facts(pruned_exact=False)
    facts["replays"]["dense"][1]["instructions"][1]["model_cycles"] = 399
    report = build_report(facts)
    assert report["bit_exact"] == {"dense": True, "pruned": False}
    assert report["cycle_exact"] == {"dense": False, "pruned": True}
    assert not report["layers"][1]["dense"]["cycle_exact"]
    assert "| 1 | 602 | 402 | 1.50 |" in markdown(report)


BENCH_POINTS = [
    {"label": "bench: block pruning to 0.5", "kind": "bench pruned", "accuracy": 0.85,
     "linear_density": 0.5, "cycles": 800, "source": "build/bench/pruning.json, make bench"},
    {"label": "bench: keep 0.7, block pruned", "kind": "bench tokens", "accuracy": 0.83,
     "linear_density": 0.25, "cycles": None, "source": "build/bench/tokens.json, make bench"}]


def test_accuracy_points_carry_measured_cycles_and_their_sources():
    without = build_report(_facts())["accuracy_points"]
    assert [(p["label"], p["linear_density"], p["cycles"], p["accuracy"], p["source"])
            for p in without] == [
        ("dense teacher (float)", 1.0, 1204, 0.9, "report.json"),
        ("demo pruned (float)", 0.25, 702, 0.8, "report.json"),
        ("dense teacher (integer)", 1.0, 1204, 0.875, "golden dense")]
    with_bench = build_report(_facts(bench=BENCH_POINTS))["accuracy_points"][3:]
    assert with_bench == BENCH_POINTS


def test_the_answer_leads_the_markdown_and_the_console():
    report = build_report(_facts())
    answer = headline(report)
    assert answer == (
        "Pruned to 0.250 of its linear weights (1 of 4 heads removed), the toy reaches top-1 "
        "0.800 (dense 0.900; integer model - vs 0.875) and runs 1.72x faster on the layer "
        "engine RTL (1,204 -> 702 cycles per image) for 2.18x fewer MACs; utilization 0.997 "
        "dense, 0.783 pruned. Every layer of both models ran bit-exact to the golden model and "
        "cycle-exact to the cycle model.")
    text = markdown(report).splitlines()
    assert text[:3] == ["# Demo report: toy on the layer engine", "", answer]
    assert text[4:6] == ["|  | dense | pruned | pruned vs dense |", "|---|---:|---:|---|"]
    assert text[6:13] == [
        "| top-1 accuracy, float (torch) | 0.900 | 0.800 | -10.0 points |",
        "| top-1 accuracy, integer (golden model = RTL) | 0.875 | - | - |",
        "| cycles per image (measured) | 1,204 | 702 | 1.72x speed-up |",
        "| non-zero MACs per image | 4,800 | 2,200 | 2.18x fewer |",
        "| utilization (non-zero MACs / PE cycles) | 0.997 | 0.783 |  |",
        "| bit-exact (RTL == golden model) | yes | yes |  |",
        "| cycle-exact (RTL == cycle model) | yes | yes |  |"]
    console = console_summary(report).splitlines()
    assert " ".join(" ".join(console[:4]).split()) == answer
    assert console[6].split() == ["top-1", "accuracy,", "float", "(torch)", "0.900", "0.800",
                                  "-10.0", "points"]
    assert console[8].split() == ["cycles", "per", "image", "(measured)", "1,204", "702",
                                  "1.72x", "speed-up"]
    assert console[-2].split() == ["0", "602", "300", "2.01x", "3.00x", "0.997", "0.667"]


def test_whole_images_join_the_answer():
    facts = _facts()
    whole = {"images": 8, "bit_exact": True, "cycle_exact": True, "logits_equal": True,
             "top1_rtl": 0.875, "top1_integer": 0.875}
    facts["whole_images"] = {"dense": {**whole, "top1_rtl": 1.0, "top1_integer": 1.0},
                             "pruned": whole}
    report = build_report(facts)
    assert report["whole_images"] == facts["whole_images"]
    assert ("dense, 0.783 pruned. Both whole models ran on the RTL for 8 validation images, "
            "image in and logits out, program to program on chip (the host loads only the "
            "patch rows and the position table): logits equal to the integer model's on every "
            "image, top-1 on them 0.875 pruned, 1.000 dense. Every layer") in headline(report)
    text = markdown(report).splitlines()
    assert text[13:15] == [
        "| whole model on the RTL, 8 images: logits == integer model | yes | yes |  |",
        "| top-1 of those images, RTL (integer model) | 1.000 (1.000) | 0.875 (0.875) |  |"]
    facts["whole_images"]["pruned"]["logits_equal"] = False
    report = build_report(facts)
    assert "| whole model on the RTL, 8 images: logits == integer model | yes | NO |  |" in \
        markdown(report)
    assert "logits NOT equal" in headline(report)


def test_a_failed_check_is_the_answer_too():
    report = build_report(_facts(pruned_exact=False))
    assert headline(report).endswith("NOT every layer was bit-exact and cycle-exact: see the "
                                     "tables.")
    assert "| bit-exact (RTL == golden model) | yes | NO |  |" in markdown(report)


def test_layer_counts_must_match():
    facts = _facts()
    facts["replays"]["pruned"].pop()
    with pytest.raises(ValueError, match="2 dense layers vs 1 pruned layers"):
        build_report(facts)


def test_written_files(tmp_path):
    report = build_report(_facts(bench=BENCH_POINTS))
    paths = write_report(report, tmp_path / "demo")
    assert sorted(path.name for path in paths.values()) == sorted(
        ["report.json", "report.md", *PLOTS.values()])
    assert json.loads(paths["json"].read_text()) == json.loads(json.dumps(report))
    for what in PLOTS:
        assert paths[what].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = paths["markdown"].read_text()
    assert "| 0 | 602 | 300 | 2.01 | 2,400 | 800 | 3.00 | 0.997 | 0.667 | yes | yes |" in text
    assert "| q | 800 | 348 | 2.30 | 1.000 | 0.718 | yes |" in text
    assert ("| bench: block pruning to 0.5 | 0.500 | 800 | 0.850 | build/bench/pruning.json, "
            "make bench |" in text)
    assert "| bench: keep 0.7, block pruned | 0.250 | - | 0.830 |" in text
    assert ("Buffer depths (act_buffer_depth / weight_buffer_depth): dense 64 / 2,048; "
            "pruned 64 / 512." in text)
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == sorted(
        p.name for p in paths.values())          # no temporary files left behind
    first = {name: path.read_bytes() for name, path in paths.items()}
    write_report(report, tmp_path / "demo")
    assert {name: path.read_bytes() for name, path in paths.items()} == first


def _clocked(pruned_clock, dense_clock=None, note="no time at Fmax: (why; the command)"):
    facts = _facts()
    facts["clocks"] = {model: ({"clock": clock, "note": None} if clock else
                               {"clock": None, "note": note})
                       for model, clock in (("dense", dense_clock), ("pruned", pruned_clock))}
    return build_report(facts)


MEASURED = {"fmax_mhz": 50.0, "measured": True, "source": "build/p/synth/layer_engine.json",
            "dsp": 4}


def test_time_at_a_measured_fmax():
    report = _clocked(MEASURED, dict(MEASURED, fmax_mhz=40.0,
                                     source="build/d/synth/layer_engine.json"))
    total, first = report["total"], report["layers"][0]
    assert total["dense_equivalent_macs"] == 4800         # the dense replay's MACs, 2 layers
    # pruned: 702 cycles at 50 MHz = 14.04 us; 2 x 4800 operations in 14.04 us = 0.684 GOP/s
    assert total["pruned_at_fmax"] == {"fmax_mhz": 50.0, "latency_us": 14.04,
                                       "per_second": 71225.07, "effective_gops": 0.684,
                                       "gops_per_dsp": 0.1709}
    # dense: 1,204 cycles at 40 MHz = 30.1 us
    assert total["dense_at_fmax"]["latency_us"] == 30.1
    # layer 0 pruned: 300 cycles, 6 us, its dense layer's 2,400 MACs: 0.8 GOP/s
    assert first["pruned"]["at_fmax"] == {"fmax_mhz": 50.0, "latency_us": 6.0,
                                          "per_second": 166666.67, "effective_gops": 0.8,
                                          "gops_per_dsp": 0.2}
    assert report["clocks"]["pruned"] == {"clock": MEASURED, "note": None}
    assert headline(report).endswith(
        " At the measured Fmax of 50 MHz: 14.0 µs per image, 71,225.1 images per second, "
        "0.684 effective (dense-equivalent) GOP/s.")
    text = markdown(report)
    assert "| Fmax of the engine (MHz) | 40 | 50 |  |" in text
    assert "| latency per image (µs) | 30.1 | 14.0 | 2.14x faster |" in text
    assert "| images per second | 33,222.6 | 71,225.1 |  |" in text
    assert "| effective GOP/s (dense-equivalent) | 0.319 | 0.684 |  |" in text
    assert "| GOP/s per MULT18X18D | 0.0797 | 0.1709 |  |" in text
    assert "| 0 | 15.1 | 6.0 | 0.319 | 0.800 | 0.2000 |" in text        # 602 cycles at 40 MHz
    assert "| image | 30.1 | 14.0 | 0.319 | 0.684 | 0.1709 |" in text
    assert ("Clock, pruned (`toy_pruned`): 50 MHz, measured: the placed and routed layer "
            "engine (build/p/synth/layer_engine.json).") in text
    console = console_summary(report)
    assert "latency per image (µs)" in console
    assert ("  clock, dense (`toy_dense`): 40 MHz, measured: the placed and routed layer "
            "engine (build/d/synth/layer_engine.json)") in console.splitlines()


def test_a_given_clock_is_labelled_and_a_missing_one_named():
    given = {"fmax_mhz": 100, "measured": False, "source": "given", "dsp": None}
    report = _clocked(given)
    assert report["total"]["dense_at_fmax"] is None
    assert report["layers"][0]["dense"]["at_fmax"] is None
    assert "gops_per_dsp" not in report["total"]["pruned_at_fmax"]
    assert headline(report).endswith(" At the given (not measured) clock of 100 MHz: 7.0 µs "
                                     "per image, 142,450.1 images per second, 1.368 effective "
                                     "(dense-equivalent) GOP/s.")
    text = markdown(report)
    assert "| Fmax of the engine (MHz) | - | 100 (given) |  |" in text
    assert "| latency per image (µs) | - | 7.0 |  |" in text
    assert ("Clock, dense (`toy_dense`): no time at Fmax: (why; the command)." in text)


def test_without_any_clock_one_line_per_model_says_why():
    report = _clocked(None)
    assert report["total"]["pruned_at_fmax"] is None
    assert not headline(report).endswith("GOP/s.")
    text = markdown(report)
    assert "µs" not in text and "Fmax of the engine" not in text
    assert text.count("Clock, pruned (`toy_pruned`): no time at Fmax: (why; the command).") == 2
    assert "  clock, pruned (`toy_pruned`): no time at Fmax: (why; the command)" in (
        console_summary(report).splitlines())
    # facts from before clocks existed: still one line saying there is no time
    assert build_report(_facts())["clocks"]["dense"] == {
        "clock": None, "note": "no time at Fmax: no clock of the layer engine was measured"}
