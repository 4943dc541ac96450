"""Analytic cycle models of the accelerator's units; the co-simulation asserts the RTL equals them."""
