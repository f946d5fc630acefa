"""Latency models: how long a layer, a unit and a device or edge part take on each machine role.

Public API: :func:`default_predictor` (the shipped fits), :func:`load_predictor`, :class:`PaperPredictor`
(the paper's per-layer-type linear regression, the reference) and :class:`EdgentPredictor` (the better one).
"""

from edgent.latency.predictor import (EdgentPredictor, LatencyPredictor, PaperPredictor, default_predictor,
                                      load_predictor)

__all__ = ["EdgentPredictor", "LatencyPredictor", "PaperPredictor", "default_predictor", "load_predictor"]
