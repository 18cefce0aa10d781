import pytest

from lightning_scaling import ChinchillaLaw, PowerLaw, presets


def test_every_preset_has_a_source_and_unit():
    assert len(presets.names()) >= 10
    for name in presets.names():
        law = presets.get(name)
        assert isinstance(law, (PowerLaw, ChinchillaLaw))
        assert law.source


def test_kaplan_constants():
    ld = presets.get("kaplan2020_ld")
    assert (ld.scale, ld.exponent, ld.unit) == (5.4e13, 0.095, "tokens")
    ln = presets.get("kaplan2020_ln")
    assert (ln.scale, ln.exponent, ln.unit) == (8.8e13, 0.076, "params")
    lc = presets.get("kaplan2020_lc")
    assert (lc.scale, lc.exponent, lc.unit) == (3.1e8, 0.050, "pf_days")
    assert presets.KAPLAN_TABLE6["tokens"](1.0) == 2.0e10
    assert presets.KAPLAN_B_STAR == 2.1e8 and presets.KAPLAN_ALPHA_B == 0.21


def test_henighan_and_hoffmann():
    img = presets.get("henighan2020_image8x8")
    assert img(8.0e1 * 2**(1 / 0.24)) == pytest.approx(3.12 + 0.5)
    c = presets.get("hoffmann2022")
    assert (c.E, c.A, c.B, c.alpha, c.beta) == (1.69, 406.4, 410.7, 0.34, 0.28)


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="kaplan2020_ld"):
        presets.get("kaplan_2021")


def test_resolve_takes_a_law_a_preset_or_a_file_and_lists_the_presets_otherwise(tmp_path):
    from lightning_scaling.laws import ModelDataLaw, OverfittingLaw

    law = PowerLaw(1e6, 0.3, unit="examples")
    assert presets.resolve(law) is law
    model = ModelDataLaw(OverfittingLaw(1.0, 2.0, 0.3, 0.5), 1e6)
    assert presets.resolve(model) is model
    assert presets.resolve("kaplan2020_ld") == presets.get("kaplan2020_ld")
    law.to_json(tmp_path / "ld.json")
    assert presets.resolve(tmp_path / "ld.json") == law == presets.resolve(str(tmp_path / "ld.json"))
    assert presets.resolve(law.to_dict()) == law == presets.resolve(law.to_json())
    with pytest.raises(ValueError) as err:
        presets.resolve("kaplan2020")
    message = str(err.value)
    assert "'kaplan2020' is neither a preset law nor an existing law JSON file" in message
    assert "did you mean" in message and all(name in message for name in presets.names())
    with pytest.raises(ValueError, match="neither a preset law nor an existing law JSON file.*besiroglu2024"):
        presets.resolve(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="nor a directory"):
        presets.resolve(str(tmp_path))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        presets.resolve(str(tmp_path / "bad.json"))
    with pytest.raises(TypeError, match="preset name"):
        presets.resolve(3.0)


def test_compute_ranges_of_the_planning_presets():
    assert presets.compute_range("hoffmann2022").contains(1.21e20)  # [C] Table 3's 1B-parameter budget
    assert not presets.compute_range("besiroglu2024").contains(1.3e12)
    lc = presets.compute_range("kaplan2020_lc")
    assert lc.contains(presets.PF_DAY) and not lc.contains(1e4 * presets.PF_DAY)
    assert presets.compute_range("kaplan2020_ld") is None
