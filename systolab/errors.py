"""Errors that the CLI turns into a one-line message and exit status 2, and the one YAML reader
that reports a bad file that way."""

from pathlib import Path


class UserError(Exception):
    """Bad input from the user: a config, a workload, a program bundle, a CLI argument.

    The message is one line that names the file, the key or node, and what is allowed.
    """


class ConfigError(UserError):
    """An accelerator config that cannot work."""


class CompileError(UserError):
    """A workload that cannot be compiled for a config (does not fit, cannot be lowered)."""


class LimitError(UserError):
    """A run that went past a limit it was given (`max_cycles`)."""


def read_yaml(path, error: type[UserError], kind: str):
    """Parse a YAML file; a missing file or a syntax error raises `error` with one line naming the
    file (and the line and column of a syntax error)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{source}: no such {kind} file") from None
    except IsADirectoryError:
        raise error(f"{source}: is a folder, not a {kind} file") from None
    except UnicodeDecodeError as e:
        raise error(f"{source}: not a text file: byte {e.start} is not UTF-8 "
                    f"(a {kind} file is YAML text)") from None
    except OSError as e:
        raise error(f"{source}: cannot read {kind} file: {e.strerror}") from None
    return parse_yaml(text, source, error)


def parse_yaml(text: str, source: str, error: type[UserError]):
    """Parse YAML text as `read_yaml` parses a file named `source` (same one-line errors)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise error(f"{source}: YAML syntax error{where}: {problem}") from None
