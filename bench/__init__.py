"""Benchmarks run by ``make bench``; each writes a JSON document under ``build/bench/``."""
