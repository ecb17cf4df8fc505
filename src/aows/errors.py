"""Errors a user can cause; the CLI prints them as one line, without a traceback."""


class AowsError(Exception):
    """Base of every user-facing error: the message names the input and the fix."""
