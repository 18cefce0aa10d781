import json

import numpy as np
import pytest

from lightning_scaling import ChinchillaLaw, PowerLaw, load_law


def test_power_law_evaluates_vectorised_and_inverts():
    law = PowerLaw(scale=5.4e13, exponent=0.095, unit="tokens")  # [K] eq 1.2
    x = np.array([1e8, 1e9, 1e10])
    y = law(x)
    assert y.shape == (3,) and np.all(np.diff(y) < 0)
    assert law(1e9) == pytest.approx((5.4e13 / 1e9) ** 0.095)
    np.testing.assert_allclose(law.inverse(y), x, rtol=1e-12)


def test_power_law_with_irreducible_inverse_and_reducible():
    law = PowerLaw(scale=80.0, exponent=0.24, irreducible=3.12, unit="params")
    assert law.reducible(1e6) == pytest.approx(law(1e6) - 3.12)
    assert law.inverse(law(1e6)) == pytest.approx(1e6)
    with pytest.raises(ValueError, match="irreducible"):
        law.inverse(3.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(scale=-1, exponent=0.1), "scale"),
    (dict(scale=1, exponent=0), "exponent"),
    (dict(scale=float("nan"), exponent=0.1), "finite"),
    (dict(scale=1, exponent=0.1, irreducible=-0.5), "irreducible"),
    (dict(scale=1, exponent=0.1, unit="furlongs"), "unit"),
])
def test_power_law_rejects_nonsense(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PowerLaw(**kwargs)


def test_power_law_rejects_nonpositive_x():
    with pytest.raises(ValueError, match="> 0"):
        PowerLaw(1.0, 0.1)([1.0, 0.0])


def test_json_round_trip_keeps_units_and_schema(tmp_path):
    law = PowerLaw(scale=1.2e7, exponent=0.31, irreducible=1.1, unit="tokens", source="demo")
    path = tmp_path / "ld.json"
    law.to_json(path)
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1 and data["unit"] == "tokens" and data["kind"] == "power_law"
    assert PowerLaw.from_json(path) == law
    assert load_law(path) == law
    assert load_law(law.to_json()) == law
    chin = ChinchillaLaw(1.69, 406.4, 410.7, 0.34, 0.28)
    assert load_law(chin.to_dict()) == chin


def test_json_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_law(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "power_law", "schema_version": 99, "scale": 1, "exponent": 1}')
    with pytest.raises(ValueError, match="schema_version"):
        load_law(bad)
    bad.write_text('{"kind": "spline"}')
    with pytest.raises(ValueError, match="unknown law kind"):
        load_law(bad)


def test_chinchilla_law_and_its_data_slice():
    law = ChinchillaLaw(1.69, 406.4, 410.7, 0.34, 0.28)  # [C] eq 10
    n, d = 70e9, 1.4e12
    assert law(n, d) == pytest.approx(1.69 + 406.4 / n**0.34 + 410.7 / d**0.28)
    assert law.data_law(n)(d) == pytest.approx(law(n, d))
    assert law(np.array([1e9, 1e10]), np.array([2e10, 2e11])).shape == (2,)
    with pytest.raises(ValueError):
        ChinchillaLaw(1.69, -1, 410.7, 0.34, 0.28)


def test_overfitting_law_is_kaplan_eq_1_5_and_round_trips():
    from lightning_scaling import OverfittingLaw, load_law

    law = OverfittingLaw(N_c=8.8e13, D_c=5.4e13, alpha_N=0.076, alpha_D=0.095, source="[K] Table 2")
    n, d = 1e9, 1e10
    expected = ((8.8e13 / n) ** (0.076 / 0.095) + 5.4e13 / d) ** 0.095
    assert law(n, d) == pytest.approx(expected, rel=1e-12)
    assert law(n, 1e30) == pytest.approx((8.8e13 / n) ** 0.076, rel=1e-6)  # L(N) as D -> infinity
    assert law(1e30, d) == pytest.approx((5.4e13 / d) ** 0.095, rel=1e-6)  # L(D) as N -> infinity
    assert law.data_law(n)(d) == law(n, d) and law.data_law(n).unit == "tokens"
    assert load_law(law.to_json()) == law == OverfittingLaw.from_json(law.to_json())
    older = {"schema_version": 1, "kind": "overfitting", "n_c": 8.8e13, "d_c": 5.4e13, "alpha_n": 0.076,
             "alpha_d": 0.095, "source": "[K] Table 2"}  # a file written before the fields took the paper's names
    assert OverfittingLaw.from_dict(older) == law
    with pytest.raises(ValueError):
        OverfittingLaw(N_c=-1.0, D_c=1.0, alpha_N=0.1, alpha_D=0.1)
    with pytest.raises(ValueError):
        law(0, d)


def test_a_bad_law_file_is_named_in_the_error(tmp_path):
    bad = tmp_path / "ld.json"
    bad.write_text('{"kind": "power_law", "scale": 1')
    with pytest.raises(ValueError, match=f"{bad}: not valid JSON"):
        load_law(bad)
    bad.write_text('{"scale": 1, "exponent": 0.1}')
    with pytest.raises(ValueError, match=f"{bad} has no 'kind' field") as err:
        load_law(bad)
    assert "None" not in str(err.value) and "'power_law'" in str(err.value)
    bad.write_text('{"kind": "power_law", "exponent": 0.1}')
    with pytest.raises(ValueError, match=f"{bad}: not a complete 'power_law' law"):
        load_law(bad)
    bad.write_text('{"kind": "power_law", "scale": -1, "exponent": 0.1}')
    with pytest.raises(ValueError, match=f"{bad}: scale must be > 0"):
        load_law(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match=f"{bad}: a law JSON must be an object"):
        load_law(bad)
    with pytest.raises(ValueError, match="the law JSON text has no 'kind'"):
        load_law('{"scale": 1}')
