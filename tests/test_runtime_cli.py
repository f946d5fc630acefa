"""The runtime's command line refuses bad values when it parses them, with one line that names the option and the
fix (never a traceback), and the device side of `edgent infer` never exits on an edge-side condition."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading

import pytest

from edgent.cli.main import main
from edgent.runtime import ServerConfig, make_server_ssl_context
from edgent.runtime.local import ThreadedServer

MODEL = "alexnet-cifar10"
DEVICE = ["--random-weights", "--random-input"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``edgent ARGV`` in this process: its exit code, stdout and stderr."""
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse
        rc = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def assert_refused(capsys, option: str, *argv: str, fix: str | None = None) -> str:
    """``edgent ARGV`` exits with 2 and one line on stderr that names ``option`` (and ``fix``), no traceback."""
    rc, out, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err)
    assert len(lines) == 1, err
    assert option in lines[0], err
    assert "Traceback" not in err and out == ""
    if fix is not None:
        assert fix in lines[0], err
    return lines[0]


# ---------------------------------------------------------------------------------------------- parse time
@pytest.mark.parametrize("argv, option, fix", [
    (["serve", "--port", "70000"], "--port", "0..65535"),
    (["serve", "--port", "-1"], "--port", "0..65535"),
    (["serve", "--max-connections", "0"], "--max-connections", "at least 2"),
    (["serve", "--max-payload-mb", "-1"], "--max-payload-mb", "greater than 0"),
    (["serve", "--max-payload-mb", "nan"], "--max-payload-mb", "finite"),
    (["serve", "--handshake-timeout-s", "0"], "--handshake-timeout-s", "greater than 0"),
    (["serve", "--min-rate-bps", "inf"], "--min-rate-bps", "finite"),
    (["serve", "--token-file", "/nonexistent/token"], "--token-file", "existing file"),
    (["serve", "--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"], "--tls-cert", None),
    (["infer", "--port", "0"], "--port", "1..65535"),
    (["infer", "--exit", "0"], "--exit", "at least 1"),
    (["infer", "--count", "0"], "--count", "at least 1"),
    (["infer", "--count", "-3"], "--count", "at least 1"),
    (["infer", "--deadline-ms", "nan"], "--deadline-ms", "finite"),
    (["infer", "--deadline-ms", "-5"], "--deadline-ms", "greater than 0"),
    (["infer", "--token-file", "/nonexistent/token"], "--token-file", "existing file"),
    (["infer", "--tls-ca", "/nonexistent/ca.pem"], "--tls-ca", "existing file"),
    (["infer", "--records", "/nonexistent/dir/records.jsonl"], "--records", "create it"),
    (["infer", "--rate-bps", "1e-300"], "--rate-bps", "at least 1000"),
    (["testbed", "run", "--port", "70000"], "--port", "0..65535"),
    (["testbed", "run", "--trace", "/nonexistent/trace.log"], "--trace", "existing file"),
    (["demo", "--duration", "nan"], "--duration", "finite"),
    (["demo", "--trace", "/nonexistent/trace.log"], "--trace", "existing file"),
])
def test_bad_values_are_refused_when_parsed(capsys, argv, option, fix):
    assert_refused(capsys, option, *argv, fix=fix)


def test_empty_or_unreadable_token_file_is_refused(capsys, tmp_path):
    empty = tmp_path / "empty.token"
    empty.write_text("  \n")
    for cmd in ("serve", "infer"):
        line = assert_refused(capsys, "--token-file", cmd, "--token-file", str(empty))
        assert "is empty" in line
    binary = tmp_path / "binary.token"
    binary.write_bytes(b"\xff\xfe\x00token")
    assert "not UTF-8" in assert_refused(capsys, "--token-file", "serve", "--token-file", str(binary))
    assert "is empty" in assert_refused(capsys, "--token", "serve", "--token", " ")


def test_a_bad_environment_port_is_refused(capsys, monkeypatch):
    monkeypatch.setenv("EDGENT_EDGE_PORT", "99999")
    assert_refused(capsys, "--port", "infer")


def test_exit_and_partition_beyond_the_model_are_refused(capsys):
    assert "exits 1..5" in assert_refused(capsys, "--exit", "infer", *DEVICE, "--exit", "9")
    assert "points 0..12" in assert_refused(capsys, "--partition", "infer", *DEVICE, "--exit", "1",
                                            "--partition", "99")


@pytest.mark.parametrize("content, what", [
    (b"\xff\xfe\x00\x01 not text", "cannot be read as text"),
    (b'[{"duration_ms": 1000}]', "bandwidth_kbps"),
    (b'[{"duration_ms": 1000, "bandwidth_kbps": 20', "not valid JSON"),
    (b"0 1.0\n1 x\n", "not numbers"),
])
def test_testbed_run_refuses_a_bad_trace_before_starting(capsys, tmp_path, content, what):
    trace = tmp_path / "trace.log"
    trace.write_bytes(content)
    rc, out, err = run_cli(capsys, "testbed", "run", "--emulate", "--trace", str(trace), *DEVICE)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("edgent testbed: error:") and str(trace) in err and what in err, err


def test_plan_refuses_the_card_of_another_model(capsys, tmp_path):
    from edgent.model.zoo import zoo_entry

    card = json.loads(zoo_entry(MODEL).card.read_text())
    card["model"] = "resnet-imagenet"
    other = tmp_path / "other.card.json"
    other.write_text(json.dumps(card))
    rc, _, err = run_cli(capsys, "plan", "--model", MODEL, "--card", str(other), "--bandwidth", "1Mbit",
                         "--deadline", "100ms")
    assert rc == 2 and "'resnet-imagenet', not of 'alexnet-cifar10'" in err and "--card" in err
    assert "Traceback" not in err


def test_records_never_hold_nan(tmp_path):
    from edgent.jsonio import dumps_finite, write_json_file

    doc = {"a": float("nan"), "b": [1.0, float("inf"), {"c": -float("inf")}], "d": (2.5,)}
    assert json.loads(dumps_finite(doc)) == {"a": None, "b": [1.0, None, {"c": None}], "d": [2.5]}
    path = write_json_file(tmp_path / "x.json", doc)
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()


# ---------------------------------------------------------------------------------------------- device side
@pytest.fixture(scope="module")
def chain():
    from edgent.model.zoo import load_for_inference

    return load_for_inference(MODEL, random_weights=True, seed=0)


class FakeEdge:
    """A TCP server that answers every HELLO with ``reply`` (bytes) or never answers (``reply=None``)."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            if self.reply is not None:
                conn.recv(65536)
                conn.sendall(self.reply)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


def _error_frame(code: str) -> bytes:
    from edgent.runtime.protocol import MsgType, encode_frame, error_meta

    return encode_frame(MsgType.ERROR, error_meta(code, f"test edge says {code}"))


def test_a_full_edge_gives_a_device_answer_and_a_record(chain, tmp_path):
    from edgent.runtime import DeviceClient, DeviceRuntime, fixed_plan

    edge = FakeEdge(_error_frame("too_many_connections"))
    path = tmp_path / "records.jsonl"
    try:
        client = DeviceClient("127.0.0.1", edge.port, chain, device_exit_ms={e: 1.0 for e in range(1, 6)})
        with DeviceRuntime(client, fixed_plan(5, 0, "uint8"), records=path) as rt:
            r = rt.infer(__import__("torch").zeros((1, 3, 32, 32), dtype=__import__("torch").uint8))
    finally:
        edge.close()
    assert r.where == "fallback" and "too_many_connections" in r.fallback_reason
    rec = json.loads(path.read_text().splitlines()[0])
    assert rec["outcome"]["where"] == "fallback" and "too_many_connections" in rec["outcome"]["fallback_reason"]


def test_a_stalled_edge_is_inside_the_records_total(chain, tmp_path):
    """The edge accepts but never answers HELLO: the wait for it belongs to the request's total time."""
    import torch

    from edgent.runtime import DeviceClient, DeviceRuntime, fixed_plan

    edge = FakeEdge(None)
    try:
        client = DeviceClient("127.0.0.1", edge.port, chain, connect_timeout_s=0.3,
                              device_exit_ms={e: 1.0 for e in range(1, 6)})
        with DeviceRuntime(client, fixed_plan(5, 0, "uint8"), records=tmp_path / "r.jsonl") as rt:
            r = rt.infer(torch.zeros((1, 3, 32, 32), dtype=torch.uint8))
    finally:
        edge.close()
    assert r.where == "fallback"
    assert r.total_ms >= 300.0  # the HELLO wait (connect_timeout_s) happened inside the request
    rec = json.loads((tmp_path / "r.jsonl").read_text())
    assert rec["measured_ms"]["total"] >= 300.0 and rec["outcome"]["fallback_reason"]


def _cert(tmp_path, name: str) -> tuple[str, str]:
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    return str(cert), str(key)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_wrong_ca_and_refused_token_are_loud(chain, tmp_path, capsys):
    edge_cert, edge_key = _cert(tmp_path, "edge")
    other_ca, _ = _cert(tmp_path, "other")
    cfg = ServerConfig(port=0, token="right", ssl_context=make_server_ssl_context(edge_cert, edge_key))
    with ThreadedServer({MODEL: chain}, cfg) as s:
        common = ["infer", "--host", "localhost", "--port", str(s.port), *DEVICE, "--exit", "1", "--count", "2"]
        # a wrong CA: on-device answers, a warning, exit 0; with --edge-only exit 1 and failed records
        rc, out, err = run_cli(capsys, *common, "--tls-ca", other_ca, "--token", "right")
        assert rc == 0 and out.count("on fallback") == 2
        assert "WARNING" in err and "--tls-ca" in err and "Traceback" not in err
        records = tmp_path / "edge-only.jsonl"
        rc, out, err = run_cli(capsys, *common, "--tls-ca", other_ca, "--token", "right", "--edge-only",
                               "--records", str(records))
        assert rc == 1 and "FAILED" in err and "WARNING" in err
        lines = [json.loads(x) for x in records.read_text().splitlines()]
        assert len(lines) == 2 and all(x["outcome"]["where"] == "failed" and x["outcome"]["error"] for x in lines)
        # a refused token: the same
        rc, out, err = run_cli(capsys, *common, "--tls-ca", edge_cert, "--token", "wrong")
        assert rc == 0 and "on fallback" in out and "WARNING" in err and "token" in err
        rc, out, err = run_cli(capsys, *common, "--tls-ca", edge_cert, "--token", "wrong", "--edge-only")
        assert rc == 1 and "unauthorized" in err
        # and the right CA and token reach the edge
        rc, out, err = run_cli(capsys, *common, "--tls-ca", edge_cert, "--token", "right", "--edge-only")
        assert rc == 0 and out.count("on edge") == 2 and "WARNING" not in err


@pytest.mark.slow
def test_testbed_run_with_port_zero_dials_the_port_the_edge_bound(capsys):
    rc, out, err = run_cli(capsys, "testbed", "run", "--emulate", "--port", "0", *DEVICE, "--exit", "1",
                           "--count", "2", "--edge-only")
    assert rc == 0 and out.count("on edge") == 2, (out, err)


@pytest.mark.slow
def test_demo_with_a_vanishing_trace_rate_ends(tmp_path):
    """A trace of 1e-300 Mbit/s (and 1 bit/s) runs at the 1 kbit/s floor instead of overflowing or hanging."""
    import sys

    from tests.test_demo import ROOT, _model_flags

    trace = tmp_path / "tiny.log"
    trace.write_text("".join(f"{t} {1e-300 if t % 2 else 1e-6}\n" for t in range(60)))
    proc = subprocess.run([sys.executable, "-m", "edgent.cli.main", "demo", "--emulate", "--trace", str(trace),
                           "--duration", "12", "--period", "500", "--out", str(tmp_path / "out"), "--live", "off",
                           *_model_flags()], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "OverflowError" not in proc.stderr
    assert "run at 1 kbit/s" in proc.stdout
    assert (tmp_path / "out" / "records.jsonl").read_text().strip()  # requests ran (answered on the device)
