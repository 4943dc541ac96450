"""Amaranth hardware of the accelerator and its Verilog generator (``python -m hw.generate``)."""
