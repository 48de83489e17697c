"""A worked example in a few lines: the arguments as a plain dict, typed into WIT values here.

The bundled Python tools put this directory on their module path (`paths = ["../shared"]` in
their `component.toml`).
"""

from wit_world.imports.types import (
    Argument,
    Example,
    Value,
    Value_Boolean,
    Value_Integer,
    Value_Number,
    Value_String,
)


def example(
    request: str, arguments: dict[str, str | int | float | bool], result: str, answer: str
) -> Example:
    """What a user asks, the call it takes (arguments in the order given), what the tool returns
    and the answer that quotes it."""
    return Example(
        request=request,
        arguments=[Argument(name=name, value=_value(value)) for name, value in arguments.items()],
        result=result,
        answer=answer,
    )


def _value(value: str | int | float | bool) -> Value:
    if isinstance(value, bool):  # before int: a bool is an int too
        return Value_Boolean(value)
    if isinstance(value, int):
        return Value_Integer(value)
    if isinstance(value, float):
        return Value_Number(value)
    return Value_String(value)
