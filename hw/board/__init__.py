"""The layer engine on an FPGA board: a UART host bridge, the board's top level and
``make bitstream`` (the ULX3S 85F, through amaranth-boards)."""
