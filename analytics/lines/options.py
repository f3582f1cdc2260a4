"""Small frozen option objects that check themselves when built and print as valid Python."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ingest.drugs import DEFAULT_ARMS, arm_codes
from ..errors import OptionError

__all__ = ["ResponseRule", "DeriveOptions", "MixedSpec", "parse_arms"]

_KINDS = ("points", "percent", "atmost", "clear")


@dataclass(frozen=True)
class ResponseRule:
    """When a follow-up visit counts as a response.

    - ``points``: activity fell by at least ``value`` points from baseline (default 4, the
      responder definition of Robinson 2015 and the MCID of Anyanwu 2015);
    - ``percent``: fell by at least ``value`` percent (never holds at baseline 0);
    - ``atmost``: activity is at most ``value``;
    - ``clear``: activity is 0 (complete response).
    """

    kind: str = "points"
    value: float | None = 4.0

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise OptionError(f"response rule kind must be one of {', '.join(_KINDS)}, not {self.kind!r}")
        if self.kind == "clear":
            if self.value not in (None, 0, 0.0):
                raise OptionError("the 'clear' rule takes no value (write 'clear')")
            object.__setattr__(self, "value", None)
            return
        if self.value is None:
            raise OptionError(f"the {self.kind!r} rule needs a value, e.g. '{self.kind}:4'")
        try:
            value = float(self.value)
        except (TypeError, ValueError):
            raise OptionError(f"the {self.kind!r} rule needs a number, not {self.value!r}") from None
        limits = {"points": (0, 100), "percent": (0, 100), "atmost": (0, 100)}[self.kind]
        if not (limits[0] < value <= limits[1]) and not (self.kind == "atmost" and value == 0):
            raise OptionError(f"{self.kind}:{value:g} is outside the sensible range "
                              f"({limits[0]} < value <= {limits[1]})")
        object.__setattr__(self, "value", value)

    @classmethod
    def parse(cls, text: str) -> "ResponseRule":
        """Parse ``points:4``, ``percent:40``, ``atmost:14`` or ``clear``."""
        raw = str(text).strip().lower()
        if raw == "clear":
            return cls("clear", None)
        kind, sep, value = raw.partition(":")
        if not sep or not value.strip():
            raise OptionError(f"cannot read response rule {text!r}: write points:N, percent:P, atmost:S or clear")
        try:
            number = float(value)
        except ValueError:
            raise OptionError(f"cannot read response rule {text!r}: {value!r} is not a number") from None
        return cls(kind.strip(), number)

    def __str__(self) -> str:
        return "clear" if self.kind == "clear" else f"{self.kind}:{self.value:g}"

    def describe(self) -> str:
        if self.kind == "points":
            return f"CDASI activity fell by at least {self.value:g} points from baseline"
        if self.kind == "percent":
            return f"CDASI activity fell by at least {self.value:g}% from baseline (never at baseline 0)"
        if self.kind == "atmost":
            return f"CDASI activity at most {self.value:g}"
        return "CDASI activity 0 (clear skin)"


def parse_arms(text: str | None) -> tuple[str, ...]:
    """Parse ``--arms MMF,IVIG,JAKi`` (case-insensitive; agent codes such as MTX allowed)."""
    if text is None:
        return DEFAULT_ARMS
    known = arm_codes()
    arms: list[str] = []
    for part in str(text).split(","):
        key = part.strip().upper()
        if not key:
            continue
        if key not in known:
            raise OptionError(f"unknown arm {part.strip()!r}; choose from {', '.join(sorted(known.values()))}")
        if known[key] not in arms:
            arms.append(known[key])
    if not arms:
        raise OptionError("--arms needs at least one arm, e.g. MMF,IVIG,JAKi")
    return tuple(arms)


@dataclass(frozen=True)
class DeriveOptions:
    """Everything that changes the derived lines. Defaults follow contract.md section 2."""

    response: ResponseRule = field(default_factory=ResponseRule)
    confirm: bool = False
    arms: tuple[str, ...] = DEFAULT_ARMS
    baseline_window_days: tuple[int, int] = (-60, 7)

    def __post_init__(self):
        if not isinstance(self.response, ResponseRule):
            raise OptionError("response must be a ResponseRule, e.g. ResponseRule('points', 4)")
        object.__setattr__(self, "arms", parse_arms(",".join(self.arms)))
        lo, hi = self.baseline_window_days
        if not (int(lo) <= 0 <= int(hi)):
            raise OptionError("baseline_window_days must contain day 0, e.g. (-60, 7)")
        object.__setattr__(self, "baseline_window_days", (int(lo), int(hi)))


MIXED_LEVELS = ("patient/line", "line")  # [mixed] levels


@dataclass(frozen=True)
class MixedSpec:
    """``random``: "slope" (a random intercept and a random slope for weeks at each level) or
    "intercept" (random intercepts only). ``levels``: "patient/line" (random effects by patient and
    by line within patient: a patient's lines share that patient's effects) or "line" (by line
    only, every line independent)."""

    horizon_weeks: float = 24.0
    covariates: tuple[str, ...] = ()
    random: str = "slope"
    reml: bool = True
    levels: str = "patient/line"

    def __post_init__(self):
        if self.random not in ("slope", "intercept"):
            raise OptionError("random must be 'slope' or 'intercept'")
        if self.levels not in MIXED_LEVELS:
            raise OptionError(f"levels must be {' or '.join(repr(x) for x in MIXED_LEVELS)}, not {self.levels!r}")
        if not self.horizon_weeks > 0:
            raise OptionError("horizon_weeks must be positive")
        object.__setattr__(self, "covariates", tuple(self.covariates))
