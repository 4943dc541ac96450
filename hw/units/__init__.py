"""Special-function units (softmax, GELU, LayerNorm) and the pipelined pieces they are built of.

Their arithmetic is specified by ``sw.golden.kernels`` and their timing by
``sw.cycle_model.units``; ``docs/architecture.md`` describes each datapath.
"""
