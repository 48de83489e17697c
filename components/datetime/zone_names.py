"""Which IANA time zone a name means: an IANA name, a city or a country, as people write them.

Everything but two short tables comes from the tzdata package's own files: `zones` (every zone
and link name), `zoneinfo/tzdata.zi` (which names are links, and to which zone),
`zoneinfo/iso3166.tab` (country code -> country name) and `zoneinfo/zone.tab`, then
`zoneinfo/zone1970.tab` (country code -> its zones, the principal one first). A name is tried:

1. in ALIASES, the few names people use that tzdata has no entry for ("UK", "USA", "Beijing");
2. as a country ("Japan", "peru", "Côte d'Ivoire", "Bosnia and Herzegovina", "Britain"): its
   principal zone, the first tzdata lists for it unless PRINCIPAL_ZONES says otherwise;
3. as an IANA name, whatever its case ("europe/paris", "UTC", "US/Eastern");
4. as a city, the last part of a zone's name ("Tokyo", "Sao Paulo", "new york"), or of a link's,
   which means the zone it links to ("Kiev": Europe/Kyiv); a name that could mean two zones
   ("Eastern": US/Eastern or Canada/Eastern; "Korea") means none, and the error says so;
5. as "City, Country": each part in turn ("Lima, Peru").

Countries and cities match whatever their case, accents, punctuation, "&" for "and", "St" for
"Saint" and a leading "the". A country comes before an IANA name so that "Japan", which is also
an old IANA link, names Asia/Tokyo.

Pure Python with no import of the component's bindings, so that the tests can import it too.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources.abc import Traversable

# Names tzdata has no entry for, kept short: countries it names otherwise ("Britain (UK)",
# "United States", "Korea (South)", two "Samoa (...)"), and big cities that name no zone.
ALIASES = {
    "UK": "Europe/London",
    "United Kingdom": "Europe/London",
    "Great Britain": "Europe/London",
    "England": "Europe/London",
    "Scotland": "Europe/London",
    "Wales": "Europe/London",
    "US": "America/New_York",
    "USA": "America/New_York",
    "United States of America": "America/New_York",
    "South Korea": "Asia/Seoul",
    "North Korea": "Asia/Pyongyang",
    "Samoa": "Pacific/Apia",
    "Czechia": "Europe/Prague",
    "Ivory Coast": "Africa/Abidjan",
    "Beijing": "Asia/Shanghai",
    "Delhi": "Asia/Kolkata",
    "New Delhi": "Asia/Kolkata",
    "Mumbai": "Asia/Kolkata",
    "Bangalore": "Asia/Kolkata",
    "San Francisco": "America/Los_Angeles",
    "Seattle": "America/Los_Angeles",
    "Washington": "America/New_York",
    "Washington DC": "America/New_York",
    "Boston": "America/New_York",
    "Osaka": "Asia/Tokyo",
    "Ottawa": "America/Toronto",
    "Rio de Janeiro": "America/Sao_Paulo",
    "Wellington": "Pacific/Auckland",
}
# Countries whose first zone in zone.tab (which goes east to west, or north to south) is not
# where most of their people live: the zone of the capital or largest city instead.
PRINCIPAL_ZONES = {
    "AU": "Australia/Sydney",  # not Australia/Lord_Howe
    "BR": "America/Sao_Paulo",  # not America/Noronha
    "CA": "America/Toronto",  # not America/St_Johns
    "RU": "Europe/Moscow",  # not Europe/Kaliningrad
    "UA": "Europe/Kyiv",  # not Europe/Simferopol
    "UZ": "Asia/Tashkent",  # not Asia/Samarkand
}
EXAMPLES = "e.g. UTC, Europe/Paris, Tokyo or Japan"
SUGGESTIONS = 3


class UnknownZone(ValueError):
    """A name that means no zone; its message names close matches when there are some."""


def simplified(text: str) -> str:
    """`text` as a place name is compared: no accents, case, punctuation or leading "the";
    "&" is "and", "Saint" is "St"."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()
    # Apostrophes join what they separate: tzdata's "Côte d\u2019Ivoire" is "Cote d'Ivoire".
    plain = re.sub("['`\u2019]", "", plain.replace("&", " and "))
    words = ["st" if word == "saint" else word for word in re.split(r"[\W_]+", plain) if word]
    return " ".join(words[1:] if words[:1] == ["the"] else words)


def _rows(text: str) -> list[list[str]]:
    """The tab-separated rows of a tzdata table, without its comments."""
    return [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]


def _zones_by_country(table: str) -> dict[str, tuple[str, ...]]:
    """Country code -> its zones in the table's order (the first column may list several codes)."""
    zones: defaultdict[str, list[str]] = defaultdict(list)
    for codes, _, zone, *_ in _rows(table):
        for code in codes.split(","):
            zones[code].append(zone)
    return {code: tuple(listed) for code, listed in zones.items()}


@dataclass(frozen=True)
class TzData:
    """What the resolver needs of the tzdata package."""

    names: tuple[str, ...]  # every zone and link
    links: Mapping[str, str]  # link -> the zone it names
    countries: Mapping[str, str]  # ISO 3166 code -> country name
    country_zones: Mapping[str, tuple[str, ...]]  # code -> its zones, as tzdata lists them

    @classmethod
    def read(cls, package: Traversable) -> TzData:
        """From the tzdata package's files (`importlib.resources.files("tzdata")`)."""
        tables = package.joinpath("zoneinfo")
        links = {
            fields[2]: fields[1]
            for line in tables.joinpath("tzdata.zi").read_text(encoding="utf-8").splitlines()
            if line.startswith("L ") and len(fields := line.split()) == 3
        }
        iso3166 = _rows(tables.joinpath("iso3166.tab").read_text(encoding="utf-8"))
        own = _zones_by_country(tables.joinpath("zone.tab").read_text(encoding="utf-8"))
        # zone1970.tab groups countries under one zone: only for a country zone.tab lacks.
        shared = _zones_by_country(tables.joinpath("zone1970.tab").read_text(encoding="utf-8"))
        return cls(
            names=tuple(package.joinpath("zones").read_text(encoding="utf-8").split()),
            links=links,
            countries={code: name for code, name, *_ in iso3166},
            country_zones={code: own.get(code) or shared[code] for code in own.keys() | shared.keys()},
        )

    def geographic_zones(self) -> set[str]:
        """The zones the tables list for some country: places, unlike Etc/GMT+5 or EST5EDT."""
        return {zone for listed in self.country_zones.values() for zone in listed}


def country_names(countries: Mapping[str, str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Simplified country name -> code: tzdata's names, and each without its parenthesis where no
    other country shares what is left ("Britain (UK)": Britain); then the shortened names two
    countries share, with their full names ("Korea": Korea (North), Korea (South))."""
    names = {simplified(name): code for code, name in countries.items()}
    shortened: defaultdict[str, list[str]] = defaultdict(list)
    for code, name in sorted(countries.items()):
        short = re.sub(r"\s*\([^)]*\)", "", name)
        if short != name:
            shortened[simplified(short)].append(code)
    for short, codes in shortened.items():
        if len(codes) == 1:
            names.setdefault(short, codes[0])
    shared = {
        short: [countries[code] for code in codes] for short, codes in shortened.items() if len(codes) > 1
    }
    return names, shared


def cities(data: TzData) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Simplified city -> zone: the zones the tables list, then the links of a continent or
    ocean, to the zone they name ("Kiev": Europe/Kyiv); then the cities of links that name
    different zones, with those links ("Eastern": Canada/Eastern, US/Eastern)."""
    geographic = data.geographic_zones()
    found = {simplified(city(zone)): zone for zone in sorted(geographic)}
    by_link: defaultdict[str, dict[str, str]] = defaultdict(dict)
    for link, zone in sorted(data.links.items()):
        if "/" in link and not link.startswith("Etc/") and link not in geographic:
            by_link[simplified(city(link))][link] = zone
    shared: dict[str, list[str]] = {}
    for name, links in by_link.items():
        if len(set(links.values())) == 1:
            found.setdefault(name, next(iter(links.values())))
        elif name not in found:
            shared[name] = list(links)
    return found, shared


def city(zone: str) -> str:
    """The place a zone or link is named after: the last part of its name, '_' as space."""
    return zone.rsplit("/", 1)[-1].replace("_", " ")


class ZoneFinder:
    """Resolves the names people use for a time zone (see the module's docstring)."""

    def __init__(self, data: TzData) -> None:
        self._by_lower_name = {name.lower(): name for name in data.names}
        self._aliases = {simplified(alias): zone for alias, zone in ALIASES.items()}
        codes, shared_countries = country_names(data.countries)
        self._countries = {
            name: PRINCIPAL_ZONES.get(code) or data.country_zones[code][0]
            for name, code in codes.items()
            if code in data.country_zones
        }
        self._cities, shared_cities = cities(data)
        # Names that could mean more than one zone: what each could mean, for the error.
        self._ambiguous = shared_cities | shared_countries
        # What a suggestion shows for each simplified place name: the name as tzdata writes it.
        shown = {simplified(alias): alias for alias in ALIASES}
        shown |= {simplified(name): name for name in data.countries.values()}
        shown |= {simplified(city(zone)): city(zone) for zone in data.names}
        places = self._aliases.keys() | self._countries.keys() | self._cities.keys()
        self._shown = {name: shown.get(name, name) for name in places}

    def resolve(self, name: str) -> str:
        """The zone `name` means. Raises UnknownZone, naming close matches, when it means none."""
        parts = name.split(",")
        for candidate in [name, *parts] if len(parts) > 1 else [name]:
            found = self._find(candidate)
            if found is not None:
                return found
        raise UnknownZone(f"unknown time zone {name!r}: {self._hint(name)}")

    def _find(self, name: str) -> str | None:
        place = simplified(name)
        lowered = name.strip().lower()
        return (
            self._aliases.get(place)
            or self._countries.get(place)
            or self._by_lower_name.get(lowered)
            or self._by_lower_name.get(lowered.replace(" ", "_"))
            or self._cities.get(place)
        )

    def _hint(self, name: str) -> str:
        meanings = self._ambiguous.get(simplified(name))
        if meanings:
            return f"it could mean {' or '.join(meanings)}: name one of them"
        iana = difflib.get_close_matches(name.strip().lower(), self._by_lower_name, n=SUGGESTIONS)
        places = difflib.get_close_matches(simplified(name), self._shown, n=SUGGESTIONS)
        names = [self._by_lower_name[match] for match in iana]
        spoken = [self._shown[match] for match in places]
        ordered = names + spoken if "/" in name else spoken + names
        close = list(dict.fromkeys(ordered))[:SUGGESTIONS]
        example = f"did you mean {', '.join(close)}?" if close else EXAMPLES
        return f"use an IANA time zone name, a city or a country ({example})"
