"""The error type for bad input files: every problem located by file, line and field, with its fix.

CorpusError and GoldenError are its two kinds. Left out on purpose: printing (the CLI prints str()).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, TypeVar

E = TypeVar("E", bound="InputError")


class InputError(ValueError):
    """Input problems, each located by file and line, with the fix; str() gives one line per problem.

    `problems` holds every problem (one error each); path, line, field and message are the first's.
    """

    def __init__(self, path: Path | str, line: int, field: str, message: str):
        self.path, self.line, self.field, self.message = str(path), line, field, message
        self.problems: tuple = (self,)
        super().__init__(f"{path}:{line}: field '{field}': {message}")

    @classmethod
    def joined(cls: type[E], problems: Sequence[E]) -> E:
        """One error that carries all of `problems` (at least one) and lists them, one line each."""
        every = tuple(one for problem in problems for one in problem.problems)
        if len(every) == 1:
            return every[0]
        first = every[0]
        error = cls(first.path, first.line, first.field, first.message)
        error.problems = every
        error.args = ("\n".join(str(one) for one in every),)
        return error
