"""External-memory interfaces of the accelerator: the AXI4 read bus and the weight fetcher."""
