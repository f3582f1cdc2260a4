"""Drug names to agents, agents to arms.

An *agent* is a canonical generic name (``"mycophenolate"``, ``"ivig"``, ``"tofacitinib"``).
Every agent has a class: ``systemic`` agents start therapy lines; ``glucocorticoid`` and
``topical`` agents are recognised (so they raise no "unknown drug" warning) but never form
a line. The default arms are MMF, IVIG and JAKi; any other systemic agent can be made an
arm by its code (``--arms MMF,IVIG,JAKi,MTX``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

__all__ = ["Agent", "AGENTS", "DEFAULT_ARMS", "DrugNormaliser", "split_therapy", "arm_codes"]


@dataclass(frozen=True)
class Agent:
    name: str  # canonical generic, lowercase
    code: str  # short code used as an arm label
    kind: str  # systemic | glucocorticoid | topical
    arm: str | None  # default arm, or None
    synonyms: tuple[str, ...] = ()


_JAK = "JAKi"
AGENTS: tuple[Agent, ...] = (
    Agent("mycophenolate", "MMF", "systemic", "MMF",
          ("mmf", "mycophenolate", "mycophenolate mofetil", "mycophenolic acid", "mycophenolate sodium", "mpa",
           "ec-mps", "cellcept", "myfortic", "mycofenolate", "micofenolato")),
    Agent("ivig", "IVIG", "systemic", "IVIG",
          ("ivig", "ivigg", "igiv", "iv ig", "iv immunoglobulin", "intravenous immunoglobulin",
           "intravenous immune globulin", "immune globulin", "immunoglobulin", "immune globulin intravenous",
           "octagam", "privigen", "gamunex", "gamunex-c", "gammagard", "gammagard liquid", "panzyga",
           "flebogamma", "gammaplex", "bivigam", "kiovig", "intratect", "ig vena")),
    Agent("tofacitinib", "TOF", "systemic", _JAK, ("tofacitinib", "tofa", "xeljanz", "xeljanz xr")),
    Agent("ruxolitinib", "RUX", "systemic", _JAK, ("ruxolitinib", "jakafi", "jakavi", "ruxo")),
    Agent("baricitinib", "BAR", "systemic", _JAK, ("baricitinib", "olumiant", "bari")),
    Agent("upadacitinib", "UPA", "systemic", _JAK, ("upadacitinib", "rinvoq", "upa")),
    Agent("abrocitinib", "ABR", "systemic", _JAK, ("abrocitinib", "cibinqo")),
    Agent("hydroxychloroquine", "HCQ", "systemic", None,
          ("hcq", "hydroxychloroquine", "plaquenil", "quensyl", "hydroxychloroquine sulfate", "hydroxychloroquine sulphate")),
    Agent("chloroquine", "CQ", "systemic", None, ("chloroquine", "cq", "aralen")),
    Agent("quinacrine", "QUIN", "systemic", None, ("quinacrine", "mepacrine", "atabrine")),
    Agent("methotrexate", "MTX", "systemic", None,
          ("mtx", "methotrexate", "trexall", "otrexup", "rasuvo", "metoject", "xatmep", "jylamvo")),
    Agent("azathioprine", "AZA", "systemic", None, ("aza", "azathioprine", "imuran", "azasan")),
    Agent("rituximab", "RTX", "systemic", None, ("rtx", "rituximab", "rituxan", "mabthera", "truxima", "ruxience")),
    Agent("apremilast", "APR", "systemic", None, ("apremilast", "otezla")),
    Agent("dapsone", "DAP", "systemic", None, ("dapsone", "aczone oral")),
    Agent("cyclosporine", "CSA", "systemic", None, ("cyclosporine", "ciclosporin", "cyclosporin", "csa", "neoral",
                                                     "sandimmune")),
    Agent("tacrolimus", "TAC", "systemic", None, ("tacrolimus", "tacrolimus oral", "prograf", "advagraf", "envarsus")),
    Agent("cyclophosphamide", "CYC", "systemic", None, ("cyclophosphamide", "cyc", "cytoxan", "endoxan")),
    Agent("leflunomide", "LEF", "systemic", None, ("leflunomide", "arava")),
    Agent("thalidomide", "THAL", "systemic", None, ("thalidomide", "thalomid")),
    Agent("lenalidomide", "LEN", "systemic", None, ("lenalidomide", "revlimid")),
    Agent("anifrolumab", "ANI", "systemic", None, ("anifrolumab", "saphnelo")),
    Agent("abatacept", "ABA", "systemic", None, ("abatacept", "orencia")),
    Agent("sirolimus", "SIR", "systemic", None, ("sirolimus", "rapamune")),
    Agent("scig", "SCIG", "systemic", None, ("scig", "subcutaneous immunoglobulin", "hizentra", "cuvitru", "hyqvia")),
    Agent("glucocorticoid", "GC", "glucocorticoid", None,
          ("prednisone", "prednisolone", "methylprednisolone", "medrol", "solumedrol", "solu-medrol", "dexamethasone",
           "deflazacort", "hydrocortisone", "budesonide", "steroid", "steroids", "glucocorticoid", "glucocorticoids",
           "corticosteroid", "corticosteroids", "pred", "iv methylprednisolone", "ivmp", "pulse steroids", "gc",
           "deltasone", "rayos", "triamcinolone im", "kenalog im")),
    Agent("topical", "TOP", "topical", None,
          ("topical", "topical steroid", "topical steroids", "topical corticosteroid", "clobetasol", "betamethasone",
           "triamcinolone", "mometasone", "fluocinonide", "desonide", "hydrocortisone cream", "tacrolimus ointment",
           "topical tacrolimus", "protopic", "pimecrolimus", "elidel", "crisaborole", "sunscreen", "photoprotection",
           "emollient", "topical calcineurin inhibitor")),
)

DEFAULT_ARMS = ("MMF", "IVIG", "JAKi")
_NONE_TOKENS = frozenset({"", "none", "no", "nil", "-", "--", "0", "na", "n/a", "nan", "null", "off", "no therapy",
                          "no systemic therapy"})

_SPLIT = re.compile(r"[;+]")
_DOSE = re.compile(
    r"\b\d+(?:[.,]\d+)?\s*(?:mg/kg|g/kg|mg|mcg|µg|ug|g|ml|iu|units?|x|%)?(?:/(?:day|d|wk|week|kg|month|m))?\b"
)
_FREQ = re.compile(r"\b(?:bid|tid|qd|qid|od|daily|weekly|monthly|q\d+w|q\d+wk|per day|per week|po|iv|sc|sq|xr|er|sr"
                   r"|tablet|tablets|tab|tabs|cycle|cycles|infusion|infusions)\b")


def split_therapy(cell: str) -> list[str]:
    """Split a systemic_therapy cell on ";" and "+" into stripped, non-empty tokens."""
    return [t.strip() for t in _SPLIT.split(cell) if t.strip()]


def _clean(token: str) -> str:
    t = token.lower().replace("\u00a0", " ")
    t = re.sub(r"\(.*?\)|\[.*?\]", " ", t)
    t = t.replace("_", " ")
    return re.sub(r"\s+", " ", t).strip(" .,:")


class DrugNormaliser:
    """Maps a raw drug token to an :class:`Agent` (or ``None`` when unknown).

    ``synonyms`` (from the mapping file's ``[drugs]`` table) maps extra names to an agent
    name or any of its synonyms; they win over the built-in table.
    """

    def __init__(self, synonyms: Mapping[str, str] | None = None):
        self._by_name: dict[str, Agent] = {}
        for agent in AGENTS:
            for s in (agent.name, agent.code.lower(), *agent.synonyms):
                self._by_name.setdefault(_clean(s), agent)
        self.bad_synonyms: dict[str, str] = {}
        for raw, target in (synonyms or {}).items():
            agent = self._by_name.get(_clean(str(target)))
            if agent is None:
                self.bad_synonyms[str(raw)] = str(target)
            else:
                self._by_name[_clean(str(raw))] = agent
        self.lookup = lru_cache(maxsize=None)(self._lookup)

    def is_none(self, token: str) -> bool:
        return _clean(token) in _NONE_TOKENS

    def _lookup(self, token: str) -> Agent | None:
        t = _clean(token)
        if t in self._by_name:
            return self._by_name[t]
        stripped = re.sub(r"\s+", " ", _FREQ.sub(" ", _DOSE.sub(" ", t))).strip(" .,:")
        if stripped in self._by_name:
            return self._by_name[stripped]
        words = stripped.split(" ")
        for n in range(len(words) - 1, 0, -1):
            agent = self._by_name.get(" ".join(words[:n]))
            if agent is not None:
                return agent
        return None

    def parse_cell(self, cell: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Return (systemic agent names, unknown tokens) for one systemic_therapy cell."""
        agents: list[str] = []
        unknown: list[str] = []
        for token in split_therapy(cell):
            if self.is_none(token):
                continue
            agent = self.lookup(token)
            if agent is None:
                unknown.append(token)
            elif agent.kind == "systemic" and agent.name not in agents:
                agents.append(agent.name)
        return tuple(sorted(agents)), tuple(unknown)


_AGENT_BY_NAME = {a.name: a for a in AGENTS}


def arm_codes() -> dict[str, str]:
    """Every label that ``--arms`` accepts, upper-cased, to its canonical spelling."""
    codes = {a.upper(): a for a in DEFAULT_ARMS}
    for a in AGENTS:
        if a.kind == "systemic":
            codes.setdefault(a.code.upper(), a.code)
    return codes


def arm_of(agent_name: str, arms: tuple[str, ...]) -> str | None:
    """The arm an agent belongs to, given the requested arms (None when it forms no arm)."""
    agent = _AGENT_BY_NAME[agent_name]
    if agent.arm is not None and agent.arm in arms:
        return agent.arm
    if agent.code in arms:
        return agent.code
    return None
