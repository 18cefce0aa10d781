"""lightning_scaling.tags: one module owns every tag name, and everything that writes or reads a tag uses it."""

import re
from pathlib import Path

import pytest

from lightning_scaling import tags
from lightning_scaling.dashboard import LAYOUT

PACKAGE = Path(tags.__file__).parent


def test_names_are_prefixed_and_unknown_names_are_refused():
    assert tags.tag("lr_sum") == "scaling/lr_sum" == tags.TAGS["lr_sum"].name
    assert tags.named({"flops": 1.0}) == {"scaling/flops": 1.0}
    with pytest.raises(KeyError, match="not a tag"):
        tags.tag("lr_summ")


def test_floor_kind_round_trips_through_its_logged_value():
    for kind in ("model", "data"):
        logged = tags.encode_floor_kind(kind)
        assert tags.decode_floor_kind([logged] if logged is not None else []) == kind
    assert tags.decode_floor_kind([float("nan"), None]) == "data"


def test_every_dashboard_chart_shows_known_tags_and_every_scalar_tag_has_a_writer():
    shown = {name for section in LAYOUT.values() for _, names in section.values() for name in names}
    assert shown <= {t.name for t in tags.TAGS.values()}
    assert all(t.writer and t.meaning for t in tags.TAGS.values())


def test_no_module_spells_a_tag_by_hand():
    # the writers, the dashboard, the log reader and the CLI take every name from tags.py
    spelled = [(p.name, m) for p in PACKAGE.rglob("*.py") if p.name != "tags.py"
               for m in re.findall(r"[\"']scaling/\w+", p.read_text())]
    assert spelled == [], spelled
