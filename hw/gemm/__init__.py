"""The block-sparse systolic GEMM engine and its cells."""

from hw.gemm.block_sparse_gemm import BlockSparseGemm
from hw.gemm.gemm_core import GemmCore

__all__ = ["BlockSparseGemm", "GemmCore"]
