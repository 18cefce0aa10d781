"""`make demo`: what the package can already tell you, on the bundled data.

The full demo (a small GPT trained with all four callbacks, TensorBoard dashboard) is tracked in the
demo issue; until it lands this job shows the scaling-law core on published numbers.
"""

from __future__ import annotations

from . import planning, presets


def main() -> None:
    print("lightning-scaling demo: the scaling-law core (the training demo is not built yet)\n")
    print(f"Extra-early stopping factor 1 + alpha_N/alpha_S = {planning.stopping_factor():.2f}  (Kaplan 2020 B.5)")
    t = planning.tradeoff(0.10, 0.02)
    print(f"Stopping at 10% instead of 2% of convergence: {t.params_ratio:.1f}x params, {t.steps_ratio:.2f}x steps, "
          f"{t.compute_ratio:.2f}x compute  (Kaplan 2020 B.12-B.14)")
    c = planning.crossover()
    print(f"L(C) meets L(D(C)) at C* = {c.compute_pf_days:.3g} PF-days, N* = {c.n_params:.3g}, D* = {c.n_tokens:.3g} "
          f"tokens, L* = {c.loss:.3f} nats  (Kaplan 2020 6.3, Table 6)")
    for flop in (1e21, 1e23):
        a = planning.chinchilla_optimal(presets.get("besiroglu2024"), flop)
        print(f"Compute-optimal at {flop:.0e} FLOP: N = {a.n_params:.3g}, D = {a.n_tokens:.3g} tokens "
              f"({a.tokens_per_param:.1f} tokens/param), loss {a.loss:.3f}  (Besiroglu 2024 law)")
    for epochs in (2, 4, 16):
        print(f"{epochs:>2} epochs of repeated data are worth {planning.effective_data(1.0, epochs):.2f} epochs of "
              "fresh data  (Muennighoff 2023)")
    print("\nNext: `make test` runs the suite; see README.md for the API.")


if __name__ == "__main__":
    main()
