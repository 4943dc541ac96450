"""Replay every linear of a weight image through the GEMM engine's RTL (cocotb + Verilator).

The jobs come from the image alone: the layer programs say which buffer each GEMM reads and
writes, the weights and quantization constants are the image's, and the activations are the
golden model's (run from the same image) for one input. One testbench run executes every job in
sequence on one engine built from the image's own config (``params.json``); its scoreboard checks
each job bit-exact against ``sw.golden.gemm`` and cycle-exact against ``sw.cycle_model.gemm``,
and :func:`run_image_gemms` also checks the outputs read back against the golden layer's tensor.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.gemm_cases import save_operands
from sim.harness import BuiltDesign, TestbenchFailed, run_testbench
from sw.golden.gemm import GemmOperands
from sw.image.format import TENSOR_ROLES, WeightImage
from sw.image.golden import encode
from sw.image.program import Buffer, Opcode

__all__ = ["ImageGemmJob", "image_gemm_jobs", "run_image_gemms"]


@dataclass(frozen=True, eq=False)
class ImageGemmJob:
    """One linear of one layer: its operands and the golden layer's output tensor."""

    name: str                    #: "layer0.q"
    operands: GemmOperands
    expected: np.ndarray         #: (tokens, out) int8, from the golden layer program


def image_gemm_jobs(image: WeightImage, x) -> list[ImageGemmJob]:
    """The GEMMs of every layer program, in program order, for one input ``x`` ``(T, hidden)``.

    ``x`` is the int16 encoder input (``IntegerDeiT.embed`` of one image).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"Expected one input of shape (tokens, hidden), found {x.shape}")
    traces: list[dict] = []
    encode(image, x, traces=traces)
    jobs = []
    for layer, trace in zip(image.layers, traces):
        for instruction in layer.program:
            if instruction.opcode != Opcode.GEMM:
                continue
            role = TENSOR_ROLES[instruction.arg]
            linear = layer.linears[role]
            source = trace[Buffer(instruction.src_a).name.lower()]
            jobs.append(ImageGemmJob(
                name=f"layer{layer.index}.{role}",
                operands=GemmOperands(x=source, weights=linear.weights, bias=linear.bias,
                                      multiplier=linear.multiplier, shift=linear.shift),
                expected=trace[Buffer(instruction.dst).name.lower()]))
    return jobs


def run_image_gemms(design: BuiltDesign, jobs: list[ImageGemmJob], work_dir: Path) -> list[dict]:
    """Run ``jobs`` in one testbench run; return each job's measurements with ``name`` and
    ``matches_layer`` (outputs read back == the golden layer's tensor).

    Raises
    ------
    sim.harness.TestbenchFailed
        If a job is not bit-exact or cycle-exact (the testbench's scoreboard), or its outputs
        differ from the golden layer's.
    """
    work_dir = Path(work_dir).resolve()
    outputs = work_dir / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, job in enumerate(jobs):
        paths.append(work_dir / f"job_{index}_{job.name}.npz")
        save_operands(job.operands, paths[-1])
    run_testbench(design, "sim.tb_block_sparse_gemm", work_dir, extra_env={
        "GEMM_OPERANDS": os.pathsep.join(str(path) for path in paths),
        "GEMM_RESULT": str(work_dir / "result.json"),
        "GEMM_OUTPUTS": str(outputs),
    })
    results = json.loads((work_dir / "result.json").read_text())["jobs"]
    if len(results) != len(jobs):
        raise TestbenchFailed(f"{len(jobs)} jobs sent, {len(results)} results in {work_dir}")
    for index, (job, result) in enumerate(zip(jobs, results)):
        found = np.load(outputs / f"output_{index}.npy")
        result["name"] = job.name
        result["matches_layer"] = bool(np.array_equal(found, job.expected))
        if not result["matches_layer"]:
            raise TestbenchFailed(f"{job.name}: the engine's outputs differ from the golden "
                                  f"layer's in {int(np.count_nonzero(found != job.expected))} "
                                  f"places ({work_dir})")
    return results
