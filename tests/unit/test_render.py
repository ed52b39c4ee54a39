"""Templates: strict, sandboxed, and every error points at the line a user sees."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from toma.config import parse_config
from toma.core.contacts import make_contact
from toma.core.newsletters import KEYS as NEWSLETTER_KEYS
from toma.errors import TemplateError
from toma.mail.render import Rendered, Templates, base_context

LAYOUT = """\
<html><head><title>{{ subject }}</title></head><body>
{{ body }}
<p class="to">{{ contact.first_name | default("friend") }}</p>
<p class="from">{{ sender.name }}</p>
{% if unsubscribe_url %}<a href="{{ unsubscribe_url }}">Unsubscribe</a>{% endif %}
{% if unsubscribe_mailto is defined %}<a href="{{ unsubscribe_mailto }}">By mail</a>{% endif %}
<p class="address">{{ postal_address }}</p>
</body></html>
"""

NICE_TO_MEET = """\
---
subject: "Good to meet you at {{ contact.met_where }}"
purpose: stay in touch
---
Hi {{ contact.first_name }},

it was good to meet you at {{ contact.met_where }}.

Best,
{{ sender.first_name }}
"""


def project(tmp_path: Path, templates: dict[str, str], layout: str = LAYOUT) -> Templates:
    folder = tmp_path / "templates"
    for name, text in {"layouts/default.html": layout, **templates}.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return Templates(folder)


def context(**contact: Any) -> dict[str, Any]:
    return {
        "contact": {"email": "mira@example.org", **contact},
        "sender": {
            "name": "Jane Doe",
            "first_name": "Jane",
            "email": "jane@example.com",
            "signature": "Jane",
            "postal_address": "1 Harbour Road, Kiel",
        },
    }


def render_one(
    tmp_path: Path, body: str, front: str = "subject: Hello", **contact: Any
) -> Rendered:
    templates = project(tmp_path, {"t.md": f"---\n{front}\n---\n{body}"})
    return templates.render("t.md", context(**contact), contact="mira@example.org")


def error_of(tmp_path: Path, text: str, **contact: Any) -> TemplateError:
    templates = project(tmp_path, {"t.md": text})
    with pytest.raises(TemplateError) as caught:
        templates.render("t.md", context(**contact), contact="mira@example.org")
    return caught.value


class TestRendering:
    def test_subject_text_and_html_are_rendered(self, tmp_path: Path) -> None:
        """Text part: the Markdown source as written; HTML part: Markdown in the layout."""
        templates = project(tmp_path, {"acquaintance/nice-to-meet.md": NICE_TO_MEET})
        rendered = templates.render(
            "acquaintance/nice-to-meet.md", context(first_name="Mira", met_where="PyCon")
        )
        assert rendered.subject == "Good to meet you at PyCon"
        assert rendered.text == "Hi Mira,\n\nit was good to meet you at PyCon.\n\nBest,\nJane\n"
        assert "<p>Hi Mira,</p>" in rendered.html
        assert "<title>Good to meet you at PyCon</title>" in rendered.html
        assert rendered.template == "acquaintance/nice-to-meet.md"

    def test_front_matter_keys_are_kept(self, tmp_path: Path) -> None:
        """Keys used by other features (purpose, audience, send_at) stay available.

        They are a newsletter's keys: templates that take them say so.
        """
        plain = project(
            tmp_path,
            {
                "n.md": "---\nsubject: Hi\npurpose: news\n"
                "audience: client and not no-news\n"
                "send_at: 2024-05-01T09:00:00+02:00\n---\nx\n"
            },
        )
        templates = Templates(plain.folder, keys=NEWSLETTER_KEYS, kind="newsletter")
        rendered = templates.render("n.md", context())
        assert rendered.front["purpose"] == "news"
        assert rendered.front["audience"] == "client and not no-news"
        assert "send_at" in rendered.front
        assert templates.front("n.md") == rendered.front

    def test_line_breaks_in_a_letter_survive_in_html(self, tmp_path: Path) -> None:
        """'Best,' and the name below it stay on two lines in the HTML part, as in the text."""
        rendered = render_one(tmp_path, "Best,\nJane\n")
        assert "Best,<br />\nJane" in rendered.html

    @pytest.mark.parametrize(
        ("front", "expected"),
        [
            ('subject: "  Hello   {{ contact.first_name }}  "', "Hello Mira"),
            ('subject: "Hello\\n\\tMira"', "Hello Mira"),
            ("subject: >\n  Hello\n  {{ contact.first_name }}", "Hello Mira"),
            (
                'subject: "Hi {% if contact.company is defined %}\\n {{ contact.company }}'
                '{% endif %} there"',
                "Hi there",
            ),
            ("subject: 2024", "2024"),
        ],
    )
    def test_subject_is_one_line_with_whitespace_collapsed(
        self, tmp_path: Path, front: str, expected: str
    ) -> None:
        """A subject is a header: one line, single spaces, whatever the template did."""
        assert render_one(tmp_path, "x", front, first_name="Mira").subject == expected

    def test_subject_collapses_line_breaks_in_values(self, tmp_path: Path) -> None:
        rendered = render_one(
            tmp_path,
            "x",
            'subject: "Hi {{ contact.first_name }}"',
            first_name="Eve\r\nBcc: x@example.com",
        )
        assert rendered.subject == "Hi Eve Bcc: x@example.com"

    def test_blank_lines_left_by_block_tags_are_tidied(self, tmp_path: Path) -> None:
        """The text part has no runs of blank lines or trailing spaces from the template logic."""
        body = (
            "Hi,   \n{% if contact.company is defined %}\nat {{ contact.company }}\n"
            "{% endif %}\n\n\n\nBye\n\n"
        )
        rendered = render_one(tmp_path, body)
        assert rendered.text == "Hi,\n\nBye\n"

    def test_unchanged_file_is_compiled_once_per_instance(self, tmp_path: Path) -> None:
        """One compile per instance (per tick): an edit mid-tick is seen by the next tick."""
        templates = project(tmp_path, {"t.md": "---\nsubject: One\n---\nfirst\n"})
        assert templates.render("t.md", context()).subject == "One"
        (tmp_path / "templates" / "t.md").write_text("---\nsubject: Two\n---\nsecond\n")
        assert templates.render("t.md", context()).subject == "One"
        assert Templates(tmp_path / "templates").render("t.md", context()).subject == "Two"

    def test_windows_line_endings_are_read(self, tmp_path: Path) -> None:
        templates = project(tmp_path, {})
        (tmp_path / "templates" / "w.md").write_bytes(
            b"---\r\nsubject: Hi\r\n---\r\nline {{ contact.nope }}\r\n"
        )
        with pytest.raises(TemplateError) as caught:
            templates.render("w.md", context())
        assert caught.value.line == 4


class TestDefaults:
    @pytest.mark.parametrize(
        ("contact", "expected"),
        [
            ({"first_name": "Mira"}, "Hi Mira!"),
            ({"first_name": "Mira", "nickname": "Mimi"}, "Hi Mimi!"),
        ],
    )
    def test_default_filter_works_under_strict_undefined(
        self, tmp_path: Path, contact: dict[str, str], expected: str
    ) -> None:
        """A template may give an explicit default for a field a contact lacks."""
        rendered = render_one(
            tmp_path, "Hi {{ contact.nickname | default(contact.first_name) }}!", **contact
        )
        assert rendered.text == expected + "\n"

    def test_is_defined_test_works(self, tmp_path: Path) -> None:
        body = "{% if contact.company is defined %}at {{ contact.company }}{% else %}hi{% endif %}"
        assert render_one(tmp_path, body).text == "hi\n"
        assert render_one(tmp_path, body, company="Acme").text == "at Acme\n"

    def test_default_of_a_missing_field_is_still_an_error(self, tmp_path: Path) -> None:
        """A default that is itself missing is named, not printed as ''."""
        error = error_of(
            tmp_path, "---\nsubject: x\n---\n{{ contact.nickname | default(contact.first_name) }}\n"
        )
        assert error.message.startswith("contact.first_name is not defined")

    def test_field_named_like_a_dict_method_is_the_field(self, tmp_path: Path) -> None:
        """contact.items is the custom field "items", not dict.items."""
        assert (
            render_one(tmp_path, "{{ contact.items }}", items="three boxes").text == "three boxes\n"
        )


class TestErrors:
    @pytest.mark.parametrize(
        ("text", "line", "message"),
        [
            ("Hello\n", 1, "starts with front matter"),
            ("---\nsubject: Hi\nbody\n", 1, "never closed"),
            ("---\nsubject: Hi\npurpose: [unclosed\n---\nx\n", 4, "not valid YAML"),
            ("---\npurpose: x\nsubject: Hi\n  bad: indent\n---\nx\n", 4, "not valid YAML"),
            ("---\nsubject: {{ contact.first_name }}, hi\n---\nx\n", 2, "must be quoted"),
            ("---\nsubject: {{ contact.first_name }}\n---\nx\n", 2, "must be quoted"),
            ("---\npurpose: x\n---\nx\n", 1, "no subject"),
            ("---\n---\nx\n", 1, "no subject"),
            ("---\nsubject: Hi\npurpose: a\npurpose: b\n---\nx\n", 4, "given twice"),
            ("---\nsubject: '  '\n---\nx\n", 2, "subject is empty"),
            ("---\nsubject: [a, b]\n---\nx\n", 2, "must be text"),
            ("---\n- subject\n---\nx\n", 2, "key: value"),
        ],
    )
    def test_front_matter_errors_are_located(
        self, tmp_path: Path, text: str, line: int, message: str
    ) -> None:
        """Front matter problems name the file and the line in the user's editor."""
        error = error_of(tmp_path, text)
        assert error.file == str(tmp_path / "templates" / "t.md")
        assert error.line == line
        assert message in error.message

    @pytest.mark.parametrize(
        ("text", "line"),
        [
            ("---\nsubject: Hi\n---\nfine\n\n{% for x in y %}\nno end\n", 7),
            ("---\nsubject: Hi\npurpose: x\n---\n{{ contact.first_name }\n", 5),
            ("---\nsubject: Hi\n---\na\nb\nc {{ contact | no_such_filter }}\n", 6),
            ('---\nsubject: "Hi {{ }}"\n---\nx\n', 2),
            ('---\npurpose: x\nsubject: "Hi {% if %}"\n---\nx\n', 3),
        ],
    )
    def test_jinja_syntax_errors_are_located(self, tmp_path: Path, text: str, line: int) -> None:
        """Jinja's line in the body or subject becomes the line in the .md file."""
        error = error_of(tmp_path, text)
        assert error.line == line
        assert error.file == str(tmp_path / "templates" / "t.md")

    @pytest.mark.parametrize(
        ("text", "line", "written"),
        [
            (NICE_TO_MEET, 2, "contact.met_where"),
            (
                "---\nsubject: Hi\n---\nHello\n\nWe met at {{ contact.met_where }}.\n",
                6,
                "contact.met_where",
            ),
            (
                "---\nsubject: Hi\n---\n{% if contact.met_where %}x{% endif %}\n",
                4,
                "contact.met_where",
            ),
            ("---\nsubject: Hi\n---\n\n{{ contact['met_where'] }}\n", 5, "contact['met_where']"),
            ("---\nsubject: Hi\n---\n{{ invoice.number }}\n", 4, "invoice"),
            (
                "---\nsubject: Hi\n---\n{{ sender.first_name }} {{ sender.nickname }}\n",
                4,
                "sender.nickname",
            ),
            (
                "---\nsubject: Hi\n---\n{{ contact.first_name\n   ~ contact.met_where }}\n",
                4,
                "contact.met_where",
            ),
        ],
    )
    def test_undefined_field_names_template_line_and_contact(
        self, tmp_path: Path, text: str, line: int, written: str
    ) -> None:
        """A missing field is named as written, at its line, for the contact being rendered."""
        error = error_of(tmp_path, text, first_name="Mira")
        assert error.message.startswith(f"{written} is not defined")
        assert error.file == str(tmp_path / "templates" / "t.md")
        assert error.line == line
        assert error.contact == "mira@example.org"
        assert f"t.md:{line}" in str(error)

    @pytest.mark.parametrize(
        "expression",
        [
            "''.__class__.__mro__",
            "''.__class__",
            "contact.__class__.__base__.__subclasses__()",
            "cycler.__init__.__globals__",
            "lipsum.__globals__",
            "contact.update({'email': 'x@evil.example'})",
            "contact.tags.append('x')",
            "'{0.__class__}'.format(contact)",
        ],
    )
    def test_sandbox_blocks_unsafe_access(self, tmp_path: Path, expression: str) -> None:
        """Templates run sandboxed and cannot change the data they are given."""
        error = error_of(tmp_path, f"---\nsubject: Hi\n---\n\n{{{{ {expression} }}}}\n", tags=["a"])
        assert error.line == 5
        assert "not allowed" in error.message or "unsafe" in error.message

    def test_runtime_error_is_located(self, tmp_path: Path) -> None:
        error = error_of(tmp_path, "---\nsubject: Hi\n---\nok\n{{ 1 // 0 }}\n")
        assert error.line == 5
        assert "ZeroDivisionError" in error.message

    def test_missing_layout_is_named(self, tmp_path: Path) -> None:
        error = error_of(tmp_path, "---\nsubject: Hi\nlayout: fancy\n---\nx\n")
        assert error.line == 3
        assert error.key == "layout"
        assert "fancy" in error.message

    @pytest.mark.parametrize("layout", ["../../etc/passwd", "/etc/passwd", "[a]", "a/../b"])
    def test_layout_outside_the_layouts_folder_is_refused(
        self, tmp_path: Path, layout: str
    ) -> None:
        error = error_of(tmp_path, f"---\nsubject: Hi\nlayout: '{layout}'\n---\nx\n")
        assert "not a layout name" in error.message

    def test_layout_errors_name_the_layout_file(self, tmp_path: Path) -> None:
        templates = project(
            tmp_path,
            {"t.md": "---\nsubject: Hi\n---\nx\n"},
            layout="<html>\n{{ body }}\n{{ contact.met_where }}\n</html>\n",
        )
        with pytest.raises(TemplateError) as caught:
            templates.render("t.md", context())
        assert caught.value.file == str(tmp_path / "templates" / "layouts" / "default.html")
        assert caught.value.line == 3
        assert caught.value.message.startswith("contact.met_where is not defined")

    def test_broken_template_fails_each_time_with_its_contact(self, tmp_path: Path) -> None:
        templates = project(tmp_path, {"t.md": "---\nsubject: Hi\n---\n{% if %}\n"})
        for address in ("a@example.org", "b@example.org"):
            with pytest.raises(TemplateError) as caught:
                templates.render("t.md", context(), contact=address)
            assert caught.value.contact == address
            assert caught.value.line == 4

    @pytest.mark.parametrize("name", ["../outside.md", "missing.md", "/etc/passwd", "t.txt"])
    def test_unknown_template_name_is_an_error(self, tmp_path: Path, name: str) -> None:
        templates = project(tmp_path, {"t.md": "---\nsubject: Hi\n---\nx\n"})
        with pytest.raises(TemplateError):
            templates.render(name, context())


class TestEscaping:
    @pytest.mark.parametrize(
        "first_name",
        ['<script>alert("x")</script>', "<b>Eve</b>", '"><img src=x onerror=alert(1)>'],
    )
    def test_html_ish_values_are_escaped_in_the_html_part(
        self, tmp_path: Path, first_name: str
    ) -> None:
        """No contact field can put markup into the HTML part, in the body or the layout."""
        rendered = render_one(
            tmp_path,
            "Hi {{ contact.first_name }},\n",
            'subject: "Hi {{ contact.first_name }}"',
            first_name=first_name,
        )
        assert "<script" not in rendered.html
        assert "<b>" not in rendered.html
        assert "<img" not in rendered.html
        assert rendered.html.count("&lt;") >= 2  # body and layout
        assert f"Hi {first_name}," in rendered.text  # the text part is plain text

    @pytest.mark.parametrize(
        ("value", "shown"),
        [
            ("*NSYNC", "*NSYNC"),
            ("[click](https://evil.example)", "[click](https://evil.example)"),
            ("1. Acme", "1. Acme"),
            ("# One", "# One"),
            ("Smith_&_Jones", "Smith_&amp;_Jones"),
            ("`code`", "`code`"),
        ],
    )
    def test_values_are_text_not_markdown(self, tmp_path: Path, value: str, shown: str) -> None:
        """A company called *NSYNC shows as written, not as emphasis or a link."""
        rendered = render_one(tmp_path, "{{ contact.company }}\n", company=value)
        assert f"<p>{shown}</p>" in rendered.html
        assert rendered.text == value + "\n"

    def test_safe_lets_a_value_carry_markdown(self, tmp_path: Path) -> None:
        rendered = render_one(tmp_path, "{{ contact.note | safe }}\n", note="**bold**")
        assert "<strong>bold</strong>" in rendered.html

    def test_raw_html_in_the_body_is_shown_as_text(self, tmp_path: Path) -> None:
        """HTML belongs in the layout; the Markdown body cannot carry it."""
        rendered = render_one(tmp_path, "<script>x</script>\n")
        assert "<script>" not in rendered.html

    def test_layout_gets_subject_sender_postal_address_and_unsubscribe(
        self, tmp_path: Path
    ) -> None:
        templates = project(tmp_path, {"t.md": "---\nsubject: Hello & welcome\n---\nBody\n"})
        plain = templates.render("t.md", context(first_name="Mira"))
        assert "<title>Hello &amp; welcome</title>" in plain.html
        assert '<p class="from">Jane Doe</p>' in plain.html
        assert '<p class="address">1 Harbour Road, Kiel</p>' in plain.html
        assert "Unsubscribe" not in plain.html and "By mail" not in plain.html
        news = templates.render(
            "t.md",
            {
                **context(first_name="Mira"),
                "unsubscribe_url": "https://example.com/u?a=1&b=2",
                "unsubscribe_mailto": "mailto:u@example.com",
            },
        )
        assert 'href="https://example.com/u?a=1&amp;b=2"' in news.html
        assert 'href="mailto:u@example.com"' in news.html


class TestListingAndChecking:
    def test_names_lists_templates_but_not_layouts(self, tmp_path: Path) -> None:
        templates = project(
            tmp_path,
            {
                "b/two.md": NICE_TO_MEET,
                "a.md": NICE_TO_MEET,
                "layouts/readme.md": "x",
                ".hidden/x.md": "x",
            },
        )
        assert templates.names() == ["a.md", "b/two.md"]

    def test_check_compiles_without_rendering(self, tmp_path: Path) -> None:
        """check finds syntax errors only: a field some contact lacks is not its business."""
        templates = project(
            tmp_path,
            {
                "good.md": NICE_TO_MEET,
                "bad.md": "---\nsubject: Hi\n---\n{% for %}\n",
                "worse.md": "nothing\n",
            },
        )
        templates.check("good.md")
        with pytest.raises(TemplateError):
            templates.check("bad.md")
        problems = templates.check_all()
        assert sorted((Path(p.file or "").name, p.line) for p in problems) == [
            ("bad.md", 4),
            ("worse.md", 1),
        ]


def test_base_context_gives_contact_and_sender(tmp_path: Path) -> None:
    """Templates see the contact's known fields (empty ones absent) and the sender."""
    config = parse_config(
        {
            "owner": {
                "name": "Jane van Doe",
                "email": "jane@example.com",
                "postal_address": "1 Harbour Road",
                "signature": "Jane",
            }
        },
        file=tmp_path / "config.toml",
    )
    contact = make_contact("mira@example.org", first_name="Mira", fields={"met_where": "PyCon"})
    ctx = base_context(config, contact, invoice={"number": "7"})
    assert ctx["contact"]["first_name"] == "Mira"
    assert ctx["contact"]["met_where"] == "PyCon"
    assert "last_name" not in ctx["contact"]
    assert ctx["sender"] == {
        "name": "Jane van Doe",
        "first_name": "Jane",
        "email": "jane@example.com",
        "signature": "Jane",
        "postal_address": "1 Harbour Road",
    }
    assert ctx["invoice"] == {"number": "7"}


def test_empty_sender_values_are_absent_so_defaults_apply(tmp_path: Path) -> None:
    """No signature configured: `sender.signature | default(sender.first_name)` gives the name."""
    config = parse_config(
        {"owner": {"name": "Jane Doe", "email": "jane@example.com"}}, file=tmp_path / "config.toml"
    )
    ctx = base_context(config, make_contact("mira@example.org", first_name="Mira"))
    assert "signature" not in ctx["sender"]
    assert "postal_address" not in ctx["sender"]
    templates = project(
        tmp_path,
        {"t.md": "---\nsubject: Hi\n---\n{{ sender.signature | default(sender.first_name) }}\n"},
    )
    rendered = templates.render("t.md", ctx)
    assert rendered.text == "Jane\n"
    assert '<p class="address"></p>' in rendered.html


class TestFooter:
    """A context with a way out is a message with a footer, in the text and the HTML."""

    LINKS: ClassVar[dict[str, str]] = {
        "unsubscribe_url": "https://toma.example.com/u/abc.def",
        "unsubscribe_mailto": "mailto:jane@example.com?subject=unsubscribe%20abc.def",
    }

    def test_no_way_out_no_footer(self, tmp_path: Path) -> None:
        rendered = render_one(tmp_path, "Hi,\n\nJane\n")
        assert rendered.text == "Hi,\n\nJane\n"
        assert "Harbour" in rendered.html  # LAYOUT prints the address itself
        assert "Unsubscribe" not in rendered.html

    def test_the_text_part_ends_with_the_address_and_the_link(self, tmp_path: Path) -> None:
        templates = project(tmp_path, {"t.md": "---\nsubject: Hello\n---\nHi,\n\nJane\n"})
        rendered = templates.render("t.md", {**context(), **self.LINKS})
        assert rendered.text == (
            "Hi,\n\nJane\n\n-- \n1 Harbour Road, Kiel\n"
            "Rather not hear from me? Unsubscribe: "
            "https://toma.example.com/u/abc.def\n"
        )

    def test_a_layout_without_one_gets_the_footer_before_the_body_ends(
        self, tmp_path: Path
    ) -> None:
        layout = "<html><BODY>{{ body }}</Body ></html>\n"
        templates = project(tmp_path, {"t.md": "---\nsubject: Hello\n---\nHi\n"}, layout=layout)
        links = {"unsubscribe_mailto": self.LINKS["unsubscribe_mailto"]}
        html = templates.render("t.md", {**context(), **links}).html
        assert html == (
            '<html><BODY><p>Hi</p>\n<p style="margin-top:32px;font-size:12px;color:#777777;">'
            "1 Harbour Road, Kiel<br>Rather not hear from me? "
            '<a href="mailto:jane@example.com?subject=unsubscribe%20abc.def" '
            'style="color:#777777;">Unsubscribe</a>.</p>\n</Body ></html>\n'
        )

    def test_the_address_is_escaped(self, tmp_path: Path) -> None:
        templates = project(
            tmp_path,
            {"t.md": "---\nsubject: Hello\n---\nHi\n"},
            layout="<body>{{ body }}{{ footer }}</body>",
        )
        ctx = context()
        ctx["sender"]["postal_address"] = "<b>Jane & Co</b>\nKiel"
        html = templates.render("t.md", {**ctx, **self.LINKS}).html
        assert "&lt;b&gt;Jane &amp; Co&lt;/b&gt;<br>Kiel<br>" in html
        assert html.count("Unsubscribe") == 1

    def test_a_layout_that_hides_the_way_out_is_an_error(self, tmp_path: Path) -> None:
        """A layout naming the links takes the footer in hand, and must show it."""
        layout = (
            "<body>{{ body }}{% if unsubscribe_url %}<a href='{{ unsubscribe_url }}'>"
            "Leave</a>{% endif %}</body>"
        )
        templates = project(tmp_path, {"t.md": "---\nsubject: Hello\n---\nHi\n"}, layout=layout)
        with pytest.raises(TemplateError) as caught:
            templates.render("t.md", {**context(), **self.LINKS})
        assert caught.value.file is not None and caught.value.file.endswith("default.html")
        assert "postal address" in caught.value.message
        assert "{{ footer }}" in caught.value.message

    def test_the_old_default_layout_still_shows_it_once(self, tmp_path: Path) -> None:
        old = (
            "<body>{{ body }}{% if unsubscribe_url or unsubscribe_mailto %}<p>"
            "{% if postal_address %}{{ postal_address }}<br>{% endif %}"
            '<a href="{{ unsubscribe_url or unsubscribe_mailto }}">Unsubscribe</a></p>'
            "{% endif %}</body>"
        )
        templates = project(tmp_path, {"t.md": "---\nsubject: Hello\n---\nHi\n"}, layout=old)
        html = templates.render("t.md", {**context(), **self.LINKS}).html
        assert html.count("Unsubscribe") == 1 and html.count("Harbour") == 1

    def test_the_scaffold_layout_places_it(self, tmp_path: Path) -> None:
        from toma.project import init as scaffold

        layout = (
            Path(scaffold.__file__).parent / "starter" / "templates" / "layouts" / "default.html"
        ).read_text(encoding="utf-8")
        templates = project(tmp_path, {"t.md": "---\nsubject: Hello\n---\nHi\n"}, layout=layout)
        html = templates.render("t.md", {**context(), **self.LINKS}).html
        assert html.count("Unsubscribe") == 1
        assert html.index("1 Harbour Road, Kiel<br>") < html.index("</div>")
        assert "Unsubscribe" not in templates.render("t.md", context()).html


class TestFrontMatterKeys:
    """A key nobody reads is an error where it is written, not a message gone wrong."""

    @pytest.mark.parametrize(
        ("key", "fragment"),
        [
            ("subjct", "'subjct' is not a front-matter key (did you mean subject?)"),
            ("layuot", "(did you mean layout?)"),
            ("from", "a template cannot set from; the sender is [owner] in config.toml"),
            ("reply_to", "a template cannot set reply_to"),
            ("audience", "'audience' is not a front-matter key: use subject, layout, purpose"),
        ],
    )
    def test_unknown_keys_are_errors_with_file_and_line(
        self, tmp_path: Path, key: str, fragment: str
    ) -> None:
        templates = project(tmp_path, {"t.md": f"---\nsubject: Hi\n{key}: x\n---\nHi\n"})
        for attempt in (
            lambda: templates.check("t.md"),
            lambda: templates.render("t.md", context(), contact="m@example.org"),
        ):
            with pytest.raises(TemplateError) as caught:
                attempt()
            error = caught.value
            assert error.file is not None and error.file.endswith("t.md")
            assert (error.line, error.key) == (3, key)
            assert fragment in error.message

    def test_a_misspelt_subject_is_named_before_the_missing_one(self, tmp_path: Path) -> None:
        templates = project(tmp_path, {"t.md": "---\nsubjct: Hi\n---\nHi\n"})
        with pytest.raises(TemplateError, match="did you mean subject"):
            templates.check("t.md")

    def test_purpose_is_a_template_key(self, tmp_path: Path) -> None:
        templates = project(tmp_path, {"t.md": "---\nsubject: Hi\npurpose: say hello\n---\nHi\n"})
        assert templates.render("t.md", context()).front["purpose"] == "say hello"

    def test_check_all_reports_each_file(self, tmp_path: Path) -> None:
        templates = project(
            tmp_path,
            {
                "a.md": "---\nsubject: Hi\nfrom: me\n---\nHi\n",
                "b.md": "---\nsubject: Hi\nreply_to: me\n---\nHi\n",
                "c.md": "---\nsubject: Hi\n---\nHi\n",
            },
        )
        found = sorted((Path(e.file or "").name, e.key) for e in templates.check_all())
        assert found == [("a.md", "from"), ("b.md", "reply_to")]


class TestDeepFrontMatter:
    """Front matter nested past what the YAML reader can descend is a TemplateError."""

    @pytest.mark.parametrize(
        "front",
        [
            "subject: " + "[" * 5000 + "]" * 5000,
            "subject: Hi\nk: " + "{<<: " * 990 + "{a: 1}" + "}" * 990,
            "subject: Hi\nk:\n" + "".join(" " * n + "a:\n" for n in range(1, 3000)),
        ],
        ids=["flow", "merge-keys", "block"],
    )
    @pytest.mark.parametrize("loader", ["c", "python"])
    def test_deep_nesting_is_a_template_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, front: str, loader: str
    ) -> None:
        import sys

        import yaml

        import toma.mail.frontmatter as frontmatter

        if loader == "python":
            # The loader used where PyYAML was built without libyaml.
            monkeypatch.setattr(frontmatter, "_YAML_LOADER", yaml.SafeLoader)
        templates = project(tmp_path, {"t.md": f"---\n{front}\n---\nHi\n"})

        def at_depth(levels: int) -> None:
            if levels:
                at_depth(levels - 1)
                return
            templates.check("t.md")

        with pytest.raises(TemplateError) as caught:
            at_depth(sys.getrecursionlimit() // 2)  # as deep in the stack as a tick may be
        assert caught.value.file is not None and caught.value.file.endswith("t.md")
        assert (
            "nested too deeply" in caught.value.message or "nesting depth" in caught.value.message
        )


def test_toma_check_finds_unknown_keys_in_templates_and_newsletters(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from toma.project.checks import check_project
    from toma.project.init import init_project

    init_project(tmp_path, now=datetime(2026, 12, 1, 9, tzinfo=UTC))
    note = tmp_path / "templates" / "acquaintance" / "nice-to-meet.md"
    note.write_text(
        note.read_text(encoding="utf-8").replace("subject:", "reply_to: me@x.org\nsubject:", 1),
        encoding="utf-8",
    )
    issue = next((tmp_path / "newsletters").glob("*.md"))
    issue.write_text(
        issue.read_text(encoding="utf-8").replace("audience:", "audiance:", 1), encoding="utf-8"
    )
    report = check_project(tmp_path / "config.toml")
    found = {(Path(p.file or "").name, p.line, p.key): p.message for p in report.problems}
    assert ("nice-to-meet.md", 2, "reply_to") in found
    [(where, message)] = [(k, m) for k, m in found.items() if k[0] == issue.name]
    assert where[2] == "audiance" and "did you mean audience?" in message


def test_a_footer_without_a_postal_address_is_an_error(tmp_path: Path) -> None:
    """A newsletter shows where its sender can be found: no address, no newsletter."""
    templates = project(tmp_path, {"t.md": "---\nsubject: Hello\n---\nHi\n"})
    ctx = context()
    del ctx["sender"]["postal_address"]
    with pytest.raises(TemplateError) as caught:
        templates.render(
            "t.md",
            {**ctx, "unsubscribe_mailto": "mailto:j@example.com"},
            contact="mira@example.org",
        )
    assert "[owner] postal_address" in caught.value.message
    assert caught.value.file is not None and caught.value.file.endswith("t.md")
    assert templates.render("t.md", ctx).text == "Hi\n"  # a personal note needs none
