"""The codec as a planning dimension: every codec's round trip within its stated error, the learned bottleneck as a
codec, the planner over (exit, partition, codec) against a brute force, and the runtime sending exactly the codec
and the bytes a plan was priced with."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edgent.codec import BottleneckCodec, bit_pack, bit_unpack, get_codec, register_codec, unregister_codec
from edgent.errors import ConfigError, InputError
from edgent.model.bottleneck import Bottleneck, BottleneckSpec, load_bottleneck, save_bottleneck
from edgent.plan import ExitCosts, LatencyTable, Link, OverheadModel, Planner
from edgent.plan.codecs import CodecVariant, codec_points, measure_variants

MODEL = "alexnet-cifar10"
TENSOR_CODECS = ["float16", "int8", "int8c", "int8+zstd", "int8c+zstd", "float16+zstd", "float32+zstd",
                 "int8c+zlib"]


@pytest.fixture(scope="module")
def neck(chain):
    """A seeded, untrained bottleneck after pool1 of the conftest's chain, registered as its codec."""
    torch.manual_seed(5)
    spec = BottleneckSpec(model=chain.name, point=3, after_unit="pool1", in_shape=(64, 16, 16), channels=4,
                          levels=8, hidden=8)
    codec = register_codec(BottleneckCodec(Bottleneck(spec).eval()))
    yield codec
    unregister_codec(codec.name)


@pytest.mark.parametrize("name", TENSOR_CODECS)
@pytest.mark.parametrize("shape", [(1, 64, 16, 16), (2, 10), (1, 96, 8, 8)])
def test_tensor_codecs_round_trip_within_their_stated_error(name, shape):
    codec = get_codec(name)
    g = torch.Generator().manual_seed(sum(shape))
    t = torch.relu(torch.randn(shape, generator=g)) * 7.0 - 1.0
    data = codec.encode(t)
    assert len(data) <= codec.payload_bytes(shape)
    if codec.exact_size:
        assert len(data) == codec.payload_bytes(shape)
    back = codec.decode(data, shape)
    assert back.shape == t.shape
    assert float((back - t).abs().max()) <= codec.max_abs_error(t)


def test_per_channel_int8_beats_per_tensor_on_channels_of_different_ranges():
    t = torch.rand(1, 8, 4, 4) * torch.logspace(-3, 2, 8).view(1, 8, 1, 1)
    err = {n: (get_codec(n).decode(get_codec(n).encode(t), t.shape) - t).abs() for n in ("int8", "int8c")}
    small = slice(0, 4)  # the low-range channels: per-tensor scales wipe them out
    assert float(err["int8c"][:, small].max()) < float(err["int8"][:, small].max()) / 10


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
@given(data=st.data())
@settings(max_examples=30, deadline=None)
def test_bit_packing_round_trips(bits, data):
    n = data.draw(st.integers(0, 200))
    sym = np.array(data.draw(st.lists(st.integers(0, 2**bits - 1), min_size=n, max_size=n)), dtype=np.uint8)
    packed = bit_pack(sym, bits)
    assert len(packed) == (n * bits + 7) // 8
    assert np.array_equal(bit_unpack(packed, n, bits), sym)


def test_bottleneck_codec_is_its_networks_round_trip(neck, tmp_path):
    x = torch.relu(torch.randn(3, 64, 16, 16, generator=torch.Generator().manual_seed(1)))
    data = neck.encode(x)
    assert len(data) <= neck.payload_bytes(x.shape)
    with torch.inference_mode():
        want = neck.neck.decode_symbols(neck.neck.encode_symbols(x))
    assert torch.equal(neck.decode(data, x.shape), want)  # lossless on the symbols: the loss is the network's
    # saved and loaded, the same codec
    path = save_bottleneck(neck.neck, tmp_path / "n.safetensors")
    again = BottleneckCodec(load_bottleneck(path))
    assert again.name == neck.name and torch.equal(again.decode(again.encode(x), x.shape), want)
    with pytest.raises(InputError, match="carries the tensor after pool1"):
        neck.encode(torch.zeros(1, 96, 8, 8))
    for bad in (b"", b"\x07" + data[1:], b"\x01garbage", data[:-1] if data[0] == 0 else b"\x00" + b"\xff" * 3):
        with pytest.raises(InputError):
            neck.decode(bad, x.shape)


def test_codec_points(chain, neck):
    n1 = chain.exit_point(1).num_units
    assert codec_points(chain, 1, "jpeg50") == (0,) and codec_points(chain, 1, "uint8") == (0,)
    assert codec_points(chain, 1, "int8") == tuple(range(1, n1))
    assert codec_points(chain, 5, neck.name) == (3,)


# ---------------------------------------------------------------- planner over triples vs brute force
@st.composite
def tables_with_codecs(draw):
    n_exits = draw(st.integers(1, 4))
    times = st.floats(0.0, 200.0, allow_nan=False)
    exits = []
    for i in range(1, n_exits + 1):
        n = draw(st.integers(1, 8))
        exits.append(ExitCosts(
            exit=i, accuracy=draw(st.sampled_from([0.5, 0.6, 0.7, 0.8])),
            device_unit_ms=tuple(draw(st.lists(times, min_size=n, max_size=n))),
            edge_unit_ms=tuple(draw(st.lists(times, min_size=n, max_size=n))),
            transfer_bytes=(*draw(st.lists(st.integers(0, 200_000), min_size=n, max_size=n)), 0),
            result_bytes=draw(st.integers(0, 4000)), device_part_ms=draw(st.sampled_from([0.0, 3.0])),
            edge_part_ms=draw(st.sampled_from([0.0, 0.1]))))
    variants = []
    for name in draw(st.lists(st.sampled_from(["jpeg50", "jpeg25a", "int8", "bneck-x", "float16"]), unique=True,
                              max_size=3)):
        pts = []
        for e in exits:
            if name.startswith("jpeg"):
                pts.append((0,))
            elif name == "bneck-x":
                pts.append((1,) if e.num_units > 1 else ())
            else:
                pts.append(tuple(p for p in range(1, e.num_units) if draw(st.booleans())))
        floats = lambda hi: st.floats(0.0, hi, allow_nan=False)  # noqa: E731
        variants.append(CodecVariant(
            codec=name, points=tuple(pts),
            transfer_bytes=tuple(tuple(draw(floats(50_000.0)) for _ in p) for p in pts),
            encode_ms=tuple(tuple(draw(floats(20.0)) for _ in p) for p in pts),
            decode_ms=tuple(tuple(draw(floats(5.0)) for _ in p) for p in pts),
            accuracy=tuple(draw(st.sampled_from([0.45, 0.55, 0.65, 0.75, 0.8])) for _ in exits)))
    return LatencyTable("random", tuple(exits), "float32", raw_input=draw(st.booleans()),
                        device_preprocess_ms=draw(st.sampled_from([0.0, 2.0])),
                        edge_preprocess_ms=draw(st.sampled_from([0.0, 0.5])), variants=tuple(variants))


def brute_triples(table: LatencyTable, link: Link, ov: OverheadModel, queue: float) -> dict:
    """(exit, point, codec) -> (latency ms, accuracy), each summed from the table's fields on its own."""
    out = {}

    def total(e, p, tx, dev_extra, edge_extra, dev_pre, edge_pre, dev_units=True):
        t = (sum(e.device_unit_ms[:p]) + (e.device_part_ms if p > 0 else 0.0)) if dev_units else 0.0
        t += dev_pre + dev_extra + sum(e.edge_unit_ms[p:]) + (e.edge_part_ms if p < e.num_units else 0.0)
        t += edge_pre + edge_extra
        if p < e.num_units:
            t += tx * 8000 / link.uplink_bps + e.result_bytes * 8000 / link.downlink_bps + link.rtt_ms + queue
            t += 2 * ov.fixed_ms_per_message + ov.per_byte_ms * (tx + e.result_bytes)
        return t

    for e in table.exits:
        for p in range(e.num_units + 1):
            dev_pre = table.device_preprocess_ms if (p > 0 or not table.raw_input) else 0.0
            edge_pre = table.edge_preprocess_ms if (p == 0 and table.raw_input) else 0.0
            codec = ("uint8" if table.raw_input else table.codec) if p == 0 else table.codec
            out[(e.exit, p, codec)] = (total(e, p, e.transfer_bytes[p], 0, 0, dev_pre, edge_pre), e.accuracy)
        for v in table.variants:
            for p, tx, enc, dec in zip(v.points[e.exit - 1], v.transfer_bytes[e.exit - 1], v.encode_ms[e.exit - 1],
                                       v.decode_ms[e.exit - 1]):
                pixels = v.codec.startswith("jpeg")
                out[(e.exit, p, v.codec)] = (
                    total(e, p, tx, enc, dec, 0.0 if pixels else table.device_preprocess_ms,
                          table.edge_preprocess_ms if pixels else 0.0, dev_units=not pixels),
                    v.accuracy[e.exit - 1])
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables_with_codecs(), link=st.builds(Link, st.floats(1e3, 1e8), st.floats(1e3, 1e8),
                                                  st.floats(0.0, 100.0)),
       deadline=st.floats(1.0, 3000.0), ov=st.builds(OverheadModel, st.floats(0.0, 5.0), st.floats(0.0, 1e-4)),
       queue=st.floats(0.0, 50.0), policy=st.sampled_from(["edgent", "edge", "neurosurgeon", "rightsize"]))
def test_planner_over_codecs_equals_brute_force_over_triples(table, link, deadline, ov, queue, policy):
    planner = Planner(table, ov)
    every = brute_triples(table, link, ov, queue)
    assert len(every) == table.num_triples == len(planner.triples)
    main = len(table.exits)
    last = {e.exit: e.num_units for e in table.exits}
    space = {k: v for k, v in every.items()
             if policy == "edgent" or (policy == "edge" and k[0] == main and k[1] == 0)
             or (policy == "neurosurgeon" and k[0] == main) or (policy == "rightsize" and k[1] == last[k[0]])}
    assume(all(abs(t - deadline) > 1e-6 * max(1.0, deadline) for t, _ in space.values()))
    got = planner.plan(link, deadline, policy, edge_queue_ms=queue)
    key = (got.exit, got.partition, got.codec)
    assert key in space, "the plan left its policy's search space"
    assert got.predicted_ms == pytest.approx(space[key][0], rel=1e-9, abs=1e-9)
    feasible = {k: v for k, v in space.items() if v[0] <= deadline}
    assert got.feasible == bool(feasible)
    if feasible:
        best_acc = max(a for _, a in feasible.values())
        best_ms = min(t for t, a in feasible.values() if a == best_acc)
        assert got.accuracy == best_acc == space[key][1]
        assert got.predicted_ms == pytest.approx(best_ms, rel=1e-9, abs=1e-9)
    else:
        assert got.predicted_ms == pytest.approx(min(t for t, _ in space.values()), rel=1e-9, abs=1e-9)


def test_table_with_variants_survives_json(tmp_path):
    e = ExitCosts(1, 0.8, (1.0, 2.0), (0.1, 0.2), (3072, 100, 0), 40)
    v = CodecVariant("int8", ((1,),), ((58.0,),), ((0.5,),), ((0.1,),), (0.79,))
    t = LatencyTable("m", (e,), variants=(v,))
    back = LatencyTable.load(t.save(tmp_path / "t.json"))
    assert back == t and back.num_triples == 4
    with pytest.raises(ConfigError, match="outside"):
        LatencyTable("m", (e,), variants=(CodecVariant("int8", ((2,),), ((1.0,),), ((0.0,),), ((0.0,),), (0.7,)),))


# ---------------------------------------------------------------- what is priced is what is sent
def test_runtime_sends_the_planned_codec_and_the_priced_bytes_for_every_triple(chain, neck):
    """For every (exit, partition, codec) of a table with variants (of exits 2-4, the cells they do not share with
    exit 5's trunk, the input's and the bottleneck's): the client sends exactly the plan's codec,
    and its payload is the priced size (fixed-size codecs: every request; variable-size ones: the priced 95th
    percentile of the sizes measured on the same images)."""
    from edgent.plan.table import build_latency_table
    from edgent.runtime import ServerConfig
    from edgent.runtime.local import ThreadedServer

    from .conftest import FlopsPredictor

    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    codecs = ["jpeg50", "jpeg25a", "float16", "int8c", "int8+zstd", neck.name]
    accs = {c: [0.5] * chain.num_exits for c in codecs}
    base = build_latency_table(chain, [0.5] * chain.num_exits, FlopsPredictor(1.0, 0.0), FlopsPredictor(1.0, 0.0))
    variants = measure_variants(chain, codecs, accs, images.numpy(), rounds=1, idle_s=0)
    table = LatencyTable(base.model, base.exits, base.codec, base.raw_input, variants=variants)
    planner = Planner(table)
    sent: list[tuple[str, int]] = []
    from edgent.runtime import DeviceClient

    with ThreadedServer({MODEL: chain}, ServerConfig(port=0, threads=1)) as server:
        client = DeviceClient("127.0.0.1", server.port, chain)
        try:
            for j, (x, p, c) in enumerate(planner.triples):
                n = chain.exit_point(x).num_units
                if p == n or (x not in (1, chain.num_exits) and p not in (0, 3, n - 1)):
                    continue  # device only sends nothing; exits 2-4 share exit 5's trunk cells: their ends
                    # and the bottleneck's and the input's cells
                sizes = []
                for i in range(images.shape[0]):
                    res = client.infer(images[i:i + 1], x, p, c, fallback=False)
                    assert res.codec == c and res.where == "edge"
                    sizes.append(len(get_codec(c).encode(_tensor_at(chain, images[i:i + 1], x, p, c))))
                    sent.append((c, sizes[-1]))
                codec = get_codec(c)
                if codec.exact_size:
                    assert set(sizes) == {int(planner.tx_bytes[j])}
                else:
                    assert planner.tx_bytes[j] == pytest.approx(float(np.percentile(sizes, 95)))
        finally:
            client.close()
    assert {c for c, _ in sent} >= set(codecs)


def _tensor_at(chain, img, exit, point, codec):
    from edgent.data.cifar10 import to_model_input

    if get_codec(codec).kind == "pixels":
        return img
    with torch.inference_mode():
        return chain.run_device(to_model_input(img), exit, point)


def test_codec_calls_are_timed_on_the_role_clock_times_its_slowdown():
    """The device's encode is priced as the device role runs it: on its CPU clock, times its slowdown. A call
    that only sleeps costs no CPU, so on a CPU clock it is priced near 0 even x10, while this host's wall clock
    sees the whole sleep."""
    from edgent.plan.codecs import time_codec_calls
    from edgent.profile.throttle import DeviceEmulation

    import time

    def sleeper():
        time.sleep(0.02)

    def burn():
        return sum(range(20000))

    wall = time_codec_calls([sleeper], None, rounds=1, idle_s=0)
    assert wall[0] >= 20.0
    cpu_role = DeviceEmulation(threads=1, slowdown=10.0, clock="thread-cpu")
    sleep_ms, burn_ms = time_codec_calls([sleeper, burn], cpu_role, rounds=3, idle_s=0)
    assert sleep_ms < 20.0 < wall[0] + 1e-9
    one = DeviceEmulation(threads=1, slowdown=1.0, clock="thread-cpu")
    assert burn_ms > 0 and time_codec_calls([burn], one, rounds=3, idle_s=0)[0] > 0
    with pytest.raises(ConfigError, match="round"):
        time_codec_calls([burn], None, rounds=0)
