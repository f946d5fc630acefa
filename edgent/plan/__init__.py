"""Planning: which exit point and partition point to use for a link and a latency requirement (Edgent's static
configurator) and the baselines it is compared with. See ``docs/planner.md``."""

from edgent.plan.link import Link
from edgent.plan.overhead import OverheadModel, WireFraming, measure_overhead
from edgent.plan.planner import (POLICIES, LatencyBreakdown, Plan, Planner, oracle_plan, plan,
                                 predict_latency)
from edgent.plan.table import (ExitCosts, LatencyTable, build_latency_table, table_from_measurements,
                               transfer_sizes)
from edgent.plan.transfer import CODECS, payload_bytes

__all__ = ["CODECS", "POLICIES", "ExitCosts", "LatencyBreakdown", "LatencyTable", "Link", "OverheadModel", "Plan",
           "Planner", "WireFraming", "build_latency_table", "measure_overhead", "oracle_plan", "payload_bytes",
           "plan", "predict_latency", "table_from_measurements", "transfer_sizes"]
