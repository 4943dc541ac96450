"""The block-sparse systolic GEMM engine and its cells."""

from hw.gemm.block_sparse_gemm import BlockSparseGemm

__all__ = ["BlockSparseGemm"]
