"""The de-identification guard in the languages of real exports, on values as well as headers,
and on patient ids (issue 15). Each fixture is refused with its column named; the sample cohort,
a REDCap-shaped export and generated clinical columns pass."""

from __future__ import annotations

import json
import random
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from analytics.errors import MappingError
from analytics.ingest.deid import GUARD_RULES, header_identifier, mask, vocabulary, words
from analytics.ingest.io import load_mapping, read_bytes
from analytics.ingest.nationalids import FORMATS, identify
from analytics.ingest.validate import prepare

from .conftest import ROOT, prep

V = "patient_id,visit_day,cdasi_activity"
TOML = ROOT / "analytics" / "ingest" / "identifiers.toml"


def _guard(p):
    return [f for f in p.report.findings if f.rule in GUARD_RULES]


def _refused(p, rule: str, column: str):
    found = [f for f in p.report.findings if f.rule == rule and f.column == column]
    assert found, p.report.to_text()
    f = found[0]
    assert f.severity == "error" and not p.report.ok
    assert column in f.message and f.fix
    return f


# ---------------------------------------------------------------- headers, by language and kind
HEADERS = {  # as they are written in real exports
    "names": {"en": "Patient Name", "es": "Apellidos", "ca": "Cognoms", "pt": "Nome completo", "fr": "Prénom",
              "it": "Cognome", "de": "Nachname", "nl": "Achternaam"},
    "dates of birth": {"en": "Date of Birth", "es": "fecha_nacimiento", "ca": "Data de naixement",
                       "pt": "Data de nascimento", "fr": "Date de naissance", "it": "Data di nascita",
                       "de": "Geburtsdatum", "nl": "Geboortedatum"},
    "medical record numbers": {"en": "MRN", "es": "NHC", "ca": "Número d'història clínica", "pt": "Nº processo",
                               "fr": "IPP", "it": "Numero nosologico", "de": "Fallnummer", "nl": "Patiëntnummer"},
    "national identity or social security numbers": {
        "en": "SSN", "es": "DNI", "ca": "Document d'identitat", "pt": "Cartão de Cidadão", "fr": "NIR",
        "it": "Codice fiscale", "de": "Sozialversicherungsnummer", "nl": "BSN"},
    "health-insurance numbers": {"en": "Insurance number", "es": "Número de póliza", "ca": "Asseguradora",
                                 "pt": "Número de beneficiário", "fr": "Mutuelle", "it": "Numero di polizza",
                                 "de": "Versichertennummer", "nl": "Polisnummer"},
    "addresses": {"en": "Street", "es": "Dirección", "ca": "Adreça", "pt": "Morada", "fr": "Code postal",
                  "it": "Indirizzo", "de": "Straße", "nl": "Woonplaats"},
    "phone numbers": {"en": "Phone", "es": "Teléfono", "ca": "Telèfon", "pt": "Telemóvel", "fr": "Téléphone",
                      "it": "Cellulare", "de": "Telefonnummer", "nl": "Telefoon"},
    "email addresses": {"en": "Email", "es": "Correo electrónico", "ca": "Correu electrònic",
                        "pt": "Correio eletrónico", "fr": "Courriel", "it": "Posta elettronica", "de": "E-Mail-Adresse",
                        "nl": "E-mailadres"},
}
_CASES = [(kind, lang, header) for kind, by in HEADERS.items() for lang, header in by.items()]


@pytest.mark.parametrize("kind,lang,header", _CASES, ids=[f"{k[:12]}-{l}" for k, l, _ in _CASES])
def test_identifier_headers_in_eight_languages_are_refused(kind, lang, header):
    p = prep(f"{V},{header}\nCADM-0001,0,20,xyz\n")
    f = _refused(p, "identifier_column", header)
    assert kind in f.message
    assert "row 2: 'x**'" in f.message  # an example row, the value masked


@pytest.mark.parametrize("header", ["FECHA DE NACIMIENTO", "fechaNacimiento", "Fecha-de-Nacimiento",
                                    "fecha_de_nacimiento", "Geburtsdatum_Mutter", "Patientennachname",
                                    "TELÉFONO", "telefono", "N.H.C.", "d.n.i.", "PLZ", "Straße_Nr"])
def test_header_matching_ignores_case_accents_punctuation_and_finds_compounds(header):
    assert header_identifier(header), header


def test_every_term_of_the_vocabulary_is_refused_as_a_header():
    raw = tomllib.loads(TOML.read_text(encoding="utf-8"))
    for kind in raw["kinds"].values():
        for key, terms in kind.items():
            if key in ("what", "sources", "unless"):
                continue
            assert kind["sources"], kind["what"]
            for term in terms:
                got = {m[0] for m in header_identifier(term)}
                assert kind["what"] in got, (term, got)


def test_a_department_extends_the_vocabulary_in_the_data_file(tmp_path, monkeypatch):
    """The vocabulary is data: a term added to identifiers.toml is refused with no code change."""
    import analytics.ingest.deid as deid

    text = TOML.read_text(encoding="utf-8").replace('nl = ["naam",', 'nl = ["zorgnaam", "naam",', 1)
    assert "zorgnaam" in text
    monkeypatch.setattr(deid, "_vocabulary_text", lambda: text)
    deid.vocabulary.cache_clear()
    deid._prefix_patterns.cache_clear()
    try:
        assert header_identifier("Zorgnaam")[0][0] == "names"
    finally:
        monkeypatch.undo()
        deid.vocabulary.cache_clear()
        deid._prefix_patterns.cache_clear()
    assert header_identifier("Zorgnaam") == []


def test_words_fold_case_accents_and_camel_case():
    assert words("FechaDeNacimiento") == ["fecha", "de", "nacimiento"]
    assert words("Teléfono móvil") == ["telefono", "movil"]
    assert words("Straße") == ["strasse"]
    assert mask("María García") == "M**** G*****" and mask("12345678Z") == "1********"


# ---------------------------------------------------------------- values, whatever the header
VALID_IDS = {
    "es.dni": "12345678Z", "es.nie": "X1234567L", "it.codicefiscale": "RCCMNL83S18D969H", "de.kvnr": "A123456780",
    "fr.nir": "2 95 10 99 126 111 93", "nl.bsn": "111222333", "pt.nif": "123456789", "gb.nhs": "943 476 5919",
    "be.nn": "85.07.30-033.28", "ch.ssn": "756.1234.5678.97", "pl.pesel": "44051401359",
}


def _variants(key: str, n: int = 6) -> list[str]:
    """n distinct valid numbers of a format, found by changing digits of a known one until the check holds."""
    fmt = next(f for f in FORMATS if f.key == key)
    base = VALID_IDS[key]
    rng = random.Random(key)
    out = {base}
    while len(out) < n:
        chars = list(base)
        idx = [i for i, ch in enumerate(chars) if ch.isdigit()]
        for i in rng.sample(idx[:-1], 2):
            chars[i] = str(rng.randint(0, 9))
        for last in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ":  # the check digit or letter: try them all
            chars[-1] = last
            cand = "".join(chars)
            if identify(cand) is not None and identify(cand).key == key:
                out.add(cand)
                break
    return sorted(out)


@pytest.mark.parametrize("key", sorted(VALID_IDS))
def test_a_column_of_national_ids_is_refused_whatever_its_header(key):
    values = _variants(key)
    rows = "".join(f"CADM-{i:04d},0,20,{v}\nCADM-{i:04d},30,10,{v}\n" for i, v in enumerate(values))
    p = prep(f"{V},ref_code\n{rows}")
    f = _refused(p, "identifier_value", "ref_code")
    label = next(x.label for x in FORMATS if x.key == key)
    assert label in f.message and f.rows[0] == 2
    assert values[0] not in f.message  # masked


def test_numbers_that_fail_the_check_pass():
    """A wrong check letter or digit: not a DNI, not a BSN (and the column holds nothing else)."""
    a = [f"1234567{i}A" for i in range(5)]
    b = [f"11122233{i}" for i in (4, 5, 6, 7, 8)]
    assert all(identify(v) is None or v in b for v in a) and sum(identify(v) is not None for v in b) <= 1
    rows = "".join(f"CADM-{i:04d},0,20,{x},{y}\n" for i, (x, y) in enumerate(zip(a, b)))
    p = prep(f"{V},code_a,code_b\n{rows}")
    assert [f for f in _guard(p) if f.column in ("code_a", "code_b")] == [], p.report.to_text()


@pytest.mark.parametrize("note", ["seen today, MRN 4512873", "NHC: 123456 revisar", "Fallnummer 12345678",
                                  "dossier nº 20211234", "hc 0045123 derivada", "DNI 12345678Z", "BSN: 111222333",
                                  "paciente 12345678Z acude", "codice fiscale RCCMNL83S18D969H"])
def test_record_numbers_and_ids_in_free_text_are_refused(note):
    p = prep(f"{V},comentarios\nCADM-0001,0,20,\"{note}\"\nCADM-0001,30,10,bien\n")
    f = _refused(p, "identifier_value", "comentarios")
    assert f.rows == (2,) and f.patient_ids == ("CADM-0001",)


@pytest.mark.parametrize("note", ["MMF 2000 mg/d; CDASI 20 -> 14", "IVIG 2 g/kg x 3 cycles 2021-03-04",
                                  "tofacitinib 5 mg bid since 12/03/2021", "anti-MDA5 positive, ILD on HRCT 2019",
                                  "Gottron papules, V-sign; Skindex 45", "HC 200 mg dos veces al día",
                                  "derivada a dermatología el 04.05.2021", "dosis 1500 mg/m2"])
def test_ordinary_clinical_notes_pass(note):
    p = prep(f"{V},comentarios\nCADM-0001,0,20,\"{note}\"\nCADM-0001,30,10,bien\n")
    assert _guard(p) == [], p.report.to_text()


def _patients(n: int, value, extra: str = "", visit="2020-0{m}-1{d}") -> str:
    lines = []
    for i in range(n):
        for k in (1, 4):
            lines.append(f"CADM-{i:04d},{visit.format(m=k, d=i % 10)},20,{value(i)}{extra}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("fmt", ["{y}-0{m}-1{d}", "1{d}.0{m}.{y}", "1{d}/0{m}/{y}"])
def test_a_column_of_dates_of_birth_is_refused_whatever_its_header(fmt):
    rng = random.Random(fmt)
    born = {i: fmt.format(y=rng.randint(1935, 1985), m=rng.randint(1, 9), d=rng.randint(0, 9)) for i in range(8)}
    p = prep("patient_id,visit_date,cdasi_activity,f1\n" + _patients(8, lambda i: born[i]))
    f = _refused(p, "identifier_birth_date", "f1")
    assert "years" in f.message and f.rows[0] == 2


def test_dates_of_onset_or_of_visits_are_not_dates_of_birth():
    onset = lambda i: f"2019-0{1 + i % 9}-1{i % 10}"  # months before the first visit
    p = prep("patient_id,visit_date,cdasi_activity,fecha_inicio_sintomas\n" + _patients(8, onset))
    assert _guard(p) == [], p.report.to_text()
    # one patient whose disease began 16 years before the first visit: a long history (found by hypothesis)
    p = prep("patient_id,visit_date,cdasi_activity,notes\nCADM-0001,2021-01-10,20,2005-03-04\n"
             "CADM-0001,2021-04-10,17,2005-03-04\n")
    assert _guard(p) == [], p.report.to_text()
    # a date that changes at each visit (a lab date) is not constant within a patient
    lines = [f"CADM-{i:04d},2020-0{k}-10,20,19{50 + i}-0{k}-01" for i in range(8) for k in (1, 4)]
    p = prep("patient_id,visit_date,cdasi_activity,lab_date\n" + "\n".join(lines) + "\n")
    assert _guard(p) == [], p.report.to_text()


NAMES = ["María García López", "José Fernández", "Carmen de la Fuente", "Antonio Ruiz", "Lucía Martín",
         "Jan van der Berg", "Anne-Marie Dupont", "Giulia Rossi", "Hans Müller", "João Silva", "Núria Puig"]


def test_a_column_of_person_names_is_refused_whatever_its_header():
    p = prep("patient_id,visit_date,cdasi_activity,campo_7\n" + _patients(len(NAMES), lambda i: NAMES[i]))
    f = _refused(p, "identifier_person_name", "campo_7")
    assert "M**** G***** L****" in f.message


def test_drug_hospital_and_physician_columns_are_not_person_names():
    drugs = ["Hydroxychloroquine", "Methotrexate", "Mycophenolate Mofetil", "Tofacitinib", "Rituximab",
             "Cellcept", "Plaquenil", "Xeljanz", "Olumiant", "Azathioprine", "Dapsone"]
    p = prep("patient_id,visit_date,cdasi_activity,first_agent\n" + _patients(len(drugs), lambda i: drugs[i]))
    assert _guard(p) == [], p.report.to_text()
    sites = ["Hospital Clínic", "Hospital del Mar", "Vall d'Hebron"]
    p = prep("patient_id,visit_date,cdasi_activity,centro\n" + _patients(12, lambda i: sites[i % 3]))
    assert _guard(p) == [], p.report.to_text()


# ---------------------------------------------------------------- patient ids
@pytest.mark.parametrize("pid,why", [
    ("MRN1000123", "record-number prefix"), ("NHC-004512", "record-number prefix"), ("nuhsa 0012345", "prefix"),
    ("4512873", "7 or more digits"), ("0012345678", "7 or more digits"), ("12345678Z", "Spanish DNI"),
    ("RCCMNL83S18D969H", "codice fiscale"), ("A123456780", "KVNR"),
])
def test_patient_ids_that_look_like_record_numbers_are_refused_with_how_to_pseudonymise(pid, why):
    p = prep(f"{V},cdasi_damage\n{pid},0,20,40\n{pid},30,10,3\n")  # 40: an out-of-range damage too
    f = _refused(p, "identifier_patient_id", "patient_id")
    assert why in f.message and "HMAC" in f.fix and "patient_id_override" in f.fix
    assert pid not in p.report.to_text()  # no finding repeats the id: every example id is masked
    assert mask(pid) in " ".join(x for g in p.report.findings for x in g.patient_ids)


@pytest.mark.parametrize("pid", ["CADM-0001", "P001", "1234", "S-1001", "DM_2021_0042", "123456",
                                 "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"])
def test_pseudonyms_pass(pid):
    p = prep(f"{V}\n{pid},0,20\n{pid},30,10\n")
    assert _guard(p) == [], p.report.to_text()


def test_a_patient_id_headed_as_a_record_number_is_refused():
    p = prep("NHC,visit_day,cdasi_activity\nCADM-1,0,20\n", mapping={"columns": {"NHC": "patient_id"}})
    f = _refused(p, "identifier_patient_id", "patient_id")
    assert "'NHC'" in f.message


def test_the_override_is_explicit_and_recorded_in_results_and_manifest(tmp_path):
    from analytics.outputs.pack import PackOptions, build_pack
    from analytics.pipeline import analyze, load, write_outputs

    visits = tmp_path / "v.csv"
    visits.write_text("patient_id,visit_day,cdasi_activity,systemic_therapy\n" + "".join(
        f"45128{i:02d},{d},{a},MMF\n" for i in range(6) for d, a in ((0, 20), (60, 12), (120, 8))))
    refused, _ = load(visits)
    assert "identifier_patient_id" in refused.report.rules()
    mapping = tmp_path / "m.toml"
    reason = "study numbers issued by the registry office; the key is held by the data steward"
    mapping.write_text(f'patient_id_override = "{reason}"\n')
    prepared, _ = load(visits, mapping=mapping)
    assert prepared.report.ok
    info = [f for f in prepared.report.findings if f.rule == "patient_id_override"]
    assert info[0].severity == "info" and reason in info[0].message
    paths = write_outputs(analyze(prepared), tmp_path / "a")
    results = json.loads(Path(paths["results"]).read_text())
    recorded = results["input"]["sources"]["deidentification"]["patient_id_override"]
    assert recorded["reason"] == reason and recorded["patient_ids_flagged"] == 6
    pack = build_pack(visits, tmp_path / "pack", mapping=mapping, options=PackOptions(figures=(), tables=()))
    assert pack.manifest["input"]["sources"]["deidentification"]["patient_id_override"]["reason"] == reason
    for bad in ('patient_id_override = "ok"', "patient_id_override = 1"):
        mapping.write_text(bad + "\n")
        with pytest.raises(MappingError, match="give the reason in words"):
            load_mapping(mapping)


# ---------------------------------------------------------------- what must pass
def test_the_sample_cohort_passes_the_guard():
    p, _ = __import__("analytics.pipeline", fromlist=["load"]).load(
        ROOT / "sample_data" / "visits.csv", ROOT / "sample_data" / "therapies.csv")
    assert _guard(p) == [] and p.report.ok


def test_a_redcap_export_with_the_docs_mapping_passes():
    """The sample cohort as REDCap writes it: numeric record ids, event names, form-complete columns,
    and the headers of docs/mapping-redcap.toml."""
    m = load_mapping(ROOT / "docs" / "mapping-redcap.toml")
    df = pd.read_csv(ROOT / "sample_data" / "visits.csv", dtype=str, keep_default_na=False)
    inverse = {v: k for k, v in m.columns.items()}
    ids = {p: str(i + 1) for i, p in enumerate(dict.fromkeys(df["patient_id"]))}
    df["patient_id"] = df["patient_id"].map(ids)
    df = df.rename(columns={**inverse, "patient_id": "record_id"})
    df.insert(1, "redcap_event_name", "visit_" + (df.groupby("record_id").cumcount() + 1).astype(str) + "_arm_1")
    df.insert(2, "redcap_repeat_instrument", "")
    df["cdasi_complete"] = "2"
    raw = read_bytes(df.to_csv(index=False).encode(), "redcap.csv", mapping=m)
    p = prepare(raw, None, m)
    assert _guard(p) == [], p.report.to_text()
    assert p.report.ok and p.counts["patients"] == len(ids)


# Clinical columns as departments write them, in the guard's languages: no identifier rule fires.
_CLINICAL_HEADERS = [
    "notes", "comentarios", "observaciones", "Bemerkung", "opmerking", "commentaire", "note cliniche",
    "site", "centro", "Klinik", "servicio", "visit type", "tipo de visita", "Besuchsart", "médico", "Arzt",
    "arts", "diagnóstico", "Diagnose", "diagnostic", "fármaco", "Medikament", "geneesmiddel", "dosis", "Dosierung",
    "posologie", "anticuerpo", "Antikörper", "fecha de inicio", "data inizio", "Beginn", "fecha de diagnóstico",
    "date du diagnostic", "fecha_visita", "Besuchsdatum", "bezoekdatum", "CK", "LDH", "ferritina", "FVC %",
    "DLCO", "study arm", "brazo", "investigator code", "CDASI total", "Skindex total", "peso (kg)", "Gewicht",
    "talla", "IMC", "ethnicity", "tabaco", "Raucher", "fototipo", "disfagia", "calcinosis", "ulceras",
]
_DRUGS = ["HCQ", "hidroxicloroquina", "Dolquine", "metotrexato", "MTX", "micofenolato", "CellCept", "Myfortic",
          "IGIV", "Privigen", "tofacitinib", "Xeljanz", "baricitinib", "Olumiant", "rituximab", "prednisona 10 mg",
          "Urbason", "tacrolimus tópico"]
_WORDS = ["mejoría", "estable", "brote", "empeora", "prurito", "eritema", "heliotropo", "Gottron", "amélioration",
          "stabile", "Verbesserung", "stabiel", "poiquilodermia", "alopecia", "fotosensibilidad", "sin cambios"]


def _cell_strategy():
    number = st.one_of(st.integers(0, 5000).map(str), st.floats(0, 1000, allow_nan=False).map(lambda x: f"{x:.1f}"),
                       st.floats(0, 10, allow_nan=False).map(lambda x: f"{x:.2f}".replace(".", ",")))
    date = st.dates(pd.Timestamp("2005-01-01").date(), pd.Timestamp("2025-12-31").date()).flatmap(
        lambda d: st.sampled_from([d.isoformat(), d.strftime("%d.%m.%Y"), d.strftime("%d/%m/%Y")]))
    drug = st.sampled_from(_DRUGS)
    antibody = st.sampled_from(["anti-MDA5", "TIF1-γ", "NXP2", "SAE", "Mi-2", "negativo", "MDA5+", "desconocido"])
    dose = st.tuples(st.sampled_from(_DRUGS), st.integers(1, 3000), st.sampled_from(["mg", "mg/d", "g/kg", "mg/m2"])).map(
        lambda t: f"{t[0]} {t[1]} {t[2]}")
    text = st.lists(st.one_of(st.sampled_from(_WORDS), drug, number, date, dose), min_size=1, max_size=8).map(" ".join)
    yes_no = st.sampled_from(["sí", "no", "ja", "nein", "oui", "non", "yes", "1", "0", ""])
    return st.sampled_from(["number", "date", "drug", "antibody", "dose", "text", "yes_no"]), {
        "number": number, "date": date, "drug": drug, "antibody": antibody, "dose": dose, "text": text,
        "yes_no": yes_no}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), n_patients=st.integers(1, 25), header=st.sampled_from(_CLINICAL_HEADERS),
       constant=st.booleans())
def test_generated_clinical_columns_are_never_refused(data, n_patients, header, constant):
    kinds, strategies = _cell_strategy()
    kind = data.draw(kinds)
    cells = {}
    lines = []
    for i in range(n_patients):
        for k, d in enumerate(("2021-01-1", "2021-04-1", "2021-09-1")):
            if constant:
                cell = cells.setdefault(i, data.draw(strategies[kind]))
            else:
                cell = data.draw(strategies[kind])
            cell = cell.replace('"', "")
            lines.append(f'CADM-{i:04d},{d}{i % 10},{20 - 3 * k},"{cell}"')
    p = prep(f'patient_id,visit_date,cdasi_activity,"{header}"\n' + "\n".join(lines) + "\n")
    assert _guard(p) == [], (kind, header, p.report.to_text())


@pytest.mark.parametrize("note", ["Tel. 612 345 678", "Teléfono: 93 123 45 67", "Handy 0151 1234567",
                                  "telefoon 06-12345678", "+34 612 345 678", "(555) 123-4567"])
def test_phone_numbers_in_the_guards_languages_are_refused(note):
    p = prep(f"{V},notas\nCADM-0001,0,20,\"{note}\"\n")
    assert "phone numbers" in _refused(p, "identifier_value", "notas").message


def test_patient_ids_are_judged_once_per_export_and_both_files_are_refused_alike():
    """The therapies file repeats the visits' patient ids: their verdicts are reused (each distinct
    id judged once), and its finding is the one a fresh judgement gives: same count, reasons in the
    same order, same rows."""
    from analytics.ingest.deid import _patient_id_rule

    from .conftest import table

    ids = ["CADM-0001", "MRN1000123", "4512873", "12345678Z", "CADM-0002", "0012345678", "NHC-004512"]
    visits = table("patient_id,visit_day,cdasi_activity\n" + "".join(f"{p},{d},20\n" for p in ids for d in (0, 30)),
                   "visits")
    # the therapies name some of the same ids, one new record number, and leave one pseudonym out
    therapies = table("patient_id,drug,start_day\n" + "".join(f"{p},MMF,0\n" for p in ids[1:] + ["MRN7654321"]),
                      "therapies")
    judged: dict = {}
    first = _patient_id_rule(visits, None, judged)
    assert first is not None and "5 of 7 patient id(s)" in first.message
    assert judged["CADM-0001"] == "" and judged["MRN1000123"] == "a record-number prefix and digits"
    shared = _patient_id_rule(therapies, None, judged)
    fresh = _patient_id_rule(therapies, None)
    assert shared == fresh and "6 of 7 patient id(s)" in shared.message
    assert judged["MRN7654321"] == "a record-number prefix and digits"
    p = prep(visits.data.to_csv(index=False), therapies.data.to_csv(index=False))
    assert [f.file for f in p.report.findings if f.rule == "identifier_patient_id"] == ["visits", "therapies"]
