"""datetime: the current time, from the WASI clock, in a time zone named by its IANA name, a
city or a country (zone_names.py says how a name is resolved).

The component sees no /usr/share/zoneinfo, so the zone database comes from the bundled
`tzdata` package. It is read into memory, with the tables that name countries and cities, while
componentize-py pre-initializes the module (the package's files exist only at build time), and
each zone is parsed on demand.
"""

import datetime
import io
import zoneinfo
from importlib import resources

from componentize_py_types import Err
from examples import example
from wit_world import exports
from wit_world.imports.types import Argument, Metadata, Param, ParamType, Value_String
from zone_names import TzData, UnknownZone, ZoneFinder


def _load_zones() -> dict[str, bytes]:
    package = resources.files("tzdata")
    names = package.joinpath("zones").read_text(encoding="utf-8").split()
    zones = package.joinpath("zoneinfo")
    return {name: zones.joinpath(*name.split("/")).read_bytes() for name in names}


ZONES = _load_zones()
FINDER = ZoneFinder(TzData.read(resources.files("tzdata")))


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        key = FINDER.resolve(name)
    except UnknownZone as error:
        raise Err(str(error)) from None
    return zoneinfo.ZoneInfo.from_file(io.BytesIO(ZONES[key]), key=key)


class Tool(exports.Tool):
    def describe(self) -> Metadata:
        return Metadata(
            name="datetime",
            description=(
                "Returns the current date and time (ISO 8601, with the UTC offset) in a time zone, "
                "named by its IANA name, a city or a country."
            ),
            version="1.1.0",
            params=[
                Param(
                    name="timezone",
                    description=(
                        'An IANA time zone, a city or a country, e.g. "Europe/Paris", "Tokyo" or '
                        '"Peru" (default: "UTC").'
                    ),
                    type=ParamType.STRING,
                    required=False,
                    minimum=None,
                    maximum=None,
                    choices=[],
                    default_value=Value_String("UTC"),
                )
            ],
            # A date long past, so that nobody takes the example's time for the current one. The
            # place goes in as the request names it: the tool resolves cities and countries.
            examples=[
                example(
                    "What time is it in Auckland?",
                    {"timezone": "Auckland"},
                    "2001-02-03T04:05:06+13:00 (Pacific/Auckland)",
                    "In Auckland it is 04:05 on 2001-02-03 (UTC+13:00).",
                ),
                example(
                    "What's the date today in London?",
                    {"timezone": "London"},
                    "2001-02-02T15:05:06+00:00 (Europe/London)",
                    "In London it is 2001-02-02, 15:05 (UTC+00:00).",
                ),
                example(
                    "Tell me the current time in UTC.",
                    {"timezone": "UTC"},
                    "2001-02-02T15:05:06+00:00 (UTC)",
                    "It is 15:05 UTC on 2001-02-02.",
                ),
                example(
                    "What's the time in Nairobi right now?",
                    {"timezone": "Nairobi"},
                    "2001-02-02T18:05:06+03:00 (Africa/Nairobi)",
                    "In Nairobi it is 2001-02-02T18:05:06+03:00 (Africa/Nairobi).",
                ),
            ],
        )

    def invoke(self, args: list[Argument]) -> str:
        name = "UTC"
        for arg in args:
            if arg.name == "timezone" and isinstance(arg.value, Value_String):
                name = arg.value.value
        zone = _zone(name)
        now = datetime.datetime.now(zone)
        return f"{now.isoformat(timespec='seconds')} ({zone.key})"
