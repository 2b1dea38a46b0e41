"""The performance model: the compiler's cost model (tiling search) and `systolab run --sim model`.

It needs only the ISA and the timing formulas of `hw.timing`, so it sits below `codegen/`.
"""

from .model import PerfModel, Prediction, Timing, predict, predict_cycles

__all__ = ["Timing", "PerfModel", "Prediction", "predict", "predict_cycles"]
