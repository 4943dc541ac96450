"""``python -m bench``: run every benchmark (``make bench``)."""

from bench import fidelity, gemm, pruning, units

if __name__ == "__main__":
    fidelity.run()
    pruning.run()
    gemm.run()
    units.run()
