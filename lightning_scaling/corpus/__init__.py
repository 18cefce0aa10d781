"""The recorded learning curves and how the project scores its rules on them (benchmarks and tests).

* :mod:`~lightning_scaling.corpus.curves`: load the recorded runs (``lightning_scaling/data/curves*/``: the CPU
  corpora, and Luo et al. 2025's GPU runs) as :class:`~lightning_scaling.corpus.curves.RecordedCurve`;
* :mod:`~lightning_scaling.corpus.ld`: L(D) and L(N, D) fitted on them, held out run by run;
* :mod:`~lightning_scaling.corpus.rule_quality`: one run replayed through the stopping rule and scored;
* :mod:`~lightning_scaling.corpus.sources`: the four sources the calibration is made from and tested on.

The recorded curves are benchmark data: they live in the repository, not in the installed package, and the loaders
say so when they are missing.
"""
