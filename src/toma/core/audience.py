"""Audience expressions: who a newsletter is for, written over tags and fields.

Theory of operation
-------------------

An audience is a small boolean expression::

    client and not no-news
    (client or past-client) and not paused
    client and country in ("DE", "AT")
    company = "Acme" or vip

Grammar, loosest binding first (so ``not`` > ``and`` > ``or``, as in Python)::

    expression := conjunct ("or" conjunct)*
    conjunct   := negation ("and" negation)*
    negation   := "not" negation | primary
    primary    := "(" expression ")" | comparison | TAG
    comparison := FIELD ("=" | "!=") STRING
                | FIELD "in" "(" STRING ("," STRING)* [","] ")"

- A TAG is letters, digits, ``-``, ``_`` and ``.``, starting with a letter, digit
  or ``_`` — the same spelling contacts use — and is compared in lower case, as
  tags are stored. ``and``, ``or`` and ``not`` (in any case) are words of the
  language, never tags.
- A word followed by ``=``, ``!=`` or ``in (`` is a FIELD: ``email``,
  ``first_name``, ``last_name``, ``company``, ``timezone`` or a custom field.
  Values are double-quoted strings (``\\"`` and ``\\\\`` escape) compared
  ignoring case and surrounding spaces, because "de", "DE" and "DE " in an
  imported sheet all mean Germany. A field a contact lacks is ``""``, so
  ``company != "Acme"`` includes contacts without a company.
- Status is not part of the language: whatever the expression says, only active
  contacts receive a newsletter (:func:`toma.core.newsletters.recipients` applies
  that). ``active`` or ``paused`` in an expression are plain tags.

:func:`parse_audience` is a hand-written tokenizer and recursive-descent parser
producing frozen dataclasses. Errors are :class:`AudienceError` naming the
1-based column where reading stopped, so that a message such as "expected a tag
after 'not' at column 12" can be acted on. ``str()`` of a parsed audience is its
canonical spelling and parses back to an equal value; explicit parentheses are
kept as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from toma.core.contacts import Contact
from toma.errors import TomaError

# Deep enough for anything a person writes; shallow enough that a pasted
# "((((((…" is an error message rather than a RecursionError.
MAX_DEPTH: Final = 32
MAX_LENGTH: Final = 2000

_KEYWORDS: Final = frozenset({"and", "or", "not"})
_BUILT_IN_FIELDS: Final = ("email", "first_name", "last_name", "company", "timezone")
_WORD = re.compile(r"[\w][\w.-]*")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class AudienceError(TomaError):
    """An audience expression that cannot be read; ``column`` is 1-based."""

    def __init__(self, message: str, *, column: int, text: str) -> None:
        super().__init__(message, key="audience")
        self.column = column
        self.text = text


# --------------------------------------------------------------------------- AST


def _norm(value: str) -> str:
    return value.strip().casefold()


def _field_value(contact: Contact, name: str) -> str:
    if name in _BUILT_IN_FIELDS:
        return str(getattr(contact, name))
    return contact.fields.get(name, "")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class Tag:
    name: str  # lower case

    def matches(self, contact: Contact) -> bool:
        return self.name in contact.tags

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Equals:
    """``field = "value"``, or with ``negated`` ``field != "value"``."""

    field: str
    value: str
    negated: bool = False

    def matches(self, contact: Contact) -> bool:
        same = _norm(_field_value(contact, self.field)) == _norm(self.value)
        return same != self.negated

    def __str__(self) -> str:
        return f"{self.field} {'!=' if self.negated else '='} {_quote(self.value)}"


@dataclass(frozen=True, slots=True)
class In:
    """``field in ("a", "b")``."""

    field: str
    values: tuple[str, ...]

    def matches(self, contact: Contact) -> bool:
        value = _norm(_field_value(contact, self.field))
        return any(value == _norm(candidate) for candidate in self.values)

    def __str__(self) -> str:
        return f"{self.field} in ({', '.join(_quote(v) for v in self.values)})"


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node

    def matches(self, contact: Contact) -> bool:
        return not self.operand.matches(contact)

    def __str__(self) -> str:
        inner = str(self.operand)
        return f"not ({inner})" if isinstance(self.operand, And | Or) else f"not {inner}"


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]  # two or more

    def matches(self, contact: Contact) -> bool:
        return all(operand.matches(contact) for operand in self.operands)

    def __str__(self) -> str:
        # A nested And only exists if it was written in parentheses: keep them,
        # so that str() parses back to an equal tree.
        return " and ".join(f"({o})" if isinstance(o, And | Or) else str(o) for o in self.operands)


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]  # two or more

    def matches(self, contact: Contact) -> bool:
        return any(operand.matches(contact) for operand in self.operands)

    def __str__(self) -> str:
        return " or ".join(f"({o})" if isinstance(o, Or) else str(o) for o in self.operands)


Node = Tag | Equals | In | Not | And | Or


@dataclass(frozen=True, slots=True)
class Audience:
    """A parsed audience; without an expression, everyone (who is active)."""

    expression: Node | None = None

    @property
    def everyone(self) -> bool:
        return self.expression is None

    def matches(self, contact: Contact) -> bool:
        """Whether the expression holds for ``contact`` (its status is not looked at)."""
        return self.expression is None or self.expression.matches(contact)

    def tags(self) -> frozenset[str]:
        """Every tag named, so that a check can warn about a tag no contact has."""
        return frozenset(node.name for node in _walk(self.expression) if isinstance(node, Tag))

    def needs_one_of(self) -> frozenset[str] | None:
        """Tags of which every contact the audience selects carries at least one; None
        when the expression demands no tag (everyone, a comparison, a ``not``).

        A store that can find contacts by tag reads only those (see
        :mod:`toma.daemon.scoped`); the expression still decides, contact by contact.
        """
        return _needs_one_of(self.expression) if self.expression is not None else None

    def fields(self) -> frozenset[str]:
        """Every field named in a comparison."""
        return frozenset(
            node.field for node in _walk(self.expression) if isinstance(node, Equals | In)
        )

    def __str__(self) -> str:
        return "" if self.expression is None else str(self.expression)


EVERYONE: Final = Audience()


def _needs_one_of(node: Node) -> frozenset[str] | None:
    # A contact that matches `and` matches each operand, so any operand's tags do
    # (the fewest read least); one that matches `or` matches some operand, so only
    # when every operand needs a tag does the union hold.
    if isinstance(node, Tag):
        return frozenset({node.name})
    if isinstance(node, And):
        found = [tags for o in node.operands if (tags := _needs_one_of(o)) is not None]
        return min(found, key=len) if found else None
    if isinstance(node, Or):
        every = [_needs_one_of(o) for o in node.operands]
        if any(tags is None for tags in every):
            return None
        return frozenset().union(*(tags for tags in every if tags is not None))
    return None


def _walk(node: Node | None) -> list[Node]:
    found: list[Node] = []
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        found.append(current)
        if isinstance(current, Not):
            stack.append(current.operand)
        elif isinstance(current, And | Or):
            stack.extend(current.operands)
    return found


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "word", "string", "(", ")", ",", "=", "!=", "end"
    text: str  # a word as written, a string's value
    column: int  # 1-based

    def describe(self) -> str:
        if self.kind == "end":
            return "the end"
        if self.kind == "string":
            return _quote(self.text)
        return repr(self.text)


def _tokens(text: str) -> list[_Token]:
    found: list[_Token] = []
    index = 0
    while index < len(text):
        char = text[index]
        column = index + 1
        if char.isspace():
            index += 1
        elif char in "(),=":
            found.append(_Token(char, char, column))
            index += 1
        elif text.startswith("!=", index):
            found.append(_Token("!=", "!=", column))
            index += 2
        elif char == '"':
            value, index = _string(text, index)
            found.append(_Token("string", value, column))
        elif word := _WORD.match(text, index):
            found.append(_Token("word", word.group(), column))
            index = word.end()
        else:
            hint = " (a tag is letters, digits, '-', '_' and '.')" if char in "-." else ""
            if char == "'":
                hint = ' (values are written in double quotes: "DE")'
            elif char in "&|!":
                hint = " (write 'and', 'or', 'not')"
            raise AudienceError(
                f"unexpected {char!r} at column {column}{hint}", column=column, text=text
            )
    found.append(_Token("end", "", len(text) + 1))
    return found


def _string(text: str, start: int) -> tuple[str, int]:
    chars: list[str] = []
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == '"':
            return "".join(chars), index + 1
        if char == "\\" and index + 1 < len(text) and text[index + 1] in '"\\':
            chars.append(text[index + 1])
            index += 2
            continue
        chars.append(char)
        index += 1
    raise AudienceError(
        f"the value starting at column {start + 1} has no closing '\"'", column=start + 1, text=text
    )


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.position = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.position]

    def peek(self, ahead: int = 1) -> _Token:
        return self.tokens[min(self.position + ahead, len(self.tokens) - 1)]

    def keyword(self, token: _Token) -> str | None:
        word = token.text.lower()
        return word if token.kind == "word" and word in _KEYWORDS else None

    def fail(self, message: str, token: _Token | None = None, hint: str = "") -> AudienceError:
        at = token or self.token
        return AudienceError(
            f"{message} at column {at.column}{hint}", column=at.column, text=self.text
        )

    def unclosed(self, opening: _Token) -> AudienceError:
        return AudienceError(
            f"the '(' at column {opening.column} is never closed",
            column=opening.column,
            text=self.text,
        )

    def advance(self) -> _Token:
        token = self.token
        self.position += 1
        return token

    def parse(self) -> Node:
        node = self.expression(depth=0, after=None)
        token = self.token
        if token.kind == ")":
            raise self.fail("unexpected ')'", hint=": no '(' to close it")
        if token.kind != "end":
            raise self.joiner_expected(token)
        return node

    def joiner_expected(self, token: _Token) -> AudienceError:
        hint = " (did you mean 'and not'?)" if self.keyword(token) == "not" else ""
        return self.fail(f"expected 'and' or 'or' before {token.describe()}", token, hint)

    def expression(self, depth: int, after: str | None) -> Node:
        operands = [self.conjunct(depth, after)]
        while self.keyword(self.token) == "or":
            self.advance()
            operands.append(self.conjunct(depth, "or"))
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def conjunct(self, depth: int, after: str | None) -> Node:
        operands = [self.negation(depth, after)]
        while self.keyword(self.token) == "and":
            self.advance()
            operands.append(self.negation(depth, "and"))
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def negation(self, depth: int, after: str | None) -> Node:
        # A loop, not recursion; each "not" still counts as a level, because
        # matches() and str() recurse through it.
        nots = 0
        while self.keyword(self.token) == "not":
            depth += 1
            if depth > MAX_DEPTH:
                raise self.fail(f"'not' and parentheses nested deeper than {MAX_DEPTH}")
            self.advance()
            nots += 1
            after = "not"
        node = self.primary(depth, after)
        for _ in range(nots):
            node = Not(node)
        return node

    def primary(self, depth: int, after: str | None) -> Node:
        token = self.token
        if token.kind == "(":
            if depth + 1 > MAX_DEPTH:
                raise self.fail(f"'not' and parentheses nested deeper than {MAX_DEPTH}")
            self.advance()
            node = self.expression(depth + 1, None)
            if self.token.kind != ")":
                if self.token.kind == "end":
                    raise self.unclosed(token)
                raise self.joiner_expected(self.token)
            self.advance()
            return node
        if token.kind == "word" and self.keyword(token) is None:
            follower = self.peek()
            if follower.kind in ("=", "!="):
                return self.comparison()
            if (
                follower.kind == "word"
                and follower.text.lower() == "in"
                and self.peek(2).kind == "("
            ):
                return self.membership()
            self.advance()
            return Tag(token.text.lower())
        wanted = "expected a tag, a field comparison or '('"
        if after is not None:
            wanted = f"expected a tag after {after!r}"
        if token.kind == "word":  # a keyword where a tag belongs
            raise self.fail(
                f"{wanted}, got {token.describe()}", hint=" (and, or, not cannot be tags)"
            )
        if token.kind == "end":
            raise self.fail(wanted)
        raise self.fail(f"{wanted}, got {token.describe()}")

    def field_name(self) -> str:
        token = self.advance()
        if not _FIELD_NAME.fullmatch(token.text):
            raise self.fail(
                f"{token.text!r} cannot be a field name: use letters, digits and '_'", token
            )
        return token.text

    def comparison(self) -> Node:
        name = self.field_name()
        operator = self.advance()
        value = self.token
        if value.kind != "string":
            shown = value.text if value.kind == "word" else "…"
            raise self.fail(
                f"expected a value in double quotes after {operator.text!r}",
                hint=f' (such as {name} {operator.text} "{shown}")',
            )
        self.advance()
        return Equals(name, value.text, negated=operator.kind == "!=")

    def membership(self) -> Node:
        name = self.field_name()
        self.advance()  # "in"
        opening = self.advance()  # "(" (checked by the caller)
        values: list[str] = []
        while True:
            token = self.token
            if token.kind == ")" and values:
                self.advance()
                return In(name, tuple(values))
            if token.kind != "string":
                if token.kind == "end":
                    raise self.unclosed(opening)
                raise self.fail(
                    f"expected a value in double quotes in the list after "
                    f"'{name} in', got {token.describe()}"
                )
            values.append(token.text)
            self.advance()
            if self.token.kind == ",":
                self.advance()
            elif self.token.kind != ")":
                if self.token.kind == "end":
                    raise self.unclosed(opening)
                raise self.fail(f"expected ',' or ')' after {token.describe()}")


def parse_audience(text: str | None) -> Audience:
    """``text`` read as an audience expression; empty or None is everyone.

    Raises :class:`AudienceError` (``key="audience"``, with ``column``).
    """
    if text is None or not text.strip():
        return EVERYONE
    if len(text) > MAX_LENGTH:
        raise AudienceError(
            f"the expression is longer than {MAX_LENGTH} characters",
            column=MAX_LENGTH + 1,
            text=text,
        )
    return Audience(_Parser(text).parse())
