"""Latency models: regressions recover known coefficients, predictors round-trip, unknown kinds are errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgent.errors import DataError, ModelError
from edgent.latency import EdgentPredictor, PaperPredictor, default_predictor, load_predictor
from edgent.latency.features import KNOWN_KINDS, paper_features
from edgent.latency.regression import LocalCorrection, fit_linear, summarise_errors
from edgent.model.describe import LayerInfo, UnitInfo
from edgent.profile.throttle import DeviceEmulation


def conv(c_in, c_out, h, k=3, s=1, groups=1) -> LayerInfo:
    oh = (h + 2 * (k // 2) - k) // s + 1
    flops = 2 * c_in // groups * c_out * k * k * oh * oh
    return LayerInfo("conv", (c_in, h, h), (c_out, oh, oh), c_in // groups * c_out * k * k + c_out, flops,
                     c_in, c_out, k, s, groups)


def random_layers(rng, n=60):
    layers = []
    for _ in range(n):
        layers.append(conv(int(rng.integers(3, 256)), int(rng.integers(8, 256)), int(rng.choice([4, 8, 16, 32])),
                           int(rng.choice([1, 3, 5])), int(rng.choice([1, 2]))))
        c, h = int(rng.integers(3, 256)), int(rng.choice([2, 4, 8, 16, 32]))
        layers.append(LayerInfo("relu", (c, h, h), (c, h, h)))
        layers.append(LayerInfo("maxpool", (c, h, h), (c, h // 2 or 1, h // 2 or 1), kernel=2, stride=2))
        f_in, f_out = int(rng.integers(10, 4000)), int(rng.integers(10, 2000))
        layers.append(LayerInfo("fc", (f_in,), (f_out,), f_in * f_out + f_out, 2 * f_in * f_out, f_in, f_out))
    return layers


# Known per-kind coefficients on the paper's variables (ms per element), and intercepts.
TRUE = {"conv": ([2e-6, 3e-4], 0.02), "relu": ([1e-6], 0.005), "maxpool": ([5e-7, 2e-6], 0.004),
        "fc": ([3e-6, 1e-5], 0.01)}


def true_ms(layer: LayerInfo) -> float:
    w, b = TRUE[layer.kind]
    return float(np.dot(w, paper_features(layer)) + b)


def test_fit_linear_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 100, size=(200, 3))
    y = x @ np.array([0.5, 2.0, 0.01]) + 3.0
    for kwargs in ({}, {"relative": True}, {"nonneg": True}, {"relative": True, "nonneg": True}):
        fit = fit_linear(x, y, **kwargs)
        np.testing.assert_allclose(fit.coef, [0.5, 2.0, 0.01], rtol=1e-6, atol=1e-9)
        assert fit.intercept == pytest.approx(3.0, rel=1e-6)


def test_fit_linear_nonneg_clamps_and_noise_is_tolerated():
    rng = np.random.default_rng(1)
    x = rng.uniform(1, 10, size=(300, 2))
    y = (x @ np.array([1.5, 0.0]) + 0.2) * rng.normal(1.0, 0.01, size=300)
    fit = fit_linear(x, y, nonneg=True, relative=True)
    assert min(fit.coef) >= 0 and fit.intercept >= 0
    assert fit.coef[0] == pytest.approx(1.5, rel=0.02)
    with pytest.raises(DataError):
        fit_linear(np.zeros((0, 2)), np.zeros(0))


def test_paper_predictor_recovers_per_kind_regressions():
    rng = np.random.default_rng(2)
    samples = [(layer, true_ms(layer)) for layer in random_layers(rng)]
    pred = PaperPredictor.fit("edge", DeviceEmulation(threads=2), samples)
    for kind, (w, b) in TRUE.items():
        np.testing.assert_allclose(pred.fits[kind].coef, w, rtol=1e-6)
        assert pred.fits[kind].intercept == pytest.approx(b, rel=1e-6)
    held_out = random_layers(np.random.default_rng(3), 5)
    for layer in held_out:
        assert pred.predict_layer_ms(layer) == pytest.approx(true_ms(layer), rel=1e-6)


def test_scaling_by_quota_factor_and_slowdown():
    rng = np.random.default_rng(2)
    samples = [(layer, true_ms(layer)) for layer in random_layers(rng)]
    emu = DeviceEmulation(threads=1, cpu_quota=0.1, slowdown=7.0)
    pred = PaperPredictor.fit("device", emu, samples, quota_factor=10.5)
    layer = samples[0][0]
    assert pred.predict_layer_ms(layer) == pytest.approx(true_ms(layer) * 10.5 * 7.0, rel=1e-6)
    faster = pred.with_emulation(DeviceEmulation(threads=1, cpu_quota=0.1, slowdown=1.0))
    assert faster.predict_layer_ms(layer) == pytest.approx(true_ms(layer) * 10.5, rel=1e-6)
    with pytest.raises(ModelError, match="slowdown"):  # only the slowdown may change
        pred.with_emulation(DeviceEmulation(threads=2))


def test_edgent_predictor_fits_flops_law_and_corrects_locally():
    rng = np.random.default_rng(4)
    layers = [layer for layer in random_layers(rng, 80) if layer.kind == "conv"]
    # A FLOPs law plus a shape effect no linear model captures: 1x1 convolutions are 1.6x slower.
    law = lambda l: (1e-8 * l.flops + 0.01) * (1.6 if l.kernel == 1 else 1.0)  # noqa: E731
    pred = EdgentPredictor.fit("edge", DeviceEmulation(threads=2), [(l, law(l)) for l in layers])
    test = [conv(64, 128, 16, 1), conv(96, 96, 8, 3), conv(32, 64, 32, 5, 2)]
    for layer in test:
        assert pred.predict_layer_ms(layer) == pytest.approx(law(layer), rel=0.12)


def test_local_correction_learns_factor_near_points_only():
    z = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    corr = LocalCorrection.fit(z, np.log([2.0, 2.0, 1.0, 1.0]), k=2)
    assert corr.factor(np.array([0.05, 0.0])) == pytest.approx(2.0, rel=0.05)
    assert corr.factor(np.array([5.05, 5.0])) == pytest.approx(1.0, rel=0.05)
    assert corr.factor(np.array([50.0, -50.0])) == pytest.approx(1.0, rel=1e-3)  # far away: no correction


def _fitted_pair():
    rng = np.random.default_rng(5)
    samples = [(layer, true_ms(layer)) for layer in random_layers(rng)]
    emu = DeviceEmulation(threads=1, cpu_quota=0.1, slowdown=3.0)
    loading = [(1_000_000, 5.0), (4_000_000, 11.0), (16_000_000, 35.0)]
    return (PaperPredictor.fit("device", emu, samples, 10.2, loading),
            EdgentPredictor.fit("device", emu, samples, 10.2, loading, unit_overhead_ms=0.003, part_overhead_ms=0.01))


def test_save_load_round_trip(tmp_path):
    unit = UnitInfo(0, "block", "block", (16, 8, 8), (16, 8, 8), 4096, 0, 0,
                    (conv(16, 16, 8), LayerInfo("relu", (16, 8, 8), (16, 8, 8))))
    for pred in _fitted_pair():
        path = pred.save(tmp_path / f"{pred.name}.json")
        doc = json.loads(path.read_text())  # plain JSON
        assert doc["predictor"] == pred.name and doc["emulation"]["describe"] == pred.emulation.describe()
        back = load_predictor(path)
        assert type(back) is type(pred) and back.role == "device" and back.emulation == pred.emulation
        assert back.predict_unit_ms(unit) == pytest.approx(pred.predict_unit_ms(unit), rel=1e-9)
        assert back.predict_units_ms([unit, unit]) == pytest.approx(pred.predict_units_ms([unit, unit]), rel=1e-9)
        assert back.predict_load_ms(8_000_000) == pytest.approx(pred.predict_load_ms(8_000_000), rel=1e-9)


def test_unit_and_part_sums():
    paper, edgent = _fitted_pair()
    a, b = conv(16, 32, 8), LayerInfo("relu", (32, 8, 8), (32, 8, 8))
    one = UnitInfo(0, "conv", "conv", (16, 8, 8), (32, 8, 8), 8192, 0, 0, (a,))
    two = UnitInfo(1, "block", "block", (16, 8, 8), (32, 8, 8), 8192, 0, 0, (a, b))
    assert paper.predict_unit_ms(two) == pytest.approx(paper.predict_layer_ms(a) + paper.predict_layer_ms(b))
    overhead = edgent.scale * 0.003
    assert edgent.predict_unit_ms(two) == pytest.approx(edgent.predict_layer_ms(a) + edgent.predict_layer_ms(b)
                                                        + overhead)
    assert edgent.predict_units_ms([]) == 0.0
    assert edgent.predict_units_ms([one, two]) == pytest.approx(
        edgent.predict_unit_ms(one) + edgent.predict_unit_ms(two) + edgent.scale * 0.01)


def test_part_terms_price_every_run_of_units_as_the_part_model_does():
    """A latency table stores per-unit terms and one constant per call; with a chain factor below 1 (whole
    parts faster than their layers alone) every device prefix and edge suffix must still cost exactly what
    ``predict_units_ms`` says, and the table built from the predictor must hold those terms."""
    paper, edgent = _fitted_pair()
    edgent.chain_factor, edgent.chain_ms_per_param, edgent.chain_ms_per_input = 0.8, 1e-6, 2e-5
    edgent.part_overhead_ms = 0.02
    a, b = conv(16, 32, 8), LayerInfo("relu", (32, 8, 8), (32, 8, 8))
    units = [UnitInfo(i, "block", "block", (16, 8, 8), (32, 8, 8), 8192, 1000 * (i + 1), 0, (a, b)) for i in range(4)]
    for pred in (paper, edgent):
        terms, const = pred.part_terms_ms(units)
        for lo in range(4):
            for hi in range(lo + 1, 5):
                assert sum(terms[lo:hi]) + const == pytest.approx(pred.predict_units_ms(units[lo:hi]), rel=1e-9)
    terms, const = edgent.part_terms_ms(units)
    assert sum(terms) < sum(edgent.predict_unit_ms(u) for u in units)  # the factor < 1 is kept, not clipped away


def test_unknown_layer_kind_is_a_clear_error():
    paper, edgent = _fitted_pair()
    for pred in (paper, edgent):
        with pytest.raises(ModelError, match="'unknown:Foo'"):
            pred.predict_layer_ms(LayerInfo("unknown:Foo", (3, 4, 4), (3, 4, 4)))
        with pytest.raises(ModelError, match="'lrn'"):  # known kind, not in this fit
            pred.predict_layer_ms(LayerInfo("lrn", (3, 4, 4), (3, 4, 4), kernel=5))
        with pytest.raises(ModelError, match="no layer records"):
            pred.predict_unit_ms(UnitInfo(0, "x", "x", (1,), (1,), 4, 0, 0, ()))


def test_load_predictor_rejects_bad_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_predictor(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_predictor(bad)
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(DataError, match="latency predictor"):
        load_predictor(bad)


def test_error_summary_counts_absolute_tolerance():
    s = summarise_errors([1.05, 1.3, 0.02, 2.0], [1.0, 1.0, 0.06, 1.0], labels=list("abcd"))
    assert s.n == 4
    assert s.within_10 == pytest.approx(0.5)  # a (5%) and c (within 0.05 ms though 67% off)
    assert s.within_20 == pytest.approx(0.5)
    assert {w["what"] for w in s.worst} == {"b", "d"}


def test_shipped_predictors_load_and_rank_roles():
    from edgent.model.describe import describe_chain
    from edgent.model.zoo import load_model

    units = describe_chain(load_model("alexnet-cifar10", pretrained=False))
    edge, device = default_predictor("edge"), default_predictor("device")
    assert edge.role == "edge" and device.role == "device"
    assert set(edge.kinds()) == set(KNOWN_KINDS) == set(device.kinds())
    e, d = edge.predict_units_ms(units), device.predict_units_ms(units)
    assert 0 < e < d
    assert d / e > 30, "the device role emulates a Raspberry Pi 3 against a desktop PC (some 100x)"
    assert "emulated" in device.emulation.describe() and device.emulation.clock == "steady-cpu"
    for pred in (edge, device):  # the real preprocessing was timed: more than its elementwise passes
        ms = pred.predict_preprocess_ms("cifar10", (3, 32, 32))
        assert ms is not None and ms > 0
    assert default_predictor("edge", "paper").name == "paper"
    with pytest.raises(ModelError):
        default_predictor("phone")



def test_preprocessing_is_fitted_from_the_sweep_and_priced_in_the_table(tmp_path):
    from edgent.latency.fit import fit_predictors, preprocess_fits
    from edgent.plan.table import preprocess_ms

    emu = DeviceEmulation(threads=1, slowdown=10.0, clock="thread-cpu")
    rng = np.random.default_rng(0)
    records = [{"layer": {**layer.__dict__}, "ms": true_ms(layer)} for layer in random_layers(rng, 20)
               if layer.kind in TRUE]
    # the real function: 0.3 ms to start, 1 ns per input element
    prep = [{"name": "cifar10", "shape": [3, h, h], "numel": 3 * h * h, "ms": 0.3 + 1e-6 * 3 * h * h}
            for h in (32, 64, 128)] + [{"name": "odd", "shape": [3, 8, 8], "numel": 192, "ms": 0.1}]
    sweep = {"role": "device", "emulation": emu.to_json(), "records": records, "preprocess": prep}
    fits = preprocess_fits(sweep)
    assert set(fits) == {"cifar10"}  # one size cannot be fitted
    preds = fit_predictors(sweep)
    for pred in preds.values():
        assert pred.predict_preprocess_ms("cifar10", (3, 32, 32)) == pytest.approx(10 * (0.3 + 3072e-6), rel=1e-6)
        assert pred.predict_preprocess_ms("imagenet", (3, 32, 32)) is None
        back = load_predictor(pred.save(tmp_path / f"{pred.name}.json"))
        assert back.predict_preprocess_ms("cifar10", (3, 64, 64)) == pytest.approx(
            pred.predict_preprocess_ms("cifar10", (3, 64, 64)), rel=1e-9)
    paper = preds["paper"]
    # without a timing of the function the price would be the four elementwise passes, which this fit (no
    # elementwise kinds) cannot price: a clear error, not a silent 0
    with pytest.raises(ModelError, match="'mul'"):
        preprocess_ms(paper, "imagenet", (3, 32, 32))
    assert preprocess_ms(paper, "cifar10", (3, 32, 32)) == pytest.approx(10 * (0.3 + 3072e-6), rel=1e-6)
