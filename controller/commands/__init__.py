"""One module per `stopbandit` subcommand, each with `register(subparsers)`."""


class UsageError(Exception):
    """A command's input cannot be used (missing file, invalid scenario); exit code 2."""
