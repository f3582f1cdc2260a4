"""Drug normalisation and the option objects."""

from __future__ import annotations

import pytest

from analytics import DeriveOptions, OptionError, ResponseRule
from analytics.ingest.drugs import AGENTS, DrugNormaliser, arm_of
from analytics.lines.options import parse_arms

N = DrugNormaliser()


@pytest.mark.parametrize("name,agent", [
    ("MMF", "mycophenolate"), ("mycophenolate mofetil", "mycophenolate"), ("Mycophenolic acid", "mycophenolate"),
    ("CellCept", "mycophenolate"), ("MYFORTIC", "mycophenolate"), ("mycophenolate mofetil 1.5 g bid", "mycophenolate"),
    ("IVIG", "ivig"), ("IVIg", "ivig"), ("IGIV", "ivig"), ("immune globulin", "ivig"), ("Octagam", "ivig"),
    ("Privigen", "ivig"), ("Gamunex", "ivig"), ("Gammagard", "ivig"), ("Panzyga", "ivig"), ("IVIG 2g/kg", "ivig"),
    ("tofacitinib", "tofacitinib"), ("Xeljanz", "tofacitinib"), ("Xeljanz XR 11 mg daily", "tofacitinib"),
    ("ruxolitinib", "ruxolitinib"), ("Jakafi", "ruxolitinib"), ("baricitinib", "baricitinib"),
    ("Olumiant", "baricitinib"), ("upadacitinib", "upadacitinib"), ("Rinvoq", "upadacitinib"),
    ("abrocitinib", "abrocitinib"),
    ("HCQ", "hydroxychloroquine"), ("Plaquenil", "hydroxychloroquine"), ("hydroxychloroquine 200mg", "hydroxychloroquine"),
    ("MTX", "methotrexate"), ("Trexall", "methotrexate"), ("Otrexup", "methotrexate"), ("methotrexate 20 mg/week sc", "methotrexate"),
    ("azathioprine", "azathioprine"), ("rituximab", "rituximab"), ("apremilast", "apremilast"), ("dapsone", "dapsone"),
    ("prednisone", "glucocorticoid"), ("Prednisolone 10mg", "glucocorticoid"), ("clobetasol", "topical"),
    ("tacrolimus ointment", "topical"), ("tacrolimus", "tacrolimus"),
])
def test_names_normalise_to_agents(name, agent):
    assert N.lookup(name).name == agent


def test_unknown_and_none():
    assert N.lookup("wonderdrug") is None
    assert N.parse_cell("none") == ((), ())
    assert N.parse_cell("HCQ; prednisone + MMF; wonderdrug") == (("hydroxychloroquine", "mycophenolate"),
                                                                 ("wonderdrug",))


def test_arms():
    arms = ("MMF", "IVIG", "JAKi")
    assert [arm_of(a, arms) for a in ("mycophenolate", "ivig", "tofacitinib", "abrocitinib", "methotrexate")] == [
        "MMF", "IVIG", "JAKi", "JAKi", None]
    assert arm_of("methotrexate", ("MMF", "MTX")) == "MTX"


def test_glucocorticoids_and_topicals_are_not_systemic():
    kinds = {a.name: a.kind for a in AGENTS}
    assert kinds["glucocorticoid"] == "glucocorticoid" and kinds["topical"] == "topical"


def test_user_synonyms_win_and_bad_targets_are_reported():
    n = DrugNormaliser({"Tofa XR": "Xeljanz", "mystery": "unobtainium"})
    assert n.lookup("tofa xr").name == "tofacitinib"
    assert n.bad_synonyms == {"mystery": "unobtainium"}


@pytest.mark.parametrize("text,rule", [
    ("points:4", ResponseRule("points", 4)), ("PERCENT:40", ResponseRule("percent", 40)),
    ("atmost:14", ResponseRule("atmost", 14)), ("clear", ResponseRule("clear", None)),
    (" points : 5 ", ResponseRule("points", 5)),
])
def test_rule_parse(text, rule):
    assert ResponseRule.parse(text) == rule
    assert eval(repr(rule), {"ResponseRule": ResponseRule}) == rule
    assert ResponseRule.parse(str(rule)) == rule


@pytest.mark.parametrize("text", ["points", "points:", "points:x", "fast:4", "percent:0", "percent:150",
                                  "points:-3", "clear:2"])
def test_bad_rules_raise_option_error(text):
    with pytest.raises(OptionError):
        ResponseRule.parse(text)


def test_arms_parse():
    assert parse_arms("mmf, ivig,jaki") == ("MMF", "IVIG", "JAKi")
    assert parse_arms("MMF,MTX") == ("MMF", "MTX")
    with pytest.raises(OptionError, match="unknown arm"):
        parse_arms("MMF,XYZ")
    with pytest.raises(OptionError):
        parse_arms(",")


def test_derive_options_check_themselves():
    with pytest.raises(OptionError):
        DeriveOptions(baseline_window_days=(5, 10))
    with pytest.raises(OptionError):
        DeriveOptions(response="points:4")
    o = DeriveOptions(arms=("mmf",))
    assert o.arms == ("MMF",)
