"""Tests of the TokenGather cycle model (``sw.cycle_model.token_gather``)."""

import pytest

from sw.cycle_model.token_gather import (DIVIDE_CYCLES, MULTIPLY_LATENCY, TokenGatherJob, main,
                                         score_width, token_gather_cycles)


def test_phases_of_a_fused_job():
    """66 tokens, 8 heads (11-bit scores), CLS + distillation kept, 45 of 64 candidates."""
    job = TokenGatherJob(tokens=66, keep=45, protected=2, fuse=True)
    cycles = token_gather_cycles(job, heads=8, width=64)
    assert score_width(8) == 11 and DIVIDE_CYCLES == 47 and MULTIPLY_LATENCY == 3
    assert cycles.phases == {"select": 11, "ties": 1, "scan": 67, "divide": 47, "multiply": 66,
                             "emit": 49, "emit_fused": 1}
    assert cycles.total == 242 and cycles.stall == 0 and job.output_rows == 48


def test_no_fused_row_when_nothing_is_dropped_or_fusion_is_off():
    for job in (TokenGatherJob(tokens=10, keep=8, protected=2, fuse=True),
                TokenGatherJob(tokens=10, keep=4, protected=2, fuse=False)):
        phases = token_gather_cycles(job, heads=4, width=8).phases
        assert "divide" not in phases and "emit_fused" not in phases
        assert phases["emit"] == job.kept_rows + 2


def test_index_mode_only_emits():
    job = TokenGatherJob(tokens=16, keep=20, indexed=True)
    cycles = token_gather_cycles(job, heads=4, width=8)
    assert cycles.phases == {"emit": 22} and cycles.total == 22


def test_stalls_follow_the_ready_pattern():
    """Index mode, 3 rows: valid from cycle 2; ready at cycles 0, 3, 4, 7 -> rows leave at
    3, 4, 7; cycles 2, 5 and 6 are stalls; the job ends after cycle 7."""
    job = TokenGatherJob(tokens=4, keep=3, indexed=True)
    ready = [c in (0, 3, 4, 7) for c in range(20)]
    cycles = token_gather_cycles(job, heads=1, width=8, ready=ready)
    assert cycles.stall == 3 and cycles.total == 8


def test_job_checks():
    with pytest.raises(ValueError, match=r"protected \(2\) \+ keep \(9\) must not exceed"):
        TokenGatherJob(tokens=10, keep=9, protected=2)
    with pytest.raises(ValueError, match="at least one token and one kept row"):
        TokenGatherJob(tokens=10, keep=0)


def test_command_line(capsys):
    assert main(["--tokens", "197", "--heads", "12", "--keep-rate", "0.7"]) == 0
    assert "197 tokens -> 140 rows" in capsys.readouterr().out
