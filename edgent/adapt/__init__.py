"""Adaptation to a changing bandwidth: traces, online change point detection (BOCPD), the configuration map built
offline from traces, and the dynamic configurator that looks the current bandwidth state up. See
``docs/dynamic.md``."""

from edgent.adapt.bocpd import BandwidthState, Bocpd, BocpdConfig
from edgent.adapt.config_map import (Candidates, Configuration, ConfigurationMap, MapReward, StateGrid,
                                     build_config_map)
from edgent.adapt.detectors import PageHinkley, PageHinkleyConfig, make_detector
from edgent.adapt.dynamic import Decision, DynamicConfigurator, EwmaEstimator, edge_queue_ms
from edgent.adapt.traces import (BandwidthTrace, SyntheticTrace, load_belgium_json, load_cooked, load_mahimahi,
                                 load_trace, load_trace_dir, synthetic_trace)

__all__ = ["BandwidthState", "BandwidthTrace", "Bocpd", "BocpdConfig", "Candidates", "Configuration",
           "ConfigurationMap", "Decision", "DynamicConfigurator", "EwmaEstimator", "MapReward", "PageHinkley",
           "PageHinkleyConfig", "StateGrid", "SyntheticTrace", "build_config_map", "edge_queue_ms",
           "load_belgium_json", "load_cooked", "load_mahimahi", "load_trace", "load_trace_dir", "make_detector",
           "synthetic_trace"]
