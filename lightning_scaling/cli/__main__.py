"""`python -m lightning_scaling.cli` runs the `lightning-scaling` command line (as `python -m lightning_scaling`)."""

import sys

from . import main

sys.exit(main())
