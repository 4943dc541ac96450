"""cocotb testbench of ``BlockSparseGemm`` (run through ``sim.harness``, not collected by pytest).

Transaction level: load every memory through the load port, send the job, wait for ``done``
(no Python runs while the engine computes), read the outputs and counters back. The scoreboard
compares outputs with ``sw.golden.gemm`` (``==``) and every counter with ``sw.cycle_model.gemm``.

Environment: ``ACCEL_CONFIG`` (config JSON), ``GEMM_OPERANDS`` (``.npz`` files from
``sim.gemm_cases.save_operands``, separated by ``os.pathsep``: the jobs run one after the other
with no reset between them) or, instead, ``GEMM_IMAGE`` (a weight image, read with
``sw.image.loader``), ``GEMM_IMAGE_JOBS`` (comma-separated linears, ``layer0.q,layer0.k,...``)
and ``GEMM_IMAGE_ACTIVATIONS`` (``.npz`` of each job's activations by linear name),
``GEMM_RESULT`` (JSON written with the last job's measurements,
plus ``jobs``: every job's, in order), ``GEMM_OUTPUTS`` (a directory that receives each job's
outputs read back from the engine as ``output_<job>.npy``), ``GEMM_LOAD_GAPS=1`` (idle cycles
in the load stream).
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from hw.gemm.geometry import GemmGeometry, LoadTarget, check_job_fits
from sim.gemm_cases import load_operands
from sim.image_gemm import image_operands
from sim.transactions import TransactionTB
from sw.config import AcceleratorConfig
from sw.cycle_model.gemm import gemm_cycles
from sw.golden.gemm import block_sparse_gemm
from sw.image.loader import load_image
from sw.packing import pack_gemm, unpack_outputs


class GemmTB(TransactionTB):
    """Clock, reset, load / job / read-back drivers and the scoreboard for one engine."""

    def __init__(self, dut, config: AcceleratorConfig):
        super().__init__(dut)
        self.config = config
        self.hw = config.hardware
        self.geometry = GemmGeometry.from_config(config)
        offsets = self.geometry.field_offsets(self.geometry.load_layout)
        self._addr_shift, self._data_shift = offsets["addr"], offsets["data"]
        self._target_shift = offsets["target"]
        self._job_offsets = self.geometry.field_offsets(self.geometry.job_layout)

    async def load(self, target: LoadTarget, words: list[int], gaps: bool = False):
        """Write ``words`` from address 0 of ``target``'s memory, one per cycle; with ``gaps``,
        ``valid`` drops for a cycle after every third word, with a garbage payload."""
        assert int(self.dut.load__ready.value) == 1, "load port not ready: engine busy"
        dut, head = self.dut, target.value << self._target_shift
        for addr, word in enumerate(words):
            dut.load__valid.value = 1
            dut.load__payload.value = head | (addr << self._addr_shift) | (word << self._data_shift)
            await RisingEdge(dut.clk)
            if gaps and addr % 3 == 2:
                dut.load__valid.value = 0
                dut.load__payload.value = head | (addr << self._addr_shift)   # would zero it
                await RisingEdge(dut.clk)
        dut.load__valid.value = 0

    async def run_job(self, *, tokens: int, in_tiles: int, out_block_rows: int) -> int:
        """Send a job and wait for ``done``; return clock cycles from acceptance to ``done``."""
        fields = {"tokens": tokens, "in_tiles": in_tiles, "out_block_rows": out_block_rows}
        return await self.send_job(sum(v << self._job_offsets[k] for k, v in fields.items()))

    async def read_outputs(self, count: int) -> list[int]:
        """Read output words ``0 .. count-1`` (one per cycle, registered read port)."""
        return await self.read_words(count)


@cocotb.test()
async def gemm_jobs(dut):
    """Block-sparse GEMM jobs in sequence: bit-exact outputs, cycle-exact counters."""
    config = AcceleratorConfig.from_json_file(os.environ["ACCEL_CONFIG"])
    tb = GemmTB(dut, config)
    await tb.reset()
    results = []
    for job, operands in enumerate(jobs_from_environment()):
        result, found = await run_one_job(tb, operands)
        results.append(result)
        if "GEMM_OUTPUTS" in os.environ:
            np.save(os.path.join(os.environ["GEMM_OUTPUTS"], f"output_{job}.npy"), found)
    if "GEMM_RESULT" in os.environ:
        with open(os.environ["GEMM_RESULT"], "w") as handle:
            json.dump({**results[-1], "jobs": results}, handle, indent=2)
    assert tb.errors == 0, f"{tb.errors} scoreboard errors (see log)"


def jobs_from_environment():
    """The operands of each job, from ``GEMM_OPERANDS`` or from ``GEMM_IMAGE``."""
    if "GEMM_IMAGE" in os.environ:
        image = load_image(os.environ["GEMM_IMAGE"])
        with np.load(os.environ["GEMM_IMAGE_ACTIVATIONS"]) as activations:
            return [image_operands(image, name, activations[name])
                    for name in os.environ["GEMM_IMAGE_JOBS"].split(",")]
    return [load_operands(path) for path in os.environ["GEMM_OPERANDS"].split(os.pathsep)]


async def run_one_job(tb: GemmTB, operands) -> tuple[dict, np.ndarray]:
    """Load, run and check one job; return its measurements and the outputs read back."""
    dut, hw = tb.dut, tb.hw
    tokens, inner, outer = operands.shape

    image = pack_gemm(operands, array_rows=hw.array_rows, array_cols=hw.array_cols,
                      data_width=hw.data_width, acc_width=hw.acc_width,
                      multiplier_width=hw.multiplier_width)
    memories = {LoadTarget.ACTIVATION: image.activation, LoadTarget.WEIGHT: image.weight,
                LoadTarget.ROW_PTR: image.row_ptr, LoadTarget.COL_IDX: image.col_idx,
                LoadTarget.QUANT: image.quant}
    check_job_fits(tb.geometry, tokens=tokens, inner=inner, outer=outer,
                   words={target: len(words) for target, words in memories.items()})
    expected = block_sparse_gemm(operands, data_width=hw.data_width, acc_width=hw.acc_width,
                                 multiplier_width=hw.multiplier_width)
    model = gemm_cycles(array_rows=hw.array_rows, array_cols=hw.array_cols,
                        block_rows=hw.block_rows, block_cols=hw.block_cols, tokens=tokens,
                        block_mask=operands.weights.block_mask())

    started = time.monotonic()
    gaps = os.environ.get("GEMM_LOAD_GAPS") == "1"
    for target, words in memories.items():
        await tb.load(target, words, gaps=gaps)
    load_seconds = time.monotonic() - started

    started = time.monotonic()
    edge_cycles = await tb.run_job(tokens=tokens, in_tiles=inner // hw.array_rows,
                                   out_block_rows=outer // hw.block_rows)
    compute_seconds = time.monotonic() - started

    started = time.monotonic()
    words = await tb.read_outputs(tokens * outer // hw.array_cols)
    found = unpack_outputs(words, tokens, outer, hw.array_cols, hw.data_width)
    readback_seconds = time.monotonic() - started

    mismatches = int(np.count_nonzero(found != expected))
    bit_exact = tb.check("output mismatches", mismatches, 0)
    if not bit_exact:
        m, n = np.argwhere(found != expected)[0]
        dut._log.error("first mismatch at Y[%d, %d]: found %d, expected %d",
                       m, n, found[m, n], expected[m, n])
    counters = {"total": int(dut.total_cycles.value), "busy": int(dut.busy_cycles.value),
                "stall": int(dut.stall_cycles.value)}
    predicted = {"total": model.total, "busy": model.busy, "stall": model.stall}
    for name in counters:
        tb.check(f"{name} cycles", counters[name], predicted[name])
    tb.check("cycles from acceptance to done", edge_cycles, model.total)

    return {
        "shape": [tokens, inner, outer], "block_density": operands.weights.block_density,
        "cycles": counters["total"], "busy": counters["busy"], "stall": counters["stall"],
        "edge_cycles": edge_cycles, "model_cycles": model.total, "model_busy": model.busy,
        "model_stall": model.stall, "ideal_cycles": model.ideal, "tiles": model.tiles,
        "nonzero_tiles": model.nonzero_tiles, "bit_exact": bit_exact,
        "mismatches": mismatches, "saturated_outputs": int(np.count_nonzero(
            np.abs(expected) >= (1 << (hw.data_width - 1)) - 1)),
        "sim_seconds": compute_seconds, "load_seconds": load_seconds,
        "readback_seconds": readback_seconds,
        "cycles_per_second": counters["total"] / max(compute_seconds, 1e-9),
    }, found
