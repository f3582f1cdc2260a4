"""The department library (contract section 5): exports kept in a real database, with who
imported them and an append-only audit log.

A library is any SQLAlchemy URL: an embedded SQLite file by default (:func:`default_url`,
``$CDASI_DB`` overrides it), PostgreSQL for a shared server. Its schema is created and upgraded
by Alembic migrations (``analytics/library/migrations``) the first time it is opened.

- :meth:`Library.import_files` validates an export, then stores its files (the original bytes,
  each with its sha256), the validation report, the label, who and when, and the audit record,
  in one transaction: a killed import leaves nothing. Identical content (the same visits,
  therapies and mapping files) is not stored twice; an invalid export stores nothing but its
  refusal in the audit log.
- :meth:`Library.delete` removes a dataset's data; its audit records stay.
- The audit table is append-only: no code path updates or deletes a row, and a trigger refuses
  it on SQLite and PostgreSQL alike.

>>> lib = Library("sqlite://")          # in memory
>>> lib.datasets()
[]
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from ..errors import CdasiError, InputError, InvalidDataError

__all__ = ["Library", "Dataset", "AuditRecord", "default_url", "current_user", "ROLES_OF_FILES", "LibraryError"]

ROLES_OF_FILES = ("visits", "therapies", "mapping")
_MIGRATIONS = Path(__file__).with_name("migrations")


class LibraryError(CdasiError):
    """The library cannot do what was asked (an unknown dataset, an unreachable database)."""

    exit_code = 2


def default_url() -> str:
    """``$CDASI_DB``, else an SQLite file in the user's data folder
    (``$XDG_DATA_HOME/cdasi-outcomes/library.sqlite``, ``~/.local/share/...`` by default)."""
    if os.environ.get("CDASI_DB"):
        return os.environ["CDASI_DB"]
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "cdasi-outcomes"
    return f"sqlite:///{base / 'library.sqlite'}"


def current_user() -> str:
    """Who is acting on the command line: ``$CDASI_USER``, else the operating-system user."""
    return os.environ.get("CDASI_USER") or getpass.getuser()


@dataclass(frozen=True)
class Dataset:
    id: int
    label: str
    sha256: str  # the visits file's
    imported_at: str  # ISO 8601, UTC
    imported_by: str
    patients: int
    visits: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AuditRecord:
    time: str  # ISO 8601, UTC
    user: str
    action: str
    dataset_id: int | None
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ImportResult:
    dataset: Dataset
    created: bool  # False: identical content was already stored (as ``dataset``)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


def _iso(t: _dt.datetime) -> str:
    if t.tzinfo is None:  # SQLite hands naive datetimes back
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.astimezone(_dt.timezone.utc).isoformat(timespec="seconds")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Library:
    """A library at ``url`` (default :func:`default_url`); the schema is migrated to the latest
    revision on first use."""

    def __init__(self, url: str | None = None):
        import sqlalchemy as sa

        self.url = url or default_url()
        if self.url.startswith(("postgresql://", "postgres://")):  # the driver this project installs (psycopg 3)
            self.url = "postgresql+psycopg://" + self.url.split("://", 1)[1]
        if self.url.startswith("sqlite:///") and ":memory:" not in self.url:
            Path(self.url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs = {}
        if self.url in ("sqlite://", "sqlite:///:memory:"):
            from sqlalchemy.pool import StaticPool

            kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        try:
            self.engine = sa.create_engine(self.url, future=True, **kwargs)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise LibraryError(f"the library URL {self.url!r} is not usable: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._migrate()
        self._tables()

    # -------------------------------------------------------------- schema
    def _migrate(self) -> None:
        import sqlalchemy as sa
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        try:
            with _sqlite_file_lock(self.engine), self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":  # two servers opening a new library at once: one migrates
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(7305162)"))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except sa.exc.OperationalError as exc:
            raise LibraryError(f"cannot open the library at {self._safe_url()}: {exc.orig}") from None

    def _tables(self) -> None:
        import sqlalchemy as sa

        meta = sa.MetaData()
        meta.reflect(self.engine, only=("datasets", "dataset_files", "audit"))
        self.t_datasets, self.t_files, self.t_audit = (meta.tables[n] for n in ("datasets", "dataset_files", "audit"))

    def _safe_url(self) -> str:
        """The URL without its password (for messages)."""
        return self.engine.url.render_as_string(hide_password=True)

    def revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    # -------------------------------------------------------------- audit
    def audit(self, user: str, action: str, dataset_id: int | None = None, detail: str = "", conn=None) -> None:
        """Append one record (in ``conn``'s transaction when given, so that it commits with the
        change it records)."""
        row = dict(time=_now(), user=user, action=action, dataset_id=dataset_id, detail=detail)
        if conn is not None:
            conn.execute(self.t_audit.insert().values(**row))
            return
        with self.engine.begin() as c:
            c.execute(self.t_audit.insert().values(**row))

    def audit_log(self, dataset_id: int | None = None, limit: int | None = None) -> list[AuditRecord]:
        """The audit log, oldest first (``dataset_id``: of one dataset; ``limit``: the latest N)."""
        import sqlalchemy as sa

        t = self.t_audit
        q = sa.select(t).order_by(t.c.id.desc() if limit else t.c.id)
        if dataset_id is not None:
            q = q.where(t.c.dataset_id == dataset_id)
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        out = [AuditRecord(_iso(r["time"]), r["user"], r["action"], r["dataset_id"], r["detail"]) for r in rows]
        return out[::-1] if limit else out

    # -------------------------------------------------------------- datasets
    def datasets(self) -> list[Dataset]:
        import sqlalchemy as sa

        t = self.t_datasets
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.id)).mappings().all()
        return [self._dataset(r) for r in rows]

    def dataset(self, dataset_id: int) -> Dataset:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            r = conn.execute(sa.select(self.t_datasets).where(self.t_datasets.c.id == int(dataset_id))).mappings().first()
        if r is None:
            known = ", ".join(str(d.id) for d in self.datasets()) or "none"
            raise LibraryError(f"no dataset {dataset_id} in the library at {self._safe_url()} (stored: {known}); "
                               "`cdasi-outcomes datasets` lists them")
        return self._dataset(r)

    @staticmethod
    def _dataset(r) -> Dataset:
        return Dataset(r["id"], r["label"], r["sha256"], _iso(r["imported_at"]), r["imported_by"], r["patients"],
                       r["visits"])

    def report(self, dataset_id: int) -> dict:
        """The validation report stored with the dataset (as ``ValidationReport.to_dict``)."""
        import sqlalchemy as sa

        self.dataset(dataset_id)
        with self.engine.connect() as conn:
            text = conn.execute(sa.select(self.t_datasets.c.report).where(self.t_datasets.c.id == dataset_id)).scalar()
        return json.loads(text)

    def date_format(self, dataset_id: int) -> str | None:
        """The --date-format the dataset was imported with (None: the mapping's, else auto)."""
        import sqlalchemy as sa

        self.dataset(dataset_id)
        with self.engine.connect() as conn:
            return conn.execute(sa.select(self.t_datasets.c.date_format)
                                .where(self.t_datasets.c.id == dataset_id)).scalar()

    def files(self, dataset_id: int) -> dict[str, tuple[str, bytes]]:
        """The stored files by role: {"visits": (name, bytes), ...}."""
        import sqlalchemy as sa

        self.dataset(dataset_id)
        t = self.t_files
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.role, t.c.name, t.c.content, t.c.sha256)
                                .where(t.c.dataset_id == dataset_id)).all()
        out = {}
        for role, name, content, sha in rows:
            if _sha256(content) != sha:
                raise LibraryError(f"dataset {dataset_id}: the stored {role} file {name} no longer matches its sha256")
            out[role] = (name, bytes(content))
        return out

    @contextmanager
    def checked_out(self, dataset_id: int) -> Iterator[dict[str, Path]]:
        """The dataset's files written to a temporary folder (removed afterwards), under their
        original names: {"visits": path, "therapies": path, ...}."""
        files = self.files(dataset_id)
        with tempfile.TemporaryDirectory(prefix="cdasi-dataset-") as tmp:
            paths = {}
            for role, (name, content) in files.items():
                folder = Path(tmp) / role  # one folder per role: two roles may share a file name
                folder.mkdir()
                paths[role] = folder / Path(name).name
                paths[role].write_bytes(content)
            yield paths

    def import_files(self, visits: str | Path, therapies: str | Path | None = None, mapping: str | Path | None = None,
                     label: str | None = None, user: str | None = None, date_format: str | None = None,
                     _pause=None) -> ImportResult:
        """Validate the export at these paths and store it (see the module's docstring). Raises
        InvalidDataError (after auditing the refusal) when it is invalid."""
        from ..pipeline import load

        files: dict[str, tuple[str, bytes]] = {}
        for role, path in (("visits", visits), ("therapies", therapies), ("mapping", mapping)):
            if path is None:
                continue
            p = Path(path)
            try:
                files[role] = (p.name, p.read_bytes())
            except OSError as exc:
                raise InputError(f"cannot read the {role} file {p}: {exc.strerror or exc}") from None
        prepared, _ = load(visits, therapies, mapping, date_format)
        return self._store(files, prepared, label, user, date_format, _pause)

    def import_bytes(self, files: dict[str, tuple[str, bytes]], label: str | None = None,
                     user: str | None = None) -> ImportResult:
        """:meth:`import_files` for uploads: {"visits": (name, bytes), "therapies": ..., "mapping": ...}."""
        from ..pipeline import load_bytes

        as_pairs = {r: (content, name) for r, (name, content) in files.items()}
        prepared, _ = load_bytes(as_pairs["visits"], as_pairs.get("therapies"), as_pairs.get("mapping"))
        return self._store(dict(files), prepared, label, user, None, None)

    def _store(self, files: dict[str, tuple[str, bytes]], prepared, label, user, date_format, _pause) -> ImportResult:
        import sqlalchemy as sa

        user = user or current_user()
        label = (label or "").strip() or files["visits"][0]
        rep = prepared.report
        if not rep.ok:
            self.audit(user, "refused import", None, f"{files['visits'][0]} (sha256 {_sha256(files['visits'][1])[:16]}"
                                                    f"...): {len(rep.errors)} error(s); nothing stored")
            raise InvalidDataError(rep)
        shas = {role: _sha256(content) for role, (_, content) in files.items()}
        content_sha = _sha256("\n".join(f"{r}:{shas.get(r, '')}" for r in ROLES_OF_FILES).encode())
        with self.engine.begin() as conn:
            existing = conn.execute(sa.select(self.t_datasets.c.id)
                                    .where(self.t_datasets.c.content_sha256 == content_sha)).scalar()
            if existing is not None:
                self.audit(user, "import", existing, "identical content already stored; nothing new", conn)
                created = False
                dataset_id = existing
            else:
                dataset_id = conn.execute(self.t_datasets.insert().values(
                    label=label, sha256=shas["visits"], content_sha256=content_sha, imported_at=_now(),
                    imported_by=user, patients=int(prepared.counts.get("patients", 0)),
                    visits=int(prepared.counts.get("visits", 0)), date_format=date_format,
                    report=json.dumps(rep.to_dict()))).inserted_primary_key[0]
                for role, (name, content) in files.items():
                    conn.execute(self.t_files.insert().values(dataset_id=dataset_id, role=role, name=name,
                                                              sha256=shas[role], bytes=len(content), content=content))
                    if _pause is not None:  # fault injection for the tests: the process is killed here
                        _pause(role)
                self.audit(user, "import", dataset_id,
                           f"{label}: " + ", ".join(f"{r} {n} (sha256 {shas[r][:16]}...)" for r, (n, _) in files.items())
                           + f"; {len(rep.warnings)} warning(s)", conn)
                created = True
        return ImportResult(self.dataset(dataset_id), created)

    def delete(self, dataset_id: int, user: str | None = None) -> Dataset:
        """Remove the dataset's files and record; its audit records stay, and the deletion is one."""
        gone = self.dataset(dataset_id)
        with self.engine.begin() as conn:
            conn.execute(self.t_files.delete().where(self.t_files.c.dataset_id == gone.id))
            conn.execute(self.t_datasets.delete().where(self.t_datasets.c.id == gone.id))
            self.audit(user or current_user(), "delete", gone.id,
                       f"{gone.label} (visits sha256 {gone.sha256[:16]}..., imported {gone.imported_at} by "
                       f"{gone.imported_by}): data removed, audit records kept", conn)
        return gone


@contextmanager
def _sqlite_file_lock(engine):
    """For an SQLite file: an exclusive lock on ``<file>.lock`` while the schema is migrated, so
    that processes opening a new library at once migrate one after the other (pysqlite starts
    its transaction only at the first write, so two of them could both find no schema). On
    PostgreSQL an advisory lock does this inside the transaction."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (a single process opens a new library first)
        yield
        return
    with open(f"{database}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")  # readers (the dashboard) and a writer (an import) at once
    cur.close()
