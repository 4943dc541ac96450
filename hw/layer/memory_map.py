"""Where each on-chip buffer of the layer engine lives in its scratchpad: ``sw.engine_params``.

The memory map is one of the engine's derived parameters, built once per config by
``sw.engine_params.EngineParams.from_config``; this module keeps the names' old import path.
"""

from sw.engine_params import LANE_WIDTH, LayerEngineError, LayerMemoryMap, Region

__all__ = ["LANE_WIDTH", "LayerEngineError", "LayerMemoryMap", "Region"]
