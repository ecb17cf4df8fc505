"""Training parts: temperature schedule, unary statistics, AOWS sampler."""

import numpy as np
import pytest
import torch

from aows.solve import search
from aows.train.sampler import sample_configs
from aows.train.schedule import temperature
from aows.train.unaries import UnaryStats
from tests.test_search import realistic_problem


def test_temperature_schedule_matches_seed_section_b():
    assert temperature(4.99, 20) is None  # uniform warm-up
    for epoch, t in [(5, 1.0), (6, 1e-2), (10, 1e-3), (20, 5e-4)]:
        assert temperature(epoch, 20) == pytest.approx(t)
    # log-linear between knots (per iteration): halfway in log space
    assert temperature(8, 20) == pytest.approx(np.sqrt(1e-2 * 1e-3))
    # stretched to a 4-epoch run: warm-up 1 epoch, last knot at the end
    assert temperature(0.5, 4) is None
    assert temperature(1, 4) == pytest.approx(1.0)
    assert temperature(4, 4) == pytest.approx(5e-4)
    ts = [temperature(e, 4) for e in np.linspace(1, 4, 50)]
    assert all(a >= b for a, b in zip(ts, ts[1:]))


@pytest.mark.parametrize("mode", ["epoch", "window"])
def test_unary_statistics_recover_known_per_layer_effects(mode):
    rng = np.random.default_rng(0)
    sizes = [3, 5, 4]
    effect = [rng.uniform(0, 1, s) for s in sizes]  # loss added by each choice
    stats = UnaryStats(sizes, mode=mode, window=5000)
    for _ in range(3):
        for _ in range(40):
            idx = np.stack([rng.integers(0, s, 64) for s in sizes], axis=1)
            d = sum(effect[i][idx[:, i]] for i in range(3)) + rng.normal(0, 0.05, 64)
            stats.update(idx, d)
        stats.end_epoch()
    u = stats.unaries()
    for i in range(3):
        # -d / n averaged: u_i(c) = -(effect_i(c) + mean of the others) / n
        others = sum(np.mean(effect[j]) for j in range(3) if j != i)
        np.testing.assert_allclose(u[i], -(effect[i] + others) / 3, atol=0.02)


def test_window_mode_forgets_old_values():
    stats = UnaryStats([2], mode="window", window=10)
    stats.update(np.zeros((10, 1), int), np.full(10, 3.0))
    stats.update(np.zeros((10, 1), int), np.full(10, 6.0))
    assert stats.unaries()[0][0] == pytest.approx(-6.0)
    assert stats.unaries()[0][1] == pytest.approx(-6.0)  # unseen: lowest seen value


def test_epoch_mode_keeps_the_last_estimate_of_choices_not_seen_since():
    stats = UnaryStats([3], mode="epoch")
    stats.update(np.array([[0], [1], [1]]), np.array([3.0, 6.0, 6.0]))
    stats.end_epoch()  # epoch 1 saw choices 0 and 1
    stats.update(np.array([[1]]), np.array([9.0]))
    stats.end_epoch()  # epoch 2 saw choice 1 only
    u = stats.unaries()[0]
    assert u[0] == pytest.approx(-3.0)  # epoch 1's average, not forgotten
    assert u[1] == pytest.approx(-9.0)  # the last epoch's
    assert u[2] == pytest.approx(-9.0)  # never seen: the lowest of the layer


def test_aows_sampler_at_tiny_temperature_returns_the_ows_optimum():
    problem = realistic_problem(0, resolution=64, levels=6)
    bp = problem.budget_problem
    budget = 0.5 * (bp.fastest().cost + bp.best_unconstrained().cost)
    ows = search(problem, budget, "lagrangian")
    idx = sample_configs(np.random.default_rng(0), 20, problem.space, problem.model,
                         problem.unaries, budget, temperature=1e-12)
    space = problem.space
    assert all(list(space.config_from_indices(r)) == ows["config"] for r in idx)
    uni = sample_configs(np.random.default_rng(0), 500, problem.space)
    assert uni.shape == (500, space.n_searchable)
    assert len({tuple(r) for r in uni}) > 400
    with pytest.raises(ValueError, match="needs a latency model"):
        sample_configs(np.random.default_rng(0), 2, problem.space, temperature=1.0)


def test_window_mode_equals_a_brute_force_moving_average():
    rng = np.random.default_rng(7)
    stats = UnaryStats([3, 2], mode="window", window=7)
    history = {(i, c): [] for i in range(2) for c in range(3)}
    for _ in range(20):
        idx = np.stack([rng.integers(0, 3, 5), rng.integers(0, 2, 5)], axis=1)
        d = rng.normal(size=5)
        stats.update(idx, d)
        for b in range(5):
            for i in range(2):
                history[(i, idx[b, i])].append(np.float32(-d[b] / 2))
    u = stats.unaries()
    for i, size in enumerate([3, 2]):
        for c in range(size):
            assert u[i][c] == pytest.approx(np.mean(history[(i, c)][-7:]), abs=1e-5)


def test_imagefolder_data_shards_between_processes(tmp_path):
    pytest.importorskip("torchvision", reason="ImageFolder data needs torchvision")
    from PIL import Image

    from aows.train.data import get_data
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3)):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for k in range(n):
                Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
                    tmp_path / split / cls / f"{k}.png")
    seen = []
    for rank in (0, 1):
        d = get_data(str(tmp_path), 32, batch=2, rank=rank, world=2, workers=0)
        assert d.classes == 2 and d.steps_per_epoch == 3
        xs = list(d.train(0))
        assert len(xs) == 3 and xs[0][0].shape == (2, 3, 32, 32)
        seen.append(sum(y.numel() for _, y in d.val(0)))
    assert sum(seen) == 6  # every validation image once over both processes


def test_tensor_batches_start_yields_the_rest_of_the_epoch():
    """``batches(e, start=k)`` is items k.. of ``batches(e)``, for every process's share,
    shuffled (training) or not (validation, with a partial last batch)."""
    from aows.train.data import fake_data
    for rank in (0, 1):
        d = fake_data(resolution=8, batch=4, n=100, seed=3, rank=rank, world=2)
        for batches, epoch in ((d.train, 0), (d.train, 2), (d.val, 1)):
            full = list(batches(epoch))
            assert len(full) >= 3
            for k in (0, 1, len(full) - 1, len(full), len(full) + 2):
                rest = list(batches(epoch, start=k))
                assert len(rest) == max(len(full) - k, 0)
                for (x, y), (x2, y2) in zip(full[k:], rest):
                    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_imagefolder_start_yields_the_rest_of_the_epoch(tmp_path):
    pytest.importorskip("torchvision", reason="ImageFolder data needs torchvision")
    from PIL import Image

    from aows.train.data import get_data
    for split, n in (("train", 6), ("val", 2)):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for k in range(n):
                img = np.full((40, 40, 3), 20 * k + (100 if cls == "b" else 0), np.uint8)
                Image.fromarray(img).save(tmp_path / split / cls / f"{k}.png")
    d = get_data(str(tmp_path), 32, batch=2, seed=1, workers=0)
    # the random crops differ between calls: compare which images (labels and mean
    # brightness, which a crop of a uniform image keeps)
    key = lambda b: [(int(c), round(float(m), 2))  # noqa: E731
                     for c, m in zip(b[1], b[0].mean((1, 2, 3)))]
    full = [key(b) for b in d.train(1)]
    assert len(full) == 6
    for k in (1, 4):
        assert [key(b) for b in d.train(1, start=k)] == full[k:]

