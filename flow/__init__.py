"""Orchestration above the simulator: the Python API (:mod:`flow.api`), ``make demo``
(:mod:`flow.demo`), its report (:mod:`flow.demo_report`) and the GEMM density sweep ``make bench``
runs (:mod:`flow.gemm_sweep`)."""
