"""GE MUSE and HL7 aECG XML: a real PTB-XL record written in each layout reads back as itself.

No vendor file could be had here, so the files are written in the test to the published
layouts (restecg.dtd; HL7 v3 AnnotatedECG) with their usual quirks: MUSE's 8 stored leads,
wrapped Base64 and a DOCTYPE, aECG's namespaces, origin and scale, and a median-beat series.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from test_cli import ecgfoundry

from ecgfoundry.data import ECGInputError, find_records, read_record, read_wfdb
from ecgfoundry.data.transforms import pipeline_for
from ecgfoundry.models import resolve_model

RECORD = "records100/00000/00001_lr"
MUSE_LEADS = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
AECG_CODES = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def muse_xml(signal_mv: dict[str, np.ndarray], fs: int, *, uv_per_bit: float = 4.88) -> str:
    """A MUSE RestingECG export: median beats first, then the rhythm strip."""
    leads = []
    for name, values in signal_mv.items():
        digits = np.round(values * 1000 / uv_per_bit).astype("<i2")
        payload = base64.encodebytes(digits.tobytes()).decode()  # wrapped at 76 characters
        leads.append(
            f"<LeadData><LeadByteCountTotal>{digits.nbytes}</LeadByteCountTotal>"
            f"<LeadSampleSize>2</LeadSampleSize><LeadAmplitudeUnitsPerBit>{uv_per_bit}"
            "</LeadAmplitudeUnitsPerBit><LeadAmplitudeUnits>MICROVOLTS</LeadAmplitudeUnits>"
            f"<LeadSampleCountTotal>{len(digits)}</LeadSampleCountTotal><LeadID>{name}</LeadID>"
            f"<WaveFormData>{payload}</WaveFormData></LeadData>"
        )
    median = base64.b64encode(np.zeros(600, "<i2").tobytes()).decode()
    return (
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n'
        '<!DOCTYPE RestingECG SYSTEM "restecg.dtd">\n<RestingECG>'
        "<MuseInfo><MuseVersion>9.0.9.18167</MuseVersion></MuseInfo>"
        "<PatientDemographics><PatientAge>56</PatientAge><AgeUnits>YEARS</AgeUnits>"
        "<Gender>FEMALE</Gender></PatientDemographics>"
        "<TestDemographics><AcquisitionDate>03-01-2002</AcquisitionDate>"
        "<AcquisitionTime>10:20:30</AcquisitionTime></TestDemographics>"
        "<Diagnosis><DiagnosisStatement><StmtText>Sinus rhythm</StmtText></DiagnosisStatement>"
        "<DiagnosisStatement><StmtText>Normal ECG</StmtText></DiagnosisStatement></Diagnosis>"
        "<Waveform><WaveformType>Median</WaveformType><SampleBase>500</SampleBase><LeadData>"
        f"<LeadID>I</LeadID><WaveFormData>{median}</WaveFormData></LeadData></Waveform>"
        f"<Waveform><WaveformType>Rhythm</WaveformType><SampleBase>{fs}</SampleBase>"
        f"<SampleExponent>0</SampleExponent>{''.join(leads)}</Waveform></RestingECG>"
    )


def aecg_xml(signal_mv: dict[str, np.ndarray], fs: int, *, origin_uv: float = -10.0) -> str:
    """An HL7 aECG: a time sequence and one SLIST_PQ per lead (5 uV per digit around
    ``origin_uv``), with a median-beat derivedSeries that must not be read."""

    def sequence(code: str, value: str) -> str:
        return (f'<component><sequence><code code="{code}" codeSystem="2.16.840.1.113883.6.24"/>'
                f"{value}</sequence></component>")  # fmt: skip

    def lead(code: str, values: np.ndarray) -> str:
        digits = np.round((values * 1000 - origin_uv) / 5).astype(int)
        return sequence(
            f"MDC_ECG_LEAD_{code}",
            f'<value xsi:type="SLIST_PQ"><origin value="{origin_uv}" unit="uV"/>'
            f'<scale value="5" unit="uV"/><digits>{" ".join(map(str, digits))}</digits></value>',
        )

    time = sequence("TIME_ABSOLUTE", '<value xsi:type="GLIST_TS"><head value="20020301102030"/>'
                    f'<increment value="{1000 / fs:g}" unit="ms"/></value>')  # fmt: skip
    leads = "".join(lead(code, values) for code, values in signal_mv.items())
    median = lead("I", np.ones(60))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<AnnotatedECG xmlns="urn:hl7-org:v3" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><id root="1.2.3"/>'
        '<effectiveTime><low value="20020301102030"/></effectiveTime><componentOf><timepointEvent>'
        "<componentOf><subjectAssignment><subject><trialSubject><subjectDemographicPerson>"
        '<administrativeGenderCode code="M" codeSystem="2.16.840.1.113883.5.1"/>'
        "</subjectDemographicPerson></trialSubject></subject></subjectAssignment></componentOf>"
        '</timepointEvent></componentOf><component><series><code code="RHYTHM"/>'
        f"<component><sequenceSet>{time}{leads}</sequenceSet></component>"
        '<derivation><derivedSeries><code code="REPRESENTATIVE_BEAT"/>'
        f"<component><sequenceSet>{time}{median}</sequenceSet></component></derivedSeries>"
        "</derivation></series></component></AnnotatedECG>"
    )


@pytest.fixture
def wfdb_record(ptbxl_root: Path):
    return read_wfdb(ptbxl_root / RECORD)


def test_a_muse_export_holds_the_record(wfdb_record, tmp_path: Path) -> None:
    signal = dict(zip(wfdb_record.leads, wfdb_record.signal, strict=True))
    path = tmp_path / "muse.xml"
    path.write_text(muse_xml({lead: signal[lead] for lead in MUSE_LEADS}, 100), "latin-1")
    record = read_record(path)
    assert record.leads == tuple(MUSE_LEADS) and record.fs == 100.0
    expected = np.stack([signal[lead] for lead in MUSE_LEADS])
    np.testing.assert_allclose(record.signal, expected, atol=4.88e-3 / 2 + 1e-6)
    assert (record.metadata["sex"], record.metadata["age"]) == ("Female", 56.0)
    assert record.metadata["start"] == "2002-03-01 10:20:30"
    assert record.metadata["statements"] == ["Sinus rhythm", "Normal ECG"]
    # A 12-lead model's pipeline derives III, aVR, aVL, aVF from I and II (PTB-XL's own limb
    # leads are derived the same way, to 1 uV).
    pipeline = pipeline_for(resolve_model("ecgfoundry-cpc").spec)
    from_muse, from_wfdb = pipeline(record), pipeline(wfdb_record)
    step = 4.88e-3  # III = II - I: two half-steps of MUSE's quantisation, and PTB-XL's 1 uV
    np.testing.assert_allclose(from_muse.signal, from_wfdb.signal, atol=step + 1e-3)
    assert any(r["kind"] == "leads_derived" for r in from_muse.metadata["repairs"])


def test_an_hl7_aecg_holds_the_record(wfdb_record, tmp_path: Path) -> None:
    path = tmp_path / "aecg.xml"
    path.write_text(aecg_xml(dict(zip(AECG_CODES, wfdb_record.signal, strict=True)), 100))
    record = read_record(path)
    assert record.leads == wfdb_record.leads and record.fs == pytest.approx(100.0)
    np.testing.assert_allclose(record.signal, wfdb_record.signal, atol=2.5e-3 + 1e-6)
    assert record.metadata["sex"] == "Male"


def test_bad_xml_is_named_with_the_problem(wfdb_record, tmp_path: Path) -> None:
    signal = dict(zip(wfdb_record.leads, wfdb_record.signal, strict=True))
    cases = {
        "settings.xml": ("<settings><a/></settings>", "root element <settings>: not a GE MUSE"),
        "cut.xml": (muse_xml(signal, 100)[:-40], "not well-formed XML"),
        "median.xml": (muse_xml(signal, 100).replace("<WaveformType>Rhythm", "<WaveformType>X"),
                       r"no Rhythm waveform \(found: \['median', 'x'\]\)"),
        "count.xml": (muse_xml({"I": signal["I"]}, 100).replace(
            "<LeadSampleCountTotal>1000<", "<LeadSampleCountTotal>5000<"),
            "lead I: LeadSampleCountTotal says 5000 samples, its WaveFormData holds 1000"),
        "base64.xml": (muse_xml({"I": signal["I"]}, 100).replace("<WaveFormData>",
                                                                  "<WaveFormData>*"),
                       "lead I: WaveFormData is not Base64"),
        "notime.xml": (aecg_xml({"I": signal["I"]}, 100).replace("increment", "step"),
                       "the time sequence has no increment"),
    }  # fmt: skip
    for name, (text, problem) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ECGInputError, match=f"^{tmp_path / name}: {problem}"):
            read_record(tmp_path / name)


def test_embed_finds_xml_and_leaves_out_other_xml(wfdb_record, tmp_path: Path) -> None:
    """A folder of exports with a stray settings file: the ECG is embedded like its WFDB
    original, the settings file is left out with a note naming it."""
    folder = tmp_path / "exports"
    folder.mkdir()
    signal = dict(zip(wfdb_record.leads, wfdb_record.signal, strict=True))
    (folder / "ecg.xml").write_text(muse_xml({k: signal[k] for k in MUSE_LEADS}, 100), "latin-1")
    (folder / "settings.xml").write_text("<settings/>")
    assert [p.name for p in find_records(folder)] == ["ecg.xml", "settings.xml"]
    result = ecgfoundry("embed", "ecgfoundry-cpc", folder, "--out", tmp_path / "e.npy")
    assert result.returncode == 0, result.stderr
    assert "left out" in result.stderr and "settings.xml: root element <settings>" in result.stderr
    (row,) = np.load(tmp_path / "e.npy")
    reference = ecgfoundry("embed", "ecgfoundry-cpc", Path(wfdb_record.source + ".hea"),
                           "--out", tmp_path / "w.npy")  # fmt: skip
    assert reference.returncode == 0, reference.stderr
    (expected,) = np.load(tmp_path / "w.npy")
    np.testing.assert_allclose(row, expected, atol=1e-2 * np.abs(expected).max())


def test_what_real_exports_do(wfdb_record, tmp_path: Path) -> None:
    """A second rhythm waveform (the first is read), leads a sample apart (cut to the
    shortest, as a repair), a lead stored twice and a baseline offset (refused), and an aECG
    with a second sequence set at another rate (only the first set is read)."""
    signal = dict(zip(wfdb_record.leads, wfdb_record.signal, strict=True))
    eight = {k: signal[k] for k in MUSE_LEADS}
    text = muse_xml(eight, 100)
    second = text[text.index("<Waveform><WaveformType>Rhythm") : text.index("</RestingECG>")]
    later = second.replace("<SampleBase>100<", "<SampleBase>250<")
    path = tmp_path / "two.xml"
    path.write_text(text.replace("</RestingECG>", later + "</RestingECG>"), "latin-1")
    record = read_record(path)
    assert record.fs == 100.0 and record.n_samples == 1000
    short = {**eight, "V6": eight["V6"][:-1]}
    path.write_text(muse_xml(short, 100), "latin-1")
    record = read_record(path)
    assert record.n_samples == 999
    assert record.metadata["repairs"] == [{"kind": "leads_cut_to_shortest", "samples": 1}]
    path.write_text(muse_xml({**eight, "V6": eight["V6"][:500]}, 100), "latin-1")
    with pytest.raises(ECGInputError, match="leads of different lengths"):
        read_record(path)
    path.write_text(muse_xml(eight, 100).replace("<LeadID>V6<", "<LeadID>V5<"), "latin-1")
    with pytest.raises(ECGInputError, match=r"lead\(s\) V5 stored twice"):
        read_record(path)
    baseline = "<LeadSampleSize>2</LeadSampleSize><FirstSampleBaseline>12</FirstSampleBaseline>"
    path.write_text(muse_xml(eight, 100).replace("<LeadSampleSize>2</LeadSampleSize>", baseline))
    with pytest.raises(ECGInputError, match="lead I: FirstSampleBaseline 12 is not 0"):
        read_record(path)
    aecg = aecg_xml(dict(zip(AECG_CODES, wfdb_record.signal, strict=True)), 100)
    first_set = aecg[aecg.index("<component><sequenceSet>") : aecg.index("<derivation>")]
    other_rate = first_set.replace('increment value="10"', 'increment value="2"')
    assert other_rate != first_set
    path.write_text(aecg.replace("<derivation>", other_rate + "<derivation>"))
    record = read_record(path)
    assert record.fs == pytest.approx(100.0) and record.leads == wfdb_record.leads
