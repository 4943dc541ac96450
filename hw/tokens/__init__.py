"""The token-gather unit (top-k token pruning, compaction, fused token, index-driven gather)."""

from hw.tokens.token_gather import GatherTarget, TokenGather, TokenGatherGeometry

__all__ = ["GatherTarget", "TokenGather", "TokenGatherGeometry"]
