"""lightning_scaling.schedules.planned_lrs: the planned LR read from a copy of a torch scheduler is the LR it gives."""

import math

import numpy as np
import pytest
import torch

from lightning_scaling.schedules import ScheduleError, planned_lrs

S = torch.optim.lr_scheduler


def optimizer(lr=1e-3, groups=1):
    return torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(2))]} for _ in range(groups)], lr=lr)


def lived(opt, sched, n, group=0):
    """The LR each of the next n optimizer steps really uses (stepped as Lightning steps: optimizer, scheduler)."""
    out = []
    for _ in range(n):
        out.append(opt.param_groups[group]["lr"])
        opt.zero_grad()
        for g in opt.param_groups:
            for p in g["params"]:
                p.grad = torch.ones_like(p)
        opt.step()
        sched.step()
    return np.array(out)


def warmup_cosine(opt, warmup=10, total=100):
    return S.LambdaLR(opt, lambda s: (s + 1) / warmup if s < warmup else
                      0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))))


SCHEDULERS = {
    "lambda warm-up + cosine": warmup_cosine,
    "cosine": lambda o: S.CosineAnnealingLR(o, T_max=100, eta_min=1e-5),
    "one cycle": lambda o: S.OneCycleLR(o, max_lr=1e-2, total_steps=100),
    "linear": lambda o: S.LinearLR(o, 0.1, 1.0, total_iters=20),
    "sequential WSD": lambda o: S.SequentialLR(o, [S.LinearLR(o, 0.01, 1.0, total_iters=10), S.ConstantLR(o, 1.0, 0),
                                                   S.LinearLR(o, 1.0, 0.1, total_iters=20)], milestones=[10, 80]),
    "chained": lambda o: S.ChainedScheduler([S.StepLR(o, 30, 0.5), S.ExponentialLR(o, 0.99)]),
}


@pytest.mark.parametrize("kind", sorted(SCHEDULERS))
def test_the_plan_is_the_lr_the_scheduler_then_gives(kind):
    opt = optimizer()
    sched = SCHEDULERS[kind](opt)
    plan = planned_lrs(sched, max_steps=100)
    assert plan.shape == (100,)
    np.testing.assert_allclose(plan, lived(opt, sched, 100), rtol=1e-12, atol=0)


def test_mid_run_the_plan_is_the_remaining_steps_and_the_live_scheduler_is_untouched():
    opt = optimizer()
    sched = SCHEDULERS["sequential WSD"](opt)
    lived(opt, sched, 37)
    state = (sched.last_epoch, opt.param_groups[0]["lr"], opt.state_dict()["state"][0]["step"].item())
    plan = planned_lrs(sched, max_steps=100)
    assert plan.shape == (63,)
    assert (sched.last_epoch, opt.param_groups[0]["lr"], opt.state_dict()["state"][0]["step"].item()) == state
    np.testing.assert_allclose(plan, lived(opt, sched, 63), rtol=1e-12)
    assert planned_lrs(sched, max_steps=100).size == 0


def test_another_group():
    opt = optimizer(groups=2)
    sched = S.LambdaLR(opt, [lambda s: 1.0, lambda s: 0.5 ** s])
    np.testing.assert_allclose(planned_lrs(sched, 1, max_steps=5), 1e-3 * 0.5 ** np.arange(5))
    with pytest.raises(ValueError, match="out of range"):
        planned_lrs(sched, 2, max_steps=5)


def test_transformers_schedules_are_read():
    transformers = pytest.importorskip("transformers")
    for make in (transformers.get_cosine_schedule_with_warmup, transformers.get_linear_schedule_with_warmup):
        opt = optimizer()
        sched = make(opt, num_warmup_steps=10, num_training_steps=60)
        np.testing.assert_allclose(planned_lrs(sched, max_steps=60), lived(opt, sched, 60), rtol=1e-12)


def test_a_scheduler_it_cannot_read_raises_a_clear_error():
    opt = optimizer()
    with pytest.raises(ScheduleError, match="losses not yet seen"):
        planned_lrs(S.ReduceLROnPlateau(opt), max_steps=10)
    with pytest.raises(ScheduleError, match="not a torch LR scheduler"):
        planned_lrs(object(), max_steps=10)
    with pytest.raises(ScheduleError, match="cannot be stepped"):
        planned_lrs(S.OneCycleLR(opt, max_lr=1e-2, total_steps=10), max_steps=20)
    with pytest.raises(ValueError, match="max_steps"):
        planned_lrs(S.LinearLR(opt), max_steps=-1)
