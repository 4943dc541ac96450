"""Co-simulation: cocotb testbenches (tb_*.py), their pytest drivers (test_*.py), the harness that
builds and runs them, and the replay of weight images' layers on the RTL."""
