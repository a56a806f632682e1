"""Untrusted text on a page: the one policy, applied here and nowhere else.

Model output, questions, comments, rater names, config names, agent labels, model strings
and error messages are untrusted. Pages show them through three functions:

- `safe_markdown(text)`: markdown that keeps its formatting, but only http, https and
  mailto links stay links. A link, autolink or reference definition with any other scheme
  (data:, javascript:, vbscript:, file:, ...) is shown as text, and an image is shown as a
  link (an answer cannot make the browser load anything). Links without a scheme are
  relative to the app and stay.
- `md_escape(text)`: a name or label as plain text on one line; no markdown at all.
- `code_span(text)`: the same in a code span that no character can close early.

Pure Python (no Streamlit), so the policy is unit-tested on its own.
"""

from __future__ import annotations

import bisect
import html
import re

ALLOWED_SCHEMES = frozenset({"http", "https", "mailto"})
# Inside what looks like code, text is left as written (C++'s `<std::string>` is not a link
# there) unless it names one of these: the guard for code the scan below misjudges.
DANGEROUS_SCHEMES = frozenset({"javascript", "vbscript", "data", "file", "blob", "filesystem", "livescript"})

# -- names and labels ------------------------------------------------------------------

# Every ASCII punctuation mark CommonMark lets a backslash escape, so text cannot open
# links, emphasis, headings, lists, tables, LaTeX ($), Streamlit directives (:red[..]),
# icons (:material/..:) or HTML (which Streamlit does not render without unsafe_allow_html).
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:^=\"'&%@/?;,])")
_AUTOLINK = re.compile(r"(?i)(\bwww|\b[a-z][a-z0-9+.-]*(?=://)|@)")
_SPACE = re.compile(r"[\s\x00-\x1f\x7f]+")


def _flat(text: str | None, max_len: int | None = None) -> str:
    flat = _SPACE.sub(" ", text or "").strip()
    if max_len is not None and len(flat) > max_len:
        flat = flat[: max_len - 1] + "…"
    return flat


def md_escape(text: str | None, max_len: int | None = None) -> str:
    """Plain text -> markdown that shows exactly that text, on one line."""
    # GFM turns bare URLs and e-mail addresses into links even when escaped: a zero-width
    # space after the scheme or "www" and after "@" keeps them plain text.
    flat = _AUTOLINK.sub("\\1\u200b", _flat(text, max_len))
    return _MD_SPECIAL.sub(r"\\\1", flat)


def code_span(text: str | None, max_len: int | None = None) -> str:
    """Text -> a code span showing exactly that text (backticks included), on one line."""
    flat = _flat(text, max_len)
    if not flat:
        return ""
    # A span closes only at a run of backticks as long as its opener: use a longer one.
    fence = "`" * (max((len(r) for r in re.findall(r"`+", flat)), default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


# -- untrusted markdown ------------------------------------------------------------------

# Where a link or image can get its URL: an inline destination `](`, a reference
# definition `]:`, an autolink `<scheme:`, an image `![`. GFM's bare-URL autolinks only
# make http(s), www and e-mail links, which the policy allows.
_TRIGGER = re.compile(r"\](?=[(:])|<(?=[A-Za-z][A-Za-z0-9+.\-]*:)|!(?=\[)")
_BACKSLASH = re.compile(r"\\([!-/:-@\[-`{-~])")
# Browsers drop tabs and newlines anywhere in a URL and trim controls and spaces; dropping
# them all (more than a browser does) can only make more URLs look like they have a scheme.
_IGNORED = re.compile(r"[\x00-\x20\x7f]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_WINDOW = 256
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")
_FENCE_OPEN = re.compile(r"(`{3,}|~{3,})(.*)")
# A fence line inside an HTML block, a $$ math block or a ::: directive is not a fence:
# with any of them in the text, no fenced block is trusted to be code.
_FENCE_DOUBT = re.compile(r"^ {0,3}(?:<[!?]|</?[A-Za-z][A-Za-z0-9-]*(?:[\s/>]|$)|\${2}|:{3})", re.M)


def _scheme_at(text: str, start: int) -> str:
    """The scheme of the URL starting at `start` ("" when it has none, "?" when it cannot tell)."""
    i = start
    while i < len(text) and text[i] in " \t\r\n>":  # spaces, a line break, blockquote markers
        i += 1
    if i < len(text) and text[i] == "<":
        i += 1
    # Backslash escapes and entities are decoded in destinations (`data\:`, `&#100;ata:`).
    window = _IGNORED.sub("", html.unescape(_BACKSLASH.sub(r"\1", text[i : i + _WINDOW])))
    m = _SCHEME.match(window)
    if m is None:
        return ""
    if m.end() == len(window):
        return "?"
    return m.group().lower() if window[m.end()] == ":" else ""


def _code_spans(line: str, offset: int) -> list[tuple[int, int]]:
    """Code spans that open and close on this line."""
    out = []
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c != "`":
            i += 1
            continue
        n = len(line) - i - len(line[i:].lstrip("`"))
        run = line[i : i + n]
        j = i + n
        close = None
        while (k := line.find(run, j)) != -1:
            m = k + n
            while m < len(line) and line[m] == "`":
                m += 1
            if m - k == n:
                close = m
                break
            j = m
        if close is None:
            i += n
            continue
        out.append((offset + i, offset + close))
        i = close
    return out


def _code_regions(text: str) -> list[tuple[int, int]]:
    """Fenced blocks opened at column 0 and one-line code spans, as (start, end) offsets."""
    regions: list[tuple[int, int]] = []
    fences = _FENCE_DOUBT.search(text) is None
    fence = ""
    pos = 0
    for m in _LINE.finditer(text):
        line = m.group()
        if not line:
            break
        body = line.rstrip("\r\n")
        end = pos + len(line)
        if fence:
            regions[-1] = (regions[-1][0], end)
            close = body.lstrip(" ").rstrip(" \t")
            indent = len(body) - len(body.lstrip(" "))
            if indent <= 3 and set(close) == {fence[0]} and len(close) >= len(fence):
                fence = ""
        elif fences and (f := _FENCE_OPEN.fullmatch(body)) and not (f.group(1)[0] == "`" and "`" in f.group(2)):
            fence = f.group(1)
            regions.append((pos, end))
        else:
            regions += _code_spans(body, pos)
        pos = end
    return regions


def _escaped(text: str, i: int) -> bool:
    """Whether text[i] is backslash-escaped (an odd run of backslashes before it)."""
    j = i
    while j > 0 and text[j - 1] == "\\":
        j -= 1
    return (i - j) % 2 == 1


def safe_markdown(text: str | None) -> str:
    """Untrusted markdown -> markdown whose only links are http, https, mailto or relative.

    A backslash goes in front of whatever would open a link to another scheme (`](`, `]:`,
    `<scheme:`) and of every image's `!`; in running text a backslash before punctuation
    does not show, so the text reads exactly as written."""
    text = text or ""
    regions = _code_regions(text)
    starts = [r[0] for r in regions]
    out: list[str] = []
    last = 0
    for m in _TRIGGER.finditer(text):
        i = m.start()
        k = bisect.bisect_right(starts, i) - 1
        in_code = k >= 0 and i < regions[k][1]
        c = text[i]
        if c == "!":
            if in_code or _escaped(text, i):
                continue
            at = i  # `\![alt](url)`: an image shown as a link to its URL (the URL is checked too)
        else:
            if c == "<" and _escaped(text, i):
                continue
            scheme = _scheme_at(text, i + (1 if c == "<" else 2))
            bad = (scheme in DANGEROUS_SCHEMES or scheme == "?") if in_code else (scheme not in ALLOWED_SCHEMES)
            if not scheme or not bad:
                continue
            at = i if c == "<" else i + 1
        out.append(text[last:at] + "\\")
        last = at
    out.append(text[last:])
    return "".join(out)


__all__ = ["ALLOWED_SCHEMES", "code_span", "md_escape", "safe_markdown"]
