"""Block movement pruning (nn_pruning semantics) for HF transformers."""
