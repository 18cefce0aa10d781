"""Scaling laws as values: evaluate, invert, validate, and round-trip through JSON.

Three families cover what the package needs:

* :class:`PowerLaw` -- ``L(x) = irreducible + (scale / x) ** exponent``, the Kaplan form
  ([K] eq 1.1-1.3, ``irreducible = 0``) and the Henighan form with an irreducible loss
  ([H] eq 1.1-1.2). It also describes a single learning curve ``L(S) = L_conv + (S_c/S)^alpha_S``
  ([K] eq 5.6 at fixed N), with ``unit="steps"`` (or ``"lr_sum"`` when the time axis is the
  summed learning rate of Tissue et al. 2024).
* :class:`ChinchillaLaw` -- ``L(N, D) = E + A / N**alpha + B / D**beta`` ([C] eq 2).
* :class:`OverfittingLaw` -- ``L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D`` ([K] eq 1.5), and
  :class:`ModelDataLaw`, its L(D) at one model size.

This module is pure (numpy only): no Lightning, no torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

SCHEMA_VERSION = 1

#: Units a :class:`PowerLaw`'s x axis may carry. Counts that feed a law must use the same unit.
UNITS = ("tokens", "examples", "params", "flop", "pf_days", "steps", "lr_sum")

ArrayLike = Union[float, int, np.ndarray, list, tuple]


def _check_finite(name: str, value: float, *, positive: bool = False, nonneg: bool = False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonneg and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def _check_fields(law: Any, *, positive: tuple[str, ...] = (), nonneg: tuple[str, ...] = ()) -> None:
    """Check the named fields of a frozen law dataclass (:func:`_check_finite`) and store them as floats."""
    for names, kind in ((nonneg, {"nonneg": True}), (positive, {"positive": True})):
        for name in names:
            object.__setattr__(law, name, _check_finite(name, getattr(law, name), **kind))


def _model_and_data(n_params: ArrayLike, n_tokens: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """N and D as float arrays, both > 0 (the arguments of a law of N and D)."""
    n = np.asarray(n_params, dtype=float)
    d = np.asarray(n_tokens, dtype=float)
    if np.any(~(n > 0)) or np.any(~(d > 0)):
        raise ValueError("n_params and n_tokens must be > 0")
    return n, d


class _JsonMixin:
    """JSON round-trip shared by the laws: ``to_dict``/``from_dict`` are each law's own."""

    def to_json(self, path: str | Path | None = None) -> str:
        """The law as JSON (with ``schema_version`` and ``kind``); also written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, path_or_text: str | Path):
        """Read a law written by :meth:`to_json`, from a path or a JSON string."""
        return cls.from_dict(_read_json(path_or_text))


@dataclass(frozen=True)
class PowerLaw(_JsonMixin):
    """``L(x) = irreducible + (scale / x) ** exponent``.

    Args:
        scale: x_c, the scale of the power law (> 0), in ``unit``.
        exponent: alpha (> 0).
        irreducible: L_inf (>= 0), the loss the law approaches as x grows; 0 for Kaplan's form.
        unit: what x counts, one of :data:`UNITS`.
        source: where the constants come from (free text, e.g. "Kaplan et al. 2020 eq 1.2").

    Example:
        >>> law = PowerLaw(scale=5.4e13, exponent=0.095, unit="tokens")  # [K] L(D)
        >>> round(float(law(1e9)), 3)
        2.816
    """

    scale: float
    exponent: float
    irreducible: float = 0.0
    unit: str = "tokens"
    source: str = ""

    def __post_init__(self) -> None:
        _check_fields(self, positive=("scale", "exponent"), nonneg=("irreducible",))
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")

    def __call__(self, x: ArrayLike) -> np.ndarray | float:
        """Evaluate the law at ``x`` (> 0); vectorised over arrays."""
        arr = np.asarray(x, dtype=float)
        if np.any(~(arr > 0)):
            raise ValueError(f"x must be > 0 (in {self.unit}); got a value <= 0 or NaN")
        out = self.irreducible + (self.scale / arr) ** self.exponent
        return float(out) if out.ndim == 0 else out

    def reducible(self, x: ArrayLike) -> np.ndarray | float:
        """The reducible part ``(scale / x) ** exponent`` at ``x``."""
        out = np.asarray(self(x)) - self.irreducible
        return float(out) if out.ndim == 0 else out

    def inverse(self, loss: ArrayLike) -> np.ndarray | float:
        """The x at which the law reaches ``loss``: ``scale * (loss - irreducible) ** (-1/exponent)``.

        Raises:
            ValueError: if a loss is at or below the irreducible loss (never reached).
        """
        arr = np.asarray(loss, dtype=float)
        if np.any(~(arr > self.irreducible)):
            raise ValueError(
                f"loss must be above the irreducible loss {self.irreducible:g}; the law never reaches it"
            )
        out = self.scale * (arr - self.irreducible) ** (-1.0 / self.exponent)
        return float(out) if out.ndim == 0 else out

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "kind": "power_law", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PowerLaw":
        _check_schema(data, "power_law")
        fields = {k: data[k] for k in ("scale", "exponent", "irreducible", "unit", "source") if k in data}
        return cls(**fields)



@dataclass(frozen=True)
class ChinchillaLaw(_JsonMixin):
    """``L(N, D) = E + A / N**alpha + B / D**beta`` (Hoffmann et al. 2022, eq 2).

    N counts all parameters, D training tokens.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    source: str = ""

    def __post_init__(self) -> None:
        _check_fields(self, nonneg=("E",), positive=("A", "B", "alpha", "beta"))

    def __call__(self, n_params: ArrayLike, n_tokens: ArrayLike) -> np.ndarray | float:
        n, d = _model_and_data(n_params, n_tokens)
        out = self.E + self.A / n**self.alpha + self.B / d**self.beta
        return float(out) if out.ndim == 0 else out

    def data_law(self, n_params: float | None = None) -> PowerLaw:
        """L(D) as a :class:`PowerLaw` in tokens: the limit N -> infinity, or at a fixed N."""
        irreducible = self.E if n_params is None else self.E + self.A / float(n_params) ** self.alpha
        return PowerLaw(scale=self.B ** (1 / self.beta), exponent=self.beta, irreducible=irreducible,
                        unit="tokens", source=self.source)

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "kind": "chinchilla", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ChinchillaLaw":
        _check_schema(data, "chinchilla")
        return cls(**{k: data[k] for k in ("E", "A", "B", "alpha", "beta", "source") if k in data})



@dataclass(frozen=True)
class OverfittingLaw(_JsonMixin):
    """``L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D``: Kaplan et al. 2020 eq 1.5 (4.1).

    The converged loss of a model of N parameters trained on D tokens, with the early stop that avoids
    overfitting: L(N) as D -> infinity, L(D) as N -> infinity. N counts parameters the way the law was fitted
    ([K]: without embeddings; ``corpus.ld.overfitting_law``: all of them), D tokens.
    """

    N_c: float
    D_c: float
    alpha_N: float
    alpha_D: float
    source: str = ""

    def __post_init__(self) -> None:
        _check_fields(self, positive=("N_c", "D_c", "alpha_N", "alpha_D"))

    def __call__(self, n_params: ArrayLike, n_tokens: ArrayLike) -> np.ndarray | float:
        n, d = _model_and_data(n_params, n_tokens)
        inner = np.logaddexp((self.alpha_N / self.alpha_D) * (math.log(self.N_c) - np.log(n)),
                             math.log(self.D_c) - np.log(d))
        out = np.exp(self.alpha_D * inner)
        return float(out) if out.ndim == 0 else out

    def data_law(self, n_params: float) -> "ModelDataLaw":
        """L(D) of a model of ``n_params`` parameters (a callable of the tokens, in ``unit`` "tokens")."""
        return ModelDataLaw(self, _check_finite("n_params", n_params, positive=True))

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "kind": "overfitting", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OverfittingLaw":
        _check_schema(data, "overfitting")
        # files written before the fields took the paper's names spell them in lower case
        names = {"n_c": "N_c", "d_c": "D_c", "alpha_n": "alpha_N", "alpha_d": "alpha_D"}
        data = {names.get(k, k): v for k, v in data.items()}
        return cls(**{k: data[k] for k in ("N_c", "D_c", "alpha_N", "alpha_D", "source") if k in data})


@dataclass(frozen=True)
class ModelDataLaw:
    """An L(N, D) law at a fixed N: the loss a model of that size converges to on D tokens, a callable of D.

    What :class:`~lightning_scaling.DataLimitGap` needs of a law (``law(D)``, ``unit``), for a model that may be
    too small for its data: its floor is then its own limit, not the L(D) that bounds every model.
    """

    law: OverfittingLaw
    n_params: float
    unit: str = "tokens"

    def __call__(self, n_tokens: ArrayLike) -> np.ndarray | float:
        return self.law(self.n_params, n_tokens)


Law = Union[PowerLaw, ChinchillaLaw, OverfittingLaw]


#: A law JSON's ``kind`` -> the class that reads it.
_KINDS: dict[str, type] = {"power_law": PowerLaw, "chinchilla": ChinchillaLaw, "overfitting": OverfittingLaw}


def load_law(path_or_text: str | Path | dict) -> Law:
    """Read a law written by ``to_json`` (any kind), from a path, a JSON string or a dict.

    Raises:
        FileNotFoundError: ``path_or_text`` names a file that does not exist.
        ValueError: the file or text is not a law JSON: not JSON, no or an unknown ``kind``, missing or bad fields.
            The message names the file (to resolve preset names too, use :func:`lightning_scaling.presets.resolve`).

    Example:
        >>> load_law('{"kind": "power_law", "scale": 5.4e13, "exponent": 0.095}').unit
        'tokens'
    """
    where = _where(path_or_text)
    data = path_or_text if isinstance(path_or_text, dict) else _read_json(path_or_text)
    kind = data.get("kind")
    if kind not in _KINDS:
        found = "has no 'kind' field" if kind is None else f"has an unknown law kind {kind!r}"
        raise ValueError(f"{where} {found}: a law JSON (written by law.to_json or `lightning-scaling fit --out`) "
                         f"has kind {', '.join(map(repr, _KINDS))}")
    try:
        return _KINDS[kind].from_dict(data)
    except TypeError as err:  # a required field missing
        raise ValueError(f"{where}: not a complete {kind!r} law ({err})") from None
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _where(path_or_text: str | Path | dict) -> str:
    """How an error names a law's source: the file, or "the law JSON text" / "the law dict"."""
    if isinstance(path_or_text, dict):
        return "the law dict"
    if isinstance(path_or_text, Path) or not str(path_or_text).lstrip().startswith("{"):
        return str(path_or_text)
    return "the law JSON text"


def _read_json(path_or_text: str | Path) -> dict[str, Any]:
    """The JSON object of a law file or text; errors name the file."""
    where = _where(path_or_text)
    text = str(path_or_text)
    if where != "the law JSON text":
        path = Path(path_or_text)
        if not path.is_file():
            raise FileNotFoundError(f"law file {path} does not exist")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: cannot be read as a law JSON file ({err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not valid JSON ({err}); a law JSON is written by law.to_json(path) or "
                         "`lightning-scaling fit ... --out`") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where}: a law JSON must be an object, got {type(data).__name__}")
    return data


def _check_schema(data: dict[str, Any], kind: str) -> None:
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ValueError(f"unsupported law schema_version {version!r} (this package reads {SCHEMA_VERSION})")
    if data.get("kind", kind) != kind:
        raise ValueError(f"expected a {kind!r} law, got {data.get('kind')!r}")

