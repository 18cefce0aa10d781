"""The CLI on finished runs as a user's project leaves them: resumed runs, two loggers, the run-info file.

The runs are written here with torch's SummaryWriter and as CSVLogger-style metrics.csv files, the run-info file
with lightning_scaling.run_info.write, so each case is exactly the one a user met.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter

from lightning_scaling import PowerLaw, fit_chinchilla, fit_power_law, run_info
from lightning_scaling.cli import main
from lightning_scaling.stopping import replay

#: Evaluations every 16 steps of L = 1 + (40/S)^0.7: the rule (threshold 1.1) stops at step 1072 on it, the 67th.
STEPS = np.arange(16, 3000, 16)
CURVE = 1 + (40 / STEPS) ** 0.7
TAG = "scaling/monitored_loss"


def write_events(folder: Path, sessions: list[tuple[np.ndarray, np.ndarray]], tag: str = TAG, **more) -> Path:
    """One SummaryWriter per session (a kill and a resume: the second goes back to its checkpoint's step).
    ``more``: other tags, written in the first session at the same steps."""
    for i, (steps, values) in enumerate(sessions):
        writer = SummaryWriter(str(folder))
        for j, (step, value) in enumerate(zip(steps, values)):
            writer.add_scalar(tag, float(value), int(step), walltime=1000.0 * (i + 1) + j)
            for other, series in (more if i == 0 else {}).items():
                writer.add_scalar(other, float(series[j]), int(step), walltime=1000.0 * (i + 1) + j)
        writer.close()
    return folder


def write_csv(folder: Path, columns: dict[str, np.ndarray], steps: np.ndarray) -> Path:
    """A CSVLogger-style metrics.csv: one row per step, values as float32 (what Lightning logs)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "metrics.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", "step", *columns])
        for i, step in enumerate(steps):
            writer.writerow([0, int(step), *(float(np.float32(v[i])) for v in columns.values())])
    return folder


def stopping_info(folder: Path, outcome: dict | None = None, time_axis: str = "steps", **options) -> None:
    """The run-info "stopping" section the live ExtraEarlyStopping writes: its options and, at the end, its outcome."""
    rule = {"threshold": 1.1, "warmup_steps": 0, "family": "auto", "floor_kind": "data", "calibration": False,
            **options}
    run_info.write(folder, "stopping", {"monitor": "val_loss", "time_axis": time_axis, "use_data_floor": True,
                                        "options": rule})
    if outcome is not None:
        run_info.write(folder, "stopping", {"outcome": outcome})


def replay_json(capsys, argv: list[str], code: int = 0) -> tuple[list[dict], str]:
    assert main(["replay", *argv, "--json"]) == code
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


# ------------------------------------------------------------------------------------ 8: resumed runs
def test_a_resumed_tensorboard_run_replays_to_the_live_decision(tmp_path, capsys):
    """Killed at step 800 after its loss went bad at 400, resumed from the checkpoint at 400: the resumed session
    writes 416-800 again, and the live rule (restored at 400) stopped at 1072 on the values written last."""
    live = replay(STEPS, CURVE, threshold=1.1)
    assert live.stopped_step == 1072
    first, resumed = STEPS <= 800, STEPS > 400
    bad = CURVE * np.where(STEPS > 400, 1.3, 1.0)  # what the first session wrote after its checkpoint
    first_values = np.concatenate([bad[first], CURVE[STEPS > 800]])
    assert replay(STEPS, first_values, threshold=1.1).stopped_step != 1072  # the first values give another decision
    second = resumed & (STEPS <= 1072)
    run = write_events(tmp_path / "run" / "version_0", [(STEPS[first], bad[first]), (STEPS[second], CURVE[second])])
    stopping_info(run, {"stopped_step": 1072, "reason": "threshold", "n_points": 67})
    (row,), err = replay_json(capsys, [str(run)])
    assert row["stopped_step"] == 1072 and row["predicted_converged"] == pytest.approx(live.converged_loss)
    assert row["resumed_at"] == [416] and row["log_warning"] is None and err == ""


def test_a_resumed_csvlogger_run_says_its_log_is_incomplete_and_still_replays(tmp_path, capsys):
    """A CSVLogger resumed into the same version deletes the rows before the resume: the log holds the evaluations
    after step 400 only. The replay says so in one line on stderr (from the run-info outcome) and is still printed."""
    after = (STEPS > 400) & (STEPS <= 1072)
    run = write_csv(tmp_path / "run" / "version_0", {"val_loss": CURVE[after], TAG: CURVE[after]}, STEPS[after])
    stopping_info(run, {"stopped_step": 1072, "reason": "threshold", "n_points": 67})
    (row,), err = replay_json(capsys, [str(run)])
    assert row["threshold"] == 1.1 and row["last_step"] == 1072
    lines = err.splitlines()
    assert len(lines) == 1 and str(run) in lines[0]
    assert "incomplete log: the live rule had 67 points, the log holds 42" in lines[0]
    assert "CSVLogger resumed into the same version" in lines[0]
    assert "live run stopped at step 1072" in lines[0] and row["log_warning"] in lines[0]
    run_info.write(run, "stopping", {"outcome": None})  # no outcome recorded: the gap before the first point tells
    _, err = replay_json(capsys, [str(run)])
    assert err.count("\n") == 1 and "the first evaluation is at step 416 though they are 16 steps apart" in err


def test_a_replay_that_disagrees_with_the_live_stop_says_so_unless_the_options_were_changed(tmp_path, capsys):
    run = write_events(tmp_path / "run", [(STEPS, CURVE)])
    stopping_info(run, {"stopped_step": 900, "reason": "smoothed loss reached 1.1 x ...", "n_points": 56})
    (row,), err = replay_json(capsys, [str(run)])
    assert row["stopped_step"] == 1072 and row["live_stop_step"] == 900
    assert err.count("\n") == 1 and "stops at step 1072, the live run stopped at step 900 (smoothed loss" in err
    (row,), err = replay_json(capsys, [str(run), "--warmup-steps", "200"])  # other options: no live decision to meet
    assert row["stopped_step"] == replay(STEPS, CURVE, warmup_steps=200).stopped_step and err == ""
    _, err = replay_json(capsys, [str(run), "--threshold", "1.2"])
    assert err == ""


# ------------------------------------------------------------------------------------ 9: two loggers, one run
def test_a_run_logged_by_tensorboard_and_csv_loggers_is_counted_once(tmp_path, capsys):
    """fit over a sweep whose runs were each logged by both loggers (sibling folders tb/ and csv/): one point per run,
    and one note per copy. In one folder (the same save_dir and name) the event files are read."""
    sizes, best = [16, 32, 64, 128], []
    for size in sizes:
        loss = 0.5 + (64 / size) ** 0.4 + (5 / STEPS[:20]) ** 1.5
        columns = {"val_loss": loss, "scaling/distinct_seen": np.minimum(STEPS[:20] * 8.0, size)}
        write_events(tmp_path / "sweep" / "tb" / f"d{size}", [(STEPS[:20], loss)], tag="val_loss",
                     **{"scaling/distinct_seen": columns["scaling/distinct_seen"]})
        write_csv(tmp_path / "sweep" / "csv" / f"d{size}", columns, STEPS[:20])
        best.append(float(np.float32(loss.min())))
    write_csv(tmp_path / "sweep" / "tb" / "d16", {"val_loss": np.full(20, 9.0)}, STEPS[:20])  # ignored: events win
    assert main(["fit", str(tmp_path / "sweep"), "--law", "ld", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert len(out["points"]) == 4 and sorted(p["loss"] for p in out["points"]) == pytest.approx(sorted(best))
    assert sorted(p["data"] for p in out["points"]) == sizes
    assert captured.err.count("note: ") == 4 and "holds the same run as" in captured.err
    ref = fit_power_law(sizes, [b for _, b in sorted(zip(sizes, best))], unit="examples").law
    assert out["law"]["exponent"] == pytest.approx(ref.exponent, rel=1e-6)


def test_two_runs_of_one_configuration_with_different_losses_are_two_runs(tmp_path, capsys):
    counts = {"scaling/examples_seen": STEPS * 8.0}
    write_events(tmp_path / "tb" / "a", [(STEPS, CURVE)], **counts)
    write_csv(tmp_path / "csv" / "b", {TAG: CURVE * 1.01, **counts}, STEPS)
    rows, err = replay_json(capsys, [str(tmp_path)])
    assert len(rows) == 2 and err == ""


# ------------------------------------------------------------------------------------ 10: the logged options
def test_replay_uses_the_options_in_the_run_info_file_and_the_command_line_overrides_them(tmp_path, capsys):
    lr = np.linspace(1.0, 0.2, STEPS[-1])  # a decaying schedule: the time axis is its sum
    lr_sum = np.cumsum(lr)[STEPS - 1]
    run = write_events(tmp_path / "run", [(STEPS, CURVE)], **{"scaling/lr_sum": lr_sum})
    stopping_info(run, time_axis="lr_sum", warmup_steps=200)
    live = replay(STEPS, CURVE, lr_sum=lr_sum, threshold=1.1, warmup_steps=200)
    by_default = replay(STEPS, CURVE, threshold=1.1)
    assert live.stopped_step != by_default.stopped_step  # so the options make a difference
    (row,), _ = replay_json(capsys, [str(run)])
    assert row["stopped_step"] == live.stopped_step and row["options_from"] == "lightning_scaling.json"
    assert row["options"]["warmup_steps"] == 200 and row["options"]["time_axis"] == "lr_sum"
    (row,), _ = replay_json(capsys, [str(run), "--warmup-steps", "0", "--time-axis", "steps"])  # 0 overrides too
    assert row["stopped_step"] == by_default.stopped_step
    assert row["options_from"] == "lightning_scaling.json + command line (time_axis, warmup_steps)"
    (row,), _ = replay_json(capsys, [str(run), "--rule", "warmup_steps=0", "--threshold", "1.2"])
    assert row["stopped_step"] == replay(STEPS, CURVE, lr_sum=lr_sum, threshold=1.2).stopped_step
    plain = write_events(tmp_path / "plain", [(STEPS, CURVE)])
    (row,), _ = replay_json(capsys, [str(plain)])
    assert row["stopped_step"] == by_default.stopped_step and row["options_from"] == "defaults"
    (row,), _ = replay_json(capsys, [str(plain), "--warmup-steps", "200"])
    assert row["options_from"] == "command line"
    assert main(["replay", str(run), str(plain)]) == 0  # the table says where each row's options came from
    table = capsys.readouterr().out.splitlines()
    assert table[0].endswith("options from") and table[1].endswith("lightning_scaling.json")
    assert table[2].endswith("defaults")


def test_the_logged_data_floor_setting_and_its_override(tmp_path, capsys):
    floor = np.full(STEPS.size, 1.05)
    run = write_events(tmp_path / "run", [(STEPS, CURVE)], **{"scaling/ld_loss": floor})
    with_floor = replay(STEPS, CURVE, floor=list(floor), threshold=1.1).stopped_step
    assert with_floor != 1072
    run_info.write(run, "stopping", {"use_data_floor": False, "options": {"threshold": 1.1}})
    (row,), _ = replay_json(capsys, [str(run)])
    assert row["stopped_step"] == 1072 and row["options"]["use_data_floor"] is False
    (row,), _ = replay_json(capsys, [str(run), "--data-floor"])
    assert row["stopped_step"] == with_floor


def test_bad_options_in_the_run_info_file_skip_that_run_naming_it(tmp_path, capsys):
    good = write_events(tmp_path / "good", [(STEPS, CURVE)])
    bad = write_events(tmp_path / "bad", [(STEPS, CURVE)])
    stopping_info(bad, no_such_option=3)
    rows, err = replay_json(capsys, [str(good), str(bad)], code=1)
    assert [r["run"] for r in rows] == [str(good)]
    assert err.count("\n") == 1 and str(bad) in err and "no_such_option" in err and "--rule" in err
    (tmp_path / "bad" / run_info.FILENAME).write_text("{not json")
    rows, err = replay_json(capsys, [str(good), str(bad)], code=1)
    assert len(rows) == 1 and err.count("\n") == 1 and "lightning_scaling.json" in err and "delete" in err


def test_a_run_info_file_of_an_earlier_version_with_removed_callback_arguments_still_replays(tmp_path, capsys):
    """Earlier versions took check_finite and figure_interval: a file that holds them (in the section or in its
    options) is read without them, and the replay reaches the decision of the same file without them."""
    old = write_events(tmp_path / "old", [(STEPS, CURVE)])
    section = {"monitor": "val_loss", "time_axis": "steps", "use_data_floor": True, "check_finite": False,
               "figure_interval": 60.0, "options": {"threshold": 1.1, "warmup_steps": 0, "calibration": False,
                                                    "check_finite": True, "figure_interval": 0.0}}
    (old / run_info.FILENAME).write_text(json.dumps({"version": 1, "stopping": section}))
    info = run_info.read(old)["stopping"]
    assert not set(run_info.REMOVED_KEYS) & (set(info) | set(info["options"]))
    assert info["options"] == {"threshold": 1.1, "warmup_steps": 0, "calibration": False}
    new = write_events(tmp_path / "new", [(STEPS, CURVE)])
    stopping_info(new)
    (row,), err = replay_json(capsys, [str(old)])
    (same,), _ = replay_json(capsys, [str(new)])
    assert err == "" and row["options_from"] == "lightning_scaling.json"
    assert row["stopped_step"] == same["stopped_step"] == 1072
    run_info.write(old, "stopping", {"outcome": {"stopped_step": 1072}})  # a write keeps the file free of them
    assert "check_finite" not in json.loads((old / run_info.FILENAME).read_text())["stopping"]


# ------------------------------------------------------------------------------------ 11: N and D from the run info
def test_fit_reads_n_and_the_dataset_size_from_the_run_info_file(tmp_path, capsys):
    """A sweep that logged neither N nor D as hyperparameters: EffectiveEpochs' run-info file holds them. L(N, D) is
    fitted on them (distinct tokens = min(tokens seen, D)); a logged hyperparameter wins over the file."""
    from lightning_scaling import ChinchillaLaw

    truth = ChinchillaLaw(1.7, 400.0, 400.0, 0.34, 0.28)
    n_grid, d_grid = [3e5, 1e6, 3e6, 1e7], [2e6, 8e6, 3e7]
    n, d, loss = [], [], []
    for i, n_params in enumerate(n_grid):
        for j, size in enumerate(d_grid):
            folder = tmp_path / "sweep" / f"n{i}_d{j}"
            tokens = STEPS[:30] * 4e5  # beyond one epoch for the small datasets
            value = truth(n_params, np.minimum(tokens, size)) + (20 / STEPS[:30]) ** 2
            write_csv(folder, {"val_loss": value, "scaling/tokens_seen": tokens}, STEPS[:30])
            run_info.write(folder, "model", {"n_params": int(n_params), "trainable_params": int(n_params)})
            run_info.write(folder, "data", {"dataset_size": int(size), "unit": "tokens"})
            k = int(np.argmin(value))
            n.append(n_params), d.append(min(tokens[k], size)), loss.append(float(np.float32(value[k])))
    assert main(["fit", str(tmp_path / "sweep"), "--law", "nd", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["skipped"] == 0 and len(out["points"]) == 12
    ref = fit_chinchilla(n, d, loss).law
    for name in ("E", "A", "B", "alpha", "beta"):
        assert out["law"][name] == pytest.approx(getattr(ref, name), rel=1e-6)
    (tmp_path / "sweep" / "n0_d0" / "hparams.yaml").write_text("n_params: 12345\n")
    assert main(["fit", str(tmp_path / "sweep"), "--law", "ln", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted({p["n_params"] for p in out["points"]}) == [12345, *n_grid]


def test_fit_without_n_anywhere_says_where_to_get_it(tmp_path, capsys):
    for i in range(3):
        write_csv(tmp_path / f"r{i}", {"val_loss": CURVE + i}, STEPS)
    assert main(["fit", str(tmp_path), "--law", "ln"]) == 2
    err = capsys.readouterr().err
    assert err.count("no n_params") == 3 and "EffectiveEpochs" in err and "lightning_scaling.json" in err


# ------------------------------------------------------------------------------------ 3: L(D) at the distinct data
def test_report_draws_l_of_d_at_the_distinct_data_seen(tmp_path, capsys, monkeypatch):
    """Four epochs of 64 examples: the L(D) curve stays at L(64) beyond the first epoch (what scaling/ld_loss logs),
    with D from the run-info file; without it, from scaling/dataset_size."""
    from lightning_scaling import dashboard

    drawn = []

    def spy(*args, **kwargs):
        fig = real(*args, **kwargs)
        drawn.append((kwargs.get("dataset_size"), fig.axes[0].get_lines()[1].get_data()))
        return fig
    real = dashboard.data_limit_figure
    monkeypatch.setattr(dashboard, "data_limit_figure", spy)
    law = PowerLaw(32.0, 0.5, 0.5, unit="examples")
    law.to_json(tmp_path / "ld.json")
    seen = STEPS[:16] * 1.0  # one example per step: E/D = 4 at the end
    run = write_csv(tmp_path / "run", {"val_loss": CURVE[:16], "scaling/examples_seen": seen}, STEPS[:16])
    run_info.write(run, "data", {"dataset_size": 64, "unit": "examples"})
    assert main(["report", str(run), "--law", str(tmp_path / "ld.json"), "--out", str(tmp_path / "rep")]) == 0
    size, (x, y) = drawn[-1]
    assert size == 64 and y[-1] == pytest.approx(law(64)) and x[-1] > 4 * 64
    (run / run_info.FILENAME).unlink()
    write_csv(run, {"val_loss": CURVE[:16], "scaling/examples_seen": seen, "scaling/dataset_size": np.full(16, 64)},
              STEPS[:16])
    assert main(["report", str(run), "--law", str(tmp_path / "ld.json"), "--out", str(tmp_path / "rep")]) == 0
    assert drawn[-1][0] == 64
    capsys.readouterr()


# ------------------------------------------------------------------------------------ an unexpected error in one run
@pytest.mark.parametrize("command", ["replay", "report"])
def test_an_unexpected_error_in_one_run_is_one_line_and_the_others_are_processed(tmp_path, capsys, monkeypatch,
                                                                                 command):
    import lightning_scaling.stopping as stopping

    good = write_events(tmp_path / "good", [(STEPS, CURVE)])
    broken = write_events(tmp_path / "broken", [(STEPS[:-1], CURVE[:-1])])
    real = stopping.replay

    def fragile(steps, *args, **kwargs):
        if len(steps) == STEPS.size - 1:
            raise ZeroDivisionError("float division by zero")
        return real(steps, *args, **kwargs)
    monkeypatch.setattr(stopping, "replay", fragile)
    extra = ["--out", str(tmp_path / "rep")] if command == "report" else []
    assert main([command, str(good), str(broken), *extra, "--json"]) == 1
    captured = capsys.readouterr()
    assert [r["run"] for r in json.loads(captured.out)] == [str(good)]
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"skipped {broken}: unexpected ZeroDivisionError")


def test_fit_reduces_each_run_on_the_loss_its_run_info_file_monitored(tmp_path, capsys):
    """Runs whose ExtraEarlyStopping watched "val/loss": fit takes that loss without --monitor; --monitor still wins."""
    for i, size in enumerate((1e6, 4e6, 1.6e7)):
        folder = tmp_path / "sweep" / f"d{i}"
        tokens = STEPS[:20] * 1e5
        value = 2.0 + (size / 1e5) ** -0.3 + (20 / STEPS[:20]) ** 2
        write_csv(folder, {"val/loss": value, "val_loss": value + 1.0, "scaling/tokens_seen": tokens}, STEPS[:20])
        run_info.write(folder, "model", {"n_params": 1000000, "trainable_params": 1000000})
        run_info.write(folder, "data", {"dataset_size": int(size), "unit": "tokens"})
        run_info.write(folder, "stopping", {"monitor": "val/loss"})
    assert main(["fit", str(tmp_path / "sweep"), "--law", "ld", "--json"]) == 0
    own = json.loads(capsys.readouterr().out)
    assert main(["fit", str(tmp_path / "sweep"), "--law", "ld", "--json", "--monitor", "val_loss"]) == 0
    told = json.loads(capsys.readouterr().out)
    assert [p["loss"] + 1.0 for p in own["points"]] == pytest.approx([p["loss"] for p in told["points"]], rel=1e-6)
