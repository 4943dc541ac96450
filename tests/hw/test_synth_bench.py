"""bench/synth.py's derived figure, the non-GEMM LUT share of the deit_b16 engine."""

from bench.synth import DESIGNS, nongemm_lut_share


def test_nongemm_share_is_what_the_engine_has_beyond_its_gemm():
    assert nongemm_lut_share({"layer_engine": 100_000, "block_sparse_gemm": 33_130,
                              "gelu": 35_307}) == 0.6687
    assert nongemm_lut_share({"gelu": 35_307, "block_sparse_gemm": 33_130}) is None


def test_every_deit_b16_unit_and_both_engines_are_measured():
    assert {top for name, top, _ in DESIGNS if name == "deit_b16"} == {
        "gelu", "softmax", "layernorm", "token_gather", "block_sparse_gemm", "layer_engine"}
    assert ("tiny", "layer_engine", True) in DESIGNS
    assert not any(place for name, _, place in DESIGNS if name == "deit_b16")
