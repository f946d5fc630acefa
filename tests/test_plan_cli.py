"""``edgent plan`` on the command line and the strict parsing of rates and durations."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgent.cli.main import main
from edgent.errors import ConfigError
from edgent.plan import Link, Planner
from edgent.plan.units import format_rate, parse_duration_ms, parse_rate_bps
from .conftest import FlopsPredictor, hand_table


@pytest.mark.parametrize("text, want", [
    ("400kbit", 400e3), ("400kbit/s", 400e3), ("2Mbit/s", 2e6), ("1.5 Mbit", 1.5e6), ("50bit", 50.0),
    ("1Gbit", 1e9), ("3e5bit/s", 3e5), (".5Mbit", 5e5),
])
def test_parse_rate(text, want):
    assert parse_rate_bps(text) == pytest.approx(want)


@pytest.mark.parametrize("text, match", [
    ("400", "has no unit"), ("400kbps", "did you mean kbit/s"), ("400Kbit", "did you mean kbit"),
    ("2mbit", "did you mean Mbit"), ("1MB", "unknown unit"), ("0kbit", "must be positive"),
    ("-5kbit", "cannot read"), ("fast", "cannot read"), ("", "cannot read"), ("1e999kbit", "not finite"),
])
def test_parse_rate_errors(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_rate_bps(text)


@pytest.mark.parametrize("text, want", [("300ms", 300.0), ("1s", 1000.0), ("1.5 s", 1500.0), ("250us", 0.25),
                                        ("0ms", 0.0)])
def test_parse_duration(text, want):
    assert parse_duration_ms(text) == pytest.approx(want)


@pytest.mark.parametrize("text, match", [("300", "has no unit"), ("5min", "unknown unit"), ("3h", "unknown unit"),
                                         ("10 msec", "did you mean ms"), ("ms", "cannot read")])
def test_parse_duration_errors(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_duration_ms(text)


def test_zero_deadline_is_rejected():
    with pytest.raises(ConfigError, match="must be positive"):
        parse_duration_ms("0ms", what="--deadline", allow_zero=False)


def test_format_rate():
    assert format_rate(400e3) == "400kbit/s" and format_rate(2.5e6) == "2.5Mbit/s" and format_rate(50) == "50bit/s"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["plan", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_json_from_saved_table(tmp_path, capsys):
    path = hand_table().save(tmp_path / "table.json")
    rc, out, _ = run_cli(capsys, "--table", str(path), "--bandwidth", "80kbit", "--deadline", "160ms", "--json")
    assert rc == 0
    got = json.loads(out)
    for key in ("exit", "partition", "feasible", "accuracy", "predicted_ms", "breakdown", "reason", "fallback"):
        assert key in got
    want = Planner(hand_table()).plan(Link(80e3, 80e3), 160.0)
    assert (got["exit"], got["partition"], got["feasible"]) == (want.exit, want.partition, True) == (2, 1, True)
    assert got["predicted_ms"] == pytest.approx(want.predicted_ms)
    assert set(got["breakdown"]) == {"device_ms", "upload_ms", "edge_ms", "download_ms", "rtt_ms",
                                     "serialization_ms", "queue_ms", "total_ms"}
    assert got["link"] == {"uplink_bps": 80e3, "downlink_bps": 80e3, "rtt_ms": 0.0}


def test_cli_rtt_downlink_policy_and_infeasible(tmp_path, capsys):
    path = hand_table().save(tmp_path / "table.json")
    rc, out, _ = run_cli(capsys, "--table", str(path), "--bandwidth", "80kbit/s", "--downlink", "1Mbit",
                         "--rtt", "20ms", "--deadline", "160ms", "--policy", "edge", "--json")
    got = json.loads(out)
    assert rc == 0 and got["policy"] == "edge" and got["partition"] == 0
    assert not got["feasible"] and got["fallback"] and "deadline 160.0 ms" in got["reason"]
    assert got["breakdown"]["rtt_ms"] == 20.0 and got["link"]["downlink_bps"] == 1e6
    rc, out, _ = run_cli(capsys, "--table", str(path), "--bandwidth", "80kbit", "--deadline", "100ms")
    assert rc == 0 and "MISSES" in out and "exit 1" in out


@pytest.mark.parametrize("args, match", [
    (["--bandwidth", "400", "--deadline", "300ms"], "--bandwidth '400' has no unit"),
    (["--bandwidth", "400kbit", "--deadline", "0s"], "--deadline '0s' must be positive"),
    (["--bandwidth", "400kbit", "--deadline", "300ms", "--rtt", "20"], "--rtt '20' has no unit"),
    (["--bandwidth", "400kbit", "--deadline", "300ms", "--table", "/nonexistent.json"], "does not exist"),
])
def test_cli_errors_are_clear(args, match, capsys):
    rc, _, err = run_cli(capsys, *args)
    assert rc == 2 and match in err


def test_cli_card_missing_is_clear(tmp_path, capsys, monkeypatch):
    rc, _, err = run_cli(capsys, "--bandwidth", "400kbit", "--deadline", "300ms", "--card",
                         str(tmp_path / "no.card.json"))
    assert rc == 2 and "--accuracies" in err


def test_cli_builds_table_from_model_and_predictors(tmp_path, capsys, monkeypatch):
    """The model path: alexnet-cifar10 described unit by unit, timed by (fake) latency models."""
    import edgent.plan.sources as sources

    fakes = {"device": FlopsPredictor(2.0, 0.05), "edge": FlopsPredictor(0.02, 0.005)}
    monkeypatch.setattr(sources, "load_unit_predictor", lambda role, path: fakes[role])
    saved = tmp_path / "alex.json"
    rc, out, _ = run_cli(capsys, "--model", "alexnet-cifar10", "--accuracies", "0.6,0.65,0.7,0.74,0.78",
                         "--bandwidth", "400kbit", "--deadline", "300ms", "--save-table", str(saved), "--json")
    got = json.loads(out)
    assert rc == 0 and got["model"] == "alexnet-cifar10" and 1 <= got["exit"] <= 5
    assert fakes["device"].seen and fakes["edge"].seen
    from edgent.plan import LatencyTable

    table = LatencyTable.load(saved)
    assert [e.num_units for e in table.exits] == [12, 16, 19, 20, 22]
    assert table.exits[0].transfer_bytes[0] == 3 * 32 * 32
    want = Planner(table).plan(Link(400e3, 400e3), 300.0)
    assert (got["exit"], got["partition"]) == (want.exit, want.partition)


@pytest.mark.slow
def test_cli_subprocess_exit_code():
    """The installed entry point prints the error, not a traceback, and exits with 2."""
    proc = subprocess.run([sys.executable, "-m", "edgent.cli.main", "plan", "--bandwidth", "400kbps",
                           "--deadline", "300ms"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "did you mean kbit/s" in proc.stderr and "Traceback" not in proc.stderr
