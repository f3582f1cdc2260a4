"""The ``cdasi-outcomes`` command line (contract.md section 3).

Exit codes: 0 success (warnings allowed), 1 the data is invalid, 2 unusable arguments or an
unreadable file, 3 an internal error (a bug: please report it); 130 after Ctrl-C, 143 after
SIGTERM (``analyze`` and ``report``: cleaned up as after Ctrl-C). Never a traceback, unless ``CDASI_DEBUG=1``
is set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import __version__
from .errors import CdasiError, InputError, InvalidDataError, OptionError
from .lines.options import DeriveOptions, ResponseRule, parse_arms

__all__ = ["main", "build_parser"]


def _add_inputs(p: argparse.ArgumentParser, stored: bool = False) -> None:
    if stored:  # analyze and report: the files, or a dataset of the library
        p.add_argument("visits", metavar="VISITS", nargs="?",
                       help="the visit export: CSV (comma, semicolon or tab), XLSX or Parquet (or --dataset ID)")
        p.add_argument("--dataset", metavar="ID", type=int, default=None,
                       help="a dataset of the library instead of VISITS (see `cdasi-outcomes datasets`)")
        _add_db(p)
    else:
        p.add_argument("visits", metavar="VISITS", help="the visit export: CSV (comma, semicolon or tab), XLSX or Parquet")
    p.add_argument("--therapies", metavar="F", help="optional therapy episodes file; wins over systemic_therapy")
    p.add_argument("--mapping", metavar="F", help="optional TOML mapping of header names and drug synonyms")
    p.add_argument("--date-format", choices=("auto", "ymd", "dmy", "mdy"), default=None,
                   help="order of day and month in non-ISO dates: dmy (dd.mm.yyyy), mdy, or ymd (ISO only); "
                        "default: the mapping file's date_format, else auto (a day above 12 decides)")


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="URL", default=None,
                   help="the library: an SQLAlchemy URL (sqlite:///path or postgresql+psycopg://user@host/db); "
                        "default: $CDASI_DB, else ~/.local/share/cdasi-outcomes/library.sqlite")


def _add_definitions(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", metavar="FILE",
                   help="the analysis spec (TOML, contract section 4): rule, arms, cohort filters, models, pack; "
                        "a flag given here overrides the spec's value")
    p.add_argument("--response", metavar="RULE", default=None,
                   help="response rule: points:N, percent:P, atmost:S or clear (default: points:4)")
    p.add_argument("--confirm", action=argparse.BooleanOptionalAction, default=None,
                   help="a response must be confirmed at the next follow-up visit (--no-confirm overrides a spec)")
    p.add_argument("--arms", metavar="LIST", default=None,
                   help="comma-separated arms (default: MMF,IVIG,JAKi; agent codes such as MTX or HCQ allowed)")
    p.add_argument("--period", choices=("quarter", "year"), default=None,
                   help="calendar period of the quality indicators (default: year)")
    p.add_argument("--alpha", type=float, default=None, metavar="A",
                   help="every interval of every model and figure is 1 - A (default: 0.05, 95%% intervals)")
    p.add_argument("--scheme", metavar="FILE", default=None,
                   help="the department's stepwise scheme (TOML, contract section 6: ordered steps, their agents, "
                        "the assessment time); default: the scheme that ships with the package")


def _add_jobs(p: argparse.ArgumentParser) -> None:
    from .parallel import AUTO_MAX_VISITS

    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help=f"fit the models on N processes at once (default: 2 on a machine with 2 cores or more, "
                        f"1 above {AUTO_MAX_VISITS:,} visits; 1: in this process only). The results do not depend on it")


def _jobs(args) -> int | None:
    if args.jobs is not None and args.jobs < 1:
        raise OptionError(f"--jobs {args.jobs}: give 1 or more processes")
    return args.jobs  # None: chosen when the size of the export is known


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdasi-outcomes",
        description="CDASI outcome analytics for cutaneous and clinically amyopathic dermatomyositis.",
        epilog="Exit codes: 0 ok, 1 invalid data, 2 unusable arguments or unreadable file, 3 internal error.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("validate", help="check an export and print a report of problems",
                       description="Check a visit export (and therapies file) and print every problem found: "
                                   "rule, column, rows and example patient ids.")
    _add_inputs(p)
    p.add_argument("--format", choices=("text", "json"), default="text", help="report format (default: text)")

    p = sub.add_parser("analyze", help="derive therapy lines and responses; write results.json, lines.csv, "
                                       "trajectories.csv",
                       description="Validate the export, derive therapy lines, baselines, follow-up windows and "
                                   "response events, and write DIR/results.json, DIR/lines.csv and "
                                   "DIR/trajectories.csv (and DIR/attrition.csv).")
    _add_inputs(p, stored=True)
    _add_definitions(p)
    _add_jobs(p)
    p.add_argument("--out", metavar="DIR", required=True, help="output folder (created if needed)")

    p = sub.add_parser("report", help="write the meeting pack: figures, tables, report, manifest",
                       description="Write the meeting pack into DIR: figures (PNG, SVG, PDF through Chromium, and "
                                   "interactive HTML), tables (CSV and one XLSX), a self-contained report.html (and "
                                   "report.pdf), manifest.json, and with --pptx a slide deck.")
    _add_inputs(p, stored=True)
    _add_definitions(p)
    p.add_argument("--min-cell", type=int, metavar="N", default=None,
                   help="small-cell suppression for sharing: counts below N show as <N, no patient-level data "
                        "(off by default; 5 or 11 are usual)")
    p.add_argument("--pptx", action="store_true", help="also write meeting.pptx, one figure per slide")
    _add_jobs(p)
    p.add_argument("--out", metavar="DIR", required=True, help="output folder (created if needed)")

    p = sub.add_parser("dashboard", help="start the Streamlit dashboard on 127.0.0.1 (sample cohort by default)",
                       description="Start the dashboard in your browser, bound to 127.0.0.1, on VISITS or on the "
                                   "synthetic sample cohort. No telemetry; uploads are held in memory (a meeting "
                                   "pack copies them to a temporary folder that is removed afterwards).")
    p.add_argument("visits", metavar="VISITS", nargs="?", help="the visit export (default: the sample cohort)")
    p.add_argument("--therapies", metavar="F", help="optional therapy episodes file")
    p.add_argument("--mapping", metavar="F", help="optional TOML mapping of header names and drug synonyms")
    p.add_argument("--port", type=int, default=8501, metavar="N", help="port (default: 8501)")
    _add_db(p)
    p.add_argument("--host", default="127.0.0.1", metavar="ADDR",
                   help="address to bind (default: 127.0.0.1). Any other address serves health data to the "
                        "network, so it needs a login ([auth] in the secrets file) or --insecure-no-auth")
    p.add_argument("--secrets", metavar="FILE",
                   help="Streamlit secrets file whose [auth] section configures the OIDC login (default: "
                        "./.streamlit/secrets.toml or ~/.streamlit/secrets.toml; none: single-user mode)")
    p.add_argument("--roles", metavar="FILE",
                   help="TOML file of e-mail addresses per role (viewer, analyst, admin) for the login; "
                        "default $CDASI_ROLES; without one everyone who logs in is a viewer")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="serve a non-loopback --host without a login (everyone reaching it has every right)")

    p = sub.add_parser("import", help="validate an export and keep it in the library",
                       description="Validate the export, then store its files, their sha256, the validation report, "
                                   "the label, who and when, in one transaction. An invalid export stores nothing "
                                   "(exit 1, as validate); identical content is not stored again.")
    _add_inputs(p)
    p.add_argument("--label", metavar="TEXT", required=True, help='a name for the export, e.g. "2025 Q4 export"')
    _add_db(p)

    p = sub.add_parser("datasets", help="list the library's datasets",
                       description="List the stored datasets: id, label, visits sha256, when and by whom imported, "
                                   "patients and visits.")
    _add_db(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of objects")

    p = sub.add_parser("audit", help="print the library's append-only audit log",
                       description="Print the audit log, oldest first: time, user, action, dataset and detail.")
    _add_db(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of objects")

    p = sub.add_parser("compare", help="two datasets of the library side by side: compare.csv and compare.html",
                       description="Analyse datasets ID_A (the earlier) and ID_B with the same spec and put them side "
                                   "by side: quality indicators with the change and whether B is beyond A's control "
                                   "limits; patients, visits and lines added; outcomes per arm; and the visits of A "
                                   "whose scores or dates differ in B. Writes DIR/compare.csv and DIR/compare.html.")
    p.add_argument("id_a", metavar="ID_A", type=int, help="the earlier dataset")
    p.add_argument("id_b", metavar="ID_B", type=int, help="the later dataset")
    _add_db(p)
    p.add_argument("--spec", metavar="FILE", help="the analysis spec both are analysed with (default: the defaults)")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder (created if needed)")

    p = sub.add_parser("delete", help="remove a dataset's data from the library (its audit records stay)",
                       description="Remove the dataset's files and record from the library. Its audit records are "
                                   "kept, and the deletion is recorded.")
    p.add_argument("id", metavar="ID", type=int, help="the dataset's id (see `cdasi-outcomes datasets`)")
    _add_db(p)

    p = sub.add_parser("sample", help="write a synthetic cohort in the input format",
                       description="Write a seeded synthetic cohort (visits.csv and therapies.csv) calibrated on "
                                   "published CADM series. Synthetic: never real patients.")
    p.add_argument("--patients", type=int, default=400, metavar="N", help="number of patients (default: 400)")
    p.add_argument("--seed", type=int, default=20210301, metavar="S", help="random seed (default: 20210301)")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder (created if needed)")
    return parser


def _cmd_validate(args) -> int:
    from .pipeline import load

    prepared, _ = load(args.visits, args.therapies, args.mapping, args.date_format)
    rep = prepared.report
    if args.format == "json":
        print(json.dumps({"input": prepared.sources, "counts": prepared.counts} | rep.to_dict(), indent=2))
    else:
        c = prepared.counts
        print(f"{Path(args.visits).name}: {c.get('rows_read', 0)} rows, {c.get('visits', 0)} visits, "
              f"{c.get('patients', 0)} patients")
        print(rep.to_text())
        print("VALID" if rep.ok else "INVALID", "-", f"{len(rep.errors)} error(s), {len(rep.warnings)} warning(s)")
    return 0 if rep.ok else 1


def _library(args):
    from .library import Library

    return Library(args.db)


def _stored(handler, action: str):
    """Run ``handler`` on VISITS, or on ``--dataset ID`` checked out of the library (its files
    under their original names, removed afterwards), recording ``action`` in the audit log."""
    def run(args) -> int:
        if (args.visits is None) == (args.dataset is None):
            raise OptionError("give either VISITS or --dataset ID")
        if args.dataset is None:
            if args.db:
                raise OptionError("--db goes with --dataset ID")
            return handler(args)
        if args.therapies or args.mapping:
            raise OptionError("--dataset ID brings its own therapies and mapping files; leave out --therapies and "
                              "--mapping")
        from .library import current_user

        lib = _library(args)
        ds = lib.dataset(args.dataset)
        if args.date_format is None:  # read the stored files as they were read at import
            args.date_format = lib.date_format(ds.id)
        with lib.checked_out(ds.id) as paths:
            args.visits, args.therapies, args.mapping = (str(paths[r]) if r in paths else None
                                                         for r in ("visits", "therapies", "mapping"))
            print(f"Dataset {ds.id}: {ds.label} (imported {ds.imported_at} by {ds.imported_by})", file=sys.stderr)
            code = handler(args)
        lib.audit(current_user(), action, ds.id, f"{action} into {Path(args.out).resolve()} (exit {code})")
        return code
    return run


def _cmd_import(args) -> int:
    from .library import current_user

    lib = _library(args)
    try:
        result = lib.import_files(args.visits, args.therapies, args.mapping, args.label, current_user(),
                                  args.date_format)
    except InvalidDataError as exc:
        print(exc.report.to_text(), file=sys.stderr)
        print("INVALID - nothing was stored; fix the errors above (or run `cdasi-outcomes validate`)", file=sys.stderr)
        return 1
    d = result.dataset
    if result.created:
        print(f"Imported dataset {d.id}: {d.label} ({d.patients} patients, {d.visits} visits, visits sha256 "
              f"{d.sha256[:16]}...)")
    else:
        print(f"Nothing new: this content is already dataset {d.id} ({d.label}, imported {d.imported_at} by "
              f"{d.imported_by})")
    return 0


def _cmd_datasets(args) -> int:
    rows = _library(args).datasets()
    if args.json:
        print(json.dumps([d.to_dict() for d in rows], indent=2))
        return 0
    if not rows:
        print("The library holds no dataset; `cdasi-outcomes import VISITS --label TEXT` adds one.")
    for d in rows:
        print(f"{d.id:4d}  {d.label}  ({d.patients} patients, {d.visits} visits)  imported {d.imported_at} by "
              f"{d.imported_by}  visits sha256 {d.sha256[:16]}...")
    return 0


def _cmd_audit(args) -> int:
    rows = _library(args).audit_log()
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return 0
    for r in rows:
        ds = f"dataset {r.dataset_id}" if r.dataset_id is not None else "-"
        print(f"{r.time}  {r.user}  {r.action}  {ds}  {r.detail}")
    return 0


def _cmd_compare(args) -> int:
    from .library import current_user
    from .outputs.compare import compare_datasets, write_comparison
    from .spec import AnalysisSpec

    spec = AnalysisSpec.load(args.spec) if args.spec else AnalysisSpec()
    lib = _library(args)
    c = compare_datasets(lib, args.id_a, args.id_b, spec, progress=lambda m: print(f"  {m}...", file=sys.stderr,
                                                                                 flush=True))
    paths = write_comparison(c, args.out)
    lib.audit(current_user(), "compare", args.id_b, f"dataset {args.id_a} against {args.id_b} into "
                                                    f"{Path(args.out).resolve()}")
    beyond = c.quality[c.quality["beyond_limits"] == True]  # noqa: E712 (None: no limits)
    print(f"Dataset {args.id_a} ({c.a['label']}) against {args.id_b} ({c.b['label']}): "
          f"{len(beyond)} quality indicator(s) beyond the earlier export's limits, "
          f"{len(c.changes)} visit(s) changed retroactively.")
    for r in beyond.itertuples():
        print(f"  {r.name}: {r.a:.1f} -> {r.b:.1f} {r.unit} ({r.direction})")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0


def _cmd_delete(args) -> int:
    from .library import current_user

    gone = _library(args).delete(args.id, current_user())
    print(f"Deleted dataset {gone.id} ({gone.label}): its files and record are gone; its audit records stay.")
    return 0


def _cmd_analyze(args) -> int:
    from .parallel import Helper
    from .pipeline import PARTIAL_PREFIX, analyze, load, write_outputs, write_tables

    spec = _spec(args)  # checked before the data is read
    options = spec.derive
    workers = _jobs(args)
    t0 = time.perf_counter()
    # the helper process imports the modelling libraries while this one reads the export, and fits
    # while this one writes the line tables (into a staging folder, moved into place at the end)
    helper = Helper.start(f"{__package__}.stats", workers, Helper.visits_in(args.visits))
    # a service manager's stop: clean up as Ctrl-C does (set after the fork: the helper keeps
    # the default, to end at once when it is terminated)
    previous = _terminate_on_sigterm()
    staging = Path(args.out) / f"{PARTIAL_PREFIX}{os.getpid()}"
    finished = False
    try:
        prepared, timings = load(args.visits, args.therapies, args.mapping, args.date_format)
        print("Deriving lines and fitting the analyses:", file=sys.stderr, flush=True)
        analysis = analyze(prepared, timings=timings, spec=spec, workers=workers, progress=_progress, helper=helper,
                           meanwhile=lambda derivation: write_tables(derivation, staging), lean=True)
        for note in analysis.notes:
            print(f"warning: {note}", file=sys.stderr)
        analysis.timings_s["total"] = time.perf_counter() - t0
        paths = write_outputs(analysis, args.out, tables=staging)
        finished = True
    except InvalidDataError as exc:
        print(exc.report.to_text(), file=sys.stderr)
        print("INVALID - nothing was written; fix the errors above (or run `cdasi-outcomes validate`)",
              file=sys.stderr)
        return 1
    finally:
        if helper is not None:
            helper.close(stop=not finished)
        if staging.exists():
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
        _restore_sigterm(previous)
    lines = analysis.derivation.to_dict()
    print(f"{prepared.counts['patients']} patients, {prepared.counts['visits']} visits, "
          f"{lines['derived']} lines derived, {lines['included']} included, {lines['events']} responses "
          f"({options.response}{', confirmed' if options.confirm else ''}).")
    if spec.cohort.active:
        print("Cohort filters: " + "; ".join(spec.cohort.describe()) + " (the quality indicators use the whole export).")
    _print_models(analysis)
    n_warn = len(prepared.report.warnings) + len(analysis.models.warnings)
    if n_warn:
        print(f"{n_warn} warning(s); see results.json (\"warnings\") or `cdasi-outcomes validate`.")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0


class Terminated(BaseException):
    """SIGTERM arrived: raised where the command is, so that its cleanup runs (as for Ctrl-C)."""


def _terminate_on_sigterm():
    """Make SIGTERM raise :class:`Terminated` in this (the main) thread; returns the previous
    handler, or None where it cannot be set (another thread, a platform without SIGTERM)."""
    import signal

    def raise_terminated(signum, _frame):
        raise Terminated(signum)

    try:
        return signal.signal(signal.SIGTERM, raise_terminated)
    except (ValueError, AttributeError, OSError):
        return None


def _restore_sigterm(previous) -> None:
    if previous is not None:
        import signal

        signal.signal(signal.SIGTERM, previous)


def _progress(title: str) -> None:
    """A fitting step, on stderr (a module function: it pickles for the helper process). One
    write of the whole line: two processes print at once, and print() writes the text and the
    newline separately, so lines could interleave."""
    sys.stderr.write(f"  {title}...\n")
    sys.stderr.flush()


def _spec(args):
    """The analysis spec of ``--spec`` (or the defaults), with every flag given on the command
    line overriding its value."""
    import dataclasses

    from .spec import AnalysisSpec

    spec = AnalysisSpec.load(args.spec) if args.spec else AnalysisSpec()
    d, m = spec.derive, spec.models
    derive = DeriveOptions(ResponseRule.parse(args.response) if args.response else d.response,
                           d.confirm if args.confirm is None else args.confirm,
                           parse_arms(args.arms) if args.arms else d.arms,
                           d.baseline_window_days)
    models = dataclasses.replace(m, period=args.period or m.period, alpha=m.alpha if args.alpha is None else args.alpha)
    if getattr(args, "scheme", None):
        from .lines.scheme import Scheme

        models = dataclasses.replace(models, scheme=Scheme.load(args.scheme))
    pack = spec.pack
    if getattr(args, "min_cell", None) is not None:
        pack = dataclasses.replace(pack, min_cell=args.min_cell)
    return AnalysisSpec(derive, spec.cohort, models, pack, spec.data_sha256)


def _print_models(analysis) -> None:
    """What each registered analysis prints (its ``cli`` lines), in registry order."""
    from .registry import Rendered, entries

    for e in entries():
        if e.cli is not None and e.name in analysis.models:
            result = analysis.models[e.name]
            for line in result.cli if isinstance(result, Rendered) else e.cli(result):
                print(line)
    print("Observational data: see results.json \"comparison_note\" before reading arm differences as effects.")


def _cmd_report(args) -> int:
    from .outputs.pack import PackOptions, build_pack

    spec = _spec(args)
    workers = _jobs(args)
    previous = _terminate_on_sigterm()  # a service manager's stop: clean up as Ctrl-C does
    try:
        result = build_pack(args.visits, args.out, args.therapies, args.mapping, options=PackOptions(pptx=args.pptx),
                            date_format=args.date_format, workers=workers,
                            spec=spec, progress=lambda m: print(f"  {m}...", file=sys.stderr, flush=True))
    except InvalidDataError as exc:
        print(exc.report.to_text(), file=sys.stderr)
        print("INVALID - no pack was written; fix the errors above", file=sys.stderr)
        return 1
    finally:
        _restore_sigterm(previous)
    files = result.manifest["files"]
    mc = spec.pack.min_cell
    print(f"Meeting pack in {result.out}: {len(files)} files"
          + (f", small cells below {mc} suppressed" if mc else " (internal: not suppressed)"))
    for m in result.messages:
        print(f"note: {m}")
    print(f"  report: {result.out / 'report.html'}")
    print(f"  manifest: {result.out / 'manifest.json'}")
    return 0


def _cmd_sample(args) -> int:
    from .sample import write_sample

    if args.patients < 1:
        raise CdasiError("--patients must be at least 1")
    paths = write_sample(args.out, n_patients=args.patients, seed=args.seed)
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0


def dashboard_command(args) -> list[str]:
    """The streamlit command line that `cdasi-outcomes dashboard` runs (through
    :mod:`dashboard.serve`, which imports what the first page needs while the server starts)."""
    app = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
    return [sys.executable, "-m", "dashboard.serve", "run", str(app), "--server.address", args.host,
            "--server.port", str(args.port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.maxUploadSize", "200", "--server.fileWatcherType", "none", "--theme.base", "light"] + (
        ["--secrets.files", str(Path(args.secrets).resolve())] if getattr(args, "secrets", None) else [])


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _check_login(args) -> str:
    """The login the dashboard will serve with ("" for none), checked before it starts: a login
    configured but incomplete, an unreadable roles file, or a non-loopback --host without a login
    (and without --insecure-no-auth) is refused here, in the terminal."""
    from .library.roles import load_roles, login_problems, secrets_files

    if args.secrets and not Path(args.secrets).is_file():
        raise InputError(f"--secrets {args.secrets} does not exist")
    files = secrets_files(args.secrets)
    problems = login_problems(files)
    if problems:
        raise OptionError("the login is configured but incomplete (" + "; ".join(problems) + "); see the README, "
                          "section Deployment")
    if problems is None:
        if args.roles:
            raise OptionError("--roles needs a login: add an [auth] section to the secrets file (see the README, "
                              "section Deployment)")
        if args.host not in LOOPBACK and not args.insecure_no_auth:
            raise OptionError(f"--host {args.host} would serve health data to other machines without a login. "
                              "Configure one ([auth] in .streamlit/secrets.toml or --secrets FILE; see the README, "
                              "section Deployment), or pass --insecure-no-auth to do it anyway")
        return ""
    roles = load_roles(args.roles)  # fail early on a malformed roles file
    where = ", ".join(str(f) for f in files if f.is_file())
    return f"login required ([auth] from {where}); roles: {roles.source}"


def _cmd_dashboard(args) -> int:
    from .ingest.io import load_mapping

    env = dict(os.environ)
    for name, value in (("CDASI_VISITS", args.visits), ("CDASI_THERAPIES", args.therapies),
                        ("CDASI_MAPPING", args.mapping)):
        env.pop(name, None)
        if value:
            path = Path(value).resolve()
            if not path.is_file():
                raise InputError(f"{value} does not exist")
            env[name] = str(path)
    if args.db:
        env["CDASI_DB"] = args.db  # the Data page's library
    if args.mapping:
        load_mapping(args.mapping)  # fail early, in the terminal, on a malformed mapping
    if not (0 < args.port < 65536):
        raise OptionError(f"--port must be between 1 and 65535, not {args.port}")
    login = _check_login(args)
    if args.roles:
        env["CDASI_ROLES"] = str(Path(args.roles).resolve())
    if args.host not in LOOPBACK:
        print(f"warning: binding to {args.host} makes the dashboard, and the health data in it, reachable from "
              "other machines" + ("" if login else " by anyone, without a login (--insecure-no-auth)"),
              file=sys.stderr)
    print(f"cdasi-outcomes dashboard on http://{args.host}:{args.port} (Ctrl+C to stop)"
          + (f"; {login}" if login else "; single-user mode (no login)"), flush=True)
    return _become(dashboard_command(args), env)


def _become(cmd: list[str], env: dict) -> int:
    """Replace this process with ``cmd`` (exec): the server then is the process a service manager,
    ``docker stop`` or a test's teardown started, so SIGTERM and SIGINT reach it and stop it.
    Where exec is not available (Windows), run it as a child that gets those signals passed on."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execve(cmd[0], cmd, env)  # does not return
    import signal
    import subprocess

    child = subprocess.Popen(cmd, env=env)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
    return child.wait()


def main(argv: list[str] | None = None) -> int:
    from .heap import small_pages

    small_pages()  # before numpy is imported (see analytics.heap)
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = {"validate": _cmd_validate, "analyze": _stored(_cmd_analyze, "analyze"),
               "report": _stored(_cmd_report, "pack"), "sample": _cmd_sample, "dashboard": _cmd_dashboard,
               "import": _cmd_import, "datasets": _cmd_datasets, "audit": _cmd_audit, "delete": _cmd_delete,
               "compare": _cmd_compare}[args.command]
    try:
        return handler(args)
    except CdasiError as exc:
        print(f"cdasi-outcomes {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated (SIGTERM)", file=sys.stderr)
        return 143
    except Exception as exc:  # a bug: say so plainly, without a traceback
        if os.environ.get("CDASI_DEBUG"):
            raise
        print(f"cdasi-outcomes {args.command}: internal error: {type(exc).__name__}: {exc}\n"
              "This is a bug in cdasi-outcomes; rerun with CDASI_DEBUG=1 for details and please report it.",
              file=sys.stderr)
        return 3


def run() -> None:
    """The ``cdasi-outcomes`` command: :func:`main`, then exit. After ``analyze`` everything is
    written and closed, so the process ends at once (``os._exit``) instead of freeing the cohort's
    objects one by one, which at 100,000 patients takes seconds. Every other command exits
    normally: ``report`` and ``dashboard`` have child processes and exit handlers to run."""
    argv = sys.argv[1:]
    code = main(argv)
    if argv[:1] == ["analyze"]:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
