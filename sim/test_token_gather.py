"""Co-simulation of TokenGather (cocotb + Verilator): bit-exact and cycle-exact.

Hardware shape is the pytest axis (one Verilator build per shape per session); the consumer's
back-pressure (always ready, about 1/2, about 1/4, from an LFSR in the simulation top) is the
testbench's ``@cocotb.parametrize`` axis. Every run plays the same job list in sequence without
reset; the scoreboard compares with ``sw.golden.token_select`` and
``sw.cycle_model.token_gather``, and this test re-reads the measurements and asserts them too.
"""

import dataclasses
import json

import numpy as np
import pytest

from sim.harness import build, run_testbench
from sw.config import load_config, minimum_buffers
from sw.golden.token_select import keep_count

pytestmark = pytest.mark.sim

PATTERNS = ("always", "half", "quarter")


def _shape(name: str, tokens: int, heads: int):
    tiny = load_config("tiny")
    model = dataclasses.replace(tiny.model, tokens=tokens, num_heads=heads,
                                head_dim=tiny.model.hidden_size // heads)
    shape = {key: getattr(tiny.hardware, key) for key in ("array_rows", "array_cols",
                                                           "block_rows", "block_cols")}
    return tiny.replace(name=name, model=model, hardware=minimum_buffers(model, **shape))


SHAPES = {
    "tiny": load_config("tiny"),                        # 17 tokens, 4 heads: 10-bit scores
    "digits_8heads": _shape("digits_8heads", 66, 8),    # the digits DeiT's 66 tokens, 11 bits
}


def _attention_scores(rng, tokens: int, heads: int) -> np.ndarray:
    """CLS rows of Q0.8 softmax probabilities, summed over heads (as the golden layer does)."""
    logits = rng.normal(0, 2, (heads, tokens))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return np.minimum(np.round(probs * 256), 255).astype(np.int64).sum(0)


def jobs_for(config, seed: int = 0) -> list[dict]:
    m = config.model
    tokens, heads, width = m.tokens, m.num_heads, m.hidden_size
    rng = np.random.default_rng(seed)

    def rows(count=tokens):
        return rng.integers(-2**15, 2**15, (count, width)).tolist()

    extreme = np.where(rng.random((tokens, width)) < 0.5, -2**15, 2**15 - 1).tolist()
    short = tokens // 2 + 1
    window = np.arange(tokens).reshape(-1, 1) if tokens % 2 else np.arange(tokens).reshape(2, -1)
    indices = window.T.reshape(-1).tolist()[: tokens - 1] + [0]      # a transpose and a repeat
    score = lambda: _attention_scores(rng, tokens, heads).tolist()   # noqa: E731
    return [
        dict(name="keep07_fused", tokens=tokens, protected=2, fuse=True,
             keep=keep_count(tokens - 2, 0.7), scores=score(), rows=rows()),
        dict(name="keep05_dropped", tokens=tokens, protected=2, fuse=False,
             keep=keep_count(tokens - 2, 0.5), scores=score(), rows=rows()),
        dict(name="many_ties", tokens=tokens, protected=1, fuse=True, keep=(tokens - 1) // 2,
             scores=rng.integers(0, 3, tokens).tolist(), rows=rows()),
        dict(name="zero_scores_extreme_rows", tokens=tokens, protected=1, fuse=True, keep=3,
             scores=[0] * tokens, rows=extreme),
        dict(name="max_scores", tokens=tokens, protected=1, fuse=True, keep=tokens // 3,
             scores=[heads * 255] * tokens, rows=rows()),
        dict(name="keep_all", tokens=tokens, protected=2, fuse=True, keep=tokens - 2,
             scores=score(), rows=rows()),
        dict(name="keep_one", tokens=tokens, protected=1, fuse=True, keep=1, scores=score(),
             rows=rows()),
        # fewer rows than the unit holds: what earlier jobs left above row `short` is ignored
        dict(name="short", tokens=short, protected=2, fuse=True,
             keep=keep_count(short - 2, 0.7), scores=_attention_scores(rng, short, heads)
             .tolist(), rows=rows(short)),
        dict(name="indexed", tokens=tokens, indexed=True, keep=len(indices), indices=indices,
             scores=score(), rows=rows()),
    ]


@pytest.fixture(scope="module")
def built():
    cache = {}

    def get(config):
        if config.name not in cache:
            cache[config.name] = build(config, top="token_gather_bench")
        return cache[config.name]
    return get


@pytest.mark.parametrize("shape", [
    "tiny", pytest.param("digits_8heads", marks=pytest.mark.slow)])   # its build takes minutes
def test_token_gather_matches_golden_and_cycle_model(shape, built, tmp_path):
    config = SHAPES[shape]
    jobs = jobs_for(config)
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    run_testbench(built(config), "sim.tb_token_gather", tmp_path, extra_env={
        "GATHER_JOBS": str(tmp_path / "jobs.json"),
        "GATHER_RESULT": str(tmp_path / "result"),
    })
    for pattern in PATTERNS:
        results = json.loads((tmp_path / f"result.{pattern}.json").read_text())
        assert [r["name"] for r in results] == [job["name"] for job in jobs]
        for result in results:
            assert result["bit_exact"] and result["mismatches"] == 0, result
            assert result["cycles"] == result["model_cycles"] == result["edge_cycles"], result
            assert result["stall"] == result["model_stall"], result
            assert (result["stall"] > 0) == (pattern != "always"), result
