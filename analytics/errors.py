"""The project's exceptions. Problems *in the data* are findings in a ValidationReport;
these are for things that stop work at once and say how to fix it."""

from __future__ import annotations


class CdasiError(Exception):
    """Base class: a known problem with a message meant for the user."""

    exit_code = 1


class InputError(CdasiError):
    """A file cannot be read at all (missing, unreadable, wrong format or encoding)."""

    exit_code = 2


class OptionError(CdasiError, ValueError):
    """An option or argument is invalid."""

    exit_code = 2


class MappingError(InputError):
    """The TOML mapping file is unreadable or malformed."""


class InvalidDataError(CdasiError):
    """The data failed validation; ``report`` says why."""

    exit_code = 1

    def __init__(self, report):
        self.report = report
        super().__init__(f"the data failed validation ({len(report.errors)} error(s)); see the report")
