"""One error type for "the user must fix something": a one-line message, a mending hint, an exit code.

The command line catches `UserError` and prints it without a traceback; anything else is our bug.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input the user can mend. `where` names the file/key/line, `hint` says how to mend it."""

    exit_code = 2

    def __init__(self, where: str, what: str, hint: str = "") -> None:
        self.where, self.what, self.hint = where, what, hint
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{self.where}: {self.what}"
        return f"{text} ({self.hint})" if self.hint else text


class AxesError(UserError):
    """The axes file is malformed."""

    exit_code = 3


class ResultsError(UserError):
    """The results directory or a results file cannot be used."""

    exit_code = 4
