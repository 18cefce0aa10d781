"""`lightning-scaling sweep --budget/--plot` on a store of recorded curves, and the planning arithmetic behind it."""

from __future__ import annotations

import math
import re

import pytest

from lightning_scaling import planning, presets
from lightning_scaling.cli import main
from lightning_scaling.corpus.curves import load_curves
from lightning_scaling.sweep import Sweep, record_from_curve, write_record

PNG = b"\x89PNG\r\n\x1a\n"
#: The CLI prints N and D to 4 significant digits: each is within 0.05% of its value, their product within 0.1%.
PRINTED = 5e-3


def _store(folder, **match):
    """The recorded full-data runs matching ``match`` as a sweep store, with their FLOPs counted as 6 N per token."""
    curves = load_curves(**match)
    full = max(c.train_tokens for c in curves if c.name.split("_")[1] == "dfull")
    for c in curves:
        if c.train_tokens != full:
            continue
        batch, last = c.config["tokens_per_step"], int(c.steps[-1])
        write_record(folder, record_from_curve(
            c.name, c.steps, c.val_loss, n_params=c.n_params, lr=c.lr, data="pydoc", dataset_size=c.train_tokens,
            tokens_per_step=batch, examples_seen=batch * last, flops=6.0 * c.n_params * batch * last))
    return folder


@pytest.fixture(scope="module")
def sizes(tmp_path_factory):
    """Four model sizes on the full data at a constant LR: the fit has its law across sizes."""
    return _store(tmp_path_factory.mktemp("sizes"), schedule="constant")


def _plan(capsys, store, budget, *extra):
    assert main(["sweep", str(store), "--budget", budget, *extra]) == 0
    out = capsys.readouterr().out
    n, d = re.search(r"train N (\S+) parameters on D (\S+) tokens", out).groups()
    return float(n), float(d), out


def test_budget_follows_the_fitted_law_and_plot_writes_both_figures(sizes, tmp_path, capsys):
    figures = tmp_path / "figures"
    n, d, out = _plan(capsys, sizes, "1e15", "--plot", str(figures))
    assert 6 * n * d == pytest.approx(1e15, rel=PRINTED)  # the store's FLOPs: 6 N per token
    params = Sweep(sizes).fit().params
    a_n, a_s, e, n_c = params["alpha_N"], params["alpha_S"], params["E"], params["N_c"]
    assert f"alpha_N {a_n:.3g}, alpha_S {a_s:.3g}" in out
    n10, d10, _ = _plan(capsys, sizes, "1e16")
    assert n10 / n == pytest.approx(10 ** (a_s / (a_n + a_s)), rel=PRINTED)  # N ~ C^(alpha_S / (alpha_N + alpha_S))
    assert d10 / d == pytest.approx(10 ** (a_n / (a_n + a_s)), rel=PRINTED)
    # the loss at the compute-efficient stop: eq 1.6's bracket at S_c / S = (alpha_N / alpha_S) u(N)
    loss = float(re.search(r"predicted loss (\S+),", out).group(1))
    assert loss == pytest.approx(e + (1 + a_n / a_s) ** a_s * (n_c / n) ** a_n, abs=1e-3)
    plan_passes, sweep_passes = map(float, re.search(r"reads (\S+) passes .* at most (\S+) while", out).groups())
    assert ("more data, not a bigger model" in out) == (plan_passes > sweep_passes)
    for name in ("sweep_curves.png", "sweep_frontier.png"):
        path = figures / name
        assert f"wrote {path}" in out
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000


def test_one_model_size_falls_back_to_kaplans_published_allocation(tmp_path, capsys):
    store = _store(tmp_path / "one", model="m")
    n, d, out = _plan(capsys, store, "1e15")
    assert "no law across model sizes" in out and "Kaplan et al. 2020's published allocation" in out
    published = planning.kaplan_optimal(1e15 / planning.PF_DAY)
    assert n == pytest.approx(published.n_params, rel=PRINTED)
    assert d == pytest.approx(published.n_tokens, rel=PRINTED)
    assert "below Kaplan's L(C)/L(D) crossover" in out  # 1e15 FLOP is far below C* ~ 1e24 FLOP


def test_plot_without_matplotlib_says_how_to_install_it(sizes, tmp_path, capsys, monkeypatch):
    from lightning_scaling import dashboard

    monkeypatch.setattr(dashboard, "_pyplot", lambda: None)
    assert main(["sweep", str(sizes), "--plot", str(tmp_path)]) == 2
    assert "pip install 'lightning-scaling[plots]'" in capsys.readouterr().err


@pytest.mark.parametrize("budget", ["0", "-1e15", "abc", "nan", "inf"])
def test_a_bad_budget_is_an_argparse_error(sizes, budget, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(sizes), f"--budget={budget}"])  # "=": argparse reads a bare -1e15 as an option
    assert exc.value.code == 2
    assert "is not a compute budget: give a number of FLOPs > 0" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ the arithmetic
KAPLAN = planning.SweepLaw(0.0, presets.KAPLAN_N_C, presets.KAPLAN_ALPHA_N, presets.KAPLAN_S_C, presets.KAPLAN_ALPHA_S,
                           items_per_step=2**19)


def test_sweep_optimal_matches_a_hand_calculation_with_kaplans_constants():
    # r = 0.076 / 0.76 = 0.1; r N_c^r = 0.1 * (8.8e13)^0.1 = 2.4799; C / (6 B S_c) = 8.64e19 / (6 * 2^19 * 2100)
    # = 1.3079e10; N = (2.4799 * 1.3079e10)^(1 / 1.1) = 3.59e9; D = C / (6 N) = 4.01e9 tokens
    a = planning.sweep_optimal(KAPLAN, planning.PF_DAY)
    assert a.n_params == pytest.approx(3.59e9, rel=2e-3)
    assert a.n_tokens == pytest.approx(4.01e9, rel=2e-3)
    assert 6 * a.n_params * a.n_tokens == pytest.approx(planning.PF_DAY)
    steps = a.n_tokens / KAPLAN.items_per_step
    r = KAPLAN.ratio
    assert KAPLAN.S_c / steps == pytest.approx(r * (KAPLAN.N_c / a.n_params) ** r)  # [K] B.4 in eq 1.6's bracket
    assert a.loss == pytest.approx(1.1**0.76 * KAPLAN.converged(a.n_params))  # B.5's factor in the bracket form
    for k in (0.8, 1.25):  # no other split of the same compute does better
        assert KAPLAN(a.n_params * k, steps / k) > a.loss


def test_allocation_exponents_and_the_data_limit():
    n_exp, d_exp = planning.allocation_exponents(presets.KAPLAN_ALPHA_N, presets.KAPLAN_ALPHA_S)
    assert n_exp == pytest.approx(0.76 / 0.836) and n_exp + d_exp == pytest.approx(1.0)
    low, high = planning.sweep_optimal(KAPLAN, 1e20), planning.sweep_optimal(KAPLAN, 1e21)
    assert high.n_params / low.n_params == pytest.approx(10**n_exp)
    assert planning.sweep_data_limit(KAPLAN, low.n_tokens) == pytest.approx(1e20)
    plan = planning.plan_budget(1e21, KAPLAN, low.n_tokens / 4, passes=4)
    assert plan.fitted and plan.past_data_limit and plan.data_limit_flop == pytest.approx(1e20)
    assert plan.steps == pytest.approx(high.n_tokens / 2**19)
    with pytest.raises(ValueError, match="compute_flop"):
        planning.plan_budget(-1.0, KAPLAN)


def test_without_a_law_the_plan_is_kaplans_table6_and_crossover():
    plan = planning.plan_budget(planning.PF_DAY, None, data_size=2e10, note="no law")
    assert not plan.fitted and plan.note == "no law"
    assert plan.allocation == planning.kaplan_optimal(1.0)
    assert plan.crossover == planning.crossover()
    assert plan.data_limit_flop == pytest.approx(planning.PF_DAY) and not plan.past_data_limit  # D(1) = 2e10
    assert (plan.n_exponent, plan.d_exponent) == (0.73, 0.27)


def test_sweep_law_says_what_the_fit_lacks():
    acc = planning.SweepAccounting(2048.0, 6.0, "the records' FLOPs", 3e-3, 4e5, "tokens")
    with pytest.raises(ValueError, match="no law across model sizes"):
        planning.sweep_law({"E": 1.0, "alpha_S": 0.7, "S_c": 2.0}, "steps", acc)
    law = planning.sweep_law({"E": 1.0, "alpha_S": 0.7, "S_c": 3.0, "alpha_N": 0.1, "N_c": 1e6}, "lr_sum", acc)
    assert law.S_c == pytest.approx(1000.0)  # 3.0 summed LR at 3e-3 per step
    assert not math.isnan(law(1e5, 1e3))
