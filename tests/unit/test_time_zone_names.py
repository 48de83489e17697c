"""How the datetime tool reads a time zone's name (components/datetime/zone_names.py): an IANA
name, a city or a country, resolved from the tzdata package's own tables, as the component
resolves them (the component bundles the same tzdata release as the test environment)."""

from __future__ import annotations

import importlib.util
import sys
from importlib import resources
from typing import Any

import pytest
from llama_agent.config import REPO_ROOT

ZONE_NAMES = REPO_ROOT / "components" / "datetime" / "zone_names.py"


def load_zone_names() -> Any:
    """The component's pure module, imported from its file (components/ is no package)."""
    spec = importlib.util.spec_from_file_location("datetime_zone_names", ZONE_NAMES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module


zone_names = load_zone_names()


@pytest.fixture(scope="module")
def tzdata() -> Any:
    return zone_names.TzData.read(resources.files("tzdata"))


@pytest.fixture(scope="module")
def zone_finder(tzdata: Any) -> Any:
    return zone_names.ZoneFinder(tzdata)


def resolved(finder: Any, name: str) -> str:
    zone = finder.resolve(name)
    assert isinstance(zone, str)
    return zone


def refusal(finder: Any, name: str) -> str:
    with pytest.raises(zone_names.UnknownZone) as raised:
        finder.resolve(name)
    return str(raised.value)


@pytest.mark.parametrize(
    ("name", "zone"),
    [
        ("UTC", "UTC"),
        ("Asia/Tokyo", "Asia/Tokyo"),
        ("europe/paris", "Europe/Paris"),
        (" America/New_York ", "America/New_York"),
        ("america/new york", "America/New_York"),
        ("US/Eastern", "US/Eastern"),
    ],
)
def test_an_iana_name_is_itself_whatever_its_case(zone_finder: Any, name: str, zone: str) -> None:
    assert resolved(zone_finder, name) == zone


@pytest.mark.parametrize(
    ("name", "zone"),
    [
        ("Tokyo", "Asia/Tokyo"),
        ("Lima", "America/Lima"),
        ("new york", "America/New_York"),
        ("NEW YORK", "America/New_York"),
        ("São Paulo", "America/Sao_Paulo"),
        ("Sao Paulo", "America/Sao_Paulo"),
        ("Zürich", "Europe/Zurich"),
        ("Port-au-Prince", "America/Port-au-Prince"),
        ("port au prince", "America/Port-au-Prince"),
        ("Buenos Aires", "America/Argentina/Buenos_Aires"),
        ("Reykjavik", "Atlantic/Reykjavik"),
        # A link's city means the zone it links to.
        ("Kiev", "Europe/Kyiv"),
        ("Calcutta", "Asia/Kolkata"),
        ("Saigon", "Asia/Ho_Chi_Minh"),
        ("Montreal", "America/Toronto"),
        ("Hawaii", "Pacific/Honolulu"),
    ],
)
def test_a_city_is_the_zone_named_after_it(zone_finder: Any, name: str, zone: str) -> None:
    assert resolved(zone_finder, name) == zone


@pytest.mark.parametrize(
    ("name", "zone"),
    [
        ("Japan", "Asia/Tokyo"),  # also an old IANA link: the country's zone is named instead
        ("Peru", "America/Lima"),
        ("Germany", "Europe/Berlin"),
        ("germany", "Europe/Berlin"),
        ("India", "Asia/Kolkata"),
        ("China", "Asia/Shanghai"),
        ("United States", "America/New_York"),
        ("Iceland", "Atlantic/Reykjavik"),
        ("Britain", "Europe/London"),  # tzdata's "Britain (UK)" without its parenthesis
        ("Myanmar", "Asia/Yangon"),
        ("Korea (South)", "Asia/Seoul"),
        ("Côte d\u2019Ivoire", "Africa/Abidjan"),  # as tzdata writes it
        ("Cote d'Ivoire", "Africa/Abidjan"),
        ("Bosnia and Herzegovina", "Europe/Sarajevo"),  # tzdata: "Bosnia & Herzegovina"
        ("Saint Lucia", "America/St_Lucia"),  # tzdata: "St Lucia"
        ("the Netherlands", "Europe/Amsterdam"),
        # The principal zone where tzdata's first one for the country is not.
        ("Australia", "Australia/Sydney"),
        ("Brazil", "America/Sao_Paulo"),
        ("Canada", "America/Toronto"),
        ("Russia", "Europe/Moscow"),
    ],
)
def test_a_country_is_its_principal_zone(zone_finder: Any, name: str, zone: str) -> None:
    assert resolved(zone_finder, name) == zone


@pytest.mark.parametrize(
    ("name", "zone"),
    [
        ("UK", "Europe/London"),
        ("United Kingdom", "Europe/London"),
        ("USA", "America/New_York"),
        ("us", "America/New_York"),
        ("Beijing", "Asia/Shanghai"),
        ("Mumbai", "Asia/Kolkata"),
        ("San Francisco", "America/Los_Angeles"),
        ("Washington, D.C.", "America/New_York"),
        ("Samoa", "Pacific/Apia"),
    ],
)
def test_the_alias_table_covers_names_tzdata_lacks(zone_finder: Any, name: str, zone: str) -> None:
    assert resolved(zone_finder, name) == zone


def test_a_city_with_its_country_is_the_first_part_that_names_a_zone(zone_finder: Any) -> None:
    assert resolved(zone_finder, "Lima, Peru") == "America/Lima"
    assert resolved(zone_finder, "Paris, France") == "Europe/Paris"
    assert resolved(zone_finder, "Springfield, USA") == "America/New_York"


def test_every_table_entry_names_a_zone_tzdata_ships(tzdata: Any) -> None:
    names = set(tzdata.names)
    assert set(zone_names.ALIASES.values()) <= names
    for code, zone in zone_names.PRINCIPAL_ZONES.items():
        assert zone in tzdata.country_zones[code], code
        assert tzdata.country_zones[code][0] != zone, f"{code}: tzdata already lists {zone} first"
    assert {zone for zones in tzdata.country_zones.values() for zone in zones} <= names


def test_every_country_with_a_zone_resolves_by_its_tzdata_name(tzdata: Any, zone_finder: Any) -> None:
    for code, name in tzdata.countries.items():
        if code in tzdata.country_zones:
            assert resolved(zone_finder, name) in tzdata.country_zones[code], name


def test_an_unknown_name_is_refused_naming_close_matches(zone_finder: Any) -> None:
    assert refusal(zone_finder, "Asia/Tokio") == (
        "unknown time zone 'Asia/Tokio': use an IANA time zone name, a city or a country "
        "(did you mean Asia/Tokyo, Asia/Tomsk, Asia/Omsk?)"
    )
    assert "did you mean Tokyo" in refusal(zone_finder, "Tokio")
    assert "did you mean Germany" in refusal(zone_finder, "Germny")
    nothing_close = refusal(zone_finder, "Mars/Olympus_Mons")
    assert nothing_close.endswith("(e.g. UTC, Europe/Paris, Tokyo or Japan)")
    assert refusal(zone_finder, "").startswith("unknown time zone '': ")


@pytest.mark.parametrize(
    ("name", "meanings"),
    [
        ("Korea", "Korea (North) or Korea (South)"),
        ("Eastern", "Canada/Eastern or US/Eastern"),
        ("Congo", "Congo (Dem. Rep.) or Congo (Rep.)"),
    ],
)
def test_a_name_of_two_zones_is_refused_naming_both(zone_finder: Any, name: str, meanings: str) -> None:
    assert (
        refusal(zone_finder, name)
        == f"unknown time zone {name!r}: it could mean {meanings}: name one of them"
    )


@pytest.mark.parametrize(
    ("text", "simple"),
    [
        ("São Paulo", "sao paulo"),
        ("Côte d\u2019Ivoire", "cote divoire"),
        ("Antigua & Barbuda", "antigua and barbuda"),
        ("Saint Kitts", "st kitts"),
        ("The  Bahamas!", "bahamas"),
        ("New_York", "new york"),
    ],
)
def test_places_are_compared_without_accents_case_or_punctuation(text: str, simple: str) -> None:
    assert zone_names.simplified(text) == simple
