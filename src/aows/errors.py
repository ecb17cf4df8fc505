"""Errors a user can cause; the CLI prints them as one line, without a traceback."""


class AowsError(Exception):
    """Base of every user-facing error: the message names the input and the fix."""


class Interrupted(AowsError):
    """A run stopped by a signal after saving its work: the command exits non-zero
    (128 + the signal number, as a shell reports a killed job), so a scheduler that
    pre-empted it does not record it as completed."""

    def __init__(self, message: str, signum: int = 15):
        super().__init__(message)
        self.exit_code = 128 + int(signum)
