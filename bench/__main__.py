"""``python -m bench``: run every benchmark (``make bench``)."""

from bench import fidelity, gemm

if __name__ == "__main__":
    fidelity.run()
    gemm.run()
