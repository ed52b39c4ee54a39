"""Audience expressions: tags, fields, and/or/not, parentheses, errors with columns."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toma.core.audience import (
    EVERYONE,
    MAX_DEPTH,
    And,
    Audience,
    AudienceError,
    Equals,
    In,
    Node,
    Not,
    Or,
    Tag,
    parse_audience,
)
from toma.core.contacts import Contact, Status


def person(*tags: str, company: str = "", **fields: str) -> Contact:
    return Contact(
        email="p@example.org", company=company, tags=tags, fields=MappingProxyType(dict(fields))
    )


A, B, C, D = Tag("a"), Tag("b"), Tag("c"), Tag("d")


class TestParsing:
    @pytest.mark.parametrize(
        ("text", "tree"),
        [
            ("a", A),
            ("  a  ", A),
            ("A", A),  # tags are stored in lower case
            ("no-news", Tag("no-news")),
            ("v1.2_beta", Tag("v1.2_beta")),
            ("in", Tag("in")),  # "in" is only a word after a field name
            ("a and b", And((A, B))),
            ("a and b and c", And((A, B, C))),
            ("a or b or c", Or((A, B, C))),
            # not > and > or
            ("a or b and c", Or((A, And((B, C))))),
            ("a and b or c", Or((And((A, B)), C))),
            ("not a and b", And((Not(A), B))),
            ("not a or b", Or((Not(A), B))),
            ("a or not b and c", Or((A, And((Not(B), C))))),
            ("not not a", Not(Not(A))),
            ("NOT a AND b", And((Not(A), B))),
            # parentheses win, and are kept as written
            ("(a or b) and c", And((Or((A, B)), C))),
            ("not (a or b)", Not(Or((A, B)))),
            ("a and (b and c)", And((A, And((B, C))))),
            ("((a))", A),
            ("(a or b) and not (c or d)", And((Or((A, B)), Not(Or((C, D)))))),
            # fields
            ('company = "Acme"', Equals("company", "Acme")),
            ('country != "DE"', Equals("country", "DE", negated=True)),
            ('country in ("DE", "AT")', In("country", ("DE", "AT"))),
            ('country in ("DE",)', In("country", ("DE",))),
            ('Country IN ("DE")', In("Country", ("DE",))),
            ('note = "say \\"hi\\" \\\\ bye"', Equals("note", 'say "hi" \\ bye')),
            (
                'client and not country in ("DE", "AT")',
                And((Tag("client"), Not(In("country", ("DE", "AT"))))),
            ),
            ('a=""', Equals("a", "")),
        ],
    )
    def test_parses_to_tree(self, text: str, tree: Node) -> None:
        """Precedence is not > and > or; parentheses group; fields compare to quoted values."""
        assert parse_audience(text).expression == tree

    @pytest.mark.parametrize(
        "text",
        [
            "client and not no-news",
            "(client or past-client) and not paused",
            "a or b and not c",
            "not (a and b) or c",
            "a and (b and c) or (d or a)",
            'company = "Acme" or country in ("DE", "AT") and x != "y\\"z"',
            "not not a",
        ],
    )
    def test_str_round_trips(self, text: str) -> None:
        """str() is the canonical spelling and parses back to the same audience."""
        audience = parse_audience(text)
        assert parse_audience(str(audience)) == audience
        assert str(parse_audience(str(audience))) == str(audience)

    def test_canonical_spelling(self) -> None:
        assert (
            str(parse_audience("  ( Client OR past-client )AND NOT paused "))
            == "(client or past-client) and not paused"
        )
        assert str(parse_audience('country in("DE","AT",)')) == 'country in ("DE", "AT")'

    @pytest.mark.parametrize("text", [None, "", "   ", "\n"])
    def test_empty_is_everyone(self, text: str | None) -> None:
        """No expression: every (active) contact; str() is empty."""
        audience = parse_audience(text)
        assert audience == EVERYONE
        assert audience.everyone
        assert str(audience) == ""
        assert audience.matches(person())

    def test_tags_and_fields_named(self) -> None:
        """A check can warn about a tag no contact has, or a field nobody filled in."""
        audience = parse_audience('(client or vip) and not no-news and country in ("DE")')
        assert audience.tags() == {"client", "vip", "no-news"}
        assert audience.fields() == {"country"}
        assert EVERYONE.tags() == frozenset()


class TestMatching:
    @pytest.mark.parametrize(
        ("text", "tags", "expected"),
        [
            ("client", ("client",), True),
            ("client", ("past-client",), False),
            ("client and not no-news", ("client",), True),
            ("client and not no-news", ("client", "no-news"), False),
            ("(client or past-client) and not paused", ("past-client",), True),
            ("(client or past-client) and not paused", ("past-client", "paused"), False),
            ("(client or past-client) and not paused", ("met",), False),
            ("client or past-client and not paused", ("client", "paused"), True),
            ("not (a or b)", (), True),
            ("not (a or b)", ("b",), False),
            ("not not a", ("a",), True),
        ],
    )
    def test_tags(self, text: str, tags: tuple[str, ...], expected: bool) -> None:
        assert parse_audience(text).matches(person(*tags)) is expected

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('country = "DE"', True),
            ('country = "de"', True),  # case and surrounding spaces do not matter
            ('country = " DE "', True),
            ('country != "DE"', False),
            ('country in ("AT", "DE")', True),
            ('country in ("AT", "CH")', False),
            ('company = "Acme GmbH"', True),  # built-in fields too
            ('company = "acme gmbh" and country = "DE"', True),
            ('region = ""', True),  # a missing field is empty
            ('region != "north"', True),
            ('region in ("north")', False),
            ('email = "P@EXAMPLE.ORG"', True),
        ],
    )
    def test_fields(self, text: str, expected: bool) -> None:
        contact = person("client", company="Acme GmbH", country="DE")
        assert parse_audience(text).matches(contact) is expected

    def test_status_is_not_the_expressions_business(self) -> None:
        """'paused' is a tag like any other; status is applied by recipients()."""
        paused = Contact(email="p@example.org", tags=("client",), status=Status.PAUSED)
        assert parse_audience("client").matches(paused)
        assert not parse_audience("paused").matches(paused)


class TestErrors:
    @pytest.mark.parametrize(
        ("text", "column", "says"),
        [
            ("client and not", 15, "expected a tag after 'not' at column 15"),
            ("client and not and x", 16, "expected a tag after 'not', got 'and' at column 16"),
            ("client and", 11, "expected a tag after 'and' at column 11"),
            ("client or", 10, "expected a tag after 'or' at column 10"),
            (
                "and client",
                1,
                "expected a tag, a field comparison or '(', got 'and' at column 1 "
                "(and, or, not cannot be tags)",
            ),
            (
                "client not vip",
                8,
                "expected 'and' or 'or' before 'not' at column 8 (did you mean 'and not'?)",
            ),
            ("client vip", 8, "expected 'and' or 'or' before 'vip' at column 8"),
            ("(client or vip", 1, "the '(' at column 1 is never closed"),
            ("a and (b or (c)", 7, "the '(' at column 7 is never closed"),
            ("client)", 7, "unexpected ')' at column 7: no '(' to close it"),
            ("()", 2, "expected a tag, a field comparison or '(', got ')' at column 2"),
            ("client & vip", 8, "unexpected '&' at column 8 (write 'and', 'or', 'not')"),
            ("client || vip", 8, "unexpected '|' at column 8"),
            ("-client", 1, "unexpected '-' at column 1"),
            (
                "country = DE",
                11,
                "expected a value in double quotes after '=' at column 11 "
                '(such as country = "DE")',
            ),
            ("country = 'DE'", 11, 'unexpected "\'" at column 11'),
            ('country = "DE', 11, "the value starting at column 11 has no closing '\"'"),
            ('country in ("DE" "AT")', 18, "expected ',' or ')' after \"DE\" at column 18"),
            ("country in ()", 13, "expected a value in double quotes in the list"),
            ('country in ("DE"', 12, "the '(' at column 12 is never closed"),
            ('met-where = "x"', 1, "'met-where' cannot be a field name"),
            ('a = "x" = "y"', 9, "expected 'and' or 'or' before '=' at column 9"),
        ],
    )
    def test_error_names_the_column(self, text: str, column: int, says: str) -> None:
        with pytest.raises(AudienceError) as caught:
            parse_audience(text)
        error = caught.value
        assert error.column == column
        assert says in error.message
        assert str(error).startswith("audience: ")
        assert error.key == "audience"

    def test_message_reads_as_one_line(self) -> None:
        with pytest.raises(AudienceError) as caught:
            parse_audience("vip and not")
        assert str(caught.value) == "audience: expected a tag after 'not' at column 12"

    def test_deep_nesting_is_an_error_not_a_crash(self) -> None:
        text = "(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1)
        with pytest.raises(AudienceError, match="nested deeper"):
            parse_audience(text)
        fine = "(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH
        assert parse_audience(fine).expression == A

    def test_nots_count_as_nesting(self) -> None:
        assert isinstance(parse_audience("not " * MAX_DEPTH + "a").expression, Not)
        with pytest.raises(AudienceError, match="nested deeper"):
            parse_audience("not " * (MAX_DEPTH + 1) + "a")

    def test_too_long(self) -> None:
        with pytest.raises(AudienceError, match="longer than"):
            parse_audience(" or ".join(["tag"] * 1000))


# --- property: any tree prints to text that parses back to it ---------------

_tags = st.sampled_from(["a", "b", "client", "no-news", "v1.2", "in"]).map(Tag)
_values = st.text(alphabet=st.sampled_from('ab "\\ü'), max_size=5)
_leaves = (
    _tags
    | st.builds(Equals, st.sampled_from(["country", "company"]), _values, st.booleans())
    | st.builds(In, st.just("country"), st.lists(_values, min_size=1, max_size=3).map(tuple))
)


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    many = st.lists(children, min_size=2, max_size=3).map(tuple)
    return st.builds(Not, children) | st.builds(And, many) | st.builds(Or, many)


@given(st.recursive(_leaves, _extend, max_leaves=12))
def test_any_tree_round_trips(tree: Node) -> None:
    """str() of any tree parses back to an equal tree."""
    audience = Audience(tree)
    assert parse_audience(str(audience)) == audience


@pytest.mark.parametrize(
    ("text", "needs"),
    [
        ("", None),
        ("client", {"client"}),
        ("client and not no-news", {"client"}),
        ("(client or past-client) and not paused", {"client", "past-client"}),
        ("(a or b) and client", {"client"}),  # any one operand's tags will do: the fewest
        ('client or company = "Acme"', None),  # the comparison selects without a tag
        ("not client", None),
        ('country in ("DE") and (a or b)', {"a", "b"}),
    ],
)
def test_tags_an_audience_needs(text: str, needs: set[str] | None) -> None:
    found = parse_audience(text).needs_one_of()
    assert found == (frozenset(needs) if needs is not None else None)


@given(
    st.recursive(_leaves, _extend, max_leaves=12),
    st.lists(st.sampled_from(["a", "b", "client", "no-news", "v1.2", "in", "x"]), max_size=4),
    st.sampled_from(["", "DE", "Acme", 'a "b']),
)
def test_whoever_an_audience_selects_carries_a_tag_it_needs(
    tree: Node, tags: list[str], value: str
) -> None:
    """What a store reads for an audience (its contacts carrying one of these tags) holds
    everyone the audience selects."""
    audience = Audience(tree)
    contact = person(*tags, company=value, country=value)
    needs = audience.needs_one_of()
    if audience.matches(contact) and needs is not None:
        assert not needs.isdisjoint(contact.tags)
