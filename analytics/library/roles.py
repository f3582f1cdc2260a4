"""Who may do what when the dashboard is served behind a login (contract section 5).

A roles file is TOML: a list of e-mail addresses per role, and the role of everyone else the
identity provider lets in (``default``, "viewer" unless said otherwise)::

    default = "viewer"
    admin   = ["lead@derm.example.org"]
    analyst = ["fellow@derm.example.org", "*@research.derm.example.org"]
    viewer  = []

- Addresses compare without regard to case. An entry with ``*`` or ``?`` is a pattern
  (:func:`fnmatch.fnmatchcase` on the lower-cased address); an exact address wins over any
  pattern, and when patterns of several roles match, the least privileged role wins.
- An address listed under two roles, an unknown role or key, or an entry that is not an
  address is an error that names it: a roles file is read in full or not at all.

Rights (:data:`PERMISSIONS`): a *viewer* sees aggregates only, with small cells suppressed
(``min_cell`` at least :data:`VIEWER_MIN_CELL`); an *analyst* sees everything for analysis,
patient-level data included, and may load a file into their session; an *admin* may also keep
exports in the library, delete them and read the audit log.

>>> r = parse_roles('admin = ["Lead@Derm.org"]\\nanalyst = ["*@derm.org"]')
>>> r.role_of("lead@derm.org"), r.role_of("fellow@derm.org"), r.role_of("someone@else.org")
('admin', 'analyst', 'viewer')
"""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CdasiError

ROLES = ("viewer", "analyst", "admin")  # least to most privileged
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset(),
    "analyst": frozenset({"patient_level", "upload"}),
    "admin": frozenset({"patient_level", "upload", "import", "delete", "audit"}),
}
VIEWER_MIN_CELL = 5
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+$")
_PATTERN = re.compile(r"^[^@\s]*@[^@\s]+$|^\*$")


class RolesError(CdasiError):
    """A roles file that cannot be used as it stands."""

    exit_code = 2


@dataclass(frozen=True)
class Roles:
    """Roles by address (lower case), patterns by role, and the default role."""

    users: dict[str, str] = field(default_factory=dict)
    patterns: tuple[tuple[str, str], ...] = ()  # (pattern, role), least privileged role first
    default: str = "viewer"
    source: str = ""  # where the roles came from, for messages and the audit log

    def role_of(self, email: str | None) -> str:
        """The role of a logged-in user: an exact address, else the least privileged matching
        pattern, else the default. A user without an address gets the default."""
        address = (email or "").strip().lower()
        if not address:
            return self.default
        if address in self.users:
            return self.users[address]
        for pattern, role in self.patterns:
            if fnmatch.fnmatchcase(address, pattern):
                return role
        return self.default


def allowed(role: str, action: str) -> bool:
    """Whether ``role`` may do ``action`` ("patient_level", "upload", "import", "delete", "audit")."""
    return action in PERMISSIONS[role]


def parse_roles(text: str, source: str = "roles file") -> Roles:
    """Read a roles file's text; every problem is reported at once, each naming the entry."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RolesError(f"{source} is not valid TOML: {exc}") from None
    problems = []
    unknown = sorted(set(doc) - {"default", *ROLES})
    if unknown:
        problems.append(f"unknown key(s) {', '.join(map(repr, unknown))} (expected default and lists named "
                        f"{', '.join(ROLES)})")
    default = doc.get("default", "viewer")
    if default not in ROLES:
        problems.append(f"default = {default!r} is not a role (one of {', '.join(ROLES)})")
    users: dict[str, str] = {}
    patterns: list[tuple[str, str]] = []
    for role in ROLES:
        entries = doc.get(role, [])
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            problems.append(f"{role} must be a list of e-mail addresses, e.g. {role} = [\"name@hospital.org\"]")
            continue
        for entry in entries:
            address = entry.strip().lower()
            if any(ch in address for ch in "*?["):
                if not _PATTERN.match(address):
                    problems.append(f"{role}: {entry!r} is not an address pattern (e.g. \"*@hospital.org\")")
                else:
                    patterns.append((address, role))
                continue
            if not _ADDRESS.match(address):
                problems.append(f"{role}: {entry!r} is not an e-mail address")
            elif address in users and users[address] != role:
                problems.append(f"{entry!r} is listed as both {users[address]} and {role}; keep one")
            else:
                users[address] = role
    if problems:
        raise RolesError(f"{source}: " + "; ".join(problems) + ".")
    patterns.sort(key=lambda p: ROLES.index(p[1]))  # least privileged first
    return Roles(users, tuple(patterns), default if default in ROLES else "viewer", source)


def load_roles(path: str | os.PathLike | None = None) -> Roles:
    """The roles file at ``path`` (``$CDASI_ROLES`` when None). No file named: everyone is a viewer."""
    path = path if path is not None else os.environ.get("CDASI_ROLES")
    if not path:
        return Roles(source="no roles file (everyone is a viewer)")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RolesError(f"the roles file {p} cannot be read ({exc.strerror or exc}); "
                         "pass --roles FILE with a readable TOML file") from None
    return parse_roles(text, str(p))


def secrets_files(explicit: str | os.PathLike | None = None) -> list[Path]:
    """Where Streamlit reads ``[auth]`` from: the file given (``dashboard --secrets FILE``), else
    its own defaults, ``~/.streamlit/secrets.toml`` then ``./.streamlit/secrets.toml``."""
    if explicit:
        return [Path(explicit)]
    return [Path.home() / ".streamlit" / "secrets.toml", Path.cwd() / ".streamlit" / "secrets.toml"]


def login_problems(files: list[Path]) -> list[str] | None:
    """None when no file has an ``[auth]`` section (no login: single-user mode); else the
    problems of the merged section (an empty list: a login is configured and complete)."""
    auth: dict = {}
    for f in files:
        if not f.is_file():
            continue
        try:
            doc = tomllib.loads(f.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            return [f"{f} cannot be read as TOML ({exc})"]
        if isinstance(doc.get("auth"), dict):
            auth.update(doc["auth"])
    return auth_problems(auth) if auth else None


def auth_problems(auth: dict) -> list[str]:
    """What an ``[auth]`` section lacks for Streamlit's OIDC login (empty: nothing)."""
    problems = [f"[auth] has no {k}" for k in ("redirect_uri", "cookie_secret") if not auth.get(k)]
    providers = {k: v for k, v in auth.items() if isinstance(v, dict)} or {"default": auth}
    for name, section in providers.items():
        missing = [k for k in ("client_id", "client_secret", "server_metadata_url") if not section.get(k)]
        if missing:
            where = "[auth]" if name == "default" else f"[auth.{name}]"
            problems.append(f"{where} has no {', '.join(missing)}")
    return problems
