"""Mercure topic selectors: RFC 6570 URI templates (draft-07), exact and URL Pattern
matchers (1.0), the wildcard, the caps and caches, a hostile template, and the rule for
private updates. Pure functions: no server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sse_hub.mercure import selectors as selectors_module
from sse_hub.mercure.selectors import (
    EMPTY,
    MatchType,
    Selector,
    SelectorSet,
    compile_selectors,
    should_deliver,
)
from sse_hub.mercure.uritemplate import MAX_EXPRESSIONS, MAX_PREFIX, MAX_VARIABLES, template_regex
from sse_hub.messages.mercure import MAX_SELECTOR_CHARS, InvalidSelector

HUB = "https://hub.example/.well-known/mercure"


def topic_set(*values: str) -> SelectorSet:
    return compile_selectors([Selector(MatchType.TOPIC, value) for value in values], HUB)


def template_matches(template: str, topic: str) -> bool:
    return topic_set(template).matches(topic)


# -- RFC 6570, section 3.2: every example expansion matches its template ----------------

RFC_EXAMPLES = [
    # 3.2.2 simple string expansion
    ("{var}", "value"),
    ("{hello}", "Hello%20World%21"),
    ("{half}", "50%25"),
    ("O{empty}X", "OX"),
    ("O{undef}X", "OX"),
    ("{x,y}", "1024,768"),
    ("{x,hello,y}", "1024,Hello%20World%21,768"),
    ("?{x,empty}", "?1024,"),
    ("?{x,undef}", "?1024"),
    ("?{undef,y}", "?768"),
    ("{var:3}", "val"),
    ("{var:30}", "value"),
    ("{list}", "red,green,blue"),
    ("{list*}", "red,green,blue"),
    ("{keys}", "semi,%3B,dot,.,comma,%2C"),
    ("{keys*}", "semi=%3B,dot=.,comma=%2C"),
    # 3.2.3 reserved expansion
    ("{+var}", "value"),
    ("{+hello}", "Hello%20World!"),
    ("{+half}", "50%25"),
    ("{base}index", "http%3A%2F%2Fexample.com%2Fhome%2Findex"),
    ("{+base}index", "http://example.com/home/index"),
    ("O{+empty}X", "OX"),
    ("{+path}/here", "/foo/bar/here"),
    ("here?ref={+path}", "here?ref=/foo/bar"),
    ("up{+path}{var}/here", "up/foo/barvalue/here"),
    ("{+x,hello,y}", "1024,Hello%20World!,768"),
    ("{+path,x}/here", "/foo/bar,1024/here"),
    ("{+path:6}/here", "/foo/b/here"),
    ("{+list*}", "red,green,blue"),
    ("{+keys}", "semi,;,dot,.,comma,,"),
    ("{+keys*}", "semi=;,dot=.,comma=,"),
    # 3.2.4 fragment expansion
    ("{#var}", "#value"),
    ("{#hello}", "#Hello%20World!"),
    ("foo{#empty}", "foo#"),
    ("foo{#undef}", "foo"),
    ("{#path,x}/here", "#/foo/bar,1024/here"),
    ("{#path:6}/here", "#/foo/b/here"),
    ("{#keys*}", "#semi=;,dot=.,comma=,"),
    # 3.2.5 label expansion
    ("{.who}", ".fred"),
    ("{.who,who}", ".fred.fred"),
    ("{.half,who}", ".50%25.fred"),
    ("www{.dom*}", "www.example.com"),
    ("X{.empty}", "X."),
    ("X{.undef}", "X"),
    ("X{.var:3}", "X.val"),
    ("X{.list}", "X.red,green,blue"),
    ("X{.list*}", "X.red.green.blue"),
    ("X{.keys*}", "X.semi=%3B.dot=..comma=%2C"),
    ("X{.empty_keys*}", "X"),
    # 3.2.6 path segment expansion
    ("{/who,who}", "/fred/fred"),
    ("{/who,dub}", "/fred/me%2Ftoo"),
    ("{/var,empty}", "/value/"),
    ("{/var,undef}", "/value"),
    ("{/var,x}/here", "/value/1024/here"),
    ("{/var:1,var}", "/v/value"),
    ("{/list*}", "/red/green/blue"),
    ("{/list*,path:4}", "/red/green/blue/%2Ffoo"),
    ("{/keys*}", "/semi=%3B/dot=./comma=%2C"),
    # 3.2.7 path-style parameter expansion
    ("{;who}", ";who=fred"),
    ("{;empty}", ";empty"),
    ("{;v,empty,who}", ";v=6;empty;who=fred"),
    ("{;v,bar,who}", ";v=6;who=fred"),
    ("{;x,y,undef}", ";x=1024;y=768"),
    ("{;hello:5}", ";hello=Hello"),
    ("{;list}", ";list=red,green,blue"),
    ("{;list*}", ";list=red;list=green;list=blue"),
    ("{;keys}", ";keys=semi,%3B,dot,.,comma,%2C"),
    ("{;keys*}", ";semi=%3B;dot=.;comma=%2C"),
    # 3.2.8 form-style query expansion
    ("{?who}", "?who=fred"),
    ("{?x,y,empty}", "?x=1024&y=768&empty="),
    ("{?var:3}", "?var=val"),
    ("{?list*}", "?list=red&list=green&list=blue"),
    ("{?keys*}", "?semi=%3B&dot=.&comma=%2C"),
    # 3.2.9 form-style query continuation
    ("?fixed=yes{&x}", "?fixed=yes&x=1024"),
    ("{&x,y,empty}", "&x=1024&y=768&empty="),
    ("{&list}", "&list=red,green,blue"),
    ("{&keys*}", "&semi=%3B&dot=.&comma=%2C"),
]


@pytest.mark.parametrize(("template", "expansion"), RFC_EXAMPLES)
def test_every_rfc_6570_example_expansion_matches_its_template(template: str, expansion: str) -> None:
    assert template_matches(template, expansion)


NON_MATCHES = [
    # a simple variable never spans a character it would percent-encode
    ("https://example.com/books/{id}", "https://example.com/books/1/reviews"),
    ("https://example.com/books/{id}", "https://example.com/books/a b"),
    ("https://example.com/books/{id}", "https://example.com/books/caf\u00e9"),
    ("https://example.com/books/{id}", "https://example.com/authors/1"),
    ("https://example.com/books/{id}", "see https://example.com/books/1"),
    ("https://example.com/books/{id}", "https://example.com/books/1 "),
    ("{var}", "%zz"),
    ("{var:3}", "valu"),
    ("{var:3}", "%C3%A9%C3%A9%C3%A9%C3%A9"),
    ("{?x}", "?y=1"),
    ("{?x,y}", "?y=1&x=2"),  # expansion keeps the variables' order
    ("{;x}", ";y=1"),
    ("{.who}", "fred"),
    ("{#var}", "var"),
    ("{/var}", "/a/b"),
    ("X{.var}", "X.a/b"),
    ("{/list*}", "/a=b=c"),  # one "=" per exploded member: keys and values encode theirs
    ("{?x}", "?x"),  # "?" always writes "=", even for an empty value
    ("https://example.net/bar/{var}", "https://example.net/foo/will-not-match}"),
]


@pytest.mark.parametrize(("template", "topic"), NON_MATCHES)
def test_a_template_does_not_match_what_it_cannot_expand_to(template: str, topic: str) -> None:
    assert not template_matches(template, topic)


def test_the_conformance_suite_template_case() -> None:
    selected = topic_set("https://example.net/foo/{random}")
    assert selected.matches("https://example.net/foo/" + "0123456789abcdef" * 5)
    assert not selected.matches("https://example.net/bar/0123")


def test_reserved_expansion_spans_slashes_and_queries() -> None:
    assert template_matches("https://example.com{+path}", "https://example.com/a/b?c=d#e")
    assert not template_matches("https://example.com{path}", "https://example.com/a/b")


def test_literals_match_verbatim_including_regex_metacharacters_and_non_ascii() -> None:
    assert template_matches("https://ex.com/a.b+c$/(x)/caf\u00e9/{id}", "https://ex.com/a.b+c$/(x)/caf\u00e9/7")
    assert not template_matches("https://ex.com/a.b/{id}", "https://ex.com/aXb/7")
    punctuation = "https://ex.com/a_b~c-d!e$f&g(h)*i+j,k;l=m:n@o[p]q/"
    assert template_matches(punctuation + "{id}", punctuation + "7")


# -- strings that are not templates are compared as strings -----------------------------

NOT_TEMPLATES = [
    "https://example.com/{",
    "https://example.com/}{id}",
    "{=x}",
    "{a b}",
    "{x:0}",
    "{x:10000}",
    "{x*:3}",
    "{}",
    '"quoted"/{x}',
    "a b/{x}",
    "{x}}",
    "will-not-match}",
]


@pytest.mark.parametrize("selector", NOT_TEMPLATES)
def test_an_invalid_template_is_an_exact_selector(selector: str) -> None:
    assert template_regex(selector) is None
    selected = topic_set(selector)
    assert selected.matches(selector)
    assert not selected.matches(selector + "x")
    assert not selected.has_patterns


def test_a_template_also_matches_itself_as_a_string() -> None:
    assert topic_set("https://example.com/{id}").matches("https://example.com/{id}")


# -- caps: valid templates over the limits are refused, not narrowed ---------------------


@pytest.mark.parametrize(
    "template",
    [
        "x" * 1100 + "{id}",
        "".join(f"{{v{i}}}" for i in range(MAX_EXPRESSIONS + 1)),
        "{" + ",".join(f"v{i}" for i in range(MAX_VARIABLES + 1)) + "}",
        f"{{var:{MAX_PREFIX + 1}}}",
    ],
)
def test_a_template_over_the_limits_is_refused(template: str) -> None:
    with pytest.raises(InvalidSelector):
        topic_set(template)


def test_templates_at_the_limits_compile() -> None:
    at_limit = "".join(f"{{;v{i}}}" for i in range(MAX_EXPRESSIONS))
    assert topic_set(at_limit).matches(";v0=1;v31=2")
    many = "{?" + ",".join(f"v{i}" for i in range(MAX_VARIABLES)) + "}"
    assert topic_set(many).matches("?v0=a&v15=b")
    assert topic_set(f"{{var:{MAX_PREFIX}}}").matches("a" * MAX_PREFIX)
    assert not topic_set(f"{{var:{MAX_PREFIX}}}").matches("a" * (MAX_PREFIX + 1))


@pytest.mark.parametrize("value", ["", "a" * (MAX_SELECTOR_CHARS + 1), "a\nb", "a\x00", "a\x7f", "a\x85b", "a\udcffb"])
def test_selector_values_are_checked(value: str) -> None:
    with pytest.raises(InvalidSelector):
        compile_selectors([Selector(MatchType.EXACT, value)], HUB)


# -- a hostile template ----------------------------------------------------------------


def test_a_hostile_template_is_matched_in_linear_time() -> None:
    """Twenty adjacent ``{v}`` expressions compile to twenty nested stars: on Python's
    backtracking ``re`` a long topic that fails at its last character explores every way
    to split it between them (polynomial of degree 20). On RE2 this returns at once;
    under the 120 s test timeout, a backtracking engine would not."""
    template = "https://example.com/" + "".join(f"{{v{i}}}" for i in range(20)) + "/end"
    selected = topic_set(template)
    long_value = "a," * 5000
    assert not selected.matches("https://example.com/" + long_value + "!end")
    assert selected.matches("https://example.com/" + long_value + "/end")
    regex = template_regex(template)
    assert regex is not None and regex.count("*") >= 20  # the shape that backtracks in re


def test_a_hostile_url_pattern_is_matched_in_linear_time() -> None:
    selected = compile_selectors([Selector(MatchType.URLPATTERN, "https://example.com/(a+)+b")], HUB)
    assert not selected.matches("https://example.com/" + "a" * 50_000 + "c")
    assert selected.matches("https://example.com/" + "a" * 50_000 + "b")


# -- 1.0 matchers -------------------------------------------------------------------------


def test_exact_matching_is_byte_for_byte() -> None:
    selected = compile_selectors([Selector(MatchType.EXACT, "https://example.com/a")], HUB)
    assert selected.matches("https://example.com/a")
    for other in ["https://EXAMPLE.com/a", "https://example.com/a/", "https://example.com/%61", "/a"]:
        assert not selected.matches(other)


def test_an_exact_selector_is_never_a_template() -> None:
    selected = compile_selectors([Selector(MatchType.EXACT, "https://example.com/{id}")], HUB)
    assert not selected.matches("https://example.com/1")
    assert selected.matches("https://example.com/{id}")


def test_url_patterns_match_absolute_and_relative_topics_against_the_hub_url() -> None:
    absolute = compile_selectors([Selector(MatchType.URLPATTERN, "https://example.net/foo/:random")], HUB)
    assert absolute.matches("https://example.net/foo/abc")
    assert not absolute.matches("https://example.net/foo/abc/def")
    assert not absolute.matches("https://example.net/bar/abc")
    relative = compile_selectors([Selector(MatchType.URLPATTERN, "/books/:id")], HUB)
    assert relative.matches("https://hub.example/books/1")
    assert relative.matches("/books/1")
    assert not relative.matches("https://other.example/books/1")


def test_url_patterns_are_case_sensitive_except_the_host() -> None:
    selected = compile_selectors([Selector(MatchType.URLPATTERN, "https://example.com/test")], HUB)
    assert not selected.matches("https://example.com/TEST")
    assert selected.matches("https://EXAMPLE.com/test")


def test_a_url_pattern_does_not_match_topics_that_are_not_urls() -> None:
    selected = compile_selectors([Selector(MatchType.URLPATTERN, "https://example.com/:x")], HUB)
    for topic in ["http://[::1", "urn:uuid:1", "ht tp://example.com/a"]:
        assert not selected.matches(topic)


def test_an_invalid_url_pattern_is_refused() -> None:
    with pytest.raises(InvalidSelector, match="URL pattern"):
        compile_selectors([Selector(MatchType.URLPATTERN, "https://example.com/(a|b")], HUB)


@pytest.mark.parametrize("match_type", list(MatchType))
def test_the_wildcard_matches_every_topic_whatever_the_match_type(match_type: MatchType) -> None:
    selected = compile_selectors([Selector(match_type, "*")], HUB)
    assert selected.match_all
    assert selected.matches("anything") and selected.matches("https://example.com/x")


# -- sets, caches and the private-update rule ---------------------------------------------


def test_a_selector_set_matches_when_any_selector_matches_any_topic() -> None:
    selected = topic_set("foo", "https://example.com/books/{id}")
    assert selected.exact_topics == {"foo", "https://example.com/books/{id}"}
    assert selected.matches_any(["bar", "https://example.com/books/1"])
    assert selected.matches_any(["foo"])
    assert not selected.matches_any(["bar", "baz"])
    assert not selected.matches_any([])
    assert EMPTY.is_empty and not EMPTY.matches("foo")


def test_compiled_templates_are_cached_and_the_cache_is_bounded() -> None:
    matcher = selectors_module._template_matcher
    before = matcher.cache_info()
    topic_set("https://cache.example/{a}/{b}")
    topic_set("https://cache.example/{a}/{b}")
    after = matcher.cache_info()
    assert after.hits == before.hits + 1
    assert after.maxsize == selectors_module.TEMPLATE_CACHE_SIZE
    assert selectors_module._urlpattern_matcher.cache_info().maxsize == selectors_module.URLPATTERN_CACHE_SIZE


def test_private_updates_need_a_grant_for_one_of_their_topics() -> None:
    subscription = topic_set("https://example.com/books/{id}")
    grant = topic_set("https://example.com/books/1")
    book1 = ("https://example.com/books/1",)
    book2 = ("https://example.com/books/2",)
    assert should_deliver(book1, False, subscription, EMPTY)
    assert should_deliver(book1, True, subscription, grant)
    assert not should_deliver(book2, True, subscription, grant)
    assert not should_deliver(book1, True, subscription, EMPTY)
    # an alternate topic can carry the grant
    assert should_deliver(("https://example.com/books/2", "https://example.com/books/1"), True, subscription, grant)
    # the grant never widens the subscription
    assert not should_deliver(("https://example.com/authors/1",), False, subscription, topic_set("*"))


# -- property: any expansion of any template matches it -----------------------------------

_OPERATORS: dict[str, tuple[str, str, bool, str, bool]] = {
    # op: first, sep, named, ifemp, reserved (RFC 6570, Appendix A)
    "": ("", ",", False, "", False),
    "+": ("", ",", False, "", True),
    "#": ("#", ",", False, "", True),
    ".": (".", ".", False, "", False),
    "/": ("/", "/", False, "", False),
    ";": (";", ";", True, "", False),
    "?": ("?", "&", True, "=", False),
    "&": ("&", "&", True, "=", False),
}
_UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_RESERVED = set(":/?#[]@!$&'()*+,;=")
_TRIPLET = re.compile(r"%[0-9A-Fa-f]{2}")

Value = str | list[str] | dict[str, str] | None


def _encode(value: str, reserved: bool) -> str:
    """RFC 6570, section 3.2.1: percent-encode what the operator does not allow."""
    out: list[str] = []
    index = 0
    while index < len(value):
        if reserved and _TRIPLET.match(value, index):
            out.append(value[index : index + 3])
            index += 3
            continue
        char = value[index]
        if char in _UNRESERVED or (reserved and char in _RESERVED):
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode())
        index += 1
    return "".join(out)


def _expand_variable(op: str, name: str, prefix: int | None, explode: bool, value: Value) -> str | None:
    _, sep, named, ifemp, reserved = _OPERATORS[op]
    if value is None or value == [] or value == {}:
        return None
    if isinstance(value, str):
        text = _encode(value[:prefix] if prefix else value, reserved)
        if not named:
            return text
        return name + (ifemp if not text else "=" + text)
    if isinstance(value, list):
        items: Sequence[tuple[str | None, str]] = [(None, item) for item in value]
    else:
        items = list(value.items())
    if not explode:
        flat = [
            _encode(part, reserved) for key, item in items for part in ((key, item) if key is not None else (item,))
        ]
        return (name + "=" if named else "") + ",".join(flat)
    parts = []
    for key, item in items:
        label = name if key is None else _encode(key, reserved)
        encoded = _encode(item, reserved)
        if named:
            parts.append(label + (ifemp if not encoded else "=" + encoded))
        else:
            parts.append(encoded if key is None else f"{label}={encoded}")
    return sep.join(parts)


def _expand(parts: Sequence[str | tuple[str, list[tuple[str, int | None, bool]]]], values: Mapping[str, Value]) -> str:
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        op, specs = part
        first, sep, *_ = _OPERATORS[op]
        expanded = [_expand_variable(op, name, prefix, explode, values[name]) for name, prefix, explode in specs]
        defined = [item for item in expanded if item is not None]
        if defined:
            out.append(first + sep.join(defined))
    return "".join(out)


_text = st.text(st.sampled_from(list("ab~-._%/:?#[]@!$&'()*+,;= \u00e9\u20ac\U0001f600")), max_size=6)
_value = st.one_of(
    st.none(),
    _text,
    st.lists(_text, max_size=3),
    st.dictionaries(st.text("kxyz%/", min_size=1, max_size=3), _text, max_size=3),
)


@st.composite
def _templates(draw: st.DrawFn) -> tuple[str, str]:
    parts: list[str | tuple[str, list[tuple[str, int | None, bool]]]] = []
    values: dict[str, Value] = {}
    for index in range(draw(st.integers(1, 4))):
        if index > 0 and draw(st.booleans()):  # a literal; the first part is an expression
            parts.append(draw(st.text(st.sampled_from(list("ab/-._~:")), max_size=3)))
            continue
        op = draw(st.sampled_from(list(_OPERATORS)))
        specs = []
        for number in range(draw(st.integers(1, 3))):
            name = f"v{index}x{number}"
            modifier = draw(st.sampled_from(["", "prefix", "explode"]))
            prefix = draw(st.integers(1, 5)) if modifier == "prefix" else None
            values[name] = draw(st.one_of(st.none(), _text)) if prefix else draw(_value)
            specs.append((name, prefix, modifier == "explode"))
        parts.append((op, specs))
    template = "".join(
        part if isinstance(part, str) else "{" + part[0] + ",".join(_spec_text(*spec) for spec in part[1]) + "}"
        for part in parts
    )
    return template, _expand(parts, values)


def _spec_text(name: str, prefix: int | None, explode: bool) -> str:
    return name + (f":{prefix}" if prefix else "") + ("*" if explode else "")


@given(_templates())
def test_any_expansion_of_a_template_matches_it(case: tuple[str, str]) -> None:
    template, expansion = case
    assert template_matches(template, expansion), (template, expansion)
