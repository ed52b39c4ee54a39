"""The tone check: a pure function from a template's text to the reasons it reads like a pitch."""

from __future__ import annotations

from pathlib import Path

import pytest

from toma.core.tone import pitch_findings

ROOT = Path(__file__).resolve().parents[2]


def kinds(text: str) -> set[str]:
    return {finding.kind for finding in pitch_findings(text)}


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        # English
        ("The plan is $29.99 a month.", "price"),
        ("Get 20% off everything this week.", "discount"),
        ("Use code SPRING for a surprise.", "discount"),
        ("Last chance to join the cohort.", "urgency"),
        ("The offer is only until Friday.", "urgency"),
        ("Book a demo and see for yourself.", "call"),
        ("FREE SHIPPING ON EVERYTHING", "shouting"),
        ("You will love it!!", "shouting"),
        # German
        ("Das Paket kostet nur 49 € im Monat.", "price"),
        ("Mit dem Rabattcode HERBST sparen Sie.", "discount"),
        ("Letzte Chance: das Angebot gilt nur noch bis Freitag.", "urgency"),
        ("Nur bis Sonntag erhältlich.", "urgency"),
        ("Jetzt kaufen und sofort loslegen.", "call"),
        ("Demo buchen unter diesem Link.", "call"),
        # French
        ("Dernière chance pour profiter de -30 % sur tout.", "urgency"),
        ("Profitez de 30 % de réduction.", "discount"),
        ("Réservez une démo dès aujourd'hui.", "call"),
        # Spanish, Italian, Dutch
        ("Última oportunidad: solo hasta el viernes.", "urgency"),
        ("Compra ahora con un 20 % de descuento.", "call"),
        ("Prenota una demo gratuita.", "call"),
        ("Laatste kans: koop nu.", "urgency"),
    ],
)
def test_a_pitch_is_found(text: str, kind: str) -> None:
    assert kind in kinds(text)


def test_several_sales_links() -> None:
    text = "See https://example.com/pricing\nand https://example.com/demo for more.\n"
    [finding] = pitch_findings(text)
    assert (finding.kind, finding.line) == ("links", 2)
    assert kinds("One link: https://example.com/pricing") == set()


def test_a_finding_names_the_line_the_reason_and_what_to_do() -> None:
    text = "Hi {{ contact.first_name }},\n\nhow was the summer?\n\nOnly until Friday: 20% off!\n"
    findings = pitch_findings(text)
    assert {(f.line, f.kind) for f in findings} == {(5, "discount"), (5, "urgency")}
    urgency = next(f for f in findings if f.kind == "urgency")
    assert urgency.reason == 'urgency ("Only until Friday")'
    assert "deadline" in urgency.advice


@pytest.mark.parametrize(
    "text",
    [
        "Hi Mira, how was the move to Lisbon? I'd love to hear how the new team is.",
        "Hallo Jo, wie geht es dir? Ich habe neulich an unser Projekt gedacht.",
        "Bonjour Anna, j'espère que tout va bien. Un café la semaine prochaine ?",
        "Hola Ana, ¿qué tal el nuevo trabajo? Me alegro mucho por ti.",
        "We met at the EU GDPR workshop in the USA; the NASA talk was great!",
        "{{ CONTACT.FIRST_NAME | UPPER }} {% IF A AND B %}hi{% ENDIF %}",
        "I'm away until Friday, then back in Berlin.",
        "It took us 3 days and 20% of the budget to find the bug.",
    ],
)
def test_a_friendly_note_is_not_a_pitch(text: str) -> None:
    assert pitch_findings(text) == []


def test_no_example_template_reads_like_a_pitch() -> None:
    folders = [
        ROOT / "templates",
        ROOT / "src" / "toma" / "project" / "starter" / "templates",
        ROOT / "src" / "toma" / "project" / "starter" / "newsletters",
    ]
    files = [p for folder in folders for p in folder.rglob("*.md") if "layouts" not in p.parts]
    assert len(files) >= 10
    for path in files:
        assert pitch_findings(path.read_text(encoding="utf-8")) == [], path


def test_long_hostile_lines_are_read_quickly() -> None:
    import time

    text = ("A" * 3 + " ") * 20_000 + "\n" + "!" * 100_000 + "\n" + "€1" * 50_000
    start = time.perf_counter()
    pitch_findings(text)
    assert time.perf_counter() - start < 2.0
