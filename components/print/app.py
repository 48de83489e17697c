"""print: writes its `message` to standard output; the host returns what was printed."""

from componentize_py_types import Err
from examples import example
from wit_world import exports
from wit_world.imports.types import Argument, Metadata, Param, ParamType, Value_String


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
            # The result is what the call printed, its newline included: what the agent sees.
            examples=[
                example(
                    "Print 'job 7 finished' to the console.",
                    {"message": "job 7 finished"},
                    "job 7 finished\n",
                    "Printed: job 7 finished",
                ),
                example("Write 'done' to standard output.", {"message": "done"}, "done\n", "Printed: done"),
            ],
        )

    def invoke(self, args: list[Argument]) -> str:
        for arg in args:
            if arg.name == "message" and isinstance(arg.value, Value_String):
                print(arg.value.value)
                return ""
        raise Err("missing required parameter 'message'")
