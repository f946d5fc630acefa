"""``edgent demo``: the dynamic configurator driving a slowed device over a changing, shaped link, live, with a
report against the baselines. See ``docs/demo.md``."""

from edgent.demo.run import DemoOptions, run_demo

__all__ = ["DemoOptions", "run_demo"]
