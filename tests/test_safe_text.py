"""The untrusted-text policy (moa_core.ui.safe_text), checked against a CommonMark parser.

markdown-it-py stands in for the browser's renderer: every link and image it would make
from the text is inspected. Its own link filter is switched off, so a `data:` or `file:`
link in the input really becomes a link unless the policy stopped it (Streamlit's
renderer only blocks javascript: and vbscript:). The real renderer is checked by the
browser tests (tests/reliability/test_browser_reliability.py).
"""

from __future__ import annotations

import random
import re
from urllib.parse import urlsplit

import pytest
from markdown_it import MarkdownIt

from moa_core.ui.safe_text import code_span, md_escape, safe_markdown

_MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])
_MD.validateLink = lambda url: True  # see every link the text makes, whatever its scheme

ALLOWED = {"", "http", "https", "mailto"}


def made(text: str) -> list[tuple[str, str]]:
    """(kind, url) of every link and image the text renders to."""
    out: list[tuple[str, str]] = []

    def walk(tokens) -> None:
        for t in tokens:
            if t.type == "link_open":
                out.append(("a", str(t.attrGet("href"))))
            elif t.type == "image":
                out.append(("img", str(t.attrGet("src"))))
            if t.children:
                walk(t.children)

    walk(_MD.parse(text))
    return out


def bad(text: str) -> list[tuple[str, str]]:
    """What breaks the policy: any image, any link whose scheme is not allowed."""
    return [(k, u) for k, u in made(text) if k == "img" or urlsplit(u).scheme.lower() not in ALLOWED]


def shown(text: str) -> str:
    """The text a reader sees (tags dropped, entities decoded)."""
    import html

    return html.unescape(re.sub(r"<[^>]+>", "", _MD.render(text))).strip()


HOSTILE = [
    "[d](data:text/html,<script>alert(1)</script>)",
    "[f](file:///etc/passwd)",
    "[v](vbscript:msgbox(1))",
    "[j](javascript:alert(1))",
    "[x](DATA:text/html,x)",
    "[a](<data:text/html,x>)",
    "[t](data:text/html,x 'title')",
    "[n](\n  data:text/html,x)",
    "[e](d&#97;ta&#58;text/html,x)",
    "[e](&#x64;ata:text/html,x)",
    "[c](data&colon;text/html,x)",
    "[b](data\\:text/html,x)",
    "<data:text/html,x>",
    "<file:///etc/passwd>",
    "<vbscript:msgbox(1)>",
    "<std::string> in prose",
    "[s](std::move)",
    "[ref link][r1]\n\n[r1]: data:text/html,x",
    "[r1]\n\n[r1]:\n   file:///etc/passwd 'title'",
    "[col][]\n\n[col]: <vbscript:x>",
    "> [q]\n>\n> [q]: data:text/html,x",
    "- [i]\n\n  [i]: data:text/html,x",
    "![img](data:image/png;base64,iVBORw0KGgo=)",
    "![remote](https://example.com/pixel.png?leak=secret)",
    "![ref][p]\n\n[p]: https://example.com/p.png",
    "[![img](data:image/png;base64,AAAA)](https://example.com)",
    "[outer [inner](data:text/html,x)](https://ok.example)",
    "| a | b |\n|---|---|\n| [x](data:text/html,x) | y |",
    "**[bold](file:///x)** and _[em](data:,x)_",
    "`` ` `` [after code](data:text/html,x)",
    "<div>\n```\n[x](foo:bar)\n```\n</div>\n\n[y](data:text/html,y)",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_only_http_https_mailto_links_survive(text: str) -> None:
    assert bad(text), "the case should make a link the policy forbids before it is applied"
    out = safe_markdown(text)
    assert bad(out) == []


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("[d](data:text/html,x)", "[d](data:text/html,x)"),
        ("<file:///etc/passwd>", "<file:///etc/passwd>"),
        ("![img](data:image/png;base64,AAAA)", "![img](data:image/png;base64,AAAA)"),
        ("[r1]\n\n[r1]: vbscript:x", "[r1]: vbscript:x"),
    ],
)
def test_a_forbidden_link_reads_as_the_text_written(text: str, url: str) -> None:
    assert url in shown(safe_markdown(text))


def test_an_image_becomes_a_link_to_its_url() -> None:
    out = safe_markdown("see ![chart](https://example.com/c.png)")
    assert made(out) == [("a", "https://example.com/c.png")]
    assert shown(out) == "see !chart"


@pytest.mark.parametrize(
    "text",
    [
        "[site](https://example.com/a?b=c#d) and [mail](mailto:a@b.example) and [rel](/History?run=1)",
        "<https://example.org/x> and <mailto:a@b.example> and <a@b.example>",
        "[ref][r]\n\n[r]: https://example.com 'title'",
        "**bold** _em_ ~~del~~ `code` # not a heading\n\n# Heading\n\n- list\n1. item\n\n> quote",
        "| a | b |\n|---|---|\n| 1 | [x](https://example.com) |",
        "```cpp\nstd::vector<std::string> v; handlers[i](std::move(x));\nauto r = vec![1, 2];\n```",
        "~~~\n[not a link](foo:x) <std::x> in a tilde fence\n~~~",
        "Use `std::map<std::string, int>` or `<std::string>` here, and `arr[i](x)`.",
        "Rust's `vec![1, 2]` and a[i](x) and f(a)[b](c) stay as written.",
    ],
)
def test_allowed_links_formatting_and_code_are_left_as_written(text: str) -> None:
    assert safe_markdown(text) == text


def test_text_reads_the_same_after_the_policy() -> None:
    text = "Say [hi](data:text/html,x) to <file:///x> and ![i](https://e.example/i.png) **now**."
    assert shown(safe_markdown(text)) == "Say [hi](data:text/html,x) to <file:///x> and !i now."


def test_streaming_text_cut_anywhere_is_safe() -> None:
    """A live column shows every prefix of the answer as it streams."""
    text = "Intro\n\n```\ncode <std::x>\n```\n" + " ".join(HOSTILE)
    for n in range(0, len(text), 7):
        assert bad(safe_markdown(text[:n])) == [], text[:n]


FRAGMENTS = [
    "[", "]", "(", ")", "<", ">", "!", "`", "``", "\\", ":", " ", "\n", "\n\n", "a", "x y",
    "data:", "javascript:", "vbscript:", "file:///", "https://ok.example", "mailto:a@b.example",
    "&#58;", "&#x64;", "&colon;", "](", "]:", "[r]: ", "[r]", "![", "> ", "- ", "1. ", "    ",
    "```\n", "~~~\n", "$$\n", "<div>\n", "| a | b |\n|---|---|\n", "**", "_", "'t'", '"t"',
]  # fmt: skip


def test_random_markdown_never_makes_a_forbidden_link() -> None:
    rng = random.Random(14)
    for _ in range(3000):
        text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 40)))
        assert bad(safe_markdown(text)) == [], repr(text)


NAMES = [
    "cfg [x](data:text/html,x)",
    "label <file:///etc/passwd> `code` **bold**",
    "openai/model`[m](data:text/html,m)`",
    "``` fence\n# heading\n[x](data:x)",
    "rater https://example.com www.example.com a@b.example",
    ":material/home: :red[x] $x^2$ <b>b</b> &amp; | a |",
    "`",
    "a `` b",
]


@pytest.mark.parametrize("name", NAMES)
def test_names_and_labels_are_never_markdown(name: str) -> None:
    flat = re.sub(r"\s+", " ", name).strip()
    for md in (md_escape(name), code_span(name), f"**{md_escape(name)}** · {code_span(name)}"):
        assert made(md) == [], md
        assert "\n" not in md
    assert shown(md_escape(name)).replace("\u200b", "") == flat
    assert _MD.render(code_span(name)).count("<code>") == 1
    code = re.search(r"<code>(.*)</code>", _MD.render(code_span(name)), re.S)
    assert code is not None
    import html

    assert html.unescape(code.group(1)) == flat


def test_md_escape_leaves_no_markdown_or_html_active() -> None:
    nasty = (
        "**b** _i_ [l](http://evil.example) <b>x</b> <script>1</script> $x^2$ :red[hi] # h `c` "
        "1. &amp; | a | ~~s~~ \\ www.example.com a@b.co\nnext line"
    )
    out = md_escape(nasty)
    assert "\n" not in out
    assert re.search(r"(?<!\\)[*_\[\]()<>$`#|~&:]", out.replace("\\\\", "")) is None  # every one escaped
    assert out.replace("\u200b", "").replace("\\", "") == re.sub(r"\s+", " ", nasty).replace("\\", "")
    assert md_escape("x" * 50, max_len=10) == "xxxxxxxxx…"
    assert code_span("") == "" and md_escape(None) == ""
