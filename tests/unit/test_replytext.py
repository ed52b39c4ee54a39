"""The new text of a reply, one test per way mail programs mark quoted history and sign-offs.

The shapes are those of real replies (see tests/corpus/replytext/SOURCES.md); the
corpus figures themselves are in test_replytext_corpus.py.
"""

from __future__ import annotations

import pytest

from toma.core.reading.replytext import new_text


class TestFoldedReplyHeaders:
    """A reply header broken over several lines: address or verb on the next ones."""

    @pytest.mark.parametrize(
        "header",
        [
            "On Wed, Dec 9, Mister Example\n<mrmister@example.com>\nwrote:",
            "Am Mo., 4. Juli 2022 um 08:13 Uhr schrieb Rick Sanchez <\nrick@example.com>:",
            "Il giorno lun 4 lug 2022 alle ore 08:12 Rick Sanchez <rick@example.com>\nha scritto:",
            "El mié, 29 jun 2022 a las 11:08, Rick Sanchez (<rick@example.com>)\nescribió:",
            "Em 10 de julho de 2017 às 16:32:35, John Doe (\ncontact@example.com) escreveu:",
            "pe 20. lokakuuta 2017 klo 17.50 John Coe\n<john@example.com> kirjoitti:",
            "Aa Bb Cc <abc@example.org> schrieb am So., 23.\nJuni 2024, 21:08:",
            "Dne po 15. led. 2025 17:03 Anna Anderssonová <anna@example.com>\nnapsal(a):",
            "On Mon, Jan 15, 2025 at 5:03 PM Anna [mailto:anna@example.com]\nwrote:",
        ],
    )
    def test_folded_header(self, header: str) -> None:
        body = f"Works for me, see you then.\n\n{header}\n\n> Can we meet on Monday?\n"
        assert new_text(body) == "Works for me, see you then."

    def test_digits_in_the_folded_address_do_not_split_the_header(self) -> None:
        body = (
            "Cool!\n\nOn Sun, Jun 9, 2013 at 1:39 PM, eviltrout via Discourse Meta\n"
            "<reply+a7c8e24f0a9b2f37@meta.discourse.org> wrote:\n\n> hi\n"
        )
        assert new_text(body) == "Cool!"

    def test_a_line_of_text_before_a_whole_header_is_kept(self) -> None:
        body = "I'll be there at 5\nOn Mon, 2 Jan 2023, Bob <bob@example.com> wrote:\n> hi\n"
        assert new_text(body) == "I'll be there at 5"


class TestSeparatorsAndHeaderBlocks:
    @pytest.mark.parametrize(
        "block",
        [
            "-------- Original Message --------\nSubject: Hi\nFrom: Bob <bob@example.com>",
            "-------- Oprindelig besked --------\nFra: Bob <bob@example.com>\nDato: 04.07.2024",
            "-------- Message d'origine --------\nDe : Bob <bob@example.com>\nDate : 23/06/24",
            "*From:* Bob Example <bob@example.com>\n*Sent:* Thursday, April 27, 2023 11:14 AM\n"
            "*To:* ann@example.com\n*Subject:* Re: the draft",
            "**From:** Bob <bob@example.com>\n**Sent:** Friday\n**To:** Ann\n**Subject:** Hi",
            "---------- Forwarded message ---------\nFrom: Bob <bob@example.com>\n"
            "Date: Mon, Dec 15, 2024 at 3:00 PM\nSubject: Update\nTo: Ann <ann@example.com>",
            "Begin forwarded message:\n\nFrom: Bob <bob@example.com>\nSubject: Update",
            "---------- Weitergeleitete Nachricht ---------\nVon: Bob <bob@example.com>",
            "Date: Tue, 2 Oct 2012 02:35:10 +0000 From: bob@example.com To: Ann Subject: Hi",
            "De: bob@example.com\nEnviada em: sexta-feira, 27 de julho de 2012 15:09\n"
            "Para: ann@example.com\nAssunto: Oi",
        ],
    )
    def test_block(self, block: str) -> None:
        body = f"Thanks, I will read it tonight.\n\n{block}\n\nHere is the draft.\n"
        assert new_text(body) == "Thanks, I will read it tonight."


class TestLocalizedReplyLines:
    @pytest.mark.parametrize(
        "line",
        [
            "Am 13.12.2017 21:11 schrieb Bob <bob@example.com>:",
            "Le 29 avr. 2025 à 11:11, Bob <bob@example.com> a écrit :",
            "El lun, 15 ene 2025 a las 17:03, Bob (<bob@example.com>) escribió:",
            "In data 11 ottobre 2017 21:11:31 Bob <bob@example.com> ha scritto:",
            "Op ma 15 jan. 2025 17:03 schreef Bob <bob@example.com>:",
            "15. marts 2017 kl. 11.00 skrev Bob <bob@example.com>:",
            "Den fre 28 feb. 2025 10:15 Bob <bob@example.com> skrev:",
            "Dnia 28 lutego 2023 14:00 Bob <bob@example.com> napisał(a):",
            "ср, 30 апр. 2025 г. в 15:19, Bob <bob@example.com>:",
            "Bob <bob@example.hu> ezt írta (időpont: 2026. aug. 16., Ke 12:27):",
            "---- On Wed, 24 Feb 2021 14:02:50 +0530 bob@example.com wrote ----",
        ],
    )
    def test_reply_line(self, line: str) -> None:
        body = f"Sounds good.\n\n{line}\n\nAre you free next week?\n"
        assert new_text(body) == "Sounds good."


class TestIndentedHistory:
    def test_history_quoted_with_spaces(self) -> None:
        body = (
            "    On Fri, Nov 20, 2026 at 10:00 AM Bob <bob@example.com> wrote:\n"
            "    Can you make it Tuesday?\n"
            "Yes, Tuesday works.\n"
            "    And bring the draft?\n"
            "I will.\n"
        )
        assert new_text(body) == "Yes, Tuesday works.\nI will."

    def test_indented_header_block(self) -> None:
        body = (
            "merci d'avance\n\n      De : Bob <bob@example.fr>\n À : Ann <ann@example.com>\n"
            " Envoyé le : Mercredi 30 novembre 2016 10h30\n Objet : Re: Question\n\nbonjour\n"
        )
        assert new_text(body) == "merci d'avance"

    def test_own_indented_lines_stay(self) -> None:
        body = "On your host run:\n\n     telnet 127.0.0.1 52698\n\nThat should connect.\n"
        assert new_text(body) == body.strip()

    def test_a_wrapped_quoted_line_is_not_an_answer(self) -> None:
        body = (
            "This is a test\n\nOn Sep 21, 2016 3:18 PM, Bob <bob@example.com> wrote:\n"
            "> Pitchfork occupy vegan pabst hammock. Wayfarers etsy pok pok, kale chips\n"
            "brooklyn four dollar toast street art 3 wolf moon.\n> VIEW ALL MESSAGES\n"
        )
        assert new_text(body) == "This is a test"


class TestSignOffs:
    @pytest.mark.parametrize(
        ("ending", "language"),
        [
            ("Viele Grüße\nB", "de"),
            ("Cordialement\nB", "fr"),
            ("Saludos\nB", "es"),
            ("Saluti\nB", "it"),
            ("Groet\nB", "nl"),
            ("Mvh,\nPerson B", "sv"),
            ("Med venlig hilsen\nAnders Andersen", "da"),
            ("Med venlig hilsen / Kind regards\n\nTim Tommy\nCEO", "da"),
            ("S pozdravem,\nB", "cs"),
            ("Udvozlettel,\nAnna", "hu"),
            ("Pozdrawiam,\nJan", "pl"),
            ("Cheers 🎉\nSarah\n\n—————\nSarah Johnson\nProduct Manager\n📧 sarah@x.example", "en"),
            ("/B", "en"),
            ("Stranger", "en"),
            (
                "-Maarten de Jong\n\n\n______________________\nriak mailing list\n"
                "riak@lists.example.com\nhttp://lists.example.com/listinfo/riak",
                "nl",
            ),
        ],
    )
    def test_closing_and_name(self, ending: str, language: str) -> None:
        body = f"Hi Anna,\n\nThe terms look fine; let us talk tomorrow.\n\n{ending}\n"
        assert new_text(body) == "Hi Anna,\n\nThe terms look fine; let us talk tomorrow.", language

    @pytest.mark.parametrize(
        "footer",
        [
            "Verstuurd vanaf mijn iPhone",
            "Inviato da BlackBerry",
            "Inviato da Verizon Wireless BlackBerry",
            "Gesendet von Outlook für Android<https://aka.ms/AAb9ysg>",
            "Télécharger Outlook pour iOS<https://aka.ms/o0ukef>",
            "Download Outlook for Android<https://aka.ms/ghei36>",
            "Sent from Mail for Windows 10",
            "Skickat från min iPhone",
            "Wysłane z iPhone'a",
            "Enviado desde mi iPhone",
        ],
    )
    def test_mobile_footer(self, footer: str) -> None:
        assert new_text(f"Here is another email\n\n{footer}\n") == "Here is another email"

    @pytest.mark.parametrize(
        "body",
        [
            "Can we meet?\n\nYes",
            "Thanks!",
            "Done.\n\nP.S. --- see the attachment",
            "Agenda:\n\n---\nItem one at 10\nItem two at 11",
            "See you at the Office",
            "Service desk reply!\n\n/label ~label2",
            "Which day suits you?\n\nTuesday",
            "Great, thanks.\n\n- Jake out",
        ],
    )
    def test_the_writers_own_words_stay(self, body: str) -> None:
        assert new_text(body) == body
