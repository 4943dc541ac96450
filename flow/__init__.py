"""Orchestration above the simulator: ``make demo`` (:mod:`flow.demo`), its report
(:mod:`flow.demo_report`) and the GEMM density sweep ``make bench`` runs (:mod:`flow.gemm_sweep`)."""
