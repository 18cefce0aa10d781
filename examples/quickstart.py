"""Quickstart: add the four callbacks to an existing LightningModule (here the demo's character GPT).

    python examples/quickstart.py [--quick]      # then: tensorboard --logdir runs
"""
import argparse

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from lightning_scaling import DataLimitGap, EffectiveEpochs, ExtraEarlyStopping, FlopCounter
from lightning_scaling.demo.data import char_data  # text that ships with Python
from lightning_scaling.demo.job import DEMO_TOKENS, LD_JSON  # 64k characters; an L(D) fitted on this text
from lightning_scaling.demo.model import CharGPT  # any LightningModule that logs "val_loss"

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="a few seconds, for the tests")
parser.add_argument("--out", default="runs")
args = parser.parse_args()
quick = args.quick
data = char_data("pydoc", ctx=64, train_tokens=32_768 if quick else DEMO_TOKENS, val_tokens=16_384)
trainer = pl.Trainer(
    max_steps=40 if quick else 3000, val_check_interval=20 if quick else 25, check_val_every_n_epoch=None,
    callbacks=[EffectiveEpochs(tokens_per_example=64),   # E, D, E/D, distinct tokens seen
               FlopCounter(),                            # measured FLOPs, PF-days
               DataLimitGap(LD_JSON),                    # loss against L(D) at the data seen
               ExtraEarlyStopping(monitor="val_loss",    # stop at ~1.1x the predicted converged loss,
                                  warmup_steps=0 if quick else 100)],  # fitted after the LR warm-up
    logger=pl.loggers.TensorBoardLogger(args.out, name="quickstart"), log_every_n_steps=20,
    accelerator="cpu", enable_checkpointing=False)
trainer.fit(CharGPT(d_model=48, n_layer=2), DataLoader(data.train, batch_size=32, shuffle=True),
            DataLoader(data.val, batch_size=64))
