"""What a data file is before it is read as CSV: compressed or not, a workbook, its text
encoding, how its fields are separated and how its numbers write the decimal mark.

:mod:`dlbasics.data.table` asks these questions of ``data.path`` before reading it:

* compressed files (``.gz``, ``.bz2``, ``.xz``, a ``.zip`` holding one file) are read
  through the standard library's decompressors, found by their first bytes (a file whose
  name says ``.gz`` but that is plain text is read as text);
* an Excel or OpenDocument workbook, whatever its name, is refused in one line that says
  how to save it as CSV: it is a zip of XML (``.xlsx``) or an OLE2 file (``.xls``);
* a byte-order mark decides the text encoding (UTF-8, UTF-16, UTF-32); UTF-16 without one
  (every other byte 0) is refused with the ``data.encoding`` that reads it;
* runs of spaces separate the fields of R's ``write.table`` and of fixed-width text
  (:data:`WHITESPACE`, ``data.sep=space``);
* ``12,5`` in a ``;``-separated file is the number 12.5 (``data.decimal``).

The standard library, NumPy and pandas only: the command line runs this before torch.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import logging
import lzma
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from dlbasics.errors import ConfigError, DataError

Notes = list[tuple[int, str]]

# The separator of ``data.sep=space``: fields are separated by any run of spaces and tabs
# (pandas' ``sep=r"\s+"``); leading and trailing spaces separate nothing.
WHITESPACE = r"\s+"
# ``data.decimal``: the decimal mark by name too (``data.decimal=,`` is a list to Hydra).
DECIMAL_NAMES = {".": ".", ",": ",", "dot": ".", "point": ".", "comma": ","}
# How much of the (decompressed) start of a file the checks look at.
HEAD = 64 * 1024

# First bytes of the compressed formats, and pandas' name for each (its ``compression=``).
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # an empty archive
)
_SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip"}
_DESCRIBED = {
    "gzip": "gzip-compressed",
    "bz2": "bzip2-compressed",
    "xz": "xz-compressed",
    "zip": "a zip archive",
}
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Excel 97-2003 (.xls), and other Office files
# Byte-order marks, longest first (UTF-32 LE starts like UTF-16 LE), and the codec that
# reads the text after them.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32 (little-endian)"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32 (big-endian)"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16 (little-endian)"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16 (big-endian)"),
)
# What a broken compressed file raises while it is read.
DECOMPRESSION_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile)

_TOKEN = re.compile(r'"((?:[^"]|"")*)"|(\S+)')  # a field of a whitespace-separated line
_COMMA_NUMBER = re.compile(r"[-+]?\d+,\d+(?:[eE][-+]?\d+)?")
_POINT_NUMBER = re.compile(r"[-+]?\d*\.\d+(?:[eE][-+]?\d+)?")


# -- what the file is -----------------------------------------------------------------------


def compression(file: Path) -> str | None:
    """pandas' name for how ``file`` is compressed (``gzip`` ``bz2`` ``xz`` ``zip``), read
    from its first bytes; ``None`` for a plain file, whatever its name says."""
    with open(file, "rb") as handle:
        start = handle.read(8)
    for magic, kind in _MAGIC:
        if start.startswith(magic) and (kind != "bz2" or start[3:4].isdigit()):
            return kind
    return None


def check_file(file: Path, encoding: str, notes: Notes) -> str:
    """The text encoding to read ``file`` with, or one DataError for a file that is not CSV
    text: a workbook, an archive of several files, a broken compressed file, UTF-16 without
    a byte-order mark, binary data. Compression and a byte-order mark get an INFO note."""
    kind = compression(file)
    with open(file, "rb") as handle:
        start = handle.read(len(_OLE2))
    if start == _OLE2:
        raise _workbook(file, ".xls")
    named = _SUFFIXES.get(file.suffix.lower())
    if kind == "zip":
        member = zip_member(file)  # refuses a workbook, an empty or a many-file archive
        notes.append((logging.INFO, f"data.path: '{file}' is a zip archive: reading '{member}'"))
    elif kind is not None:
        unnamed = "" if named == kind else " (its name does not say so)"
        notes.append((logging.INFO, f"data.path: '{file}' is {_DESCRIBED[kind]}{unnamed}"))
    elif named is not None:
        notes.append((
            logging.INFO,
            f"data.path: '{file}' is named {file.suffix} but is not {_DESCRIBED[named]}: "
            "read as plain text",
        ))  # fmt: skip
    head = read_head(file)
    if kind is not None and head.startswith(_OLE2):
        raise _workbook(file, ".xls", inside=True)
    for bom, codec, name in _BOMS:
        if head.startswith(bom):
            notes.append((
                logging.INFO,
                f"data.encoding: '{file}' starts with a {name} byte-order mark: read as {name}"
                + ("" if _family(encoding) == _family(codec) else f", not {encoding}"),
            ))  # fmt: skip
            return codec
    problem = None if _family(encoding) in ("utf-16", "utf-32") else _nul_bytes(file, head)
    if problem is not None:
        raise problem
    return encoding


def zip_member(file: Path) -> str:
    """The one file inside the zip archive ``file`` (folders and macOS' ``__MACOSX/`` and
    dot files aside), or a DataError: a workbook, an empty or a many-file archive."""
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
            mimetype = archive.read("mimetype")[:100] if "mimetype" in names else b""
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(
            f"data.path: '{file}' is a zip archive that cannot be opened ({error}); unzip it "
            "and give the CSV file"
        ) from None
    if "xl/workbook.xml" in names or "xl/workbook.bin" in names:
        raise _workbook(file, ".xlsx")
    if b"spreadsheet" in mimetype:
        raise DataError(
            f"data.path: '{file}' is an OpenDocument spreadsheet (.ods), not a CSV file; "
            "open it and save it as CSV (UTF-8), then give that file"
        )
    members = [
        name
        for name in names
        if not name.endswith("/")
        and not name.startswith("__MACOSX/")
        and not name.rsplit("/", 1)[-1].startswith(".")
    ]
    if len(members) != 1:
        held = "no file" if not members else f"{len(members)} files ({_shown(members)})"
        raise DataError(
            f"data.path: the zip archive '{file}' holds {held}; data.path reads a zip holding "
            "one CSV file: unzip it and give the CSV file to read"
        )
    return members[0]


def not_plain_text(file: Path) -> str | None:
    """Why ``file`` is not plain CSV text that a line-by-line reader (predict) can take:
    the rest of a one-line message, or ``None``."""
    kind, names = compression(file), set()
    if kind == "zip":
        try:
            with zipfile.ZipFile(file) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError):
            pass
    with open(file, "rb") as handle:
        start = handle.read(HEAD)
    workbook = ".xls" if start.startswith(_OLE2) else None
    if names & {"xl/workbook.xml", "xl/workbook.bin"}:
        workbook = ".xlsx"
    if workbook:
        return f"an Excel workbook ({workbook}), not a CSV file; save it as CSV (UTF-8)"
    if kind is not None:
        return f"{_DESCRIBED[kind]}; this reads plain CSV text: decompress it first"
    for bom, _, name in _BOMS:
        if start.startswith(bom) and name != "UTF-8":
            return f"{name} text; this reads UTF-8: save it as CSV (UTF-8)"
    if start.count(0):
        return "not UTF-8 text (it holds 0 bytes, as UTF-16 does); save it as CSV (UTF-8)"
    return None


# -- reading it -----------------------------------------------------------------------------


@contextmanager
def open_binary(file: Path) -> Iterator[IO[bytes]]:
    """``file``'s bytes, decompressed when it is compressed."""
    kind = compression(file)
    with ExitStack() as stack:
        if kind == "gzip":
            stream = stack.enter_context(gzip.open(file, "rb"))
        elif kind == "bz2":
            stream = stack.enter_context(bz2.open(file, "rb"))
        elif kind == "xz":
            stream = stack.enter_context(lzma.open(file, "rb"))
        elif kind == "zip":
            archive = stack.enter_context(zipfile.ZipFile(file))
            stream = stack.enter_context(archive.open(zip_member(file)))
        else:
            stream = stack.enter_context(open(file, "rb"))
        yield stream


@contextmanager
def open_text(file: Path, encoding: str, errors: str = "strict") -> Iterator[IO[str]]:
    """``file`` as text for the csv module (``newline=""``), decompressed when it is."""
    with open_binary(file) as stream:
        with io.TextIOWrapper(stream, encoding=encoding, errors=errors, newline="") as text:
            yield text


@contextmanager
def pandas_source(file: Path) -> Iterator[tuple[object, str | None]]:
    """What to give ``pandas.read_csv``: ``(path or open member, compression=)``. A plain
    file is read as such even when its name ends in ``.gz`` (pandas would infer gzip)."""
    kind = compression(file)
    if kind != "zip":
        yield file, kind
        return
    # The member itself: pandas refuses an archive that also holds __MACOSX/ entries.
    with zipfile.ZipFile(file) as archive, archive.open(zip_member(file)) as member:
        yield member, None


def read_head(file: Path, size: int = HEAD) -> bytes:
    """The first ``size`` bytes of ``file``'s (decompressed) content."""
    try:
        with open_binary(file) as stream:
            return stream.read(size)
    except DECOMPRESSION_ERRORS as error:
        raise broken(file, error) from None


def broken(file: Path, error: BaseException) -> DataError:
    """The DataError for a compressed file that cannot be decompressed."""
    kind = compression(file) or "compressed"
    return DataError(
        f"data.path: '{file}' is {_DESCRIBED.get(kind, kind)} but cannot be decompressed "
        f"({error or type(error).__name__}); the file is damaged or incomplete: download or "
        "write it again"
    )


def rows(handle: IO[str], separator: str) -> Iterator[tuple[int, list[str]]]:
    """``(file line, fields)`` of each record, as pandas will split them with ``separator``."""
    if separator == WHITESPACE:
        for number, line in enumerate(handle, start=1):
            yield number, split_whitespace(line)
        return
    reader = csv.reader(handle, delimiter=separator)
    for fields in reader:
        yield reader.line_num, fields


def split_whitespace(line: str) -> list[str]:
    """The fields of a line whose fields are separated by runs of spaces; ``"a b"`` is one."""
    return [plain or quoted.replace('""', '"') for quoted, plain in _TOKEN.findall(line)]


def whitespace_separated(sample: str) -> bool:
    """Whether the lines of ``sample`` split on runs of spaces into as many fields each (at
    least 2; the header may have one fewer: R's ``write.table`` writes row names)."""
    lines = [line for line in sample.splitlines() if line.strip()][:1000]
    if len(lines) < 2:
        return False
    header, *body = (len(split_whitespace(line)) for line in lines)
    widths = set(body)
    if len(widths) != 1:
        return False
    (width,) = widths
    return header >= 2 and header in (width, width - 1)


# -- the decimal mark -----------------------------------------------------------------------


def check_decimal(decimal: str | None) -> str | None:
    """``data.decimal`` as ``.`` or ``,`` (``None``: detect it), or a ConfigError."""
    if decimal is None:
        return None
    if str(decimal) not in DECIMAL_NAMES:
        raise ConfigError(
            f"data.decimal={decimal!r}: the decimal mark is . or , (data.decimal=comma on "
            "the command line), or null to detect it"
        )
    return DECIMAL_NAMES[str(decimal)]


def decimal_comma(records: Iterable[list[str]]) -> bool:
    """Whether most numbers with a fraction in ``records`` write it ``12,5``."""
    comma = point = 0
    for fields in records:
        for cell in fields:
            cell = cell.strip()
            if _COMMA_NUMBER.fullmatch(cell):
                comma += 1
            elif _POINT_NUMBER.fullmatch(cell):
                point += 1
    return comma > point


# -- messages ----------------------------------------------------------------------------------


def undecodable(file: Path, encoding: str) -> DataError:
    """The DataError for a file that is not ``encoding`` text: where the first bad byte is,
    and an encoding to try that fits what the bytes look like."""
    where = ""
    with open_binary(file) as stream:
        nul = 0 in stream.read(HEAD)
    if _family(encoding) not in ("utf-16", "utf-32"):  # lines end in one byte b"\n"
        with open_binary(file) as stream:
            for number, line in enumerate(stream, start=1):
                try:
                    line.decode(encoding)
                except UnicodeDecodeError as error:
                    where = f"byte {line[error.start]:#x} on line {number}"
                    break
    where = f" ({where})" if where else ""
    if nul:
        return DataError(
            f"data.path: '{file}' is not {encoding} text{where} and holds 0 bytes, which "
            "8-bit text such as latin-1 never does: if it is UTF-16, set "
            "data.encoding=utf-16-le (or utf-16-be); else save it as CSV (UTF-8)"
        )
    return DataError(
        f"data.path: '{file}' is not {encoding} text{where}; set data.encoding to the file's "
        "encoding, e.g. data.encoding=latin-1 (Excel on Windows: data.encoding=cp1252)"
    )


def _nul_bytes(file: Path, head: bytes) -> DataError | None:
    """UTF-16 without a byte-order mark (0 in every other byte), or not text at all; a few
    stray 0 bytes are left to the CSV reader's line-numbered error."""
    head = head[: len(head) // 2 * 2]
    even, odd = head[0::2].count(0), head[1::2].count(0)
    if even + odd >= 4 and max(even, odd) >= 0.9 * (even + odd):
        order, code = ("little-endian", "le") if odd > even else ("big-endian", "be")
        return DataError(
            f"data.path: '{file}' looks like UTF-16 text ({order}) without a byte-order mark: "
            f"every other byte is 0; set data.encoding=utf-16-{code}"
        )
    share = head.count(0) / max(len(head), 1)
    if share < 0.05:
        return None
    return DataError(
        f"data.path: '{file}' is not a text file ({share:.0%} of its first bytes are 0); "
        "data.path reads CSV text: export the table as CSV (UTF-8)"
    )


def _workbook(file: Path, kind: str, inside: bool = False) -> DataError:
    what = f"a compressed Excel workbook ({kind})" if inside else f"an Excel workbook ({kind})"
    return DataError(
        f"data.path: '{file}' is {what}, not a CSV file; open it in Excel and save it as CSV "
        "(UTF-8) (File > Save As > CSV UTF-8), then give that file"
    )


def _family(encoding: str) -> str:
    """``utf-16`` for utf-16-le, ``utf-8`` for utf-8-sig: what a byte-order mark decides."""
    name = codecs.lookup(encoding).name
    for family in ("utf-8", "utf-16", "utf-32"):
        if name.startswith(family):
            return family
    return name


def _shown(names: list[str], most: int = 5) -> str:
    shown = ", ".join(f"'{name}'" for name in names[:most])
    return shown + (" ..." if len(names) > most else "")
