"""Jobs of the special-function unit co-simulation: inputs, real scales, stream gaps; their
golden constants, expected outputs and predicted cycles (``sw.golden``, ``sw.cycle_model``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sw.cycle_model.units import UnitCycles, gelu_cycles, layernorm_cycles, softmax_cycles
from sw.golden.encoder_layer import PROBABILITY_BITS, RESIDUAL_BITS
from sw.golden.kernels import (gelu_constants, gelu_int, layernorm_constants, layernorm_int,
                               softmax_constants, softmax_int)

UNITS = ("softmax", "gelu", "layernorm")


@dataclass(eq=False)
class UnitJob:
    """One job: ``x`` is ``(rows, length)`` (GELU: any rows, streamed flat).

    ``scales``: softmax ``{"input_scale"}``, GELU ``{"input_scale", "out_scale"}``, LayerNorm
    ``{"out_scale"}`` with ``gamma`` and ``beta`` (real, shape ``(length,)``).
    """

    unit: str
    x: np.ndarray
    scales: dict
    gamma: np.ndarray = field(default_factory=lambda: np.zeros(0))
    beta: np.ndarray = field(default_factory=lambda: np.zeros(0))
    in_gap: int = 0
    out_gap: int = 0
    seed: int = 1
    name: str = ""

    def constants(self):
        """The golden constants, built as ``sw.golden.encoder_layer`` builds them."""
        s = self.scales
        if self.unit == "softmax":
            return softmax_constants(s["input_scale"], out_bits=PROBABILITY_BITS)
        if self.unit == "gelu":
            return gelu_constants(s["input_scale"], s["out_scale"], in_width=8)
        return layernorm_constants(self.gamma, self.beta, s["out_scale"], in_width=RESIDUAL_BITS)

    def expected(self, constants) -> np.ndarray:
        kernel = {"softmax": softmax_int, "gelu": gelu_int, "layernorm": layernorm_int}[self.unit]
        return kernel(self.x, constants)

    def stream_rows(self) -> np.ndarray:
        """The rows as the unit sees them (GELU: one flat row)."""
        return self.x.reshape(1, -1) if self.unit == "gelu" else self.x

    def cycles(self, timing) -> UnitCycles:
        if self.unit == "gelu":
            return gelu_cycles(timing, self.x.size)
        model = softmax_cycles if self.unit == "softmax" else layernorm_cycles
        return model(timing, rows=self.x.shape[0], length=self.x.shape[1])

    def split(self, lanes: int, depth: int) -> list["UnitJob"]:
        """This job as jobs of whole rows of at most ``depth`` beats each."""
        if self.unit == "gelu":
            return [self]
        per_row = -(-self.x.shape[1] // lanes)
        rows = max(1, depth // per_row)
        return [UnitJob(self.unit, self.x[start:start + rows], self.scales, self.gamma,
                        self.beta, self.in_gap, self.out_gap, self.seed + start,
                        f"{self.name}" if start == 0 else f"{self.name}_from{start}")
                for start in range(0, self.x.shape[0], rows)]

    def save(self, path: Path) -> None:
        meta = dict(unit=self.unit, scales=self.scales, in_gap=self.in_gap,
                    out_gap=self.out_gap, seed=self.seed, name=self.name)
        np.savez(path, x=self.x, gamma=self.gamma, beta=self.beta,
                 meta=np.array(json.dumps(meta)))

    @classmethod
    def load(cls, path: Path) -> "UnitJob":
        with np.load(path) as archive:
            meta = json.loads(str(archive["meta"]))
            return cls(x=archive["x"], gamma=archive["gamma"], beta=archive["beta"], **meta)


def softmax_jobs(max_len: int, *, elements: int, seed: int = 0) -> list[UnitJob]:
    """Random rows of several lengths (the longest included) over about ``elements`` scores,
    and the extremes: equal rows, one huge score, int32 limits, one-score rows."""
    g = np.random.default_rng(seed)
    lengths = sorted({max_len, max(1, max_len // 2 + 1), max(1, max_len // 3), 2, 1},
                     reverse=True)
    jobs = []
    for index, length in enumerate(lengths):
        rows = -(-elements // (len(lengths) * length))          # at least elements in all
        spread = g.choice([20, 300, 5000, 1 << 20], size=(rows, 1))
        x = np.round(g.normal(0, 1, (rows, length)) * spread).astype(np.int64)
        x += g.integers(-(1 << 20), 1 << 20, (rows, 1))
        jobs.append(UnitJob("softmax", x, {"input_scale": float(g.choice([0.05, 1 / 1500,
                                                                          2.0 ** -12]))},
                            seed=index + 1, name=f"random_len{length}"))
    low, high = -(1 << 31), (1 << 31) - 1
    extremes = np.zeros((6, max_len), dtype=np.int64)
    extremes[0] = 123                                     # all equal
    extremes[1] = low
    extremes[1, max_len // 2] = high                      # a single huge score
    extremes[2] = high                                    # all at the top
    extremes[3] = np.where(np.arange(max_len) % 2, low, high)
    extremes[4, -1] = 3000                                # huge score in the last lane
    extremes[5] = -np.arange(max_len) * 7
    jobs.append(UnitJob("softmax", extremes, {"input_scale": 0.05}, seed=9, name="extremes"))
    jobs.append(UnitJob("softmax", np.array([[low], [high], [0]]), {"input_scale": 0.05},
                        seed=10, name="single_scores"))
    return jobs


def gelu_jobs() -> list[UnitJob]:
    """Every int8 input under several (input, output) scale pairs."""
    every = np.arange(-128, 128, dtype=np.int64).reshape(1, -1)
    pairs = [(0.02, 0.02), (0.05, 0.03), (1e-2, 0.05), (0.1, 0.1), (0.03, 0.005)]
    return [UnitJob("gelu", every, {"input_scale": s, "out_scale": o}, seed=n + 1,
                    name=f"all_int8_{s}_{o}") for n, (s, o) in enumerate(pairs)]


def layernorm_jobs(max_len: int, *, elements: int, seed: int = 0) -> list[UnitJob]:
    """Random rows of several lengths (the longest included) over about ``elements`` values,
    and the extremes: constant rows (zero variance), int16 limits, one outlier."""
    g = np.random.default_rng(seed)
    lengths = sorted({max_len, max(2, max_len // 2 + 1), max(2, max_len // 5), 2},
                     reverse=True)
    jobs = []
    for index, length in enumerate(lengths):
        rows = -(-elements // (len(lengths) * length))          # at least elements in all
        spread = g.choice([1, 30, 2000, 12000], size=(rows, 1))
        x = np.round(g.normal(0, 1, (rows, length)) * spread
                     + g.normal(0, 3000, (rows, 1))).clip(-32768, 32767).astype(np.int64)
        jobs.append(UnitJob("layernorm", x, {"out_scale": float(g.choice([0.05, 0.02, 0.2]))},
                            gamma=g.normal(1, 0.3, length), beta=g.normal(0, 0.5, length),
                            seed=index + 1, name=f"random_len{length}"))
    extremes = np.zeros((6, max_len), dtype=np.int64)
    extremes[0] = 5                                       # zero variance
    extremes[1] = -32768                                  # zero variance at the limit
    extremes[2] = np.where(np.arange(max_len) % 2, -32768, 32767)
    extremes[3, 0] = 32767                                # one outlier
    extremes[4] = np.arange(max_len) - max_len // 2
    extremes[5] = 32767
    extremes[5, -1] = -32768
    jobs.append(UnitJob("layernorm", extremes, {"out_scale": 0.05},
                        gamma=g.normal(0, 1, max_len), beta=g.normal(0, 2, max_len),
                        seed=9, name="extremes"))
    return jobs


#: Tokens of the benchmark's GELU slice: 64 x 3072 values fill most of the harness memory.
GELU_TOKENS = 64


def benchmark_jobs(config) -> list[UnitJob]:
    """One job per unit at the config's model sizes, drawn like real activations (fixed seed):
    what ``make bench`` (``bench/units.py``) co-simulates on the deit_b16 units."""
    m = config.model
    g = np.random.default_rng(2026)
    scale = 0.02
    scores = np.round(g.normal(0, 3, (m.tokens, m.tokens)) / scale).astype(np.int64)
    residual = np.round(g.normal(0, 4000, (m.tokens, m.hidden_size))
                        + g.normal(0, 2000, (m.tokens, 1))).clip(-32768, 32767).astype(np.int64)
    fc1 = g.integers(-128, 128, (GELU_TOKENS, m.ffn_size))
    return [
        UnitJob("softmax", scores, {"input_scale": scale}, name="softmax"),
        UnitJob("gelu", fc1, {"input_scale": 0.03, "out_scale": 0.02}, name="gelu"),
        UnitJob("layernorm", residual, {"out_scale": 0.05}, gamma=g.normal(1, 0.2, m.hidden_size),
                beta=g.normal(0, 0.3, m.hidden_size), name="layernorm"),
    ]


def three_lane_config(config):
    """``config`` with 3 lanes in every unit: rows of the tiny preset (17 tokens, hidden 64)
    and the 256 GELU inputs then end in partial beats."""
    return config.replace(name=f"{config.name}_3lanes", hardware={
        "softmax_lanes": 3, "gelu_lanes": 3, "layernorm_lanes": 3})


def with_gaps(jobs: list[UnitJob], in_gap: int, out_gap: int) -> list[UnitJob]:
    """The same jobs with idle input cycles / back-pressure (``gap / 256`` of the cycles)."""
    for n, job in enumerate(jobs):
        job.in_gap, job.out_gap, job.seed = in_gap, out_gap, 1000 * in_gap + out_gap + n + 1
        job.name = f"{job.name}_gaps{in_gap}_{out_gap}"
    return jobs


def run_unit_jobs(design, unit: str, jobs: list[UnitJob], work_dir: Path) -> list[dict]:
    """Run ``jobs`` in sequence through ``sim/tb_<unit>.py``; return each job's measurements."""
    from sim.harness import run_testbench      # needs cocotb_tools; the cases above do not

    from hw.units.stream_harness import HARNESS_DEPTH

    lanes = getattr(design.config.hardware, f"{unit}_lanes")
    jobs = [part for job in jobs for part in job.split(lanes, HARNESS_DEPTH)]
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, job in enumerate(jobs):
        paths.append(work_dir / f"job{n}.npz")
        job.save(paths[-1])
    result = work_dir / "result.json"
    run_testbench(design, f"sim.tb_{unit}", work_dir, extra_env={
        "UNIT_JOBS": os.pathsep.join(str(path) for path in paths),
        "UNIT_RESULT": str(result)})
    return json.loads(result.read_text())
