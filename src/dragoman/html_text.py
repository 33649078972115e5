"""HTML whose text is translated and whose markup is not: the standard library's parser splits
it into markup (kept as written) and text nodes (the only part a model sees).

The text nodes of one document are sent as one text, one node per line, so that a document is
one translation (one record) and the model sees whole sentences in order; each line of the
answer goes back into its node. When the model merges or splits lines, the whole translation
goes into the first node and the others are emptied: the markup still comes back unchanged.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

# Text inside these elements is code or data, never prose.
_RAW_ELEMENTS = frozenset({"script", "style", "code", "pre", "textarea"})
_SPACE = re.compile(r"\s+")


@dataclass(slots=True)
class _Node:
    text: str
    translatable: bool


@dataclass(slots=True)
class HtmlDocument:
    """Markup and text nodes in document order."""

    parts: list[str | _Node] = field(default_factory=list)

    @property
    def units(self) -> list[_Node]:
        return [p for p in self.parts if isinstance(p, _Node) and p.translatable]

    def text(self) -> str:
        """What the model translates: one text node per line, inner whitespace collapsed."""
        return "\n".join(_SPACE.sub(" ", unit.text).strip() for unit in self.units)

    def render(self, translation: str) -> str:
        units = self.units
        lines = translation.split("\n")
        if len(lines) != len(units):
            lines = [" ".join(line.strip() for line in lines if line.strip())]
            lines += [""] * (len(units) - 1)
        given = dict(zip((id(u) for u in units), lines, strict=True))
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif id(part) in given:
                # The node's own leading and trailing space: it separates it from its neighbours.
                lead = part.text[: len(part.text) - len(part.text.lstrip())]
                trail = part.text[len(part.text.rstrip()) :]
                out.append(html.escape(lead + given[id(part)].strip() + trail, quote=False))
            else:
                out.append(html.escape(part.text, quote=False))
        return "".join(out)


class _Splitter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.document = HtmlDocument()
        self._raw_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.document.parts.append(self.get_starttag_text() or "")
        if tag in _RAW_ELEMENTS:
            self._raw_depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.document.parts.append(self.get_starttag_text() or "")

    def handle_endtag(self, tag: str) -> None:
        self.document.parts.append(f"</{tag}>")
        if tag in _RAW_ELEMENTS and self._raw_depth:
            self._raw_depth -= 1

    def handle_data(self, data: str) -> None:
        if self.cdata_elem is not None:  # inside <script> or <style>: as written
            self.document.parts.append(data)
            return
        prose = self._raw_depth == 0 and any(ch.isalpha() for ch in data)
        self.document.parts.append(_Node(data, prose))

    def handle_comment(self, data: str) -> None:
        self.document.parts.append(f"<!--{data}-->")

    def handle_decl(self, decl: str) -> None:
        self.document.parts.append(f"<!{decl}>")

    def handle_pi(self, data: str) -> None:
        self.document.parts.append(f"<?{data}>")

    def unknown_decl(self, data: str) -> None:
        self.document.parts.append(f"<![{data}]>")


def parse_html(markup: str) -> HtmlDocument:
    splitter = _Splitter()
    splitter.feed(markup)
    splitter.close()
    return splitter.document
