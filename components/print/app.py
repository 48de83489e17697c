"""print: writes its `message` to standard output; the host returns what was printed."""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports.types import Argument, Example, Metadata, Param, ParamType, Value_String


class Tool(exports.Tool):
    def describe(self) -> Metadata:
        return Metadata(
            name="print",
            description="Prints the given message to standard output.",
            version="1.0.0",
            params=[
                Param(
                    name="message",
                    description="The text to print.",
                    type=ParamType.STRING,
                    required=True,
                    minimum=None,
                    maximum=None,
                    choices=[],
                    default_value=None,
                )
            ],
            examples=[
                Example(
                    request="Print 'job 7 finished' to the console.",
                    arguments=[Argument(name="message", value=Value_String("job 7 finished"))],
                    result="job 7 finished",
                    answer="Printed: job 7 finished",
                ),
                Example(
                    request="Write 'done' to standard output.",
                    arguments=[Argument(name="message", value=Value_String("done"))],
                    result="done",
                    answer="Printed: done",
                ),
            ],
        )

    def invoke(self, args: list[Argument]) -> str:
        for arg in args:
            if arg.name == "message" and isinstance(arg.value, Value_String):
                print(arg.value.value)
                return ""
        raise Err("missing required parameter 'message'")
