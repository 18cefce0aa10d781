"""The stopping rule on real recorded learning curves, asserted on a fixed slice of the corpus.

The numbers for the whole corpus are in BENCHMARKS.md (benchmarks/bench_stopping.py). Here: the four model
sizes at 64k tokens and the cosine run there, with the L(D) floor of each run fitted without that run's dataset
size (held out), as in the benchmark. Where the stop-quality targets hold on this slice they are asserted as such
(every run within 1.1 +- 0.05, the median within 1.1 +- 0.02, cosine error <= 5%); where they do not
(constant-LR error <= 2%) the assertion is today's measured level, so that a regression fails CI: see
BENCHMARKS.md for what is not met and why.
"""

import statistics

import pytest

from lightning_scaling.corpus.curves import HOLDOUT_DIR, SPREAD_DIR, converged_loss, load_curves
from lightning_scaling.corpus.ld import fit_ld, held_out_overfitting_floor, ld_points
from lightning_scaling.corpus.rule_quality import early_stopping_step, evaluate, naive_errors

pytestmark = pytest.mark.slow

MET = ["xl_d64k_const", "l_d64k_const", "m_d64k_const", "s_d64k_const", "m_d64k_cosine"]  # the 64k slice
WARMUP = 100


@pytest.fixture(scope="module")
def corpus():
    return {c.name: c for c in load_curves()}


def held_out(corpus, curve):
    return fit_ld(ld_points(corpus.values(), exclude_tokens=[curve.train_tokens]))


@pytest.fixture(scope="module")
def scored(corpus):
    return {name: evaluate(corpus[name], floor_law=held_out(corpus, corpus[name]), warmup_steps=WARMUP,
                           stop_when_data_limited=False) for name in MET}


def test_stop_quality_on_runs_where_the_rule_applies(scored):
    ratios = [q.stop_ratio for q in scored.values()]
    assert all(r is not None for r in ratios), scored
    assert all(abs(r - 1.1) <= 0.05 for r in ratios), ratios  # every run within 1.1 +- 0.05 (the target)
    assert abs(statistics.median(ratios) - 1.1) <= 0.02, ratios  # the target; measured 1.089 (stop_at="nearest")


def test_prediction_at_the_stop_is_accurate_and_beats_the_naive_fit(corpus, scored):
    constant = [abs(q.stop_error) for q in scored.values() if q.schedule == "constant"]
    cosine = [abs(q.stop_error) for q in scored.values() if q.schedule == "cosine"]
    assert statistics.median(constant) <= 0.03  # measured 2.2% (target 2%)
    assert statistics.median(cosine) <= 0.05  # the target
    for name, q in scored.items():
        naive = naive_errors(corpus[name], WARMUP)[0.5]
        rule = q.errors[0.5]
        assert rule is not None and (naive is None or abs(rule) < abs(naive)), (name, rule, naive)


def test_the_rule_stops_before_patience_based_early_stopping(corpus, scored):
    for name, q in scored.items():
        assert q.stopped_step < early_stopping_step(corpus[name], patience=10), name
        assert q.steps_fraction < 0.8  # well before the converged point (0.48-0.76)


def test_data_limited_runs_are_stopped_unless_told_not_to(corpus):
    c = corpus["l_d16k_const"]  # its 1.1x point falls in warm-up: the validation loss turns up at step ~175
    law = held_out(corpus, c)
    quiet = evaluate(c, floor_law=law, warmup_steps=WARMUP, stop_when_data_limited=False)
    assert quiet.stopped_step is None and quiet.data_limited
    stopped = evaluate(c, floor_law=law, warmup_steps=WARMUP)
    assert stopped.stopped_step is not None and stopped.stopped_step < c.config["steps"]


# With a sweep of model sizes the floor is L(N, D) ([K] eq 1.5) at the run's own N, fitted without the runs at its
# (N, D): the power law floored there also stops the model-limited full-text runs, which L(D) never stops.
MET_ND = ["l_dfull_const", "m_dfull_const", "m_dfull_wsd", "xl_dfull_const", "m_d64k_const"]


@pytest.fixture(scope="module")
def scored_nd(corpus):
    from lightning_scaling.corpus.ld import held_out_overfitting_floor

    return {name: evaluate(corpus[name], floor_law=held_out_overfitting_floor(corpus.values(), corpus[name]),
                           warmup_steps=WARMUP, stop_when_data_limited=False, family="power") for name in MET_ND}


def test_an_l_n_d_floor_stops_model_limited_runs(corpus, scored_nd):
    ratios = [q.stop_ratio for q in scored_nd.values()]
    assert all(r is not None and abs(r - 1.1) <= 0.06 for r in ratios), ratios  # measured 1.044-1.133
    assert statistics.median(abs(q.stop_error) for q in scored_nd.values()) <= 0.05  # measured 4.4%
    # with L(D), which every model is above, these model-limited runs never stop
    for name in ("l_dfull_const", "m_dfull_const", "m_dfull_wsd"):
        c = corpus[name]
        quiet = evaluate(c, floor_law=held_out(corpus, c), warmup_steps=WARMUP, stop_when_data_limited=False)
        assert quiet.stopped_step is None, name


# The opt-in effective-data family ([M]'s D' in epochs, R* fitted per run), with the same held-out L(D): it stops
# the constant-LR runs that are too small for their data, which the default rule never stops (l_dfull, m_dfull,
# s_d256k), and brings the 256k runs into the band. A regression guard on the runs it was kept for (BENCHMARKS.md
# has the whole corpus, where it is not better everywhere: s_dfull 1.038x, l_stdlib1m 1.033x).
MET_ED = ["l_dfull_const", "m_dfull_const", "s_d256k_const", "m_d256k_const", "l_d256k_const"]


def test_the_effective_data_family_stops_runs_the_default_never_stops(corpus):
    scored = {name: evaluate(corpus[name], floor_law=held_out(corpus, corpus[name]), warmup_steps=WARMUP,
                             stop_when_data_limited=False, family="effective_data",
                             epoch_steps=corpus[name].config["steps_per_epoch"])
              for name in MET_ED}
    ratios = [q.stop_ratio for q in scored.values()]
    assert all(r is not None and abs(r - 1.1) <= 0.05 for r in ratios), ratios  # measured 1.064-1.128
    assert statistics.median(abs(q.stop_error) for q in scored.values()) <= 0.025  # measured 2.1%
    c = corpus["s_d256k_const"]
    default = evaluate(c, floor_law=held_out(corpus, c), warmup_steps=WARMUP, stop_when_data_limited=False)
    assert default.stopped_step is None  # the default family, on its threshold


@pytest.fixture(scope="module")
def holdout():
    """The out-of-sample runs (curves_holdout/, the stdlib source), and the runs on that text the floors use."""
    runs = load_curves(HOLDOUT_DIR)
    return runs, runs + load_curves(source="stdlib")


def test_out_of_sample_without_a_floor_the_rule_stops_late_and_accurately(holdout):
    """On runs recorded after the rule's options were chosen (BENCHMARKS.md, "out of sample"): measured 10 of 12
    stops, median ratio 1.040, median error at the stop 2.2%."""
    scored = [evaluate(c, warmup_steps=WARMUP) for c in holdout[0]]
    stops = [q for q in scored if q.stop_ratio is not None]
    assert len(stops) >= 10
    assert 1.0 <= statistics.median(q.stop_ratio for q in stops) <= 1.1
    assert statistics.median(abs(q.stop_error) for q in stops) <= 0.03


def test_out_of_sample_the_early_stops_are_the_floors_fault(holdout):
    """With L(D) refitted on the stdlib runs without the scored run's D, the rule stops at 1.16-1.21x on the 128k
    and 256k runs: there the held-out L(D) lies above what the best model reaches (stdlib's L(D) is no power law
    over 32k-1M: its validation text lies in the first 160k characters). Every stop above 1.15x is such a run."""
    runs, pool = holdout
    early = 0
    for c in runs:
        law = fit_ld(ld_points(pool, exclude_tokens=[c.train_tokens], source="stdlib"))
        q = evaluate(c, floor_law=law, warmup_steps=WARMUP)
        if q.stop_ratio is not None and q.stop_ratio > 1.15:
            early += 1
            best = min(converged_loss(r) for r in pool if r.train_tokens == c.train_tokens)
            assert law(c.train_tokens) > best, (c.name, law(c.train_tokens), best)
    assert early >= 1


def test_out_of_sample_with_a_sound_floor_every_stop_is_within_the_band():
    """The second out-of-sample set (curves_spread/: training and validation text from one pool, so L(D) and L(N, D)
    describe it). The power law floored by L(N, D) refitted without the run's own (N, D) -- the configuration the
    corpus measurements recommended before these runs existed -- stops every run but the three 32k ones (their 1.1x
    point falls at the first fit) within 1.1 +- 0.05 (measured 12 of 12, median 1.094). Each stop's prediction is the
    floor itself, so the error at the stop is L(N, D)'s own (measured median 2.4%)."""
    runs = load_curves(SPREAD_DIR)
    scored = [evaluate(c, floor_law=held_out_overfitting_floor(runs, c), warmup_steps=WARMUP, floor_kind="model",
                       stop_when_data_limited=False)
              for c in runs]
    stops = [q for q in scored if q.stop_ratio is not None]
    assert len(stops) >= 12 and all(abs(q.stop_ratio - 1.1) <= 0.05 for q in stops), [q.stop_ratio for q in stops]
    assert abs(statistics.median(q.stop_ratio for q in stops) - 1.1) <= 0.02
    assert all(q.stopped_on_floor and q.stop_error == pytest.approx(q.stop_floor_error) for q in stops)
    assert statistics.median(abs(q.stop_error) for q in stops) <= 0.03
    assert {q.run for q in scored if q.stop_ratio is None} <= {f"{m}_spread32k_const" for m in ("m", "l", "xl")}
