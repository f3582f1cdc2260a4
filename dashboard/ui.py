"""Shared page elements: figures with downloads, tables with downloads, warnings, the
reproduce expander, provenance, and the one place that turns known errors into st.error."""

from __future__ import annotations

import contextlib
import shutil
import traceback
from functools import partial

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analytics import CdasiError
from analytics.display.export import csv_bytes, xlsx_bytes
from analytics.display.provenance import figure_bytes, figure_html, kaleido_render

from . import state

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def chrome_path() -> str | None:
    """A Chrome/Chromium for kaleido's PNG and SVG export, or None."""
    return next((p for p in map(shutil.which, _BROWSERS) if p), None)


@st.cache_resource(show_spinner=False)
def _kaleido_session() -> bool:
    """One Chromium session for every image download of this server (started on first use)."""
    import kaleido

    from analytics.display.provenance import KALEIDO_OPTIONS

    kaleido.start_sync_server(silence_warnings=True, **KALEIDO_OPTIONS)
    return True


def _image(fig: go.Figure, fmt: str, stamp) -> bytes:
    _kaleido_session()
    return figure_bytes(fig, fmt, stamp, kaleido_render)


def figure(fig, name: str, key: str, select: bool = False, scope: str = "cohort"):
    """Show a figure with PNG (print resolution), SVG and HTML downloads and a journal export.
    Returns the selection event when ``select`` (points carry patient ids in customdata).

    ``fig``: the figure, or the function that makes it (then a journal export builds it again at
    the journal column's width, so that ticks and labels are chosen for that width). Each
    download carries the analysis behind it (``scope``: see :func:`state.stamp`): a caption
    under the figure and the file's metadata."""
    make = fig if callable(fig) else None
    fig = fig() if make is not None else fig
    event = st.plotly_chart(fig, width="stretch", key=f"{key}.chart", theme=None,  # the export's look, not Streamlit's
                            on_select="rerun" if select else "ignore",
                            selection_mode=("points",) if select else ("points", "box", "lasso"))
    chrome = chrome_path()
    stamp = state.stamp(scope, _title(fig, name))
    row = _downloads()
    help_missing = "PNG and SVG need a Chromium: `apt-get install chromium` (HTML and tables export without it)."
    row.download_button("PNG", partial(_image, fig, "png", stamp), f"{name}.png", "image/png", key=f"{key}.png",
                        disabled=chrome is None, help=help_missing if chrome is None else "300 dpi-ready PNG",
                        on_click=state.audit_download, args=(f"{name}.png",), icon=":material/download:")
    row.download_button("SVG", partial(_image, fig, "svg", stamp), f"{name}.svg", "image/svg+xml",
                        key=f"{key}.svg", disabled=chrome is None,
                        help=help_missing if chrome is None else "vector SVG", icon=":material/download:",
                        on_click=state.audit_download, args=(f"{name}.svg",))
    row.download_button("HTML", partial(figure_html, fig, stamp), f"{name}.html", "text/html", key=f"{key}.html",
                        help="interactive, self-contained HTML", icon=":material/download:",
                        on_click=state.audit_download, args=(f"{name}.html",))
    with row.popover("Journal", icon=":material/article:", help="Single or double column width in mm, 300 or 600 "
                     "dpi, PNG, TIFF or PDF, a font size, your own title and axis labels"):
        _journal(make or fig, fig, name, key, stamp, chrome is not None, help_missing)
    return event if select else None


def _journal(make, fig: go.Figure, name: str, key: str, stamp, have_chrome: bool, help_missing: str) -> None:
    """The journal export of one figure (:mod:`analytics.display.journal`)."""
    from analytics import OptionError
    from analytics.display.journal import COLUMN_MM, JOURNAL_FORMATS, Journal, axis_titles, check_fits

    c1, c2 = st.columns(2)
    width = c1.radio("Width", ("single", "double", "custom"), key=f"{key}.j.width",
                     format_func=lambda w: f"{w} column ({COLUMN_MM[w]:g} mm)" if w in COLUMN_MM else "custom (mm)")
    mm = c2.number_input("Width (mm)", 40.0, 250.0, 120.0, 1.0, key=f"{key}.j.mm", disabled=width != "custom")
    c1, c2, c3 = st.columns(3)
    dpi = c1.radio("Resolution", (300, 600), key=f"{key}.j.dpi", format_func=lambda d: f"{d} dpi")
    fmt = c2.radio("Format", tuple(JOURNAL_FORMATS), key=f"{key}.j.fmt", format_func=str.upper)
    font = c3.number_input("Font (pt)", 5.0, 14.0, 8.0, 0.5, key=f"{key}.j.font")
    x0, y0 = axis_titles(fig)
    title = st.text_input("Title", "", key=f"{key}.j.title", placeholder="none: the caption goes in the paper")
    x_title = st.text_input("x axis label", x0, key=f"{key}.j.x")
    y_title = st.text_input("y axis label", y0, key=f"{key}.j.y")
    try:
        j = Journal(mm if width == "custom" else width, int(dpi), fmt, float(font), title or None,
                    x_title if x_title != x0 else None, y_title if y_title != y0 else None)
        check_fits(fig, j)  # the figure's minimum width comes from its labels: known before building it again
        st.caption(f"{j.describe()}: {j.pixel_width} px wide; the height follows the figure" if fmt != "pdf"
                   else f"{j.describe()} (vector)")
    except OptionError as exc:
        st.warning(str(exc), icon=":material/straighten:")
        return
    file_name = f"{name}_{j.width_mm:g}mm_{j.dpi}dpi.{fmt}"
    st.download_button(f"Download {fmt.upper()}", partial(_journal_image, make, j, stamp), file_name,
                       JOURNAL_FORMATS[fmt], key=f"{key}.j.download", disabled=not have_chrome,
                       help=help_missing if not have_chrome else None, on_click=state.audit_download,
                       args=(file_name,), icon=":material/download:", type="primary")


def _journal_image(make, j, stamp) -> bytes:
    from analytics.display.journal import journal_bytes

    _kaleido_session()
    return journal_bytes(make, j, kaleido_render, stamp)


def _downloads():
    """A row for download buttons: each button as wide as its label, wrapping onto a new line
    in a narrow column (half-width columns squeezed fixed-width columns down to bare icons)."""
    return st.container(horizontal=True, gap="small")


def _title(fig: go.Figure, name: str) -> str:
    text = fig.layout.title.text if fig.layout.title is not None else None
    return f"{text} ({name})" if text else name


ROW_PX, HEADER_PX, SCROLLBAR_PX = 35, 38, 16  # st.dataframe's row and header heights; a horizontal scrollbar
ALL_ROWS_UP_TO = 60  # tables this long are shown whole, without a scroll box
MAX_SHOWN = 5000  # rows formatted for the page (a patient-level table at scale); downloads hold them all


def table(df: pd.DataFrame, name: str, key: str, height: int | None = None, scope: str = "cohort",
          **kwargs) -> None:
    """Show a table for people (:func:`analytics.display.tables.for_people`: labelled columns with
    units, "< 0.001", integer counts, canonical names, no inf/NaN/None), whole when it has up to
    ALL_ROWS_UP_TO rows, with CSV (machine names, full precision, a data dictionary in its ``#``
    lines) and XLSX (for people) downloads, spreadsheet formulas neutralised. Each download names
    the analysis behind it (``scope``: see :func:`state.stamp`)."""
    from analytics.display.tables import for_people

    shown = for_people(df.head(MAX_SHOWN), name)
    if len(df) > MAX_SHOWN:
        st.caption(f"Showing the first {MAX_SHOWN:,} of {len(df):,} rows; the CSV and XLSX downloads hold every row.")
    if height is None and len(shown) <= ALL_ROWS_UP_TO:
        wide = sum(8 * max([len(str(c))] + [len(str(v)) for v in shown[c].head(50)]) + 26 for c in shown.columns)
        height = HEADER_PX + ROW_PX * max(len(shown), 1) + (SCROLLBAR_PX if wide > 860 else 0) + 3
    st.dataframe(shown, width="stretch", hide_index=True, height=height or "auto", **kwargs)
    stamp = state.stamp(scope, name)
    cols = [_downloads()] * 2
    cols[0].download_button("CSV", partial(csv_bytes, df, stamp, name), f"{name}.csv", "text/csv",
                            key=f"{key}.csv", on_click=state.audit_download, args=(f"{name}.csv",),
                            icon=":material/download:", width="content",
                            help='Machine-readable names and full precision. The first lines, starting with "#", '
                                 'name the analysis and every column: read it with '
                                 '`pandas.read_csv(path, comment="#")`.')
    cols[1].download_button("XLSX", partial(xlsx_bytes, {name: df}, stamp), f"{name}.xlsx",
                            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", key=f"{key}.xlsx",
                            on_click=state.audit_download, args=(f"{name}.xlsx",), icon=":material/download:",
                            width="content",
                            help="For people: labelled columns with units, numbers kept as numbers.")


def warnings(items: list[str], what: str = "this result") -> None:
    if not items:
        return
    with st.expander(f"{len(items)} warning(s) for {what}", expanded=len(items) <= 2, icon=":material/warning:"):
        for w in items:
            st.markdown(f"- {w}")


def provenance() -> None:
    files = state.current_files()
    opts = state.derive_options()
    st.caption(f"Input: {', '.join(files.names.values())} · visits sha256 `{files.visits_sha256[:16]}…` · "
               f"response `{opts.response}`{' confirmed' if opts.confirm else ''} · arms {', '.join(opts.arms)}")


def reproduce_code(what) -> str:
    """The Python that recomputes ``what`` as the page has it: a result (its recorded call),
    a :class:`~analytics.protocol.Call`, or code that uses ``prepared``, ``full`` (the whole
    export's derivation), ``derivation`` (the filtered cohort) and ``table``."""
    from analytics.outputs.reproduce import snippet

    visits, therapies = state.files_for_python()
    call = getattr(what, "call", what)
    return snippet(call, visits, therapies or None, None, state.derive_options(), state.cohort_filter())


def reproduce(what, cli: str | None = None, extra: str = "") -> None:
    """The exact call that recomputes what the page shows, and the command line that writes it
    (``cli``: "analyze" or "report")."""
    from analytics.outputs.reproduce import command_line

    with st.expander("Reproduce", icon=":material/code:"):
        st.code(reproduce_code(what), language="python")
        if cli:
            visits, therapies = state.files_for_python()
            mopts = state.model_options()
            flags = {"response.rule", "response.confirm", "lines.arms", "models.alpha", "quality.period",
                     "pack.min_cell"}
            if set(state.spec().to_query()) <= flags:  # the flags say it all
                st.markdown("Command line:")
                st.code(command_line(cli, visits, therapies or None, state.derive_options(), mopts.alpha,
                                     mopts.period, extra or "--out out/"), language="bash")
            else:  # filters or model settings: the spec carries them
                st.markdown("Command line, with the analysis saved from the sidebar (**Analysis spec**, "
                            "Save analysis) as `analysis.toml`:")
                parts = ["cdasi-outcomes", cli, visits] + (["--therapies", therapies] if therapies else [])
                st.code(" ".join(parts + ["--spec", "analysis.toml", extra or "--out out/"]), language="bash")


@contextlib.contextmanager
def guard(fatal: bool = False):
    """Known problems become a readable st.error; anything else is reported, never a crash.
    ``fatal``: after the report, nothing more of the page runs (the login gate fails closed)."""
    try:
        yield
    except CdasiError as exc:
        st.error(str(exc), icon=":material/error:")
        report = getattr(exc, "report", None)
        if report is not None:
            st.dataframe(report.to_frame(), hide_index=True, width="stretch")
    except Exception as exc:  # a bug: say so, keep the app alive
        st.error(f"Something went wrong: {type(exc).__name__}: {exc}. This is a bug in cdasi-outcomes; the "
                 "details below help to report it.", icon=":material/bug_report:")
        with st.expander("Details"):
            st.code("".join(traceback.format_exception(exc)))
    else:
        return
    if fatal:
        st.stop()


def require_lines() -> bool:
    """Stop the page with a clear message when the filters leave no included line."""
    c = state.cohort()
    if c.empty:
        st.info("No included therapy line matches the active filters. Change or clear them on the Cohort page.",
                icon=":material/filter_alt_off:")
        return False
    return True


def login_gate() -> None:
    """Behind a login (``[auth]`` in secrets.toml): nothing is served until the identity provider
    has vouched for the user; the login is recorded once per session. A login configured but
    incomplete, or a roles file that cannot be read, serves nothing (it fails closed)."""
    problems = state.login_problems()
    if problems is None:  # single-user mode on 127.0.0.1
        return
    if problems:
        st.error("A login is configured but incomplete, so nothing is served: " + "; ".join(problems)
                 + ". See the README, section Deployment.", icon=":material/lock:")
        st.stop()
    try:
        roles = state.roles()
    except CdasiError as exc:
        st.error(f"The roles file cannot be used, so nothing is served: {exc}", icon=":material/lock:")
        st.stop()
    if not st.user.is_logged_in:
        st.title("cdasi-outcomes")
        st.markdown("This server holds de-identified health data of the department. Log in with your hospital "
                    "account; what you see depends on your role (viewer, analyst or admin), and every login, view of "
                    "patient-level data and download is recorded in the audit log.")
        providers = [k for k, v in st.secrets["auth"].items() if isinstance(v, dict)]
        for name in providers or [None]:
            st.button(f"Log in with {name}" if name else "Log in", key=f"auth.login.{name}", type="primary",
                      icon=":material/login:", on_click=st.login, args=(name,) if name else ())
        st.stop()
    if not st.session_state.get("auth.recorded"):
        email, role = state.user()
        state.audit("login", f"role {role} ({roles.source})", once=True)
        st.session_state["auth.recorded"] = True


def logout() -> None:
    """The sidebar's account line and log-out button (behind a login only)."""
    if not state.login_configured():
        return
    email, role = state.user()
    st.markdown(f"**Logged in as** {email} ({role})")

    def out():
        state.audit("logout", f"role {role}")
        st.session_state.pop("auth.recorded", None)
        st.logout()

    st.button("Log out", key="auth.logout", icon=":material/logout:", on_click=out)


def patient_level(what: str, record: bool = True) -> None:
    """Mark what follows as patient-level data: a viewer is stopped with a message (their
    navigation does not offer it; this holds for a hand-typed address too), anyone else's view is
    recorded in the audit log (``record``), once per session, dataset and ``what``."""
    if not state.can("patient_level"):
        st.warning(f"{what.capitalize()} is patient-level data, which a viewer does not see. The Shared summary "
                   "and the Report show the aggregates, with small cells suppressed.", icon=":material/lock:")
        st.stop()
    if record:
        state.audit("view", what, once=True)


def open_library():
    """The department library, or a clear error that stops the page when it cannot be opened."""
    try:
        return state.library()
    except CdasiError as exc:
        st.error(f"The library cannot be opened: {exc}", icon=":material/database:")
        st.stop()
