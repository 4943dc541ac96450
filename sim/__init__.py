"""Co-simulation: cocotb testbenches (tb_*.py), their pytest drivers (test_*.py), harness and demo."""
