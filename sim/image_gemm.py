"""Replay every linear of a weight image through the GEMM engine's RTL (cocotb + Verilator).

The jobs come from the image alone: the layer programs say which buffer each GEMM reads and
writes, and the activations are the golden model's (run from the same image) for one input. The
testbench process itself loads the weights and quantization constants from the image file
(``GEMM_IMAGE``; only the activations travel beside it, in an ``.npz``). One testbench run
executes every job in sequence on one engine built from the image's own config
(``params.json``); its scoreboard checks each job bit-exact against ``sw.golden.gemm`` and
cycle-exact against ``sw.cycle_model.gemm``, and :func:`run_image_gemms` also checks the outputs
read back against the golden layer's tensor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.harness import BuiltDesign, TestbenchFailed, run_testbench
from sw.golden.gemm import GemmOperands
from sw.image.format import TENSOR_ROLES, WeightImage
from sw.image.program import Buffer, Opcode

__all__ = ["ImageGemmJob", "image_operands", "image_gemm_jobs", "run_image_gemms"]


def image_operands(image: WeightImage, name: str, x) -> GemmOperands:
    """Operands of linear ``name`` (``"layer1.fc2"``) of ``image`` for activations ``x``."""
    layer, role = name.split(".")
    linear = image.layers[int(layer.removeprefix("layer"))].linears[role]
    return GemmOperands(x=np.asarray(x), weights=linear.weights, bias=linear.bias,
                        multiplier=linear.multiplier, shift=linear.shift)


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
    from sw.image.golden import encode       # torch-free import for the testbench process
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
            name = f"layer{layer.index}.{TENSOR_ROLES[instruction.arg]}"
            source = trace[Buffer(instruction.src_a).name.lower()]
            jobs.append(ImageGemmJob(       # the GEMM's output, before the layer's epilogue
                name=name, operands=image_operands(image, name, source),
                expected=trace[TENSOR_ROLES[instruction.arg]]))
    return jobs


def run_image_gemms(design: BuiltDesign, image_path: Path, jobs: list[ImageGemmJob],
                    work_dir: Path) -> list[dict]:
    """Run ``jobs`` in one testbench run, weights loaded from ``image_path`` by the testbench;
    return each job's measurements with ``name`` and ``matches_layer`` (outputs read back ==
    the golden layer's tensor).

    Raises
    ------
    sim.harness.TestbenchFailed
        If a job is not bit-exact or cycle-exact (the testbench's scoreboard), or its outputs
        differ from the golden layer's.
    """
    work_dir = Path(work_dir).resolve()
    outputs = work_dir / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    activations = work_dir / "activations.npz"
    np.savez(activations, **{job.name: job.operands.x for job in jobs})
    run_testbench(design, "sim.tb_block_sparse_gemm", work_dir, extra_env={
        "GEMM_IMAGE": str(Path(image_path).resolve()),
        "GEMM_IMAGE_ACTIVATIONS": str(activations),
        "GEMM_IMAGE_JOBS": ",".join(job.name for job in jobs),
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
