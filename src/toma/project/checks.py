"""``toma check``: every problem in a project, found before anything is sent.

It reads the config, every sequence file and every template, and renders each
template for each contact that could receive it: a sequence's templates for
the contacts it reaches (by its tag or by hand), and a template no sequence
uses for every contact. All problems are collected, not just the first; the
same problem for many contacts is one entry naming them.

It also reads the text of every template a sequence sends, and of every
newsletter issue, for the signs of a pitch (:mod:`toma.core.tone`): those are
warnings (notes, for newsletters), never problems — they block nothing, and a
template says it knows with ``pitch: ok`` in its front matter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from toma.config import Config, load_config
from toma.config.senders import owner_key, sender_config, unknown_owners
from toma.core.contacts import Contact
from toma.core.invoices import Invoice, invoice_view, make_invoice
from toma.core.newsletters import recipients
from toma.core.sequences import Sequence
from toma.core.tone import SILENCE_KEY, pitch_findings
from toma.errors import TemplateError, TomaError
from toma.mail.render import Templates, base_context
from toma.mail.unsubscribe import Unsubscribe
from toma.project.newsletters import load_newsletters, newsletter_templates
from toma.project.sequences import load_sequences
from toma.store import Reader, open_configured
from toma.store.records import contacts as addressbook
from toma.store.records import enrolments
from toma.store.records import invoices as billing


@dataclass(frozen=True)
class ToneWarning:
    """A template that reads like a pitch: where, why, and what to do about it."""

    file: Path
    line: int
    message: str
    note: bool = False  # a newsletter's: softer, and not counted in the exit status

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class CheckReport:
    problems: list[TomaError] = field(default_factory=list)
    warnings: list[ToneWarning] = field(default_factory=list)
    templates: int = 0
    sequences: int = 0
    contacts: int = 0
    renders: int = 0
    newsletters: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def warned(self) -> bool:
        """True if a template a sequence sends reads like a pitch (notes do not count)."""
        return any(not warning.note for warning in self.warnings)


def check_project(config_path: Path) -> CheckReport:
    """Check the project of ``config_path``; its store is only read."""
    report = CheckReport()
    try:
        config = load_config(config_path)
    except TomaError as exc:
        report.problems.append(exc)
        return report
    store = open_configured(config)
    try:
        check_config_tree(config, store, report)
    finally:
        store.close()
    return report


def check_config_tree(config: Config, reader: Reader, report: CheckReport) -> None:
    sequences, errors = load_sequences(config.paths.sequences, windows=set(config.windows))
    report.problems.extend(errors)
    report.sequences = len(sequences)

    templates = Templates(config.paths.templates)
    names = templates.names()
    report.templates = len(names)
    broken: set[str] = set()
    for name in names:
        try:
            templates.check(name)
        except TemplateError as exc:
            report.problems.append(exc)
            broken.add(name)

    used: dict[str, list[Sequence]] = {}
    for sequence in sequences.values():
        for template, key in _templates_of(sequence):
            if template not in names:
                report.problems.append(
                    TemplateError(
                        f"uses the template {template!r}, which does not exist in "
                        f"{config.paths.templates}",
                        file=sequence.file,
                        key=key,
                    )
                )
                broken.add(template)
            used.setdefault(template, []).append(sequence)
    invoice_templates = {
        stage.template: f"invoices.stages[{index}].template"
        for index, stage in enumerate(config.invoices.stages)
    }
    if config.invoices.thank_you:
        invoice_templates[config.invoices.thank_you] = "invoices.thank_you"
    for template, key in invoice_templates.items():
        if template not in names:
            report.problems.append(
                TemplateError(
                    f"the template {template!r} does not exist", file=config.file, key=key
                )
            )
            broken.add(template)

    contacts = list(addressbook.all_contacts(reader))
    report.contacts = len(contacts)
    report.problems.extend(unknown_owners(config, ((c.email, c.owner) for c in contacts)))
    hand_enrolled: dict[str, set[str]] = {}
    for enrolment in enrolments.all_enrolments(reader):
        hand_enrolled.setdefault(enrolment.sequence, set()).add(enrolment.contact)

    for name in sorted(set(used) & set(names) - broken):
        _check_tone(templates, name, report, note=False)

    _check_newsletters(config, contacts, report)
    by_email = {c.email: c for c in contacts}
    invoices = list(billing.all_invoices(reader))
    for name in names:
        if name in broken:
            continue
        if name in invoice_templates:
            _render_invoices(templates, config, name, invoices, by_email, report)
            continue
        if name in used:
            audience = [
                c
                for c in contacts
                if any(_reaches(seq, c, hand_enrolled.get(seq.name, set())) for seq in used[name])
            ]
        else:
            audience = contacts
        _render_all(templates, config, name, audience, report)


def _templates_of(sequence: Sequence) -> Iterable[tuple[str, str]]:
    for index, step in enumerate(sequence.steps):
        yield step.template, f"steps[{index}].template"
    if sequence.repeat:
        yield sequence.repeat.template, "repeat.template"


def _reaches(sequence: Sequence, contact: Contact, enrolled: set[str]) -> bool:
    if contact.email in enrolled:
        return True
    return bool(sequence.enroll_tag) and contact.has_tag(sequence.enroll_tag or "")


def _check_newsletters(config: Config, contacts: list[Contact], report: CheckReport) -> None:
    """Every issue loads (a purpose, an audience that parses) and renders for its audience."""
    folder = config.paths.newsletters
    if not folder.is_dir():
        return
    issues, problems = load_newsletters(
        folder, templates_layouts=config.paths.templates / "layouts"
    )
    report.problems.extend(problems)
    report.newsletters = len(issues) + len(problems)
    # A throwaway secret: checking writes nothing; the links only need to exist.
    links = Unsubscribe(
        secret=bytes(32),
        base_url=config.unsubscribe.base_url or None,
        mailto=config.inbox.unsubscribe_address or config.owner.email,
    )
    templates = newsletter_templates(folder, templates_layouts=config.paths.templates / "layouts")
    for issue in issues:
        _check_tone(templates, issue.name, report, note=True)
        audience = recipients(issue, contacts)
        _render_all(
            templates,
            config,
            issue.name,
            audience,
            report,
            extras=[{**links.context(c), "newsletter": issue.view()} for c in audience],
        )


def _check_tone(templates: Templates, name: str, report: CheckReport, *, note: bool) -> None:
    """Warn where the subject or body of *name* reads like a pitch, unless it says it knows.

    A newsletter may point to an offer on a landing page: its links are not
    counted, and what else is found is a note.
    """
    try:
        if templates.front(name).get(SILENCE_KEY):
            return
    except TemplateError:
        return  # reported as a problem already
    path = templates.folder / name
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    for finding in pitch_findings(_subject_and_body(text)):
        if note and finding.kind == "links":
            continue
        verb = "may read" if note else "reads"
        report.warnings.append(
            ToneWarning(
                file=path,
                line=finding.line,
                message=(
                    f"{verb} like a pitch: {finding.reason}. Suggestion: {finding.advice}; "
                    f"or, if you mean it, put '{SILENCE_KEY}: ok' in its front matter"
                ),
                note=note,
            )
        )


def _subject_and_body(text: str) -> str:
    """*text* with its front matter blanked but for the subject, so lines keep their numbers."""
    lines = text.split("\n")
    if not lines or lines[0].rstrip() != "---":
        return text
    for index in range(1, len(lines)):
        if lines[index].rstrip() == "---":
            break
        if not lines[index].lstrip().lower().startswith("subject:"):
            lines[index] = ""
    lines[0] = ""
    return "\n".join(lines)


def _render_invoices(
    templates: Templates,
    config: Config,
    name: str,
    invoices: list[Invoice],
    contacts: dict[str, Contact],
    report: CheckReport,
) -> None:
    """An invoice template, rendered for every invoice (or an example one if there is none)."""
    pairs = [(contacts[i.contact], i) for i in invoices if i.contact in contacts]
    if not pairs and contacts:
        some = next(iter(contacts.values()))
        pairs = [
            (
                some,
                make_invoice(
                    "EXAMPLE-1",
                    some.email,
                    "100.00",
                    "EUR",
                    issued=date(2026, 1, 5),
                    terms=config.invoices.terms,
                    delivered=["An example of delivered work"],
                ),
            )
        ]
    _render_all(
        templates,
        config,
        name,
        [c for c, _i in pairs],
        report,
        extras=[{"invoice": invoice_view(i, today=i.due)} for _c, i in pairs],
    )


def _render_all(
    templates: Templates,
    config: Config,
    name: str,
    audience: list[Contact],
    report: CheckReport,
    extras: list[dict[str, object]] | None = None,
) -> None:
    grouped: dict[tuple[str | None, int | None, str], list[str]] = {}
    first: dict[tuple[str | None, int | None, str], TemplateError] = {}
    views: dict[str, Config] = {"": config}  # each contact is rendered as its sender sends
    for index, contact in enumerate(audience):
        report.renders += 1
        extra = extras[index] if extras else {}
        if contact.owner not in views:
            owner = owner_key(config, contact.owner)
            views[contact.owner] = sender_config(config, owner) if owner else config
        seen_by = views[contact.owner]
        try:
            templates.render(name, base_context(seen_by, contact, **extra), contact=contact.email)
        except TemplateError as exc:
            key = (exc.file, exc.line, exc.message)
            grouped.setdefault(key, []).append(contact.email)
            first.setdefault(key, exc)
    for key, emails in grouped.items():
        problem = first[key]
        if len(emails) > 1:
            shown = ", ".join(emails[:3]) + (
                f" and {len(emails) - 3} more" if len(emails) > 3 else ""
            )
            problem = TemplateError(
                f"{problem.message} (for {len(emails)} contacts: {shown})",
                file=problem.file,
                line=problem.line,
                key=problem.key,
            )
        report.problems.append(problem)
