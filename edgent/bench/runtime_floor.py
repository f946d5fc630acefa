"""The floor of ``edgent bench runtime``'s overhead measurement: the least a co-inference in Python costs on this
host, beside which edgent's own framework overhead is read.

The same work as edgent per request (the device part, the tensor's bytes sent, the edge decoding them and
running its part, the logits sent back and decoded), with none of the framework: a fixed binary header, no meta,
no checks, no bounds, no timers, no records, one asyncio protocol callback on the edge. Not something to deploy: a
server that trusts its input. Run as a script by its path:

- ``python runtime_floor.py serve ARGS_JSON``: the edge, listening on ``port``; prints ``ready`` when it is;
- ``python runtime_floor.py device ARGS_JSON``: a device answering the commands of
  :mod:`edgent.bench.runtime_device` (``wire``, ``warm``, ``infer``, ``stop``), with the same fields.

``ARGS_JSON``: ``port``, ``model``, ``random_weights``, ``plans`` (``[exit, partition, codec]`` each, the codec
``uint8`` at partition 0 or ``float32``). Frames: u32 length of what follows,
then a request's u16 plan index and its payload, or an answer's ``compute_ms``, ``server_ms`` and ``decode_ms``
(f64) and the logits (float32).
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import struct
import sys
import time

_LEN = struct.Struct("!I")
_REQ = struct.Struct("!IH")
_ANS = struct.Struct("!Iddd")


def _setup(args: dict):
    import torch

    from edgent.model.zoo import load_for_inference

    torch.set_num_threads(1)
    chain = load_for_inference(args["model"], random_weights=args["random_weights"], seed=0)
    return torch, chain, [tuple(p) for p in args["plans"]]


def serve(args: dict) -> int:
    """The floor's edge (see the module docstring)."""
    torch, chain, plans = _setup(args)
    from edgent.model.preprocess import default_preprocess, get_preprocess

    prep = get_preprocess(default_preprocess(chain.name))
    shapes = [(1, *chain.unit_input_shape(e, p)) for e, p, _ in plans]
    dtypes = [torch.uint8 if c == "uint8" else torch.float32 for _, _, c in plans]
    perf = time.perf_counter

    class Edge(asyncio.Protocol):
        def connection_made(self, transport):
            self.t = transport
            self.buf = b""
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def data_received(self, data):
            buf = self.buf + data if self.buf else data
            while len(buf) >= 4:
                n = _LEN.unpack_from(buf)[0]
                if len(buf) < 4 + n:
                    break
                t0 = perf()
                i = _REQ.unpack_from(buf)[1]
                x = torch.frombuffer(bytearray(buf[6:4 + n]), dtype=dtypes[i]).view(shapes[i])
                t1 = perf()
                with torch.inference_mode():
                    if dtypes[i] is torch.uint8:
                        x = prep(x)
                    e, p, _ = plans[i]
                    out = chain.run_edge(x, e, p)
                t2 = perf()
                logits = out.numpy().tobytes()
                self.t.write(_ANS.pack(24 + len(logits), (t2 - t1) * 1e3, (perf() - t0) * 1e3, (t1 - t0) * 1e3)
                             + logits)
                buf = buf[4 + n:]
            self.buf = buf

    async def main():
        loop = asyncio.get_running_loop()
        await loop.create_server(Edge, "127.0.0.1", args["port"])
        print("ready", flush=True)
        await loop.create_future()

    gc.collect()
    gc.freeze()
    asyncio.run(main())
    return 0


def device(args: dict) -> int:
    """The floor's device (see the module docstring)."""
    torch, chain, plans = _setup(args)
    from edgent.model.preprocess import default_preprocess, get_preprocess

    prep = get_preprocess(default_preprocess(chain.name))
    sock = socket.create_connection(("127.0.0.1", args["port"]))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    imgs = torch.randint(0, 256, (1, *chain.input_shape), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))
    perf = time.perf_counter

    def recv_answer() -> bytes:
        data = sock.recv(1 << 16)
        while len(data) < 4 or len(data) < 4 + _LEN.unpack_from(data)[0]:
            more = sock.recv(1 << 16)
            if not more:
                raise ConnectionError("the floor's edge closed the connection")
            data += more
        return data

    def infer(i: int) -> dict:
        e, p, codec = plans[i]
        t0 = perf()
        if codec == "uint8":
            h = imgs
        else:
            with torch.inference_mode():
                h = chain.run_device(prep(imgs), e, p)
        device_ms = (perf() - t0) * 1e3
        te = perf()
        payload = h.numpy().tobytes()
        frame = _REQ.pack(2 + len(payload), i) + payload
        encode_ms = (perf() - te) * 1e3
        ts = perf()
        sock.sendall(frame)
        data = recv_answer()
        tr = perf()
        _, compute_ms, server_ms, decode_ms = _ANS.unpack_from(data)
        logits = torch.frombuffer(bytearray(data[_ANS.size:]), dtype=torch.float32).view(1, -1)
        total_ms = (perf() - t0) * 1e3
        del logits
        return {"where": "edge", "fallback_reason": None, "total_ms": total_ms, "device_ms": device_ms,
                "encode_ms": encode_ms, "network_ms": (tr - ts) * 1e3 - server_ms,
                "server_timings_ms": {"compute_ms": compute_ms, "server_ms": server_ms, "decode_ms": decode_ms,
                                      "encode_ms": 0.0},
                "upload_bytes": len(frame), "download_bytes": len(data)}

    gc.collect()
    gc.freeze()
    out = sys.stdout
    out.write(json.dumps({"edgent": __import__("edgent").__file__}) + "\n")
    out.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["do"] == "wire":  # the floor's loopback rate is taken as edgent's (the same host and kernel)
            reply = {"wire_bps": None}
        elif cmd["do"] == "warm":
            for i in range(len(plans)):
                infer(i)
            reply = {"warm": len(plans)}
        elif cmd["do"] == "infer":
            reply = infer(cmd["plan"])
        else:
            break
        out.write(json.dumps(reply) + "\n")
        out.flush()
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit({"serve": serve, "device": device}[sys.argv[1]](json.loads(sys.argv[2])))
