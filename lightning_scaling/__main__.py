"""`python -m lightning_scaling` runs the `lightning-scaling` command line."""

import sys

from .cli import main

sys.exit(main())
