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
