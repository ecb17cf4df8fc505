"""Latency model: sampling, store, fit, model file, CLI (tiny spaces, real timing)."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.optimize

from aows.catalogue import get_space
from aows.cli import main
from aows.latency.fit import (
    design_matrix,
    fit,
    fit_flops,
    flops_vector,
    monotonicity_matrix,
    smoothness_matrix,
    solve,
)
from aows.latency.model import LatencyModel, ModelFileError
from aows.latency.protocol import AnchoredTimer, Protocol, time_runners
from aows.latency.sampling import BiasedSampler
from aows.latency.store import SampleFileError, Samples, SampleWriter, read_samples
from aows.latency.validate import error_metrics
from aows.space import SpaceError
from aows.spaces import mobilenet_v1


def synthetic_truth(space, rng):
    """A positive additive latency table: FLOPs-like plus per-entry irregularities."""
    keys, _ = space.unknowns()
    f = flops_vector(space)
    return 0.02 + f / f.max() + rng.uniform(0, 0.3, size=len(keys))


def test_biased_sampler_covers_mobilenet_v1_at_the_lower_bound():
    space = mobilenet_v1()
    sampler = BiasedSampler(space)
    n = 0
    while sampler.coverage() < 1.0:
        sampler.next()
        n += 1
        assert n <= 196
    # 196 = 14 x 14 pairs of the layer types that occur once per network: the lower bound
    assert n == 196
    # uniform sampling is far from covering everything by then
    rng = np.random.default_rng(0)
    uni = BiasedSampler(space, space.uniform_sample(rng, 196))
    assert uni.coverage() < 0.8


def test_biased_sampler_resumes_from_seen_configs():
    space = mobilenet_v1(resolution=64)
    a = BiasedSampler(space)
    first = [a.next() for _ in range(30)]
    b = BiasedSampler(space, first[:20])
    assert [b.next() for _ in range(10)] == first[20:]


def test_exact_recovery_from_noiseless_samples():
    space = mobilenet_v1(resolution=64, levels=4)
    rng = np.random.default_rng(0)
    x_true = synthetic_truth(space, rng)
    configs = space.uniform_sample(rng, 600)
    y = design_matrix(space, configs) @ x_true
    model = fit(space, Samples(configs, y), K=0.0, smooth=0.0, ridge=1e-12)
    test = space.uniform_sample(np.random.default_rng(1), 300)
    truth = design_matrix(space, test) @ x_true
    np.testing.assert_allclose(model.predict_many(test), truth, rtol=1e-7)
    # Tables are determined only up to "gauge" shifts: g(c_k) added to layer k-1's column
    # and taken from layer k's row changes no prediction. So each table's error must be
    # additively separable, err[a, b] = r(a) + q(b): its double differences vanish.
    _, ids = space.unknowns()
    for table, idx in zip(model.tables, ids):
        err = table - x_true[idx]
        sep = err - err.mean(0, keepdims=True) - err.mean(1, keepdims=True) + err.mean()
        assert np.abs(sep).max() < 1e-6


def test_solver_matches_lbfgs_on_the_full_prior():
    """The active-set Newton solver reaches the optimum of the penalised objective."""
    space = mobilenet_v1(resolution=64, levels=5)
    rng = np.random.default_rng(2)
    x_true = synthetic_truth(space, rng)
    configs = space.uniform_sample(rng, 120)  # fewer networks than unknowns: priors matter
    A = design_matrix(space, configs)
    y = A @ x_true * rng.uniform(0.95, 1.05, size=len(configs))
    Dm, Ds = monotonicity_matrix(space), smoothness_matrix(space)
    x0 = np.full(A.shape[1], y.mean() / space.n_layers)
    for K, lam in [(100.0, 0.0), (100.0, 1.0), (0.0, 1.0)]:
        x, _ = solve(A, y, Dm, Ds, K, lam, x0, ridge=1e-3)
        rho = 1e-3 * (A.multiply(A).sum() / A.shape[1])

        def obj(z, K=K, lam=lam, rho=rho):
            r, h, q = A @ z - y, np.maximum(Dm @ z, 0), Ds @ z
            return r @ r + K * h @ h + lam * q @ q + rho * (z - x0) @ (z - x0)

        ref = scipy.optimize.minimize(
            lambda z: obj(z), x0, method="L-BFGS-B", bounds=[(0, None)] * x0.size,
            jac=lambda z, K=K, lam=lam, rho=rho: 2 * (A.T @ (A @ z - y)) + 2 * K * (
                Dm.T @ np.maximum(Dm @ z, 0)) + 2 * lam * (Ds.T @ (Ds @ z)) + 2 * rho * (z - x0),
            options={"maxiter": 50000, "ftol": 1e-15, "gtol": 1e-12})
        assert x.min() >= 0
        assert obj(x) <= ref.fun * (1 + 1e-6)


@pytest.mark.parametrize("seed,n,K,lam", [(1, 120, 100.0, 1000.0), (2, 40, 1000.0, 100.0)])
def test_solver_reaches_one_optimum_whichever_phase_finishes_it(seed, n, K, lam, monkeypatch):
    """Newton may finish from any active-set iterate (the sets cycled, ``PDAS_PATIENCE``
    ran out, or ``max_pdas`` was reached): the optimum is the same, and L-BFGS-B's. Each
    hand-over is forced here, so the test asserts the optimum whichever path this CPU's
    floating point takes by default."""
    import aows.latency.fit as fitmod
    space = mobilenet_v1(resolution=64, levels=5)
    rng = np.random.default_rng(seed)
    x_true = synthetic_truth(space, rng)
    configs = space.uniform_sample(rng, n)
    A = design_matrix(space, configs)
    y = A @ x_true * rng.uniform(0.9, 1.1, size=n)
    Dm, Ds = monotonicity_matrix(space), smoothness_matrix(space)
    x0 = np.full(A.shape[1], y.mean() / space.n_layers)
    rho = 1e-4 * (A.multiply(A).sum() / A.shape[1])

    def obj(z):
        r, h, q = A @ z - y, np.maximum(Dm @ z, 0), Ds @ z
        return r @ r + K * h @ h + lam * q @ q + rho * (z - x0) @ (z - x0)

    ref = scipy.optimize.minimize(
        obj, x0, method="L-BFGS-B", bounds=[(0, None)] * x0.size,
        jac=lambda z: 2 * (A.T @ (A @ z - y)) + 2 * K * (Dm.T @ np.maximum(Dm @ z, 0))
        + 2 * lam * (Ds.T @ (Ds @ z)) + 2 * rho * (z - x0),
        options={"maxiter": 50000, "ftol": 1e-15, "gtol": 1e-12})
    default, _ = solve(A, y, Dm, Ds, K, lam, x0)
    assert default.min() >= 0 and obj(default) <= ref.fun * (1 + 1e-6)
    for patience in (1, 10 ** 6):  # hand over at the first stale step, or never
        monkeypatch.setattr(fitmod, "PDAS_PATIENCE", patience)
        x, _ = solve(A, y, Dm, Ds, K, lam, x0)
        assert x.min() >= 0
        assert obj(x) == pytest.approx(obj(default), rel=1e-9)
    monkeypatch.undo()
    for max_pdas in (0, 1, 2, 4):  # Newton from the start, or from an early iterate
        x, _ = solve(A, y, Dm, Ds, K, lam, x0, max_pdas=max_pdas)
        assert x.min() >= 0
        assert obj(x) == pytest.approx(obj(default), rel=1e-9)


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_monotonicity_prior_orders_neighbours(name):
    space = get_space(name, resolution=64, levels=4)
    Dm = monotonicity_matrix(space)
    keys, _ = space.unknowns()
    r, c = Dm.nonzero()
    res = {layer.type_key: layer.in_res for layer in space.layers}
    kinds = set()
    for row in range(Dm.shape[0]):
        small, large = sorted(c[r == row], key=lambda v: -Dm[row, v])
        ks, kl = keys[small], keys[large]
        if ks[0] == kl[0]:  # one table: one width grows, the other stays
            kinds.add("width")
            assert (ks[1] < kl[1] and ks[2] <= kl[2]) or (ks[1] == kl[1] and ks[2] < kl[2])
            assert ks[1] == kl[1] or ks[2] == kl[2] or (ks[1] == ks[2] and kl[1] == kl[2])
        else:  # two tables of one op at two input sizes: same widths, the smaller first
            kinds.add("size")
            assert ks[1:] == kl[1:] and res[ks[0]] < res[kl[0]]
    # MobileNet-v2 repeats a block at two input sizes; MobileNet-v1 does not
    assert kinds == ({"width", "size"} if name == "mobilenet_v2" else {"width"})


def test_timing_protocol_times_every_runner():
    calls = []

    def runner(k, secs):
        def run():
            calls.append(k)
            time.sleep(secs)
            return secs
        return run

    proto = Protocol(warmup=1, rounds=3, runs=2, reduce="median")
    out = time_runners([runner(0, 0.001), runner(1, 0.002)], proto)
    np.testing.assert_allclose(out, [0.001, 0.002])
    assert calls.count(0) == calls.count(1) == 1 + 3 * 2


def _time_chunk(timer, values):
    """Times one chunk whose anchor returns ``values`` on its successive attempts: the
    number of attempts made, and the anchor kept."""
    it = iter(values)
    made = []

    def net():
        return 2.0

    def attempt_anchor():
        made.append(next(it))
        return made[-1]
    # time_runners calls each runner once per attempt (rounds=runs=1, warmup=0); the
    # anchor comes first in the list, so it draws the attempt's value
    timer.anchor = attempt_anchor
    _, a = timer([net], np.random.default_rng(0))
    return len(made), a


def test_anchor_bar_of_a_slower_session_falls_to_its_own_fastest(caplog):
    """Every attempt above a bar this session never reached: the machine is slower as a
    whole (measured here: 1.26-1.34x a day later), so later chunks are held to the
    session's own fastest anchor instead of being timed 4 times each."""
    proto = Protocol(warmup=0, rounds=1, runs=1, retries=3, anchor_tolerance=0.05)
    timer = AnchoredTimer(proto, lambda: 0.0, anchor_min=1.0)  # the samples' fastest: 1 s
    with caplog.at_level("WARNING", logger="aows.latency.protocol"):
        n, a = _time_chunk(timer, [1.32, 1.30, 1.31, 1.33])
    assert (n, a) == (4, 1.30)  # all 3 retries spent, the least disturbed kept
    assert timer.lowered == 1.30 and "slower now" in caplog.text
    assert _time_chunk(timer, [1.33, 9.0])[0] == 1  # within 5 % of 1.30: no retry
    assert _time_chunk(timer, [1.60, 1.31])[0] == 2  # load on top of it: still retried
    assert timer.retimed == 4


def test_anchor_bar_reached_once_stays(caplog):
    """A session that reached the given bar can reach it again: a chunk that misses it
    after every retry was disturbed, and the bar stays (nothing lowered, no warning);
    nor is a fresh collection's own bar ever lowered."""
    proto = Protocol(warmup=0, rounds=1, runs=1, retries=3, anchor_tolerance=0.05)
    timer = AnchoredTimer(proto, lambda: 0.0, anchor_min=1.0)
    with caplog.at_level("WARNING", logger="aows.latency.protocol"):
        assert _time_chunk(timer, [1.02]) == (1, 1.02)
        assert _time_chunk(timer, [1.3, 1.3, 1.3, 1.3])[0] == 4
        assert _time_chunk(timer, [1.3, 1.3, 1.3, 1.3])[0] == 4
        fresh = AnchoredTimer(proto, lambda: 0.0)
        assert _time_chunk(fresh, [1.0]) == (1, 1.0)
        assert _time_chunk(fresh, [1.3, 1.3, 1.3, 1.3])[0] == 4
        assert _time_chunk(fresh, [1.3, 1.3, 1.3, 1.3])[0] == 4
    assert timer.lowered is None and fresh.lowered is None and not caplog.text


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))


def test_torn_last_line_is_skipped_malformed_line_is_an_error(tmp_path, tiny_space):
    cfg = list(tiny_space.narrowest())
    good = json.dumps({"config": cfg, "latency_ms": 1.0})
    p = tmp_path / "s.jsonl"
    p.write_text(good + "\n" + good + "\n" + '{"config": [8, 1')
    with pytest.warns(UserWarning, match="incomplete last line"):
        s = read_samples(p, tiny_space)
    assert len(s) == 2
    _write(p, [good, "not json", good])
    with pytest.raises(SampleFileError, match=r"s\.jsonl:2: malformed"):
        read_samples(p)
    _write(p, [good, json.dumps({"config": cfg, "latency_ms": -3})])
    with pytest.raises(SampleFileError, match=r":2: latency -3"):
        read_samples(p)


def test_reference_layout_is_read(tmp_path):
    space = mobilenet_v1()
    cfg = [8, 16, 48, 64, 128, 256, 512, 512, 512, 512, 464, 512, 1536, 1536]
    p = tmp_path / "ref.jsonl"
    _write(p, [json.dumps([cfg, 3.5]), json.dumps([list(space.widest()), 9.25])])
    s = read_samples(p, space)
    assert s.configs[0] == tuple(cfg) and s.latency_ms.tolist() == [3.5, 9.25]
    bad = list(cfg)
    bad[0] = 9
    _write(p, [json.dumps([bad, 1.0])])
    with pytest.raises(SampleFileError, match="width 9 of layer 1"):
        read_samples(p, space)


def test_writer_cuts_torn_tail_and_refuses_another_target(tmp_path, tiny_space):
    from aows.latency.backends import Target, get_backend
    from aows.latency.measure import header
    p = tmp_path / "s.jsonl"
    target = Target(threads=1)
    h = header(tiny_space, target, Protocol(), get_backend(target))
    w = SampleWriter(p, h)
    w.append([tiny_space.narrowest()], [1.0], "uniform")
    with open(p, "a") as f:
        f.write('{"config": [8')
    w = SampleWriter(p, h)
    w.append([tiny_space.widest()], [2.0], "uniform")
    s = read_samples(p, tiny_space)
    assert s.latency_ms.tolist() == [1.0, 2.0]
    h2 = dict(h, target=dict(h["target"], batch_size=8))
    with pytest.raises(SampleFileError, match="batch_size"):
        SampleWriter(p, h2)


def test_model_file_roundtrip_and_refuses_other_space(tmp_path):
    space = mobilenet_v1(resolution=64, levels=4)
    rng = np.random.default_rng(3)
    x = synthetic_truth(space, rng)
    configs = space.uniform_sample(rng, 100)
    model = fit(space, Samples(configs, design_matrix(space, configs) @ x))
    path = tmp_path / "latency.json"
    model.save(path)
    obj = json.loads(path.read_text())
    assert len(obj["tables"]) == space.n_layers
    assert np.array(obj["tables"][0]).shape == (1, len(space.choices[1]))  # image input
    assert np.array(obj["tables"][-1]).shape == (len(space.choices[-2]), 1)  # classifier
    loaded = LatencyModel.load(path)
    np.testing.assert_allclose(loaded.predict_many(configs), model.predict_many(configs),
                               rtol=1e-5)
    other = mobilenet_v1(resolution=96, levels=4)
    with pytest.raises(SpaceError, match="latency model"):
        LatencyModel.load(path, other)
    paper_cfg = (8, 16, 48, 64, 128, 256, 512, 512, 512, 512, 464, 512, 1536, 1536)
    with pytest.raises(SpaceError, match="not in space"):
        loaded.predict(paper_cfg)  # a configuration of the 14-level space
    path.write_text("{}")
    with pytest.raises(ModelFileError, match="not an aows latency model"):
        LatencyModel.load(path)


def test_flops_baseline_and_metrics():
    space = mobilenet_v1(resolution=64, levels=4)
    rng = np.random.default_rng(4)
    configs = space.uniform_sample(rng, 50)
    y = np.array([2.0 + 1e-7 * space.flops(c) for c in configs])
    model = fit_flops(space, Samples(configs, y))
    np.testing.assert_allclose(model.predict_many(configs), y, rtol=1e-6)
    met = error_metrics(np.array([1.0, 2.19]), np.array([1.0, 2.0]))
    assert met["within_5pct"] == 0.5 and met["within_10pct"] == 1.0
    assert met["max_abs_pct_err"] == pytest.approx(0.095)
    assert met["rmse_ms"] == pytest.approx(np.sqrt(0.19**2 / 2))


@pytest.mark.slow
def test_cli_generate_fit_validate_benchmark(tmp_path, capsys, fast_protocol_args):
    common = ["--space", "mobilenet_v1", "--resolution", "32"]
    samples = str(tmp_path / "s.jsonl")
    rc = main(["latency", "generate", *common, "--backend", "torch-cpu", "--threads", "1",
               "--count", "12", "--biased", "-q", "-o", samples, *fast_protocol_args])
    assert rc == 0
    s = read_samples(samples)
    assert len(s) == 12 and s.header["target"]["threads"] == 1
    assert all(a is not None for a in s.anchors)
    model = str(tmp_path / "m.json")
    assert main(["latency", "fit", samples, *common, "-o", model]) == 0
    capsys.readouterr()
    plot = str(tmp_path / "fit.png")
    assert main(["latency", "validate", samples, "--latency", model, "--json",
                 "--plot", plot]) == 0
    met = json.loads(capsys.readouterr().out)
    for key in ("n", "rmse_ms", "nrmse", "mape", "max_abs_pct_err", "within_5pct",
                "within_10pct"):
        assert key in met
    assert met["n"] == 12 and (tmp_path / "fit.png").stat().st_size > 1000
    cfg = ",".join(map(str, s.configs[0]))
    assert main(["latency", "benchmark", *common, cfg, "--latency", model, "--json",
                 *fast_protocol_args]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["measured_latency_ms"] > 0 and rows[0]["predicted_latency_ms"] > 0


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    assert main(["latency", "benchmark", "--space", "mobilenet_v1", "8,8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aows: error:") and "searchable layers" in err
    assert "Traceback" not in err
    assert main(["latency", "fit", str(tmp_path / "missing.jsonl"), "--space",
                 "mobilenet_v1", "-o", str(tmp_path / "m.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    if not __import__("torch").cuda.is_available():  # with a GPU this would time for real
        assert main(["latency", "generate", "--space", "mobilenet_v1", "--backend",
                     "torch-cuda", "--count", "1", "-o", str(tmp_path / "x.jsonl")]) == 2
        assert "torch-cuda needs a CUDA GPU" in capsys.readouterr().err


def test_generate_samples_as_aows_run_does_by_default(tmp_path, fast_protocol_args):
    """One default sampler (``DEFAULT_SAMPLER``, cover) for `latency generate` and `run`."""
    from aows.latency.defaults import DEFAULT_SAMPLER
    out = tmp_path / "s.jsonl"
    assert main(["latency", "generate", "--space", "mobilenet_v1", "--resolution", "32",
                 "--threads", "1", "--count", "2", "-q", "-o", str(out),
                 *fast_protocol_args]) == 0
    assert DEFAULT_SAMPLER == "cover" and read_samples(out).samplers == ["cover"] * 2


@pytest.mark.slow
def test_killed_collection_resumes_to_the_requested_count(tmp_path):
    out = tmp_path / "s.jsonl"
    cmd = [sys.executable, "-m", "aows.cli", "latency", "generate", "--space", "mobilenet_v1",
           "--resolution", "32", "--threads", "1", "--count", "40", "--biased", "-q",
           "--warmup", "1", "--rounds", "2", "--runs", "2", "--chunk", "4", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if out.exists() and out.read_text().count("\n") >= 1 + 8:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with open(out, "a") as f:  # as if killed in the middle of a write
        f.write('{"config": [8, 16')
    with pytest.warns(UserWarning, match="incomplete last line"):
        n_before = len(read_samples(out))
    assert 8 <= n_before < 40
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    s = read_samples(out)
    assert len(s) == 40
    # the resumed biased stream equals an uninterrupted one: the widest and narrowest
    # networks, then the biased sampler's
    space = mobilenet_v1(resolution=32)
    ref = BiasedSampler(space, [space.widest(), space.narrowest()])
    assert s.configs == [space.widest(), space.narrowest()] + [ref.next() for _ in range(38)]


def test_drift_normalisation_removes_a_machine_slowdown():
    space = mobilenet_v1(resolution=64, levels=4)
    rng = np.random.default_rng(5)
    x = synthetic_truth(space, rng)
    configs = space.uniform_sample(rng, 300)
    y = design_matrix(space, configs) @ x
    # the second half was timed while the machine ran 30 % slower: the anchor network,
    # timed in the same chunks, slowed down alike
    slow = np.where(np.arange(300) >= 150, 1.3, 1.0)
    anchors = list(5.0 * slow * rng.uniform(0.995, 1.005, size=300))
    samples = Samples(configs, y * slow, anchors=anchors)
    model = fit(space, samples, K=0.0, smooth=0.0, ridge=1e-12)
    ref = model.anchor_ref_ms
    assert ref == pytest.approx(np.median(anchors))
    test = space.uniform_sample(np.random.default_rng(6), 100)
    truth = design_matrix(space, test) @ x * ref / 5.0
    assert error_metrics(model.predict_many(test), truth)["nrmse"] < 0.01
    raw = fit(space, samples, K=0.0, smooth=0.0, ridge=1e-12, normalise=False)
    assert raw.anchor_ref_ms is None
    assert error_metrics(raw.predict_many(test), truth)["nrmse"] > 0.05
    with pytest.raises(SampleFileError, match="no anchor"):
        Samples(configs[:2], y[:2], anchors=[1.0, None]).normalised(1.0)


def test_cover_then_uniform_sampler():
    from aows.latency.sampling import cover_then_uniform
    space = mobilenet_v1(resolution=64, levels=4)
    ref = BiasedSampler(space)
    first = cover_then_uniform(BiasedSampler(space), 150, seed=3, offset=0)
    state = BiasedSampler(space)
    k = 0
    while state.coverage() < 1.0:
        assert first[k] == ref.next()  # biased until covered
        state.update(first[k])
        k += 1
    assert k < 150
    rest = first[k:]
    assert len(set(rest)) > 0.9 * len(rest)  # then uniform, not the biased stream
    # resumable: continuing from the first 100 gives the same stream
    again = first[:100] + cover_then_uniform(BiasedSampler(space, first[:100]), 50, seed=3,
                                             offset=100)
    assert again == first


def test_warm_started_solve_reaches_the_cold_optimum():
    """From a neighbouring problem's solution (the projected Newton method alone) the
    solver reaches the optimum of the cold solve."""
    space = mobilenet_v1(resolution=64, levels=5)
    rng = np.random.default_rng(1)
    configs = space.uniform_sample(rng, 120)
    A = design_matrix(space, configs)
    y = A @ synthetic_truth(space, rng) * rng.uniform(0.9, 1.1, size=120)
    Dm, Ds = monotonicity_matrix(space), smoothness_matrix(space)
    x0 = np.full(A.shape[1], y.mean() / space.n_layers)
    rho = 1e-4 * (A.multiply(A).sum() / A.shape[1])
    for K, lam, K_near, lam_near in [(100.0, 1000.0, 100.0, 100.0), (10.0, 1.0, 1000.0, 1.0)]:
        near, _ = solve(A, y, Dm, Ds, K_near, lam_near, x0)
        cold, _ = solve(A, y, Dm, Ds, K, lam, x0)
        warm, _ = solve(A, y, Dm, Ds, K, lam, x0, start=near)

        def obj(z, K=K, lam=lam):
            r, h, q = A @ z - y, np.maximum(Dm @ z, 0), Ds @ z
            return r @ r + K * h @ h + lam * q @ q + rho * (z - x0) @ (z - x0)

        assert warm.min() >= 0
        assert obj(warm) == pytest.approx(obj(cold), rel=1e-9)
        assert np.abs(warm - cold).max() <= 1e-5 * np.abs(cold).max()


def test_cross_validation_with_warm_starts_equals_cold_solves():
    """Each fold starts from its previous solution: the optimum, and so every CV error
    and the chosen weights, are those of solves from the FLOPs-shaped start."""
    from aows.latency.fit import Fitter, _flops_init
    space = mobilenet_v1(resolution=32, levels=4, max_width=0.5)
    rng = np.random.default_rng(11)
    x_true = synthetic_truth(space, rng)
    configs = space.uniform_sample(rng, 60)
    y = design_matrix(space, configs) @ x_true * rng.uniform(0.97, 1.03, 60)
    f = Fitter(space)
    K, lam, table = f.cross_validate(configs, y, K_grid=(1.0, 100.0), smooth_grid=(0.1, 10.0))
    A = design_matrix(space, configs)
    perm = np.random.default_rng(0).permutation(60)
    parts = np.array_split(perm, 4)
    for key, value in table.items():
        k, s = (float(t.split("=")[1]) for t in key.split(","))
        err = 0.0
        for p in parts:
            tr = np.setdiff1d(perm, p)
            x0 = _flops_init(A[tr], y[tr], f.f, space.n_layers)[0]
            x, _ = solve(A[tr], y[tr], f.Dm, f.Ds, k, s, x0)
            err += float(np.sum((A[p] @ x - y[p]) ** 2))
        assert value == pytest.approx(np.sqrt(err / 60), rel=1e-6), key
    assert table[f"K={K:g},smooth={lam:g}"] == min(table.values())
