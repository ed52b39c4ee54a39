"""Render and build 2,000 messages from a 40-line template; print the rates.

    .venv/bin/python bench/render_build.py [COUNT]

Rendering is Jinja (subject, text, Markdown source) + Markdown -> HTML + the
layout; building is toma.mail.mime (compat32 classes), set against the same
message made with the modern EmailMessage API. Medians of 3 runs; compare the
ratios, not absolute figures across machines.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from toma.mail.mime import build_message
from toma.mail.render import Rendered, Templates

LAYOUT = """\
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ subject }}</title></head>
<body><div style="max-width:600px;margin:0 auto;font-family:Georgia,serif;">
{{ body }}
{% if unsubscribe_url %}<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>{% endif %}
<p>{{ postal_address }}</p>
</div></body></html>
"""

BODY_LINES = [
    "Hi {{ contact.first_name }},",
    "",
    "it was good to meet you at {{ contact.met_where }} — I enjoyed our talk about",
    "{{ contact.met_why }}, and I have been thinking about it since.",
    "",
    "{% if contact.company is defined %}",
    "How are things at **{{ contact.company }}**? Last time you mentioned a few",
    "projects that sounded *interesting*.",
    "{% endif %}",
    "",
    "A few things I found useful this quarter:",
    "",
    "- [A short guide to retention](https://example.com/retention)",
    "- [Pricing without regret](https://example.com/pricing)",
    "- [Invoices people pay on time](https://example.com/invoices)",
    "",
    "No agenda here. If any of it is useful, good; if not, no reply needed.",
    "",
    "> The cheapest growth is the customer you already have.",
    "",
    "Some notes from the last workshop, in case they help:",
    "",
    "1. Write the follow-up before the meeting ends.",
    "2. Keep a list of who you promised what.",
    "3. Say thank you when an invoice is paid.",
    "",
    "All the best,",
    "{{ sender.signature | default(sender.first_name) }}",
]
TEMPLATE = (
    '---\nsubject: "Good to meet you at {{ contact.met_where }}"\n---\n'
    + "\n".join(BODY_LINES + [""] * (37 - len(BODY_LINES)))
    + "\n"
)
WHEN = datetime(2024, 5, 6, 9, 1, tzinfo=UTC)


def contexts(count: int) -> list[dict[str, Any]]:
    sender = {
        "name": "Jane Doe",
        "first_name": "Jane",
        "email": "jane@example.com",
        "signature": "Jane",
        "postal_address": "1 Harbour Road, Kiel",
    }
    return [
        {
            "contact": {
                "email": f"p{n}@example.org",
                "first_name": ("Zoë", "Mira", "太郎")[n % 3],
                "met_where": "PyCon DE",
                "met_why": "keeping clients",
                "company": f"Firm {n}",
            },
            "sender": sender,
            "unsubscribe_url": f"https://example.com/u/{n}",
        }
        for n in range(count)
    ]


def build_compat32(rendered: Rendered, n: int) -> bytes:
    return build_message(
        rendered,
        sender_name="Jane Doe",
        sender_email="jane@example.com",
        to_name=f"Zoë Ångström {n}",
        to_email=f"p{n}@example.org",
        date=WHEN,
        domain="example.com",
        headers={"X-Toma-Ref": f"new-acquaintance/nice-to-meet/{n}"},
        list_unsubscribe=[f"mailto:u+{n}@example.com", f"https://example.com/u/{n}"],
        list_unsubscribe_post=True,
    ).data


def build_modern(rendered: Rendered, n: int) -> bytes:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = Address("Jane Doe", addr_spec="jane@example.com")
    message["To"] = Address(f"Zoë Ångström {n}", addr_spec=f"p{n}@example.org")
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(WHEN)
    message["Message-ID"] = make_msgid(domain="example.com")
    message["X-Toma-Ref"] = f"new-acquaintance/nice-to-meet/{n}"
    message["List-Unsubscribe"] = f"<mailto:u+{n}@example.com>, <https://example.com/u/{n}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return bytes(message)


def median_rate(count: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return count / statistics.median(times)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "templates"
        (folder / "layouts").mkdir(parents=True)
        (folder / "layouts" / "default.html").write_text(LAYOUT, encoding="utf-8")
        (folder / "t.md").write_text(TEMPLATE, encoding="utf-8")
        assert TEMPLATE.count("\n") == 40

        start = time.perf_counter()
        templates = Templates(folder)
        templates.check("t.md")
        compile_ms = (time.perf_counter() - start) * 1000

        ctxs = contexts(count)
        rendered = [templates.render("t.md", c) for c in ctxs]
        jinja_only = templates._get("t.md", contact=None)  # a breakdown only

        def render_all() -> None:
            for c in ctxs:
                templates.render("t.md", c)

        def jinja_all() -> None:
            for c in ctxs:
                jinja_only.text.template.render(c)
                jinja_only.markdown.template.render(c)

        def compat32_all() -> None:
            for n, r in enumerate(rendered):
                build_compat32(r, n)

        def modern_all() -> None:
            for n, r in enumerate(rendered):
                build_modern(r, n)

        renders = median_rate(count, render_all)
        jinja = median_rate(count, jinja_all)
        compat32 = median_rate(count, compat32_all)
        modern = median_rate(count, modern_all)
        size = len(build_compat32(rendered[0], 0))

    print(f"messages: {count}, template: 40 lines, message: {size} bytes")
    print(f"compile (template + layout, once):  {compile_ms:8.1f} ms")
    print(
        f"render (subject, text, HTML):       {renders:8.0f} renders/s "
        f"({1e6 / renders:.0f} µs each)"
    )
    print(f"  of which Jinja, both bodies:      {jinja:8.0f} /s ({1e6 / jinja:.0f} µs each)")
    print(
        f"build, compat32 (toma.mail.mime):     {compat32:8.0f} builds/s "
        f"({1e6 / compat32:.0f} µs each)"
    )
    print(
        f"build, EmailMessage (modern API):   {modern:8.0f} builds/s ({1e6 / modern:.0f} µs each)"
    )
    print(f"compat32 / EmailMessage:            {compat32 / modern:8.2f}x")
    both = 1 / (1 / renders + 1 / compat32)
    print(f"render + build:                     {both:8.0f} messages/s")


if __name__ == "__main__":
    main()
