"""State and caching, in one place. Pages call these functions; nothing else touches
``st.session_state`` keys or caches.

Session-state keys carry a page prefix: ``data.*``, ``analysis.*``, ``cohort.*``, ``quality.*``,
``timeline.*``. Caches are keyed on the dataset's hash and the repr of every option object
(frozen dataclasses print as valid Python), so nothing is re-read or refitted unless something
it depends on changed. Every analysis comes from one cached runner, :func:`result`, over the
registry of analyses. Uploaded files are held in memory; only building a meeting pack copies
them to a temporary folder, removed before the pack is offered.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from analytics import DeriveOptions, Prepared
from analytics.lines.cohort import CohortFilter, FilteredCohort, apply_filter, options_for
from analytics.lines.derive import Derivation, derive
from analytics.display.export import neutralise
from analytics.lines.options import MixedSpec
from analytics.models import ModelOptions
from analytics.pipeline import load_bytes
from analytics.lines.analysis_table import analysis_table
from analytics.sample import generate

SAMPLE_SEED = 20210301
SAMPLE_PATIENTS = 400


@dataclass(frozen=True)
class DatasetFiles:
    """The files behind a dataset, in memory: (bytes, file name) each."""

    visits: tuple[bytes, str]
    therapies: tuple[bytes, str] | None = None
    mapping: tuple[bytes, str] | None = None
    label: str = ""
    dataset_id: int | None = None  # a dataset of the library, when opened from it
    sample: bool = False  # the synthetic sample cohort (told apart without generating it)

    @property
    def key(self) -> str:
        h = hashlib.sha256()
        for part in (self.visits, self.therapies, self.mapping):
            h.update(b"|" if part is None else hashlib.sha256(part[0]).digest() + part[1].encode())
        return h.hexdigest()

    @property
    def visits_sha256(self) -> str:
        return hashlib.sha256(self.visits[0]).hexdigest()

    @property
    def names(self) -> dict:
        return {k: v[1] for k, v in (("visits", self.visits), ("therapies", self.therapies),
                                     ("mapping", self.mapping)) if v is not None}


# ------------------------------------------------------------------ the server
WARM_UP = ("analytics.stats.survival", "analytics.stats.cox", "analytics.stats.competing", "analytics.stats.interval",
           "analytics.stats.adjusted", "analytics.stats.mixed", "analytics.stats.table1", "analytics.stats.quality",
           "analytics.display.plots", "analytics.registry")


@st.cache_resource(show_spinner=False)
def warm_up():
    """Import the modelling and plotting modules once per server, in a background thread started
    after the first page is drawn: lifelines, scipy and statsmodels take 1.5 s or more to import,
    which the first page that fits a model would otherwise wait for. A page that needs a module
    still loading waits for that import (Python's import lock), never imports it twice."""
    import importlib
    import threading

    def run():
        for name in WARM_UP:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 the page that needs it imports it again and shows the error
                return

    thread = threading.Thread(target=run, name="cdasi-warm-up", daemon=True)
    thread.start()
    return thread


# ------------------------------------------------------------------ the dataset
@st.cache_resource(show_spinner="Generating the synthetic sample cohort...")
def sample_files() -> DatasetFiles:
    """The committed sample cohort (the generator writes exactly these files)."""
    visits, therapies = generate(SAMPLE_PATIENTS, SAMPLE_SEED)
    enc = lambda df: neutralise(df).to_csv(index=False, lineterminator="\n").encode()  # noqa: E731
    return DatasetFiles((enc(visits), "visits.csv"), (enc(therapies), "therapies.csv"), None,
                        f"Sample cohort (synthetic, {SAMPLE_PATIENTS} patients)", sample=True)


def _file(env: str) -> tuple[bytes, str] | None:
    path = os.environ.get(env)
    if not path:
        return None
    p = Path(path)
    return p.read_bytes(), p.name


def startup_files() -> DatasetFiles:
    """The dataset named on the command line (``cdasi-outcomes dashboard VISITS``), else the sample."""
    visits = _file("CDASI_VISITS")
    if visits is None:
        return sample_files()
    return DatasetFiles(visits, _file("CDASI_THERAPIES"), _file("CDASI_MAPPING"), visits[1])


@st.cache_resource(max_entries=4, show_spinner="Reading and validating the export...")
def _prepared(key: str, _files: DatasetFiles) -> Prepared:
    return load_bytes(_files.visits, _files.therapies, _files.mapping)[0]


def prepare_files(files: DatasetFiles) -> Prepared:
    """Read and validate (cached on the files' hash). Raises CdasiError for unreadable files."""
    return _prepared(files.key, files)


def current_files() -> DatasetFiles:
    if "data.files" not in st.session_state:
        st.session_state["data.files"] = startup_files()
    return st.session_state["data.files"]


def set_files(files: DatasetFiles) -> None:
    st.session_state["data.files"] = files
    st.session_state.pop("timeline.patient", None)


def current() -> Prepared:
    return prepare_files(current_files())


def try_files(files: DatasetFiles):
    """Validate new files; switch to them only when they are valid. Returns (ok, message, report)."""
    from analytics import CdasiError

    try:
        prepared = prepare_files(files)
    except CdasiError as exc:
        return False, f"{files.label}: {exc}. The previous dataset is still in use.", None
    rep = prepared.report
    if rep.ok:
        set_files(files)
        return True, (f"Loaded {files.label}: {prepared.counts['patients']} patients, {prepared.counts['visits']} "
                      f"visits, {len(rep.warnings)} warning(s)."), rep
    return False, (f"{files.label} has {len(rep.errors)} error(s) and was not loaded; the previous dataset is still "
                   "in use. Fix the errors below and upload it again."), rep


# ------------------------------------------------------------------ the library
@st.cache_resource(show_spinner="Opening the library...")
def _library(url: str):
    from analytics.library import Library

    return Library(url)


def library():
    """The department library ($CDASI_DB, or `dashboard --db URL`; else the default SQLite file),
    opened on first use. Raises CdasiError (LibraryError) when it cannot be opened."""
    from analytics.library import default_url

    return _library(default_url())


# ------------------------------------------------------------------ who is using it
def login_problems() -> list[str] | None:
    """None: no login is configured (single-user mode, bound to 127.0.0.1). Else the problems of
    the ``[auth]`` section of the secrets files Streamlit reads (empty: a complete login)."""
    from analytics.library.roles import auth_problems, login_problems as problems

    found = problems([Path(p) for p in st.get_option("secrets.files") or []])
    if found is None:
        try:  # a secrets directory (Kubernetes style) that Streamlit reads and the check above does not
            auth = st.secrets.get("auth")
        except FileNotFoundError:
            return None
        return None if auth is None else auth_problems(auth.to_dict() if hasattr(auth, "to_dict") else dict(auth))
    return found


def login_configured() -> bool:
    return login_problems() is not None


@st.cache_resource(show_spinner=False)
def _roles(path: str):
    from analytics.library.roles import load_roles

    return load_roles(path or None)


def roles():
    """The roles file ($CDASI_ROLES, or `dashboard --roles FILE`), read once per server.
    Raises RolesError when it cannot be used."""
    return _roles(os.environ.get("CDASI_ROLES", ""))


def user() -> tuple[str, str]:
    """Who is using the dashboard and their role. Single-user (no login configured): the
    operating-system user, with every right (the app is bound to 127.0.0.1). Behind a login:
    the address the identity provider vouches for, with its role from the roles file; nobody
    logged in yet has no name and the least rights."""
    from analytics.library import current_user

    if not login_configured():
        return current_user(), "admin"
    if not st.user.is_logged_in:
        return "", "viewer"
    email = st.user.get("email") or st.user.get("sub") or ""
    return str(email), roles().role_of(email)


def can(action: str) -> bool:
    """Whether the current user's role allows ``action`` ("patient_level", "upload", "import",
    "delete", "audit"; see analytics.library.roles.PERMISSIONS)."""
    from analytics.library.roles import allowed

    return allowed(user()[1], action)


def min_cell_floor() -> int | None:
    """The smallest small-cell threshold the current user may see (a viewer: 5; else none)."""
    from analytics.library.roles import VIEWER_MIN_CELL

    return None if can("patient_level") else VIEWER_MIN_CELL


def audit(action: str, detail: str, dataset_id: int | None = None, once: bool = False) -> None:
    """Record an action in the library's audit log, as the current user, about the current
    dataset unless another is named. ``once``: at most once per session for the same action,
    detail and dataset. Behind a login an audit that cannot be written stops the page (no
    unrecorded access); in single-user mode it is a warning."""
    from analytics import CdasiError

    if dataset_id is None:
        dataset_id = current_files().dataset_id
    key = (action, detail, dataset_id, current_files().key)
    done = st.session_state.setdefault("audit.done", set())
    if once and key in done:
        return
    try:
        library().audit(user()[0], action, dataset_id, detail)
    except CdasiError as exc:
        if login_configured():
            st.error(f"The audit log cannot be written, so nothing more is shown: {exc}", icon=":material/policy:")
            st.stop()
        st.toast(f"Not recorded in the audit log: {exc}", icon=":material/policy:")
        return
    done.add(key)


def audit_download(name: str) -> None:
    """A download button's callback: the file and what it was made from."""
    files = current_files()
    audit("download", f"{name} of {files.label or files.names.get('visits', '')}")


def library_files(dataset_id: int) -> DatasetFiles:
    """A stored dataset's files, as an upload's (so every page works on it unchanged)."""
    lib = library()
    ds = lib.dataset(dataset_id)
    files = lib.files(ds.id)
    part = lambda role: (files[role][1], files[role][0]) if role in files else None  # noqa: E731
    return DatasetFiles(part("visits"), part("therapies"), part("mapping"), f"{ds.label} (dataset {ds.id})", ds.id)


@st.cache_resource(max_entries=8, show_spinner="Computing the indicators of every stored export...")
def _history(url: str, stored: tuple, period: str, options: str, _spec):
    from analytics.library.history import quality_history

    return quality_history(_library(url), period, _spec)


def quality_history():
    """The quality indicators with every period drawn from the stored exports (None: the library
    holds none), under the current rule, period, targets and directions."""
    from analytics.library import default_url

    lib = library()
    stored = tuple((d.id, d.sha256) for d in lib.datasets())
    if not stored:
        return None
    sp = spec()
    m = sp.models
    return _history(default_url(), stored, m.period, repr((sp.derive, m.targets, m.better, m.alpha)), sp)


# ------------------------------------------------------------------ options
def derive_options() -> DeriveOptions:
    return st.session_state.setdefault("analysis.options", DeriveOptions())


def set_derive_options(options: DeriveOptions) -> None:
    st.session_state["analysis.options"] = options


def cohort_filter() -> CohortFilter:
    return st.session_state.setdefault("cohort.filter", CohortFilter())


def set_cohort_filter(cohort: CohortFilter) -> None:
    st.session_state["cohort.filter"] = cohort


def reconcile_filter() -> list[str]:
    """Fit the cohort filter to the current dataset (after a new upload, an opened spec or link):
    parts the data cannot apply are dropped or narrowed, and each says so. Returns the notices."""
    from analytics import CdasiError
    from analytics.lines.cohort import fit_filter

    filt = cohort_filter()
    if not filt.active:
        return []
    try:
        options = filter_options()
    except CdasiError:  # the dataset is invalid: the Data page says why, nothing is filtered
        return []
    fitted, notes = fit_filter(filt, options)
    if fitted != filt:
        set_cohort_filter(fitted)
    return notes


def model_options() -> ModelOptions:
    """The model options of the analysis: one object, whose parts the pages set (the mixed
    model's spec on Mixed model, the period on Quality, the adjustment set on Time to response)."""
    opts = st.session_state.setdefault("analysis.model_options", ModelOptions())
    period = st.session_state.get("quality.period", opts.period)
    if period != opts.period:
        opts = dataclasses.replace(opts, period=period)
        st.session_state["analysis.model_options"] = opts
    return opts


def set_model_options(options: ModelOptions) -> None:
    st.session_state["analysis.model_options"] = options


def set_alpha(alpha: float) -> None:
    """Every interval of every analysis becomes a ``1 - alpha`` interval (the spec's ``[models] alpha``)."""
    set_model_options(dataclasses.replace(model_options(), alpha=float(alpha)))


def mixed_spec() -> MixedSpec:
    return model_options().mixed


def set_mixed_spec(spec: MixedSpec) -> None:
    set_model_options(dataclasses.replace(model_options(), mixed=spec))


# ------------------------------------------------------------------ the analysis spec
def pack_choices():
    """The Report page's choices (the spec's ``[pack]``)."""
    from analytics.spec import PackChoices

    return st.session_state.get("analysis.pack") or PackChoices()


def set_pack_choices(choices) -> None:
    st.session_state["analysis.pack"] = choices


def spec():
    """The current analysis as one :class:`~analytics.spec.AnalysisSpec`: the definitions, the
    cohort filters, the model options, the Report page's choices and the dataset's sha256."""
    from analytics.spec import AnalysisSpec

    return AnalysisSpec(derive_options(), cohort_filter(), model_options(), pack_choices(),
                        current_files().visits_sha256)


def stamp(scope: str = "cohort", title: str = ""):
    """What a download from a page says of itself: the current analysis (``scope`` as in
    :meth:`~analytics.spec.AnalysisSpec.stamp`) and the dataset's file name and hash."""
    files = current_files()
    data = f"{files.names['visits']} (sha256 {files.visits_sha256[:16]}...)"
    return spec().stamp(scope, data, title)


# widgets that show a part of the spec: dropped when a spec is opened, so that they show the new one
_SPEC_WIDGETS = ("sidebar.alpha", "report.share", "report.figures", "report.tables", "quality.period")


def apply_spec(new) -> list[str]:
    """Make ``new`` the current analysis on every page. Returns notices (e.g. a spec saved for
    other data)."""
    set_derive_options(new.derive)
    set_cohort_filter(new.cohort)
    set_model_options(new.models)
    set_pack_choices(new.pack)
    for key in _SPEC_WIDGETS:
        st.session_state.pop(key, None)
    for key in [k for k in st.session_state if str(k).startswith(("quality.target.", "quality.better."))]:
        st.session_state.pop(key, None)
    st.session_state["quality.period"] = new.models.period
    warning = new.data_warning(current_files().visits_sha256)
    return [warning] if warning else []


def open_spec_text(text: str, name: str = "spec") -> tuple[bool, str]:
    """Parse and apply a spec file's text; (ok, message). A bad spec changes nothing."""
    from analytics.spec import AnalysisSpec

    return _open(lambda: AnalysisSpec.from_toml(text, name), name)


def open_spec_query(params: dict) -> tuple[bool, str]:
    """Apply the analysis a link's query parameters carry (:meth:`AnalysisSpec.from_query`)."""
    from analytics.spec import AnalysisSpec

    return _open(lambda: AnalysisSpec.from_query(params), "the link")


def _open(parse, name: str) -> tuple[bool, str]:
    from analytics import CdasiError

    try:
        new = parse()
    except CdasiError as exc:
        return False, f"{exc}. The current analysis is unchanged."
    notes = apply_spec(new)
    return True, f"Opened {name}: " + "; ".join(new.describe()) + "".join(f". Note: {n}" for n in notes)


def sync_url() -> None:
    """Keep the page URL equal to the current analysis, so that a copied link reopens it."""
    wanted = spec().to_query()
    if {k: st.query_params[k] for k in st.query_params} != wanted:
        st.query_params.from_dict(wanted)


def timeline_patient() -> str | None:
    return st.session_state.get("timeline.patient")


def set_timeline_patient(patient_id: str) -> None:
    st.session_state["timeline.patient"] = patient_id


# ------------------------------------------------------------------ cached analytics
@st.cache_resource(max_entries=16, show_spinner="Deriving therapy lines...")
def _derivation(key: str, opts: str, _prepared: Prepared, _options: DeriveOptions) -> Derivation:
    return derive(_prepared, _options)


def derivation() -> Derivation:
    files, options = current_files(), derive_options()
    prepared = current()
    prepared.raise_if_invalid()
    return _derivation(files.key, repr(options), prepared, options)


@st.cache_resource(max_entries=32, show_spinner="Applying the cohort filters...")
def _cohort(key: str, opts: str, filt: str, _derivation: Derivation, _prepared: Prepared,
            _filter: CohortFilter) -> FilteredCohort:
    return apply_filter(_derivation, _prepared, _filter)


def cohort() -> FilteredCohort:
    files, options, filt = current_files(), derive_options(), cohort_filter()
    return _cohort(files.key, repr(options), repr(filt), derivation(), current(), filt)


@st.cache_resource(max_entries=8)
def _filter_options(key: str, opts: str, _derivation: Derivation, _prepared: Prepared) -> dict:
    return options_for(_derivation, _prepared)


def filter_options() -> dict:
    return _filter_options(current_files().key, repr(derive_options()), derivation(), current())


def _keys() -> tuple[str, str, str]:
    return current_files().key, repr(derive_options()), repr(cohort_filter())


@st.cache_resource(max_entries=32, show_spinner="Building the analysis table...")
def _table(key: str, opts: str, filt: str, _cohort: FilteredCohort, _prepared: Prepared):
    return analysis_table(_cohort.derivation, _prepared)


def table():
    return _table(*_keys(), cohort(), current())


@st.cache_resource(max_entries=64, show_spinner=False)
def _result(key: str, opts: str, filt: str, mopts: str, name: str, _ctx):
    from analytics.registry import entry, fit_entry

    return fit_entry(entry(name), _ctx)


def result(name: str):
    """One registered analysis (:mod:`analytics.registry`) on the current dataset, definitions,
    cohort filters and model options, cached on all four. Analyses of the whole export
    (quality) ignore the cohort filters, and so does their cache key."""
    from analytics.registry import FitContext, entry

    e = entry(name)
    key, opts, filt = _keys()
    if e.whole_export:
        filt = ""
    mopts = model_options()
    full = derivation()
    ctx = FitContext(current(), full if e.whole_export else cohort().derivation, full, mopts)
    with st.spinner(f"Fitting: {e.title}..."):
        return _result(key, opts, filt, repr(mopts), name, ctx)


def files_for_python() -> tuple[str, str]:
    """File names as a researcher would pass them, for the reproduce snippets."""
    names = current_files().names
    return names.get("visits", "visits.csv"), names.get("therapies", "")


def pack_call(pack_options):
    """The build_pack call that makes the pack of the current analysis (for Reproduce)."""
    from analytics.protocol import Call

    visits, therapies = files_for_python()
    return Call("analytics.outputs.pack", "build_pack", (), {
        "visits": visits, "out": "pack", "therapies": therapies or None, "mapping": None,
        "derive_options": derive_options(), "model_options": model_options(), "cohort": cohort_filter(),
        "options": pack_options})


def build_pack_zip(pack_options, progress=None) -> tuple[bytes, dict, list[str]]:
    """Build the meeting pack for the current dataset, options and filters; return the ZIP bytes,
    the manifest and the messages. The uploaded files and the pack live in a temporary folder
    that is removed before this returns."""
    import tempfile

    from analytics.outputs.pack import build_pack, zip_dir

    files = current_files()
    with tempfile.TemporaryDirectory(prefix="cdasi-pack-") as tmp:
        tmp_path = Path(tmp)
        paths = {}
        for kind, part in (("visits", files.visits), ("therapies", files.therapies), ("mapping", files.mapping)):
            if part is not None:
                (tmp_path / "in").mkdir(exist_ok=True)
                paths[kind] = tmp_path / "in" / Path(part[1]).name
                paths[kind].write_bytes(part[0])
        result = build_pack(paths["visits"], tmp_path / "pack", paths.get("therapies"), paths.get("mapping"),
                            derive_options(), model_options(), cohort_filter(), pack_options, progress)
        mc = pack_options.min_cell
        audit("pack", f"meeting pack of {files.label or files.names['visits']}: "
                      + (f"shared, counts below {mc} suppressed" if mc else "internal, not suppressed"))
        return zip_dir(result.out), result.manifest, result.messages


def quality():
    """Quality indicators on the whole dataset (the cohort filters do not apply: they describe care)."""
    return result("quality")


def summary_headings() -> list[str]:
    """The sections of a meeting pack, in registry order (one heading per group of analyses)."""
    from analytics.registry import entries

    return list(dict.fromkeys(e.heading for e in entries()))


def contents(min_cell: int, heading: str | None = None):
    """What a shared meeting pack shows of the current analysis (:func:`analytics.outputs.pack.collect`
    with ``min_cell``): the registered analyses fitted (cached, as on the other pages), tables
    suppressed, patient-level tables and figures left out. ``heading``: only that section's
    analyses are fitted (with the Kaplan-Meier counts, which decide the arms too small to draw)."""
    from types import SimpleNamespace

    from analytics.outputs.pack import collect
    from analytics.registry import entries, figures_of, tables_of

    mine = [e for e in entries() if heading is None or e.heading == heading]
    models = {e.name: result(e.name) for e in mine}
    if heading is None:
        return collect(SimpleNamespace(models=models), min_cell)
    models.setdefault("km", result("km"))
    shown = collect(SimpleNamespace(models=models), min_cell,
                    figures=tuple(n for e in mine for n in figures_of(e, models[e.name])),
                    tables=tuple(n for e in mine for n in tables_of(e, models[e.name])))
    shown.sections = [sec for sec in shown.sections if sec.heading == heading]
    return shown


@st.cache_resource(max_entries=4, show_spinner="Analysing both exports...")
def _comparison(url: str, a: tuple, b: tuple, spec_text: str, _spec):
    from analytics.outputs.compare import compare_datasets

    return compare_datasets(_library(url), a[0], b[0], _spec)


def comparison(id_a: int, id_b: int):
    """Two stored datasets compared under the current analysis (cached on both datasets' hashes
    and the spec's text)."""
    from analytics.library import default_url

    lib = library()
    a, b = lib.dataset(id_a), lib.dataset(id_b)
    sp = spec()
    return _comparison(default_url(), (a.id, a.sha256), (b.id, b.sha256), sp.to_toml(), sp)
