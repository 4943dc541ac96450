"""cocotb testbench of ``TokenGather`` (run through ``sim.harness``, not collected by pytest).

Transaction level, on the simulation top ``TokenGatherBench``: load every token's score and row
(and, in index mode, the index list) through the load port, send the job, wait for ``done``
(the consumer's back-pressure comes from the top's LFSR, no Python runs while the unit works),
read the captured rows and the counters back. The scoreboard compares rows and source indices
with ``sw.golden.token_select`` (``==``) and the counters with ``sw.cycle_model.token_gather``
(given the LFSR's ready sequence).

Environment: ``ACCEL_CONFIG`` (config JSON), ``GATHER_JOBS`` (JSON list of jobs from
``sim/test_token_gather.py``; they run one after the other without reset), ``GATHER_RESULT``
(JSON written with every job's measurements, per back-pressure pattern).
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from hw.tokens.token_gather import GatherTarget, TokenGatherGeometry
from hw.tokens.token_gather_bench import ReadyPattern, ready_sequence
from sim.transactions import TransactionTB, field_offsets
from sw.config import AcceleratorConfig
from sw.cycle_model.token_gather import TokenGatherJob, token_gather_cycles
from sw.golden.token_select import TokenPruning, gather_by_scores, select_tokens
from sw.packing import pack_lanes, unpack_lanes

class GatherTB(TransactionTB):
    """Clock, reset, load / job / read-back drivers and the scoreboard."""

    def __init__(self, dut, config: AcceleratorConfig):
        super().__init__(dut)
        self.config = config
        self.geometry = g = TokenGatherGeometry.from_config(config)
        self.load_offsets = field_offsets(g.load_layout)
        self.job_offsets = field_offsets(g.job_layout)
        self.out_offsets = field_offsets(g.out_layout)

    async def reset(self, pattern: ReadyPattern):
        await super().reset(ready_pattern=pattern.value)

    async def load(self, target: GatherTarget, words: list[int]):
        """Write ``words`` from address 0 of ``target``, one per cycle."""
        dut, o = self.dut, self.load_offsets
        assert int(dut.load__ready.value) == 1, "load port not ready: unit busy"
        for addr, word in enumerate(words):
            dut.load__valid.value = 1
            dut.load__payload.value = (target.value << o["target"]) | (addr << o["addr"]) | (
                word << o["data"])
            await RisingEdge(dut.clk)
        dut.load__valid.value = 0

    async def run_job(self, job: TokenGatherJob) -> int:
        """Send ``job``, wait for ``done``; return clock cycles from acceptance to ``done``."""
        o = self.job_offsets
        fields = {"tokens": job.tokens, "keep": job.keep, "protected": job.protected,
                  "fuse": int(job.fuse), "indexed": int(job.indexed)}
        return await self.send_job(sum(value << o[name] for name, value in fields.items()))

    async def read_captured(self, count: int) -> list[int]:
        return await self.read_words(count)


def expected_output(job: TokenGatherJob, scores, rows, indices):
    """Golden rows ``(R, d)``, source indices and fused flags of ``job``."""
    if job.indexed:
        return rows[indices], list(indices), [0] * len(indices)
    pruning = TokenPruning(keep=job.keep, protected=job.protected, fuse=job.fuse)
    expected = gather_by_scores(rows, scores, pruning)
    kept = select_tokens(scores, pruning).tolist()
    fused = [0] * len(kept) + [1] * (len(expected) - len(kept))
    return expected, kept + [0] * (len(expected) - len(kept)), fused


async def run_one_job(tb: GatherTB, spec: dict, pattern: ReadyPattern) -> dict:
    g = tb.geometry
    job = TokenGatherJob(tokens=spec["tokens"], keep=spec["keep"],
                         protected=spec.get("protected", 1), fuse=spec.get("fuse", True),
                         indexed=spec.get("indexed", False))
    scores = np.asarray(spec["scores"], dtype=np.int64)
    rows = np.asarray(spec["rows"], dtype=np.int64)
    indices = spec.get("indices", [])
    await tb.load(GatherTarget.SCORE, [int(s) for s in scores])
    await tb.load(GatherTarget.ROW, pack_lanes(rows, g.element_width))
    if job.indexed:
        await tb.load(GatherTarget.INDEX, list(indices))
    edge_cycles = await tb.run_job(job)

    expected_rows, expected_index, expected_fused = expected_output(job, scores, rows, indices)
    captured = int(tb.dut.captured.value)
    tb.check(f"{spec['name']}: rows out", captured, len(expected_rows))
    words = await tb.read_captured(min(captured, len(expected_rows)))
    o = tb.out_offsets
    row_bits = (1 << g.row_layout.size) - 1
    found_rows = unpack_lanes([(w >> o["row"]) & row_bits for w in words], g.width,
                              g.element_width)
    index_mask = (1 << g.index_width) - 1
    found_index = [(w >> o["index"]) & index_mask for w in words]
    found_fused = [(w >> o["fused"]) & 1 for w in words]
    mismatches = int(np.count_nonzero(found_rows != expected_rows[:len(words)]))
    bit_exact = tb.check(f"{spec['name']}: row mismatches", mismatches, 0)
    tb.check(f"{spec['name']}: source indices", found_index, expected_index[:len(words)])
    tb.check(f"{spec['name']}: fused flags", found_fused, expected_fused[:len(words)])

    ready = ready_sequence(pattern, 4 * (edge_cycles + 8) + 64)
    model = token_gather_cycles(job, heads=g.heads, width=g.width, ready=ready)
    counters = {"total": int(tb.dut.total_cycles.value), "stall": int(tb.dut.stall_cycles.value)}
    tb.check(f"{spec['name']}: total cycles", counters["total"], model.total)
    tb.check(f"{spec['name']}: stall cycles", counters["stall"], model.stall)
    tb.check(f"{spec['name']}: cycles from acceptance to done", edge_cycles, model.total)
    return {"name": spec["name"], "pattern": pattern.name, "rows": len(expected_rows),
            "bit_exact": bit_exact and found_index == expected_index, "mismatches": mismatches,
            "cycles": counters["total"], "stall": counters["stall"], "edge_cycles": edge_cycles,
            "model_cycles": model.total, "model_stall": model.stall}


@cocotb.test()
@cocotb.parametrize(pattern=[ReadyPattern.ALWAYS, ReadyPattern.HALF, ReadyPattern.QUARTER])
async def gather_jobs(dut, pattern):
    """Every job in sequence without reset, under one back-pressure pattern."""
    config = AcceleratorConfig.from_json_file(os.environ["ACCEL_CONFIG"])
    tb = GatherTB(dut, config)
    await tb.reset(pattern)
    with open(os.environ["GATHER_JOBS"]) as handle:
        specs = json.load(handle)
    results = [await run_one_job(tb, spec, pattern) for spec in specs]
    if "GATHER_RESULT" in os.environ:
        path = f"{os.environ['GATHER_RESULT']}.{pattern.name.lower()}.json"
        with open(path, "w") as handle:
            json.dump(results, handle, indent=2)
    assert tb.errors == 0, f"{tb.errors} scoreboard errors (see log)"
