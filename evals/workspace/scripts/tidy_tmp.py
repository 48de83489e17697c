"""Tidies up after the CSV download, which leaves *.tmp files behind."""


def remove_temp_files(names: list[str]) -> list[str]:
    """The file names to keep: every temp file is dropped."""
    return [name for name in names if not name.endswith(".tmp")]
