"""Shared cocotb testbench of the special-function units in ``hw.units.stream_harness``.

Transaction level: per job, load the constants (and LayerNorm's gamma / beta) and the input
beats through the load port, send the job, wait for ``done`` (no Python runs while the unit
computes), read the output beats and the counters. The scoreboard compares the outputs with the
golden kernel (``==``) and the cycle counter with ``sw.cycle_model.units``: equal on ungated
streams; with idle input cycles or back-pressure (``in_gap``, ``out_gap``), at least the model
and at most the model plus the gated cycles.

Environment: ``ACCEL_CONFIG`` (config JSON), ``UNIT`` (softmax, gelu, layernorm), ``UNIT_JOBS``
(``.npz`` files of ``sim.unit_cases.UnitJob``, separated by ``os.pathsep``, run one after the
other without reset), ``UNIT_RESULT`` (JSON written with every job's measurements).
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from hw.generate import TOPS
from hw.units.stream_harness import CONSTANT_CHUNK, LoadTarget
from sim.transactions import TransactionTB, field_offsets
from sim.unit_cases import UnitJob
from sw.config import AcceleratorConfig
from sw.packing import beats_to_rows, pack_lanes, rows_to_beats, unpack_lanes


class UnitTB(TransactionTB):
    """Clock, reset, load / job / read-back drivers and the scoreboard of one unit harness."""

    def __init__(self, dut, config: AcceleratorConfig, unit: str):
        super().__init__(dut)
        self.harness = TOPS[f"{unit}_harness"](config)
        self.unit = self.harness.unit
        members = self.harness.signature.members
        self.load_offsets = field_offsets(members["load"].signature.members["payload"].shape)
        self.job_offsets = field_offsets(members["job"].signature.members["payload"].shape)
        unit_members = self.unit.signature.members
        self.in_width = unit_members["i"].signature.members["payload"].shape.elem_shape.width
        out_shape = unit_members["o"].signature.members["payload"].shape.elem_shape
        self.out_width, self.out_signed = out_shape.width, out_shape.signed
        self.constants_layout = unit_members["constants"].shape

    async def load(self, target: LoadTarget, words: list[int], addresses=None):
        """Write ``words`` (at ``addresses``, default 0, 1, ..) of ``target``, one per cycle."""
        dut, o = self.dut, self.load_offsets
        assert int(dut.load__ready.value) == 1, "load port not ready: harness busy"
        head = target.value << o["target"]
        for index, word in enumerate(words):
            addr = index if addresses is None else addresses[index]
            dut.load__valid.value = 1
            dut.load__payload.value = head | (addr << o["addr"]) | (word << o["data"])
            await RisingEdge(dut.clk)
        dut.load__valid.value = 0

    async def run_job(self, *, beats: int, seed: int, in_gap: int, out_gap: int):
        o = self.job_offsets
        fields = {"beats": beats, "seed": seed, "in_gap": in_gap, "out_gap": out_gap}
        await self.send_job(sum(v << o[k] for k, v in fields.items()))

    async def read_outputs(self, count: int) -> list[int]:
        return await self.read_words(count)

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        return ok or self.fail(f"{what} {detail}")

    async def run(self, job: UnitJob) -> dict:
        """Load, run and check one job; return its measurements."""
        unit = self.unit
        constants = job.constants()
        expected = job.expected(constants)
        rows = job.stream_rows()
        if job.unit == "layernorm":
            values = unit.constant_values(constants)
            words = unit.affine_words(constants)
            affine = unit.signature.members["affine"].signature.members["payload"].shape
            await self.load(LoadTarget.AFFINE,
                            [affine.const(w).as_value().value for w in words],
                            [w["addr"] for w in words])
        elif job.unit == "softmax":
            values = unit.constant_values(constants, rows.shape[1])
        else:
            values = unit.constant_values(constants)
        packed = self.constants_layout.const(values).as_value().value
        chunks = -(-self.constants_layout.size // CONSTANT_CHUNK)
        await self.load(LoadTarget.CONSTANTS, [(packed >> (CONSTANT_CHUNK * n))
                                               & ((1 << CONSTANT_CHUNK) - 1)
                                               for n in range(chunks)])
        beats = rows_to_beats(rows, unit.lanes)
        assert len(beats) <= self.harness.depth, f"{len(beats)} beats exceed the harness"
        started = time.monotonic()
        await self.load(LoadTarget.INPUT, pack_lanes(beats, self.in_width))
        load_seconds = time.monotonic() - started
        started = time.monotonic()
        await self.run_job(beats=len(beats), seed=job.seed, in_gap=job.in_gap,
                           out_gap=job.out_gap)
        sim_seconds = time.monotonic() - started
        words = await self.read_outputs(len(beats))
        found = beats_to_rows(unpack_lanes(words, unit.lanes, self.out_width,
                                           signed=self.out_signed), rows.shape[1])
        found = found.reshape(expected.shape)
        mismatches = int(np.count_nonzero(found != expected))
        if not self.check(f"{job.name}: output mismatches", mismatches == 0, str(mismatches)):
            first = tuple(np.argwhere(found != expected)[0])
            self.log.error("first mismatch at %s: found %d, expected %d", first,
                           found[first], expected[first])
        cycles = int(self.dut.cycles.value)
        in_gated, out_gated = int(self.dut.in_gated.value), int(self.dut.out_gated.value)
        model = job.cycles(unit.timing)
        if job.in_gap == 0 and job.out_gap == 0:
            self.check(f"{job.name}: cycles", cycles == model.total and in_gated == out_gated
                       == 0, f"found {cycles}, model {model.total}")
        else:
            self.check(f"{job.name}: gated cycles",
                       model.total <= cycles <= model.total + in_gated + out_gated,
                       f"found {cycles}, model {model.total}, gated {in_gated} + {out_gated}")
        return {"name": job.name, "unit": job.unit, "lanes": unit.lanes,
                "rows": int(rows.shape[0]), "length": int(rows.shape[1]),
                "elements": int(job.x.size), "beats": len(beats), "cycles": cycles,
                "model_cycles": model.total, "latency": model.latency,
                "in_gap": job.in_gap, "out_gap": job.out_gap, "in_gated": in_gated,
                "out_gated": out_gated, "mismatches": mismatches, "bit_exact": mismatches == 0,
                "elements_per_cycle_per_lane": job.x.size / (cycles * unit.lanes),
                "sim_seconds": sim_seconds, "load_seconds": load_seconds}


async def run_unit_jobs(dut, unit: str) -> None:
    """Every job of ``UNIT_JOBS`` in sequence on one harness; results to ``UNIT_RESULT``."""
    config = AcceleratorConfig.from_json_file(os.environ["ACCEL_CONFIG"])
    tb = UnitTB(dut, config, unit)
    await tb.reset()
    results = []
    for path in os.environ["UNIT_JOBS"].split(os.pathsep):
        results.append(await tb.run(UnitJob.load(path)))
    if "UNIT_RESULT" in os.environ:
        with open(os.environ["UNIT_RESULT"], "w") as handle:
            json.dump(results, handle, indent=2)
    assert tb.errors == 0, f"{tb.errors} scoreboard errors (see log)"
