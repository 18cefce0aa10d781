import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightning_scaling import FitError, PowerLaw, fit_chinchilla, fit_learning_curve, fit_power_law
from lightning_scaling.fitting import _chinchilla_rows, _chinchilla_single, chinchilla_grid

DATA = Path(__file__).parent / "data" / "chinchilla_fig4_points.csv"


def chinchilla_points(drop_highest: int = 0):
    n, flop, loss = np.loadtxt(DATA, delimiter=",", skiprows=1).T
    tokens = flop / (6 * n)
    keep = np.argsort(loss)[: len(loss) - drop_highest]
    return n[keep], tokens[keep], loss[keep]


# ----------------------------------------------------------------------------------- power laws
def test_fit_power_law_recovers_kaplan_ld_exactly():
    law = PowerLaw(5.4e13, 0.095, unit="tokens")
    x = np.logspace(7, 11, 9)
    fit = fit_power_law(x, law(x))
    assert fit.success and fit.law.unit == "tokens"
    assert fit.law.exponent == pytest.approx(0.095, rel=1e-6)
    assert fit.law.scale == pytest.approx(5.4e13, rel=1e-4)


def test_fit_power_law_fixed_and_fitted_constant_with_bootstrap():
    law = PowerLaw(1e7, 0.3, irreducible=1.5)
    x = np.logspace(6, 10, 15)
    y = law(x) * np.exp(np.random.default_rng(1).normal(0, 0.003, x.size))
    fixed = fit_power_law(x, y, irreducible=1.5)
    assert fixed.law.irreducible == 1.5 and fixed.law.exponent == pytest.approx(0.3, rel=0.05)
    fit = fit_power_law(x, y, fit_irreducible=True, bootstrap=100, seed=0)
    assert fit.law.irreducible == pytest.approx(1.5, abs=0.05)
    lo, hi = fit.intervals["irreducible"]
    assert lo <= fit.law.irreducible <= hi and hi - lo < 0.2
    assert fit_power_law(x, y, fit_irreducible=True, bootstrap=100, seed=0).intervals == fit.intervals  # seeded
    with pytest.raises(TypeError, match="fit_irreducible=True"):  # a bool is not a floor
        fit_power_law(x, y, irreducible=True)
    with pytest.raises(ValueError, match="not both"):
        fit_power_law(x, y, irreducible=1.0, fit_irreducible=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scale=st.floats(1e3, 1e12), exponent=st.floats(0.05, 1.5), c=st.floats(0.0, 3.0),
       noise=st.floats(0.0, 0.01), seed=st.integers(0, 1000))
def test_property_power_law_recovered_from_noisy_samples(scale, exponent, c, noise, seed):
    law = PowerLaw(scale, exponent, irreducible=c)
    x = np.logspace(math.log10(scale) - 4, math.log10(scale) - 0.5, 20)
    rng = np.random.default_rng(seed)
    y = law(x) * np.exp(rng.normal(0, noise, x.size))
    fit = fit_power_law(x, y, irreducible=c)
    assert fit.success
    # the fitted curve stays within a few noise widths of the truth over the data
    assert np.max(np.abs(np.log(fit.law(x)) - np.log(law(x)))) < 4 * noise + 1e-6
    assert fit.law.exponent == pytest.approx(exponent, rel=0.25 if noise else 1e-4)


garbage = st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)),
                   min_size=0, max_size=8)


@settings(max_examples=80, deadline=None)
@given(x=garbage, y=garbage, irreducible=st.one_of(st.just("fit"), st.floats(0, 5)))
def test_property_garbage_never_gives_nan_success(x, y, irreducible):
    mode = {"fit_irreducible": True} if irreducible == "fit" else {"irreducible": irreducible}
    for fitter in (lambda: fit_power_law(x, y, **mode), lambda: fit_learning_curve(x, y)):
        try:
            fit = fitter()
        except FitError:
            continue
        if fit.success:
            law = fit.law
            assert law is not None and all(math.isfinite(v) for v in (law.scale, law.exponent, law.irreducible))


@pytest.mark.parametrize("x, y, match", [
    ([1, 2], [3, 2], "at least"),
    ([1, 2, 3, 4], [3, 2, float("nan"), 1], "finite"),
    ([0, 2, 3, 4], [3, 2, 1.5, 1], "> 0"),
    ([1, 2, 3, 4], [1, 2, 3, 4], "does not decrease"),
    ([1, 2, 3], [3, 2], "same length"),
])
def test_fitters_refuse_garbage_clearly(x, y, match):
    with pytest.raises(FitError, match=match):
        fit_power_law(x, y)


# ----------------------------------------------------------------------------------- learning curves
def test_fit_learning_curve_recovers_converged_loss_with_interval():
    s = np.arange(100, 5001, 100.0)
    loss = (2.0 + (300 / s) ** 0.5) * np.exp(np.random.default_rng(0).normal(0, 0.002, s.size))
    fit = fit_learning_curve(s[2:], loss[2:])
    assert fit.success and fit.trusted, fit.reason
    assert fit.converged_loss == pytest.approx(2.0, rel=0.02)
    assert fit.interval[0] <= fit.converged_loss <= fit.interval[1]
    assert fit.exponent == pytest.approx(0.5, rel=0.3) and fit.n_points == s.size - 2
    assert fit.law(1e9) == pytest.approx(fit.converged_loss, rel=1e-3)


def test_fit_learning_curve_says_when_not_to_trust():
    s = np.arange(1, 30, dtype=float)
    straight = 10 * s ** -0.3  # a pure power law: no bend yet, L_conv collapses to its floor
    fit = fit_learning_curve(s, straight)
    assert fit.success and not fit.trusted and "lower bound" in fit.reason
    with pytest.raises(FitError, match="floor"):
        fit_learning_curve(s, straight, irreducible=5.0)


@settings(max_examples=25, deadline=None)
@given(conv=st.floats(0.5, 4.0), t_c=st.floats(50, 500), alpha=st.floats(0.3, 1.2), seed=st.integers(0, 100))
def test_property_learning_curve_recovered(conv, t_c, alpha, seed):
    s = np.linspace(100, 20000, 60)
    loss = (conv + (t_c / s) ** alpha) * np.exp(np.random.default_rng(seed).normal(0, 0.001, s.size))
    fit = fit_learning_curve(s, loss)
    assert fit.success
    if fit.trusted:
        assert fit.converged_loss == pytest.approx(conv, rel=0.03)
        assert fit.interval[0] - 1e-9 <= fit.converged_loss <= fit.interval[1] + 1e-9


# ----------------------------------------------------------------------------------- Chinchilla
def test_fit_chinchilla_reproduces_besiroglu_on_240_points():
    n, d, loss = chinchilla_points(drop_highest=5)
    fit = fit_chinchilla(n, d, loss)
    assert fit.success and fit.n_starts == 4500 and fit.n_points == 240
    law = fit.law
    # Besiroglu et al. 2024 eq 4: E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658
    assert law.E == pytest.approx(1.8172, rel=0.01)
    assert law.A == pytest.approx(482.01, rel=0.05)
    assert law.B == pytest.approx(2085.43, rel=0.05)
    assert law.alpha == pytest.approx(0.3478, abs=0.005)
    assert law.beta == pytest.approx(0.3658, abs=0.005)


@pytest.mark.slow
def test_fit_chinchilla_reaches_the_best_optimum_of_a_plain_loop():
    """The package's optimum is at least as good as an independent plain L-BFGS-B loop over grid points."""
    from scipy.optimize import minimize

    n, d, loss = chinchilla_points()
    logn, logd, logl = np.log(n), np.log(d), np.log(loss)
    fit = fit_chinchilla(n, d, loss)
    grid = chinchilla_grid()
    subset = grid[np.random.default_rng(0).choice(len(grid), 120, replace=False)]

    def objective(p):  # written independently of the package: plain Huber on log-sum-exp
        pred = np.logaddexp(np.logaddexp(p[0] - p[3] * logn, p[1] - p[4] * logd), p[2])
        r = np.abs(pred - logl)
        return np.sum(np.where(r <= 1e-3, 0.5 * r**2, 1e-3 * (r - 0.5e-3)))

    best = min(minimize(objective, x0, method="L-BFGS-B").fun for x0 in subset)
    assert fit.objective <= best * (1 + 1e-6)
    assert fit.objective == pytest.approx(objective(fit.params), rel=1e-9)


def test_fit_chinchilla_bootstrap_intervals_contain_the_fit():
    n, d, loss = chinchilla_points(drop_highest=5)
    fit = fit_chinchilla(n, d, loss, bootstrap=60, seed=0)
    for name in ("E", "A", "B", "alpha", "beta"):
        lo, hi = fit.intervals[name]
        assert lo < getattr(fit.law, name) < hi


def test_fit_chinchilla_recovers_a_synthetic_law():
    rng = np.random.default_rng(3)
    n = 10 ** rng.uniform(7, 10, 60)
    d = 10 ** rng.uniform(9, 12, 60)
    true = dict(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.3)
    loss = (true["E"] + true["A"] / n ** true["alpha"] + true["B"] / d ** true["beta"]) * np.exp(
        rng.normal(0, 0.002, 60))
    fit = fit_chinchilla(n, d, loss)
    assert fit.success
    assert fit.law.E == pytest.approx(1.7, rel=0.05)
    assert fit.law.alpha == pytest.approx(0.33, abs=0.03) and fit.law.beta == pytest.approx(0.3, abs=0.03)


def test_fit_chinchilla_refuses_garbage():
    with pytest.raises(FitError, match="at least"):
        fit_chinchilla([1e9, 2e9], [1e10, 2e10], [3.0, 2.9])
    with pytest.raises(FitError, match="finite"):
        fit_chinchilla([1e9] * 5 + [np.nan], [1e10] * 6, [3.0] * 6)
    with pytest.raises(ValueError, match="delta"):
        fit_chinchilla([1e9] * 6, [1e10] * 6, [3.0] * 6, delta=0)


def test_chinchilla_rows_gradient_matches_finite_differences():
    n, d, loss = chinchilla_points()
    logn, logd, logl = np.log(n[:20]), np.log(d[:20]), np.log(loss[:20])
    p = np.array([[6.0, 7.0, 0.5, 0.35, 0.37]])
    _, g = _chinchilla_rows(p, logn, logd, logl, 1.0, None)  # large delta: smooth region
    eps = 1e-6
    for k in range(5):
        q = p.copy(); q[0, k] += eps
        r = p.copy(); r[0, k] -= eps
        fd = (_chinchilla_rows(q, logn, logd, logl, 1.0, None)[0]
              - _chinchilla_rows(r, logn, logd, logl, 1.0, None)[0]) / (2 * eps)
        assert g[0, k] == pytest.approx(fd[0], rel=1e-4, abs=1e-8)


# derandomized: the examples are fixed so CI is repeatable (a random search once found a start grid
# screening that missed the global basin; see the fit's ``stacked_iterations``/``polish``)
@settings(max_examples=8, deadline=None, derandomize=True)
@given(E=st.floats(1.0, 2.5), alpha=st.floats(0.25, 0.45), beta=st.floats(0.25, 0.45), seed=st.integers(0, 50))
def test_property_chinchilla_recovered_from_noisy_samples(E, alpha, beta, seed):
    rng = np.random.default_rng(seed)
    n = 10 ** rng.uniform(7, 10, 40)
    d = 10 ** rng.uniform(9, 12, 40)
    loss = (E + 400.0 / n**alpha + 1500.0 / d**beta) * np.exp(rng.normal(0, 0.001, 40))
    fit = fit_chinchilla(n, d, loss)
    assert fit.success and np.all(np.isfinite(fit.params))
    assert np.max(np.abs(np.log(fit.law(n, d)) - np.log(loss))) < 0.01  # the fitted surface follows the data
    assert fit.law.E == pytest.approx(E, rel=0.1)


@settings(max_examples=40, deadline=None)
@given(n=garbage, d=garbage, loss=garbage)
def test_property_chinchilla_garbage_never_gives_nan_success(n, d, loss):
    try:
        fit = fit_chinchilla(n, d, loss)
    except FitError:
        return
    if fit.success:
        assert fit.law is not None and np.all(np.isfinite(fit.params))


def test_chinchilla_screen_keeps_the_global_basin():
    """Synthetic data on which a one-stage screen (10 stacked iterations, then polish) found alpha = 2.3."""
    rng = np.random.default_rng(11)
    n, d = 10 ** rng.uniform(7, 10, 40), 10 ** rng.uniform(9, 12, 40)
    alpha = 0.4445853165958147
    loss = (1.5 + 400.0 / n**alpha + 1500.0 / d**0.296875) * np.exp(rng.normal(0, 0.001, 40))
    fit = fit_chinchilla(n, d, loss)
    assert fit.law.alpha == pytest.approx(alpha, abs=0.01) and fit.law.E == pytest.approx(1.5, rel=0.01)
    assert fit.objective < 1e-4


def test_the_analytic_jacobians_match_finite_differences():
    """Every fit hands scipy an analytic Jacobian: each must be the derivative of its residuals."""
    from scipy.optimize import approx_fprime

    from lightning_scaling import curve_families, fitting

    rng = np.random.default_rng(1)
    logn, logd, logy = np.log(rng.uniform(1e4, 1e6, 12)), np.log(rng.uniform(1e4, 1e6, 12)), rng.normal(0.5, 0.1, 12)
    logx, tau, epochs = np.log(np.linspace(100, 3000, 12)), np.linspace(0.1, 1.0, 12), np.linspace(0.2, 30.0, 12)
    weights = rng.uniform(0.5, 1.5, 12)
    cases = [(fitting._overfitting_residuals, fitting._overfitting_jacobian, theta, (logn, logd, logy))
             for theta in ([11.5, 13.1, 0.25, 0.28], [8.0, 15.0, 0.6, 0.1], [14.0, 9.0, 0.05, 1.2])]
    cases += [(fitting._log_residuals, fitting._log_jacobian, [6.0, -0.5, 1.3], (logx, logy, True, 0.0, None)),
              (fitting._log_residuals, fitting._log_jacobian, [6.0, -0.5], (logx, logy, False, 1.1, weights)),
              (curve_families._exp_residuals, curve_families._exp_jacobian, [1.2, 0.8, 3.0], (tau, logy)),
              (curve_families._ed_residuals, curve_families._ed_jacobian, [1.1, 0.2, 8.0], (epochs, logy))]
    for residuals, jacobian, theta, args in cases:
        theta = np.asarray(theta, dtype=float)
        numeric = approx_fprime(theta, residuals, 1e-7, *args)
        assert jacobian(theta, *args) == pytest.approx(numeric, rel=1e-4, abs=1e-6), residuals.__name__


def test_fit_overfitting_law_recovers_a_known_sweep():
    from lightning_scaling import OverfittingLaw, fit_overfitting_law

    truth = OverfittingLaw(N_c=2e5, D_c=4e5, alpha_N=0.25, alpha_D=0.3)
    n = np.repeat([3e4, 8e4, 2e5, 5e5], 4)
    d = np.tile([3e4, 6e4, 1.3e5, 4e5], 4)
    loss = truth(n, d) * np.exp(np.random.default_rng(0).normal(0, 0.003, n.size))
    fit = fit_overfitting_law(n, d, loss)
    assert fit.success and fit.rmse < 0.01
    assert fit.law(n, d) == pytest.approx(truth(n, d), rel=0.01)
    assert fit.law.alpha_D == pytest.approx(0.3, rel=0.15)
    with pytest.raises(FitError, match="distinct values of n_params"):
        fit_overfitting_law([1e5] * 6, [1e4, 2e4, 4e4, 8e4, 1.6e5, 3.2e5], [2.0, 1.9, 1.8, 1.7, 1.6, 1.5])
    with pytest.raises(FitError, match="dataset sizes"):
        fit_overfitting_law([1e4, 2e4, 4e4, 8e4, 1.6e5], [1e5] * 5, [2.0, 1.9, 1.8, 1.7, 1.6])
