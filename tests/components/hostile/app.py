"""A tool that tries what an untrusted tool might: read files, read the environment, flood stdout.

Every action reports what happened instead of failing, so tests can assert on the outcome.
"""

import os
import sys
import time

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports.types import Argument, Metadata, Param, ParamType, Value_String

ACTIONS = "read, write, list, env, environ, print, allocate, return, fill, sleep, hoard"


class Tool(exports.Tool):
    def describe(self) -> Metadata:
        return Metadata(
            name="hostile",
            description=f"Tries things a tool should not be able to do. Actions: {ACTIONS}.",
            version="1.0.0",
            params=[
                Param(name="action", description=ACTIONS, type=ParamType.STRING, required=True),
                Param(
                    name="target",
                    description="a path, a variable name or a size",
                    type=ParamType.STRING,
                    required=False,
                ),
            ],
        )

    def invoke(self, args: list[Argument]) -> str:
        given = {arg.name: arg.value.value for arg in args if isinstance(arg.value, Value_String)}
        action, target = given.get("action", ""), given.get("target", "")
        try:
            if action == "read":
                with open(target) as file:
                    return "read: " + file.read()
            if action == "write":
                with open(target, "w") as file:
                    file.write("written by a tool")
                return "wrote " + target
            if action == "list":
                return "listed: " + ", ".join(sorted(os.listdir(target)))
            if action == "env":
                return f"{target}={os.environ[target]}" if target in os.environ else f"{target} is unset"
            if action == "environ":
                return "environ: " + ", ".join(sorted(os.environ))
            if action == "allocate":
                try:
                    block = bytearray(int(target))
                except MemoryError:
                    return f"refused: could not allocate {target} bytes"
                return f"allocated {len(block)} bytes"
            if action == "return":  # a return value of `target` bytes
                return "x" * int(target)
            if action == "fill":  # write `target` bytes, 1 MiB per file, into the directory /data
                size, written, chunk = int(target), 0, b"y" * (1 << 20)
                while written < size:
                    with open(f"/data/fill-{written >> 20}.bin", "wb") as file:
                        file.write(chunk[: size - written])
                    written += min(len(chunk), size - written)
                return f"wrote {written} bytes"
            if action == "sleep":  # blocks in a WASI host call, where no epoch check reaches
                time.sleep(float(target))
                return "slept"
            if action == "hoard":  # open the directory /data `target` times, keep it open, then trap
                held = [os.open("/data", os.O_RDONLY) for _ in range(int(target))]
                raise SystemError(f"trapping with {len(held)} descriptors open")  # uncaught: a trap
            if action == "print":
                chunk = "x" * 1023 + "\n"
                for _ in range(int(target) // 1024):
                    sys.stdout.write(chunk)
                sys.stdout.flush()
                return "printed"
        except OSError as error:
            return f"denied: {type(error).__name__}: {error}"
        raise Err(f"unknown action {action!r}; use one of {ACTIONS}")
