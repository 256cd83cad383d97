"""RFC 6570 URI templates turned into a regular expression that matches their expansions.

Mercure's pre-standardization protocol (draft-07) lets a subscriber select topics with a URI
template: ``https://example.com/books/{id}`` selects every topic that is an expansion of the
template for *some* values of its variables. No Python library matches templates (they only
expand them), so this module compiles a template, per RFC 6570 sections 2 and 3.2, into the
source of a regex that matches exactly those expansions, variable values being strings,
lists or associative arrays. The regex is meant for RE2 (``sse_hub.mercure.selectors``):
it is full of nested stars that Python's backtracking ``re`` would take seconds on.

Invariants:

- The regex never matches more than the template can expand to, except that the *names*
  of exploded associative-array members are free (``{;keys*}`` matches ``;a=1;b=2``): an
  expansion cannot be told apart from a list of names. A character the operator would
  percent-encode can only match as a ``%XX`` triplet, so ``{id}`` never matches a ``/``;
  literals match themselves verbatim.
- A string that is not a valid level-4 template (unbalanced braces, a reserved operator,
  a character RFC 6570 forbids in literals) gives ``None``: Mercure then compares the
  selector as a plain string. A *valid* template over the limits below raises
  ``TemplateTooComplex``: the caller answers 400 (or refuses the token) rather than
  silently narrowing what the subscriber asked for.
- The cost is bounded before anything is compiled: at most ``MAX_TEMPLATE_CHARS``
  characters, ``MAX_EXPRESSIONS`` expressions, ``MAX_VARIABLES`` variables per
  expression, prefixes up to ``MAX_PREFIX`` and ``MAX_REGEX_CHARS`` of regex source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_TEMPLATE_CHARS = 1024
MAX_EXPRESSIONS = 32
MAX_VARIABLES = 16
MAX_PREFIX = 256
MAX_REGEX_CHARS = 64 * 1024


class TemplateTooComplex(ValueError):
    """A valid URI template whose matcher would cost more than this hub allows."""


@dataclass(frozen=True, slots=True)
class _Operator:
    first: str
    sep: str
    named: bool
    ifemp: str
    reserved: bool  # True: reserved characters pass unencoded ("+" and "#")


# RFC 6570, section 3.2.1, table in Appendix A.
_OPERATORS = {
    "": _Operator("", ",", named=False, ifemp="", reserved=False),
    "+": _Operator("", ",", named=False, ifemp="", reserved=True),
    "#": _Operator("#", ",", named=False, ifemp="", reserved=True),
    ".": _Operator(".", ".", named=False, ifemp="", reserved=False),
    "/": _Operator("/", "/", named=False, ifemp="", reserved=False),
    ";": _Operator(";", ";", named=True, ifemp="", reserved=False),
    "?": _Operator("?", "&", named=True, ifemp="=", reserved=False),
    "&": _Operator("&", "&", named=True, ifemp="=", reserved=False),
}
# Reserved for future extensions (section 2.2): a template using them is not valid.
_RESERVED_OPERATORS = frozenset("=,!@|")

_UNRESERVED = r"A-Za-z0-9\-._~"
_RESERVED = r":/?#\[\]@!$&'()*+,;="
_PCT = "%[0-9A-Fa-f]{2}"
_CONT = "(?:%[89ABab][0-9A-Fa-f])"  # a UTF-8 continuation byte, percent-encoded

_VARNAME = re.compile(r"(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})+(?:\.(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})+)*")
_VARSPEC = re.compile(rf"(?P<name>{_VARNAME.pattern})(?::(?P<prefix>[1-9][0-9]{{0,3}})|(?P<explode>\*))?")
# Section 2.1: literals are any Unicode character except CTL, SP, DQUOTE, "'", "%" (aside
# from pct-encoded), "<", ">", "\", "^", "`", "{", "|" and "}".
_LITERAL = re.compile(r"(?:[^\x00-\x20\x7f\"'%<>\\^`{|}]|%[0-9A-Fa-f]{2})*")
_EXPRESSION = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True, slots=True)
class _VarSpec:
    name: str
    prefix: int | None
    explode: bool


def template_regex(template: str) -> str | None:
    """The regex source (for a full match) of ``template``'s expansions.

    None when ``template`` has no expression or is not a valid URI template; raises
    ``TemplateTooComplex`` when it is valid but over the limits.
    """
    parsed = _parse(template)
    if parsed is None:
        return None
    literals, expressions = parsed
    _check_limits(template, expressions)
    parts = [_quote(literals[0])]
    for (operator, specs), literal in zip(expressions, literals[1:], strict=True):
        parts.append(_expression_regex(operator, specs))
        parts.append(_quote(literal))
    regex = "".join(parts)
    if len(regex) > MAX_REGEX_CHARS:
        raise TemplateTooComplex("the URI template is too complex to match")
    return regex


_Expression = tuple[_Operator, tuple[_VarSpec, ...]]


def _parse(template: str) -> tuple[list[str], list[_Expression]] | None:
    """The literals around the expressions (one more than expressions), or None."""
    literals: list[str] = []
    expressions: list[_Expression] = []
    position = 0
    for found in _EXPRESSION.finditer(template):
        expression = _parse_expression(found.group(1))
        if expression is None:
            return None
        literals.append(template[position : found.start()])
        expressions.append(expression)
        position = found.end()
    literals.append(template[position:])
    if not expressions or not all(_LITERAL.fullmatch(literal) for literal in literals):
        return None
    return literals, expressions


def _check_limits(template: str, expressions: list[_Expression]) -> None:
    if len(template) > MAX_TEMPLATE_CHARS or len(expressions) > MAX_EXPRESSIONS:
        raise TemplateTooComplex(
            f"a URI template may have at most {MAX_TEMPLATE_CHARS} characters and {MAX_EXPRESSIONS} expressions"
        )
    for _, specs in expressions:
        if len(specs) > MAX_VARIABLES:
            raise TemplateTooComplex(f"a URI template expression may have at most {MAX_VARIABLES} variables")
        if any(spec.prefix is not None and spec.prefix > MAX_PREFIX for spec in specs):
            raise TemplateTooComplex(f"a URI template prefix may be at most {MAX_PREFIX} characters")


def _parse_expression(body: str) -> _Expression | None:
    if not body or body[0] in _RESERVED_OPERATORS:
        return None
    operator_char = body[0] if body[0] in _OPERATORS else ""
    specs: list[_VarSpec] = []
    for text in body[len(operator_char) :].split(","):
        found = _VARSPEC.fullmatch(text)
        if found is None:
            return None
        prefix = found.group("prefix")
        specs.append(_VarSpec(found.group("name"), int(prefix) if prefix else None, found.group("explode") is not None))
    return _OPERATORS[operator_char], tuple(specs)


def _expression_regex(operator: _Operator, specs: tuple[_VarSpec, ...]) -> str:
    """``first`` then the expansions of a non-empty ordered subset of the variables joined
    by ``sep`` (undefined variables are skipped, section 3.2.1), or nothing at all."""
    items = [_variable_regex(operator, spec) for spec in specs]
    sep = _quote(operator.sep)
    alternatives = []
    for index, item in enumerate(items):
        rest = "".join(f"(?:{sep}{later})?" for later in items[index + 1 :])
        alternatives.append(f"{item}{rest}")
    return f"(?:{_quote(operator.first)}(?:{'|'.join(alternatives)}))?"


def _variable_regex(operator: _Operator, spec: _VarSpec) -> str:
    """What one defined variable expands to (section 3.2.1, the expansion algorithm)."""
    atom = _atom(operator.reserved)
    sep = _quote(operator.sep)
    name = _quote(spec.name)
    if spec.prefix is not None:  # prefixes apply to strings only, counted in characters
        char = _character(operator.reserved)
        value = f"{char}{{0,{spec.prefix}}}"
        if not operator.named:
            return value
        if operator.ifemp:
            return f"{name}={value}"
        return f"{name}(?:={char}{{1,{spec.prefix}}})?"
    if not spec.explode:
        # A string, or a list / associative array joined with ",".
        value = f"(?:{atom}|,)*"
        if not operator.named:
            return value
        return f"{name}={value}" if operator.ifemp else f"{name}(?:={value})?"
    # Exploded: list items or "key=value" members joined by the operator's separator;
    # named operators write "name=value" per item (or "key=value", any key), and ";"
    # drops "=" for an empty value.
    pair = f"{atom}*={atom}*" if operator.named and operator.ifemp else f"{atom}*(?:={atom}*)?"
    return f"{pair}(?:{sep}{pair})*"


def _atom(reserved: bool) -> str:
    allowed = _UNRESERVED + (_RESERVED if reserved else "")
    return f"(?:[{allowed}]|{_PCT})"


def _character(reserved: bool) -> str:
    """One character of a value, before encoding: an allowed ASCII character, or the
    percent-encoded UTF-8 bytes of one character (1 to 4 triplets)."""
    allowed = _UNRESERVED + (_RESERVED if reserved else "")
    return (
        f"(?:[{allowed}]|%[0-7][0-9A-Fa-f]|%[CcDd][0-9A-Fa-f]{_CONT}|%[Ee][0-9A-Fa-f]{_CONT}{{2}}"
        f"|%[Ff][0-7]{_CONT}{{3}})"
    )


def _quote(text: str) -> str:
    """Escape a literal for RE2: ASCII punctuation gets a backslash, the rest stands."""
    return "".join(f"\\{char}" if char.isascii() and not char.isalnum() else char for char in text)
