"""The one error type a user can fix by changing a command: its message is one line, printed alone."""


class DlrunError(Exception):
    """A bad value, missing data or a missing device; shown as `dlrun: error: <message>`, exit code 2."""
