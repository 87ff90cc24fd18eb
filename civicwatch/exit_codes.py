"""The ``civicwatch`` command's exit codes (README, CLI): each failure is one line on stderr,
never a traceback."""

EXIT_FAILURE = 1  # anything else; an unexpected error also leaves its traceback in a file
EXIT_AUDIT_BROKEN = 1  # `audit verify`: the chain does not hold
EXIT_CONFIG = 2  # the config, an argument or an input folder is wrong (argparse also exits 2)
EXIT_MODEL = 3
EXIT_UNCONFIRMED = 4
EXIT_SOURCE = 5
EXIT_ACCOUNT = 6  # `user`: the account rules refused (weak password, unknown user, ...)
EXIT_PORT = 7  # `server`, `demo`: the API's address cannot be listened on
EXIT_REGISTRY = 8  # `registry import`: the file or a row was refused, nothing stored
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)


class CliError(Exception):
    """A mistake the user can fix: its one-line message and exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
