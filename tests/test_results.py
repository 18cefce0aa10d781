"""lightning_scaling.results: every fit and prediction answers success, message and bool() (scipy's OptimizeResult)."""

import numpy as np

from lightning_scaling import fit_chinchilla, fit_learning_curve, fit_overfitting_law, fit_power_law, forecast
from lightning_scaling.curve_families import predict_converged
from lightning_scaling.sweep import fit_sweep

T = np.arange(100.0, 2001.0, 50.0)
POWER = 1.5 + (300.0 / T) ** 0.6


def test_every_fit_and_prediction_has_one_result_shape():
    n = np.repeat([1e5, 1e6, 1e7], 3)
    d = np.tile([1e7, 1e8, 1e9], 3)
    loss = 1.7 + 400 / n ** 0.34 + 410 / d ** 0.28
    results = [fit_power_law(T, POWER - 1.5), fit_learning_curve(T, POWER), fit_chinchilla(n, d, loss),
               fit_overfitting_law(n, d, loss), predict_converged(T, POWER, family="power"),
               predict_converged(T, POWER).fits[0],
               forecast(list(range(3000, 10001, 1000)),
                        [3.1 + 0.5 * (s / 1000) ** -0.5 for s in range(3000, 10001, 1000)],
                        lr=[3e-4] * 10000, planned_lr=[3e-4] * 10000, law="power", calibration=False),
               fit_sweep([])]
    for r in results:
        assert isinstance(r.success, bool) and isinstance(r.message, str) and r.message, type(r).__name__
        assert bool(r) == r.success, type(r).__name__
    assert [r.success for r in results] == [True] * 7 + [False]  # no run: no joint fit, said in the message
    # a prediction also says whether its numbers may drive a decision
    for r in results[1:2] + results[4:7]:
        assert isinstance(r.trusted, bool) and isinstance(r.reason, str)
