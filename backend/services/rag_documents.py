"""Reading documents for RAG, and cutting them into token-sized chunks that keep their page and heading.

:func:`parse` turns an uploaded file (plain text, Markdown, HTML or PDF, chosen by extension) into a
:class:`ParsedDocument`: its readable text and the sections it is made of (a PDF page, a Markdown or HTML heading's
part). :func:`chunk` cuts each section at paragraph and sentence ends into chunks of at most ``chunk_size`` tokens of
the embedder's tokenizer, with about ``overlap`` tokens repeated between neighbours. A chunk never crosses a section,
so its page and heading are exact, and its text is always a slice of the document's text, so offsets can be trusted.
"""

from __future__ import annotations

import codecs
import io
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from itertools import accumulate
from pathlib import PurePath
from typing import Literal

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, PyPdfError

SUPPORTED = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")
Kind = Literal["txt", "md", "html", "pdf", "docx"]
Part = tuple[str, int | None, str | None]  # a section to be: text, page, heading
KINDS: dict[str, Kind] = {
    ".txt": "txt", ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html", ".pdf": "pdf", ".docx": "docx"
}  # fmt: skip
# pypdf's own errors, and what it raises on files broken in ways it does not check for ("broken PDF files might cause
# other Exceptions", its docs say). Only pypdf runs where these are caught, so they are the file's fault, not ours.
PDF_ERRORS: tuple[type[Exception], ...] = (PyPdfError, ValueError, KeyError, IndexError, TypeError, AttributeError)
PDF_ERRORS += (AssertionError, RecursionError, OverflowError, zlib.error, struct.error)


class DocumentError(ValueError):
    """A file that cannot be read as a document; the message names the file and says why, for a person."""


@dataclass(frozen=True)
class Section:
    """A part of a document that chunks never cross; ``text`` is ``ParsedDocument.text[start:start+len(text)]``."""

    text: str
    start: int
    page: int | None  # 1-based PDF page, None for other kinds
    heading: str | None  # Markdown: the heading path ("Guide > Install"); HTML: the nearest h1-h6's text


@dataclass(frozen=True)
class ParsedDocument:
    """A document's readable text: its sections joined by a blank line (``"\\n\\n"``)."""

    filename: str
    kind: Kind
    text: str
    sections: list[Section]
    pages: int | None  # PDF page count, else None


@dataclass(frozen=True)
class Chunk:
    """A piece of one section to embed; ``text`` is exactly ``doc.text[start:end]``, without edge whitespace."""

    text: str
    start: int
    end: int
    page: int | None
    heading: str | None


# ---------------------------------------------------------------------------------------------- parsing


def parse(filename: str, data: bytes) -> ParsedDocument:
    """Read ``data`` as the kind of document that ``filename``'s extension names (case-insensitive).

    Raises :class:`DocumentError` for an unsupported extension, text that is not UTF-8, UTF-16 (with a BOM) or
    Windows-1252, a damaged or password-protected PDF, and a document with no text at all.
    """
    suffix = PurePath(filename).suffix.lower()
    if suffix not in KINDS:
        raise DocumentError(f"'{filename}' is not a supported document; supported are {', '.join(SUPPORTED)}.")
    kind = KINDS[suffix]
    if kind == "pdf":
        return _pdf(filename, data)
    if kind == "docx":
        return _document(filename, kind, _docx(filename, data), None)
    text = _decode(filename, data)
    if kind == "md":
        return _document(filename, kind, _markdown(text), None)
    if kind == "html":  # a page all in one <form> (ASP.NET WebForms does that) is read with its form
        sections = _Html.read(text, _SKIP) or _Html.read(text, _SKIP - {"form"})
        return _document(filename, kind, [(body, None, heading) for heading, body in sections], None)
    return _document(filename, kind, [(_trim(text), None, None)], None)


def _decode(filename: str, data: bytes) -> str:
    """UTF-16 if it starts with a BOM, else UTF-8 (a BOM is dropped), else Windows-1252, the usual legacy encoding of
    Western text files; a NUL byte outside UTF-16 means a binary file, which would decode to garbage. Newlines: ``\\n``.
    """
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            text = data.decode("utf-16")
        elif b"\x00" in data:
            raise DocumentError(f"'{filename}' looks like a binary file, not text (or UTF-16 without a BOM).")
        else:
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                text = data.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"'{filename}' is not UTF-8 text; save it as UTF-8 and upload it again.") from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _trim(text: str) -> str:
    """``text`` without blank lines at the start (the first line's indent stays) and whitespace at the end."""
    return re.sub(r"\A(?:[ \t]*\n)+", "", text).rstrip()


def _document(filename: str, kind: Kind, parts: list[Part], pages: int | None) -> ParsedDocument:
    """Join the non-blank ``(text, page, heading)`` parts into a document, or refuse one with no text."""
    sections: list[Section] = []
    at = 0
    for text, page, heading in parts:
        if text.strip():
            sections.append(Section(text, at, page, heading))
            at += len(text) + 2
    if not sections:
        hint = " (a scanned PDF needs text recognition (OCR) first)" if kind == "pdf" else ""
        raise DocumentError(f"'{filename}' has no text{hint}.")
    return ParsedDocument(filename, kind, "\n\n".join(s.text for s in sections), sections, pages)


def _pdf(filename: str, data: bytes) -> ParsedDocument:
    """One section per page with text, numbered from 1 as in the file (pages without text are skipped, not
    renumbered). An encrypted PDF is opened if its user password is empty, as viewers do."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise DocumentError(f"'{filename}' is password-protected; remove the password and upload it again.")
        texts = [page.extract_text() for page in reader.pages]
    except DocumentError:
        raise
    except DependencyError as exc:  # AES encryption without the optional `cryptography` package
        raise DocumentError(f"'{filename}' is encrypted in a way this installation cannot open ({exc}).") from exc
    except PDF_ERRORS as exc:
        raise DocumentError(f"'{filename}' could not be read as a PDF; it is damaged or not a PDF ({exc}).") from exc
    parts: list[Part] = [
        (text.replace("\x00", "").replace("\r\n", "\n").strip(), number, None) for number, text in enumerate(texts, 1)
    ]
    return _document(filename, "pdf", parts, len(texts))


_HEADING_STYLE = re.compile(r"^(?:Heading (\d)|Title)$")


def _docx(filename: str, data: bytes) -> list[Part]:
    """A Word document's body in order (paragraphs, and tables a row per line with cells joined by " | "), in
    sections at its Heading 1-9 (and Title) paragraphs, each with its heading path, heading line included, as in
    Markdown; a heading with nothing under it lives on only in the paths under it."""
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = list(document.iter_inner_content())
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:  # not a zip, a part missing, not a Word document
        raise DocumentError(f"'{filename}' could not be read as a Word document (.docx): {exc}") from exc
    except Exception as exc:  # lxml's XMLSyntaxError and python-docx's own errors for damaged parts
        raise DocumentError(f"'{filename}' could not be read as a Word document; it is damaged ({exc}).") from exc
    parts: list[Part] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    titled = False  # lines[0] is the section's heading

    def flush() -> None:
        if len(lines) > titled:
            parts.append(("\n\n".join(lines), None, " > ".join(title for _, title in path) or None))

    for block in blocks:
        if isinstance(block, Table):
            rows = [" | ".join(dict.fromkeys(c.text.strip() for c in row.cells)) for row in block.rows]
            if table := "\n".join(r for r in rows if r.strip(" |")):
                lines.append(table)
            continue
        text = block.text.strip()
        heading = _HEADING_STYLE.match(block.style.name or "") if block.style is not None else None
        if heading and text:
            flush()
            level = int(heading.group(1) or 0)  # the Title is above Heading 1
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, text))
            lines, titled = [text], True
        elif text:
            lines.append(text)
    flush()
    return parts


_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+|$)(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _markdown(text: str) -> list[Part]:
    """Sections starting at ATX headings (``#`` .. ``######``, not inside fenced code), each with its heading path.

    The text stays as written, heading lines included. A heading with nothing under it before a deeper heading is
    dropped: its title lives on in its children's heading paths, and alone it would be a useless tiny chunk.
    """
    path: list[tuple[int, str]] = []
    sections: list[tuple[int, str | None, list[str]]] = [(0, None, [])]
    fence = ""
    for line in text.split("\n"):
        opened = _FENCE.match(line)
        if fence:
            marks = opened.group(1) if opened else ""
            if marks[:1] == fence[0] and len(marks) >= len(fence) and line.strip() == marks:  # a closing fence
                fence = ""
        elif opened:
            fence = opened.group(1)
        elif heading := _ATX.match(line):
            level, title = len(heading.group(1)), heading.group(2).strip()
            while path and path[-1][0] >= level:
                path.pop()
            if title:
                path.append((level, title))
            sections.append((level, " > ".join(t for _, t in path) or None, [line]))
            continue
        sections[-1][2].append(line)
    kept: list[Part] = []
    for index, (level, heading_path, lines) in enumerate(sections):
        parent = index + 1 < len(sections) and sections[index + 1][0] > level
        if level and parent and not "".join(lines[1:]).strip():
            continue
        kept.append((_trim("\n".join(lines)), None, heading_path))
    return kept


_HIDDEN = frozenset({"script", "style", "noscript", "template", "svg", "head", "title", "iframe", "object", "canvas"})
_SKIP = _HIDDEN | frozenset({"nav", "footer", "header", "aside", "form"})  # boilerplate around the text
_BANNERS = frozenset({"header", "footer"})  # a page's banners, skipped; an article's or section's, kept (its title)
_SECTIONING = frozenset({"article", "section", "main"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_BLOCKS = frozenset({"p", "div", "pre", "blockquote", "hr", "address", "figure", "figcaption", "details", "fieldset"})
_PARAGRAPHS = _HEADINGS | _BLOCKS | frozenset({"section", "article", "main", "table", "ul", "ol", "dl"})
_LINES = frozenset({"br", "li", "tr", "dt", "dd", "caption", "summary"})


class _Html(HTMLParser):
    """The text a reader of the page sees, as ``sections``: ``(heading text or None, text)`` pairs.

    Hidden and boilerplate elements (:data:`_SKIP`) are dropped whole, ``<title>`` too (it is the tab's label, not
    the page's text), but a header or footer inside an article, section or main element is the article's own (its
    title, byline) and kept. Block elements end a paragraph (a blank line) or a line (``li``, ``tr``, ``br``...);
    whitespace in running text collapses to one space except in ``<pre>``; entities are decoded. Each h1-h6 starts
    a section named by its text, which also stays in the text.
    """

    def __init__(self, skip: frozenset[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[tuple[str | None, str]] = []
        self._skipped = skip
        self._heading: str | None = None
        self._in_heading = False
        self._parts: list[str] = []  # the current section's text
        self._buffer: list[str] = []  # running text not yet ended by a block
        self._gap = 0  # newlines owed before the next text: 1 a line break, 2 a paragraph break
        self._skip: list[str] = []  # open skipped elements
        self._pre = 0
        self._sectioning = 0  # open article, section and main elements

    @classmethod
    def read(cls, page: str, skip: frozenset[str]) -> list[tuple[str | None, str]]:
        parser = cls(skip)
        parser.feed(page)
        parser.close()
        return parser.sections

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":  # an unclosed <head> ends here
            self._skip = [t for t in self._skip if t != "head"]
        if tag in self._skipped and not (tag in _BANNERS and self._sectioning):
            self._skip.append(tag)
        elif not self._skip:
            self._sectioning += tag in _SECTIONING
            self._tag(tag, opening=True)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._skip:
            del self._skip[len(self._skip) - 1 - self._skip[::-1].index(tag) :]
        elif not self._skip and tag not in self._skipped:
            if tag in _SECTIONING:
                self._sectioning = max(self._sectioning - 1, 0)
            self._tag(tag, opening=False)

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._buffer.append(data)

    def close(self) -> None:
        super().close()
        self._flush()
        self._end_section()

    def _tag(self, tag: str, opening: bool) -> None:
        if tag in ("td", "th"):
            self._buffer.append(" ")
        elif tag in _PARAGRAPHS or tag in _LINES:
            self._flush()
            if tag == "pre":
                self._pre = self._pre + 1 if opening else max(self._pre - 1, 0)
            if tag in _HEADINGS:
                self._in_heading = opening
            self._gap = max(self._gap, 2 if tag in _PARAGRAPHS else 1)

    def _flush(self) -> None:
        """End the running text: add it to the section after the newlines owed. The first text of a heading
        element starts a section named by it (an empty heading starts nothing)."""
        raw = "".join(self._buffer)
        self._buffer.clear()
        text = raw.strip("\n").rstrip() if self._pre else " ".join(raw.split())
        if not text:
            return
        if self._in_heading:
            self._end_section()
            self._heading, self._in_heading = text, False
        elif self._parts:
            self._parts.append("\n" * max(self._gap, 1))
        self._parts.append(text)
        self._gap = 0

    def _end_section(self) -> None:
        if self._parts:
            self.sections.append((self._heading, "".join(self._parts)))
        self._parts = []


# ---------------------------------------------------------------------------------------------- chunking

# How good a place to cut the end of a unit is: the end of a paragraph, of a sentence (or line), of a word, or
# anywhere in a word too long for a chunk.
PARAGRAPH, SENTENCE, WORD, CHARACTER = 3, 2, 1, 0
_PARAGRAPH_END = re.compile(r"\n[ \t]*\n\s*")
# . ! ? … (and closing quotes or brackets) before whitespace; CJK full stops need none; a line end.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|[。！？]+[」』”’）]*|\n")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class _Unit:
    """A piece that chunks hold whole: ``text[start:end]``, its token count, and the rank of a cut after it."""

    start: int
    end: int
    tokens: int
    rank: int


def chunk(doc: ParsedDocument, count_tokens: Callable[[str], int], chunk_size: int, overlap: int) -> list[Chunk]:
    """Cut each section into chunks of at most ``chunk_size`` tokens as ``count_tokens`` counts them.

    Sections are split into sentences (their token counts taken once), sentences longer than a chunk into words,
    words longer than a chunk into characters; chunks pack these greedily and end at the latest paragraph end that
    leaves the chunk at least half full, else the latest sentence end, else word. Each chunk's own count is checked
    (a tokenizer's count of a whole is not always the sum of its parts) and the chunk shortened if it is over. The
    next chunk of a section starts at the earliest sentence end whose tail of the previous chunk is at most
    ``overlap`` tokens (inside an over-long sentence: word), always after the previous chunk's start, and only
    where that tail still leaves room for new text. A single character that alone counts over ``chunk_size`` is
    the only chunk that can be over it.
    """
    if chunk_size < 1 or not 0 <= overlap < chunk_size:
        raise ValueError(f"need chunk_size >= 1 and 0 <= overlap < chunk_size, got {chunk_size} and {overlap}")
    text, chunks = doc.text, list[Chunk]()
    for section in doc.sections:
        units = _units(text, section.start, section.start + len(section.text), count_tokens, chunk_size)
        for first, end in _pack(text, units, count_tokens, chunk_size, overlap):
            start, stop = units[first].start, units[end - 1].end
            chunks.append(Chunk(text[start:stop], start, stop, section.page, section.heading))
    return chunks


def _spans(text: str, start: int, end: int, boundary: re.Pattern[str]) -> Iterator[tuple[int, int]]:
    """The non-blank pieces of ``text[start:end]`` cut after each match of ``boundary``, whitespace trimmed."""
    cuts = [m.end() for m in boundary.finditer(text, start, end)] + [end]
    for a, b in zip([start, *cuts], cuts, strict=False):
        piece = text[a:b]
        lead, kept = len(piece) - len(piece.lstrip()), len(piece.rstrip())
        if lead < kept:
            yield a + lead, a + kept


def _units(text: str, start: int, end: int, count: Callable[[str], int], size: int) -> list[_Unit]:
    """``text[start:end]`` as sentences (or lines) ranked by the break after them, each counted once; a sentence
    over ``size`` tokens as its words, a word over it as pieces of characters."""
    units: list[_Unit] = []
    for p0, p1 in _spans(text, start, end, _PARAGRAPH_END):
        for s0, s1 in _spans(text, p0, p1, _SENTENCE_END):
            tokens = count(text[s0:s1])
            if tokens <= size:
                units.append(_Unit(s0, s1, tokens, SENTENCE))
                continue
            for w0, w1 in _spans(text, s0, s1, _WORD):
                tokens = count(text[w0:w1])
                units.extend(
                    [_Unit(w0, w1, tokens, WORD)] if tokens <= size else _characters(text, w0, w1, count, size)
                )
            units[-1] = replace(units[-1], rank=SENTENCE)
        units[-1] = replace(units[-1], rank=PARAGRAPH)
    return units


def _characters(text: str, start: int, end: int, count: Callable[[str], int], size: int) -> Iterator[_Unit]:
    """``text[start:end]`` (a word over ``size`` tokens) in the longest pieces of at most ``size`` tokens (at least
    one character each), found by galloping then bisecting so each piece costs O(log length) counts."""
    while start < end:
        good, good_tokens, bad, step = start + 1, count(text[start]), end + 1, 1
        while good < end and bad > end:
            probe = min(end, good + step)
            if (tokens := count(text[start:probe])) <= size:
                good, good_tokens, step = probe, tokens, step * 2
            else:
                bad = probe
        while bad - good > 1 and bad <= end:
            mid = (good + bad) // 2
            if (tokens := count(text[start:mid])) <= size:
                good, good_tokens = mid, tokens
            else:
                bad = mid
        yield _Unit(start, good, good_tokens, WORD if good == end else CHARACTER)
        start = good


def _pack(
    text: str, units: list[_Unit], count: Callable[[str], int], size: int, overlap: int
) -> Iterator[tuple[int, int]]:
    """The chunks of one section as ``(first, end)`` unit index ranges, in order, each with new units."""
    n = len(units)
    prefix = list(accumulate((u.tokens for u in units), initial=0))

    def tokens(first: int, end: int) -> int:
        return units[first].tokens if end - first == 1 else count(text[units[first].start : units[end - 1].end])

    first = done = 0  # units before `done` are in earlier chunks
    while done < n:
        lo = hi = done + 1
        while hi < n and prefix[hi + 1] - prefix[first] <= size:
            hi += 1
        end = _cut(units, prefix, first, lo, hi, size)
        while not (fits := tokens(first, end) <= size) and end > lo:
            end = _cut(units, prefix, first, lo, end - 1, size)
        if not fits and first < done:  # the repeated tail alone pushes it over: repeat less
            first += 1
            continue
        yield first, end
        done, start = end, end
        if overlap and end < n:
            tails = [
                k for k in range(first + 1, end) if units[k - 1].rank >= WORD and prefix[end] - prefix[k] <= overlap
            ]
            tails = [k for k in tails if prefix[end + 1] - prefix[k] <= size]  # room for the next new unit
            tails.sort(key=lambda k: (units[k - 1].rank < SENTENCE, k))  # sentence starts first, earliest first
            start = next((k for k in tails if tokens(k, end) <= overlap), end)
        first = start


def _cut(units: list[_Unit], prefix: list[int], first: int, lo: int, hi: int, size: int) -> int:
    """Where a chunk from unit ``first`` ends, in ``lo..hi``: the section's end if it is ``hi``, else the latest
    paragraph end, then sentence end, then word end keeping the chunk at least half full, else ``hi``."""
    if hi == len(units):
        return hi
    for rank in (PARAGRAPH, SENTENCE, WORD):
        for end in range(hi, lo - 1, -1):
            if 2 * (prefix[end] - prefix[first]) < size:
                break
            if units[end - 1].rank >= rank:
                return end
    return hi
