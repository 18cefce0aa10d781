import pytest

from lightning_scaling import planning, presets


def test_stopping_factor_is_1_10():  # SCIENCE.md 4, [K] B.5
    assert planning.stopping_factor() == pytest.approx(1.10)
    with pytest.raises(ValueError):
        planning.stopping_factor(alpha_S=0)


def test_kaplan_b12_b14_tradeoffs():  # 2.7 / 0.13 / 0.35
    t = planning.tradeoff(0.10, 0.02)
    assert t.params_ratio == pytest.approx(2.7, abs=0.05)
    assert t.steps_ratio == pytest.approx(0.13, abs=0.01)
    assert t.compute_ratio == pytest.approx(0.35, abs=0.015)


def test_crossover_recomputed_with_table6():  # SCIENCE.md 5: C* ~ 1.1e4 PF-days, L* ~ 1.67
    c = planning.crossover()
    assert c.compute_pf_days == pytest.approx(1.1e4, rel=0.05)
    assert c.loss == pytest.approx(1.67, abs=0.01)
    assert c.n_tokens == pytest.approx(2e10 * c.compute_pf_days**0.27)
    # with D = 4e10 C^0.26 the point moves to C* ~ 1e5, L* ~ 1.49
    c2 = planning.crossover(data_coefficient=4e10, data_exponent=0.26)
    assert c2.compute_pf_days == pytest.approx(1e5, rel=0.3)
    assert c2.loss == pytest.approx(1.49, abs=0.02)


@pytest.mark.parametrize("flop, n, d", [(1.21e20, 1e9, 20.2e9), (1.23e22, 10e9, 205.1e9)])
def test_chinchilla_table3_allocations(flop, n, d):
    rule = planning.tokens_per_param_optimal(flop)
    assert rule.n_params == pytest.approx(n, rel=0.03)
    assert rule.n_tokens == pytest.approx(d, rel=0.03)
    # the parametric law refitted by Besiroglu et al. 2024 gives the same ~20 tokens/param frontier
    fit = planning.chinchilla_optimal(presets.get("besiroglu2024"), flop)
    assert fit.n_params == pytest.approx(n, rel=0.10)
    assert fit.n_tokens == pytest.approx(d, rel=0.10)
    assert 6 * fit.n_params * fit.n_tokens == pytest.approx(flop)


def test_hoffmann_approach3_frontier_formula():
    law = presets.get("hoffmann2022")
    a = planning.chinchilla_optimal(law, 1e21)
    # the optimum: no other split of the same compute gives a lower loss
    for k in (0.8, 1.25):
        assert law(a.n_params * k, a.n_tokens / k) > a.loss


def test_kaplan_table6_allocation():
    a = planning.kaplan_optimal(1.0)
    assert a.n_params == pytest.approx(1.3e9) and a.n_tokens == pytest.approx(2e10)
    assert a.compute_flop == pytest.approx(8.64e19)


@pytest.mark.parametrize("epochs, expected", [(2, 1.97), (4, 3.73), (16, 10.6)])
def test_muennighoff_effective_data(epochs, expected):  # SCIENCE.md 7
    assert planning.effective_data(1000.0, epochs * 1000.0) / 1000.0 == pytest.approx(expected, abs=0.025)


def test_effective_data_limits():
    assert planning.effective_data(100, 50) == 50  # before the first full pass every example is new
    assert planning.effective_data(1.0, 1e12) == pytest.approx(16.39)
    with pytest.raises(ValueError):
        planning.effective_data(0, 10)
