"""The department's stepwise scheme (contract section 6): ordered steps, the agents of each, and
when a step is judged.

>>> from analytics.lines.scheme import Scheme
>>> s = Scheme.default()
>>> [step.name for step in s.steps]
['Antimalarials', 'Conventional immunosuppressants', 'IVIG', 'JAK inhibitors and biologics']
>>> s.step_of("mycophenolate"), s.label_of("tofacitinib"), s.step_of("rituximab")
(2, 'JAKi', None)

A scheme is a TOML file (``--scheme FILE``); the default ships with the package
(``default_scheme.toml`` beside this module). Agents are written as the drug table's codes
(``HCQ``, ``MMF``), as a group (``JAKi``: every JAK inhibitor) or by any name the drug table
knows (``mycophenolate``, ``CellCept``). Each line takes the step of its agent; an agent in no
step is "outside the scheme", counted and named wherever the scheme is reported.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .. import tomlfile
from ..errors import OptionError
from ..ingest.drugs import AGENTS, DrugNormaliser

__all__ = ["Scheme", "Step", "GROUPS", "agent_label", "DEFAULT_SCHEME_PATH"]

DEFAULT_SCHEME_PATH = Path(__file__).with_name("default_scheme.toml")
KEYS = ("name", "assess_weeks", "assess_window_weeks", "escalate_weeks", "step")
STEP_KEYS = ("name", "agents")

# Groups a scheme may name instead of single agents: the drug table's arms of several agents.
GROUPS: dict[str, tuple[str, ...]] = {}
for _a in AGENTS:
    if _a.kind == "systemic" and _a.arm is not None and _a.arm != _a.code:
        GROUPS.setdefault(_a.arm, ())
        GROUPS[_a.arm] += (_a.name,)
GROUPS = {g: names for g, names in GROUPS.items() if len(names) > 1}
_CODE = {a.name: a.code for a in AGENTS}
_SYSTEMIC = {a.name for a in AGENTS if a.kind == "systemic"}


def agent_label(name: str) -> str:
    """The code a line's agent (a canonical generic name) is shown by outside a scheme: ``MMF``,
    ``RTX``; JAK inhibitors as ``JAKi``."""
    for group, names in GROUPS.items():
        if name in names:
            return group
    return _CODE.get(name, name)


@dataclass(frozen=True)
class Step:
    """One step of the ladder: its name and the agents it holds, as written in the scheme."""

    name: str
    agents: tuple[str, ...]


@dataclass(frozen=True)
class Scheme:
    """Ordered steps (step 1 first), the time at which a step is judged (``assess_weeks``) and
    the time within which a failed step should be followed by the next (``escalate_weeks``).
    ``source``: where it came from ("default" or a file name), for provenance."""

    name: str = "Stepwise scheme"
    assess_weeks: float = 12.0
    steps: tuple[Step, ...] = ()
    escalate_weeks: float = 4.0
    assess_window_weeks: float = 4.0
    source: str = field(default="default", compare=False)

    def __post_init__(self):
        object.__setattr__(self, "steps", tuple(self.steps))
        if not self.steps:
            raise OptionError("scheme: no steps; give at least one [[step]] with a name and agents")
        for what, value, top in (("assess_weeks", self.assess_weeks, 104), ("escalate_weeks", self.escalate_weeks, 52),
                                 ("assess_window_weeks", self.assess_window_weeks, 52)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value <= top):
                raise OptionError(f"scheme: {what} = {value!r}: must be a number of weeks above 0 and at most {top}")
        object.__setattr__(self, "assess_weeks", float(self.assess_weeks))
        object.__setattr__(self, "escalate_weeks", float(self.escalate_weeks))
        object.__setattr__(self, "assess_window_weeks", float(self.assess_window_weeks))
        if self.assess_window_weeks >= self.assess_weeks:
            raise OptionError(f"scheme: assess_window_weeks = {self.assess_window_weeks:g} must be below assess_weeks "
                              f"= {self.assess_weeks:g} (the window is assess_weeks plus or minus it)")
        seen_names: dict[str, int] = {}
        owner: dict[str, tuple[int, str]] = {}
        for i, step in enumerate(self.steps, 1):
            where = f"step {i} ({step.name!r})" if step.name else f"step {i}"
            if not step.name or not step.name.strip():
                raise OptionError(f"scheme: {where} has no name; give each [[step]] a name")
            if step.name in seen_names:
                raise OptionError(f"scheme: steps {seen_names[step.name]} and {i} are both named {step.name!r}; "
                                  "give each step its own name")
            seen_names[step.name] = i
            if not step.agents:
                raise OptionError(f"scheme: {where} has no agents; list them, e.g. agents = [\"MMF\"]")
            for written in step.agents:
                for name in _resolve(written, where):
                    if name in owner and owner[name][0] != i:
                        j, first = owner[name]
                        raise OptionError(
                            f"scheme: {_CODE[name]} ({name}) is in step {j} (as {first!r}) and in {where} "
                            f"(as {written!r}); an agent belongs to one step")
                    owner[name] = (i, written)

    # -------------------------------------------------------------- reading
    @classmethod
    def from_dict(cls, doc: dict, source: str = "scheme", base: "Scheme | None" = None) -> "Scheme":
        """A scheme from its TOML table. Keys left out take ``base``'s value (the default scheme):
        ``{"assess_weeks": 16}`` is the default ladder judged at 16 weeks."""
        if not isinstance(doc, dict):
            raise OptionError(f"{source}: the scheme must be a table of keys")
        unknown = [k for k in doc if k not in KEYS]
        if unknown:
            raise OptionError(f"{source}: unknown key {unknown[0]!r}; known keys: {', '.join(KEYS)}")
        base = base if base is not None else cls.default()
        steps = _steps(doc["step"], source) if "step" in doc else base.steps
        name = doc.get("name", base.name)
        if not isinstance(name, str):
            raise OptionError(f"{source}: name = {name!r}: must be text")
        try:
            return cls(name, doc.get("assess_weeks", base.assess_weeks), steps,
                       doc.get("escalate_weeks", base.escalate_weeks),
                       doc.get("assess_window_weeks", base.assess_window_weeks), source)
        except OptionError as exc:
            raise OptionError(str(exc).replace("scheme:", f"{source}:", 1)) from None

    @classmethod
    def from_toml(cls, text: str, source: str = "scheme") -> "Scheme":
        doc = tomlfile.parse(text, source)
        if "step" not in doc:
            raise OptionError(f"{source}: no steps; give at least one [[step]] with a name and agents")
        return cls.from_dict(doc, source)

    @classmethod
    def load(cls, path: str | Path) -> "Scheme":
        return cls.from_toml(tomlfile.read(path, "scheme"), Path(path).name)

    @classmethod
    def default(cls) -> "Scheme":
        return _default()

    # -------------------------------------------------------------- writing
    def to_dict(self) -> dict:
        """The scheme as its TOML table (``source`` is provenance, not part of it)."""
        return {"name": self.name, "assess_weeks": self.assess_weeks, "assess_window_weeks": self.assess_window_weeks,
                "escalate_weeks": self.escalate_weeks,
                "step": [{"name": s.name, "agents": list(s.agents)} for s in self.steps]}

    def to_toml(self) -> str:
        import tomli_w

        return "# cdasi-outcomes stepwise scheme (contract section 6)\n" + tomli_w.dumps(self.to_dict())

    def describe(self) -> str:
        ladder = "; ".join(f"{i}. {s.name} ({', '.join(s.agents)})" for i, s in enumerate(self.steps, 1))
        return (f"{self.name}: {ladder}; judged at {self.assess_weeks:g} weeks (a visit within "
                f"{self.assess_window_weeks:g} weeks of it), escalation due within "
                f"{self.escalate_weeks:g} weeks")

    # -------------------------------------------------------------- lookups
    @cached_property
    def _steps_by_agent(self) -> dict[str, tuple[int, str]]:
        out = {}
        for i, step in enumerate(self.steps, 1):
            for written in step.agents:
                names = _resolve(written, "")
                label = _canonical_label(written, names)
                for name in names:
                    out[name] = (i, label)
        return out

    def step_of(self, agent_name: str) -> int | None:
        """The 1-based step of an agent (canonical generic name); None: outside the scheme."""
        hit = self._steps_by_agent.get(agent_name)
        return hit[0] if hit else None

    def label_of(self, agent_name: str) -> str:
        """How the scheme names an agent: its group when the scheme lists one (``JAKi``), else its
        code; agents outside the scheme by :func:`agent_label`."""
        hit = self._steps_by_agent.get(agent_name)
        return hit[1] if hit else agent_label(agent_name)

    def labels(self) -> list[str]:
        """The agents of the scheme as it names them, in step order."""
        out: list[str] = []
        for step in self.steps:
            for written in step.agents:
                label = _canonical_label(written, _resolve(written, ""))
                if label not in out:
                    out.append(label)
        return out

    def step_name(self, step: int | None) -> str:
        return self.steps[step - 1].name if step else "outside the scheme"


def _steps(raw: Any, source: str) -> tuple[Step, ...]:
    if raw is None or raw == []:
        raise OptionError(f"{source}: no steps; give at least one [[step]] with a name and agents")
    if not isinstance(raw, list) or not all(isinstance(s, dict) for s in raw):
        raise OptionError(f"{source}: step must be a list of tables ([[step]] with name and agents)")
    out = []
    for i, s in enumerate(raw, 1):
        unknown = [k for k in s if k not in STEP_KEYS]
        if unknown:
            raise OptionError(f"{source}: step {i}: unknown key {unknown[0]!r}; known keys: {', '.join(STEP_KEYS)}")
        name, agents = s.get("name", ""), s.get("agents", [])
        if not isinstance(name, str):
            raise OptionError(f"{source}: step {i}: name = {name!r}: must be text")
        if isinstance(agents, str):
            agents = [agents]
        if not isinstance(agents, list) or not all(isinstance(a, str) for a in agents):
            raise OptionError(f"{source}: step {i}: agents must be a list of agent codes, e.g. [\"MTX\", \"MMF\"]")
        out.append(Step(name.strip(), tuple(a.strip() for a in agents if a.strip())))
    return tuple(out)


_NORMALISER = DrugNormaliser()
_GROUP_UPPER = {g.upper(): g for g in GROUPS}


def _resolve(written: str, where: str) -> tuple[str, ...]:
    """The canonical agent names an entry of a step's ``agents`` stands for."""
    if written.upper() in _GROUP_UPPER:
        return GROUPS[_GROUP_UPPER[written.upper()]]
    agent = _NORMALISER.lookup(written)
    if agent is None:
        codes = sorted({a.code for a in AGENTS if a.kind == "systemic"} | set(GROUPS))
        raise OptionError(f"scheme: {where}: unknown agent {written!r}; use a code of the drug table "
                          f"({', '.join(codes)}) or a drug name it knows")
    if agent.name not in _SYSTEMIC:
        raise OptionError(f"scheme: {where}: {written!r} is {agent.kind}, not a systemic agent; it starts no therapy "
                          "line, so it cannot be a step")
    return (agent.name,)


def _canonical_label(written: str, names: tuple[str, ...]) -> str:
    if written.upper() in _GROUP_UPPER:
        return _GROUP_UPPER[written.upper()]
    return _CODE[names[0]]


_DEFAULT: list[Scheme] = []


def _default() -> Scheme:
    if not _DEFAULT:
        doc = tomllib.loads(DEFAULT_SCHEME_PATH.read_text(encoding="utf-8"))
        _DEFAULT.append(Scheme(doc["name"], doc["assess_weeks"], _steps(doc["step"], "default scheme"),
                               doc["escalate_weeks"], doc["assess_window_weeks"], "default"))
    return _DEFAULT[0]
