"""``python -m bench``: run every benchmark (``make bench``)."""

from bench import gemm

if __name__ == "__main__":
    gemm.run()
