"""``python -m lightning_scaling.demo``: see :mod:`lightning_scaling.demo.job`."""

from .job import main

if __name__ == "__main__":
    main()
