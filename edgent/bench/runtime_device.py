"""The device side of ``edgent bench runtime``'s overhead measurement, as a process of its own.

``edgent bench runtime`` starts one per server setting and runs it as a script by its path (``python
.../runtime_device.py ARGS_JSON``), so that the ``edgent`` it imports is the one on ``PYTHONPATH``: this tree's
for the current code, another source tree's (``--baseline-src``) for the previous code, whose client is then
measured as well as its server. It uses only what both have (``DeviceClient``, ``infer``, ``_exchange``,
``encode_frame``). It reads one JSON command per line on stdin and answers one JSON line on stdout:

- ``{"do": "wire"}``: the loopback throughput (bit/s) from 8 MiB PROBE frames (the best of five);
- ``{"do": "warm"}``: one request per plan;
- ``{"do": "infer", "plan": i}``: one request with plan ``i``; its times and sizes;
- ``{"do": "stop"}``: close and exit.

The first line it writes says where its ``edgent`` came from. Not a benchmark of its own (no ``register``).
"""

from __future__ import annotations

import gc
import json
import sys
import time


def main(argv: list[str]) -> int:
    """Serve the commands of ``edgent bench runtime`` (see the module docstring); ``argv[0]``: a JSON object
    with ``port``, ``model``, ``random_weights`` and ``plans`` (``[exit, partition, codec]`` each)."""
    args = json.loads(argv[0])
    import torch

    import edgent
    from edgent.model.zoo import load_for_inference
    from edgent.runtime import DeviceClient
    from edgent.runtime.protocol import MsgType, encode_frame

    torch.set_num_threads(1)  # device and edge share this machine: keep idle OpenMP threads from spinning
    chain = load_for_inference(args["model"], random_weights=args["random_weights"], seed=0)
    client = DeviceClient("127.0.0.1", args["port"], chain)
    if not client.connect():
        raise SystemExit(f"cannot connect to the edge: {client.last_connect_error}")
    imgs = torch.randint(0, 256, (1, *chain.input_shape), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))
    plans = [tuple(p) for p in args["plans"]]
    gc.collect()
    gc.freeze()  # what start-up made stays: a collection during a request looks only at what requests make
    out = sys.stdout

    def say(obj: dict) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    say({"edgent": edgent.__file__})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["do"] == "wire":
            big = encode_frame(MsgType.PROBE, {"id": 0}, bytes(8 << 20))
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                client._exchange(big, 10)
                times.append(time.perf_counter() - t0)
            say({"wire_bps": 8 * len(big) / min(times)})
        elif cmd["do"] == "warm":
            for plan in plans:
                client.infer(imgs, *plan)
            say({"warm": len(plans)})
        elif cmd["do"] == "infer":
            r = client.infer(imgs, *plans[cmd["plan"]])
            say({"where": r.where, "fallback_reason": r.fallback_reason, "total_ms": r.total_ms,
                 "device_ms": r.device_ms, "encode_ms": r.encode_ms, "network_ms": r.network_ms,
                 "server_timings_ms": r.server_timings_ms, "upload_bytes": r.upload_bytes,
                 "download_bytes": r.download_bytes})
        else:
            break
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
