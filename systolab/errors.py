"""Errors that the CLI turns into a one-line message and exit status 2."""


class UserError(Exception):
    """Bad input from the user: a config, a workload, a program bundle, a CLI argument.

    The message is one line that names the file, the key or node, and what is allowed.
    """


class ConfigError(UserError):
    """An accelerator config that cannot work."""
