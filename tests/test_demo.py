from lightning_scaling import demo


def test_demo_quick_run_logs_the_dashboard_and_summarises(tmp_path):
    result = demo.run(str(tmp_path), max_minutes=1, quick=True, progress=False)
    assert result["steps"] > 0 and result["flops"] > 0 and result["effective_epochs"] > 0
    text = demo.summary(result)
    for needle in ("parameters", "FLOP", "PF-days", "E/D", "tensorboard --logdir"):
        assert needle in text
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(result["log_dir"])
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"scaling/flops", "scaling/effective_epochs", "scaling/tokens_seen", "val_loss"} <= tags
    assert "custom_scalars__config__" in acc.Tags()["tensors"]


def test_demo_text_ships_with_python():
    train, val = demo.char_data(64, train_chars=10000, val_chars=2048)
    assert len(train) == (10000 - 1) // 64 and len(val) == (2048 - 1) // 64
    x, y = train[0]
    assert x.shape == y.shape == (64,) and int(x.max()) < 256
