"""The demo's rows of the shared live view (:class:`edgent.runtime.liveview.AgentLiveView`, the one of ``edgent
run``): the replay's clock and the trace's true rate beside the agent's estimate, and the accuracy so far."""

from __future__ import annotations

import time
from typing import Any, Callable

from edgent.demo.options import MODEL, DemoOptions, RunState


def demo_rows(st: RunState, opts: DemoOptions, trace: Any, testbed_kind: str) -> Callable[[Any], list[tuple[str, str]]]:
    """The demo's own rows, for ``AgentLiveView(extra_rows=...)``."""

    def rows(view: Any) -> list[tuple[str, str]]:
        now_s = time.monotonic() - st.t0 if st.t0 else 0.0
        true_bps = float(trace.rate_at(min(max(now_s, 0.0), trace.end_s - 1e-6)))
        out = [("trace", f"{now_s:5.1f} / {opts.duration_s:g} s   true rate {true_bps / 1e6:6.3f} Mbit/s   "
                         f"link: {testbed_kind}")]
        n = len(st.records)
        if n and st.labelled:
            out.append(("accuracy so far", f"{100 * st.correct / st.labelled:5.1f} % measured on {st.labelled} test "
                                           f"images (card accuracy of the exits used {100 * st.card_acc_sum / n:.1f} %)"))
        elif n:
            out.append(("accuracy so far", f"{100 * st.card_acc_sum / n:5.1f} % (model card, synthetic inputs)"))
        return out

    return rows


def demo_title(opts: DemoOptions) -> str:
    return f"edgent demo: {MODEL}, deadline {opts.deadline_ms:g} ms"
