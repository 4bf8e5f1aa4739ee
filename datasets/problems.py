"""Problems found while reading annotations: never silent, always naming file, item and field.

Readers report through a :class:`ProblemLog`. In strict mode the first error raises
:class:`AnnotationError`; in lenient mode the bad record is skipped and the problem is kept, so
nothing accepted is lost and nothing skipped goes unreported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    severity: Severity
    file: str
    item: str
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.item:
            where += f" [{self.item}]"
        if self.field:
            where += f" {self.field}"
        return f"{self.severity}: {where}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class AnnotationError(ValueError):
    """An annotation file cannot be used. ``problem`` names the file, item and field."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


class ProblemLog:
    """Collects problems; raises on the first error when ``strict``."""

    def __init__(self, *, strict: bool = False):
        self.strict = strict
        self.problems: list[Problem] = []

    def error(self, file: str, item: str, field: str, message: str) -> None:
        problem = Problem("error", str(file), str(item), field, message)
        self.problems.append(problem)
        if self.strict:
            raise AnnotationError(problem)

    def warning(self, file: str, item: str, field: str, message: str) -> None:
        self.problems.append(Problem("warning", str(file), str(item), field, message))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]
