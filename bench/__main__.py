"""``python -m bench``: run every benchmark (``make bench``)."""

from bench import fidelity, gemm, layer, pruning, tokens, units

if __name__ == "__main__":
    fidelity.run()
    pruning.run()
    tokens.run()
    gemm.run()
    units.run()
    layer.run()
