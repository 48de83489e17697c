"""echo: hands its `value` back unchanged."""

from componentize_py_types import Err
from examples import example
from wit_world import exports
from wit_world.imports.types import Argument, Metadata, Param, ParamType, Value_String

# Made up, so that the model never takes an example for something the user said.
SAMPLE = "the kettle sings at noon"


class Tool(exports.Tool):
    def describe(self) -> Metadata:
        return Metadata(
            name="echo",
            description="Returns the given value unchanged.",
            version="1.0.0",
            params=[
                Param(
                    name="value",
                    description="The text to echo back.",
                    type=ParamType.STRING,
                    required=True,
                    minimum=None,
                    maximum=None,
                    choices=[],
                    default_value=None,
                )
            ],
            examples=[
                example(f"Say back to me: {SAMPLE}", {"value": SAMPLE}, SAMPLE, SAMPLE),
                example("Repeat this: blue whale", {"value": "blue whale"}, "blue whale", "blue whale"),
            ],
        )

    def invoke(self, args: list[Argument]) -> str:
        for arg in args:
            if arg.name == "value" and isinstance(arg.value, Value_String):
                return arg.value.value
        raise Err("missing required parameter 'value'")
