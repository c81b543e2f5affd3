"""Files as users have them: compressed, Excel workbooks, byte-order marks and UTF-16,
decimal commas, whitespace-separated columns and a separator at the end of every line.

Each file is written in its real on-disk format and read with
:func:`dlbasics.data.table.read_csv_data`: the columns and numbers it gives, or its one-line
error (:mod:`dlbasics.data.files` does the detecting).
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import logging
import lzma
import zipfile

import numpy as np
import pytest

from dlbasics.data.table import read_csv_data
from dlbasics.errors import ConfigError, DataError

ROWS = 30
A = np.round(np.linspace(-2, 2, ROWS), 3)
B = np.round(np.cos(np.arange(ROWS)), 3)
PRICE = np.round(3 * A - 2 * B + 1, 3)


def table_text(sep: str = ",", decimal: str = ".", end: str = "") -> str:
    """``a, b, price`` (regression: fractions, one distinct value per row)."""
    lines = [sep.join(["a", "b", "price"]) + end]
    for a, b, price in zip(A, B, PRICE, strict=True):
        cells = [f"{value:.3f}".replace(".", decimal) for value in (a, b, price)]
        lines.append(sep.join(cells) + end)
    return "\n".join(lines) + "\n"


def assert_the_table(table, features=("a", "b")):
    assert table.feature_names == list(features)
    assert table.task == "regression"
    np.testing.assert_allclose(table.x, np.column_stack([A, B])[:, : len(features)])
    np.testing.assert_allclose(table.y, PRICE)
    assert table.lines[0] == 2 and len(table.lines) == ROWS


def notes(table, level=logging.INFO) -> str:
    return " | ".join(message for lvl, message in table.notes if lvl == level)


def one_line_error(error_type, path, target="price", **options) -> str:
    with pytest.raises(error_type) as caught:
        read_csv_data(str(path), target, **options)
    message = str(caught.value)
    assert "\n" not in message
    return message


def write_xlsx(path):
    """A minimal real .xlsx: a zip of the Office Open XML parts of a one-sheet workbook."""
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats'
            '.org/package/2006/content-types"><Override PartName="/xl/workbook.xml" ContentType'
            '="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            "</Types>"
        ),
        "_rels/.rels": '<?xml version="1.0" encoding="UTF-8"?><Relationships/>',
        "xl/workbook.xml": (
            '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats'
            '.org/spreadsheetml/2006/main"><sheets><sheet name="Sheet1" sheetId="1"/></sheets>'
            "</workbook>"
        ),
        "xl/worksheets/sheet1.xml": '<?xml version="1.0" encoding="UTF-8"?><worksheet/>',
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return path


# -- 1. compressed files ----------------------------------------------------------------------


def _gzip(path, text):
    with gzip.open(path, "wt", newline="") as handle:
        handle.write(text)


def _bz2(path, text):
    with bz2.open(path, "wt", newline="") as handle:
        handle.write(text)


def _xz(path, text):
    with lzma.open(path, "wt", newline="") as handle:
        handle.write(text)


def _zip(path, text):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("houses.csv", text)
        archive.writestr("__MACOSX/._houses.csv", b"\x00\x05\x16\x07")  # macOS' Compress


@pytest.mark.parametrize(
    ("name", "write", "said"),
    [
        ("houses.csv.gz", _gzip, "gzip-compressed"),
        ("houses.csv.bz2", _bz2, "bzip2-compressed"),
        ("houses.csv.xz", _xz, "xz-compressed"),
        ("houses.zip", _zip, "reading 'houses.csv'"),
        ("houses.csv", _gzip, "gzip-compressed (its name does not say so)"),
    ],
    ids=["gz", "bz2", "xz", "zip", "gzip-named-csv"],
)
def test_a_compressed_file_is_read_as_the_csv_inside(tmp_path, name, write, said):
    write(tmp_path / name, table_text(";"))
    table = read_csv_data(str(tmp_path / name), "price")
    assert_the_table(table)
    assert table.separator == ";"
    assert said in notes(table)


def test_a_plain_file_named_gz_is_read_as_text(tmp_path):
    (tmp_path / "houses.csv.gz").write_text(table_text())
    table = read_csv_data(str(tmp_path / "houses.csv.gz"), "price")
    assert_the_table(table)
    assert "is named .gz but is not gzip-compressed" in notes(table)


def test_a_zip_of_several_files_names_them(tmp_path):
    with zipfile.ZipFile(tmp_path / "both.zip", "w") as archive:
        archive.writestr("train.csv", table_text())
        archive.writestr("test.csv", table_text())
    message = one_line_error(DataError, tmp_path / "both.zip")
    assert "holds 2 files ('train.csv', 'test.csv')" in message
    assert "unzip it" in message


def test_a_truncated_gzip_file_is_one_error(tmp_path):
    whole = gzip.compress(table_text().encode() * 50)
    (tmp_path / "cut.csv.gz").write_bytes(whole[: len(whole) // 2])
    message = one_line_error(DataError, tmp_path / "cut.csv.gz")
    assert "is gzip-compressed but cannot be decompressed" in message


# -- 2. Excel workbooks -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["prices.xlsx", "prices.csv"])
def test_an_xlsx_workbook_is_named_whatever_its_suffix(tmp_path, name):
    message = one_line_error(DataError, write_xlsx(tmp_path / name))
    assert f"'{tmp_path / name}' is an Excel workbook (.xlsx), not a CSV file" in message
    assert "save it as CSV (UTF-8)" in message
    assert "latin-1" not in message


def test_an_xls_workbook_is_named(tmp_path):
    # Excel 97-2003: an OLE2 compound file (its magic, then sectors).
    (tmp_path / "old.csv").write_bytes(
        bytes.fromhex("D0CF11E0A1B11AE1") + bytes(504) + b"\xff" * 512
    )
    message = one_line_error(DataError, tmp_path / "old.csv")
    assert "is an Excel workbook (.xls)" in message and "save it as CSV (UTF-8)" in message


# -- 3. byte-order marks and UTF-16 -------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (lambda text: text.encode("utf-16"), "UTF-16 (little-endian)"),  # BOM FF FE, as Excel
        (lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be"), "UTF-16 (big-endian)"),
        (lambda text: text.encode("utf-8-sig"), "UTF-8"),
    ],
    ids=["utf-16-le", "utf-16-be", "utf-8"],
)
@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_a_byte_order_mark_decides_the_encoding(tmp_path, data, said, encoding):
    text = table_text("\t").replace("price", "température")
    (tmp_path / "export.txt").write_bytes(data(text))
    table = read_csv_data(str(tmp_path / "export.txt"), "température", encoding=encoding)
    assert table.feature_names == ["a", "b"] and table.target == "température"
    np.testing.assert_allclose(table.y, PRICE)
    assert f"starts with a {said} byte-order mark: read as {said}" in notes(table)


@pytest.mark.parametrize(
    ("codec", "hint"), [("utf-16-le", "utf-16-le"), ("utf-16-be", "utf-16-be")]
)
def test_utf16_without_a_byte_order_mark_gets_the_encoding_to_set(tmp_path, codec, hint):
    (tmp_path / "export.csv").write_bytes(table_text().encode(codec))
    message = one_line_error(DataError, tmp_path / "export.csv")
    assert "looks like UTF-16 text" in message and f"set data.encoding={hint}" in message
    assert "latin-1" not in message
    assert_the_table(read_csv_data(str(tmp_path / "export.csv"), "price", encoding=codec))


def test_8_bit_text_gets_the_latin_1_hint_with_its_line(tmp_path):
    (tmp_path / "data.csv").write_bytes("a,y\n1,2\ncaf\xe9,3\n".encode("latin-1"))
    message = one_line_error(DataError, tmp_path / "data.csv", target="y")
    assert "is not utf-8 text (byte 0xe9 on line 3)" in message
    assert "data.encoding=latin-1" in message


def test_bytes_with_zeros_are_not_sent_to_latin_1(tmp_path):
    (tmp_path / "data.csv").write_bytes(b"a,y\n" + b"1,2\n" * 20 + b"\xff\x00,3\n")
    message = one_line_error(DataError, tmp_path / "data.csv", target="y")
    assert "holds 0 bytes" in message and "data.encoding=latin-1" not in message


# -- 4. decimal comma -----------------------------------------------------------------------------


def write_cars(path):
    """A European export: ';' between fields, ',' before the decimals."""
    rng = np.random.default_rng(0)
    mpg = np.round(rng.uniform(10, 35, 40), 1)
    wt = np.round(rng.uniform(1.5, 5.5, 40), 3)
    cyl = rng.choice([4, 6, 8], 40)
    lines = ["mpg;cyl;wt"] + [
        f"{m:.1f};{c};{w:.3f}".replace(".", ",") for m, c, w in zip(mpg, cyl, wt, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return mpg, cyl, wt


def test_a_decimal_comma_is_detected_and_read_as_numbers(tmp_path):
    mpg, cyl, wt = write_cars(tmp_path / "cars.csv")
    table = read_csv_data(str(tmp_path / "cars.csv"), "mpg")
    assert table.task == "regression", table.task_reason
    np.testing.assert_allclose(table.y, mpg)
    np.testing.assert_allclose(table.x[:, table.feature_names.index("wt")], wt)
    assert "written with a decimal comma (12,5)" in notes(table)


@pytest.mark.parametrize("decimal", [",", "comma"])
def test_data_decimal_sets_the_mark(tmp_path, decimal):
    mpg, _, _ = write_cars(tmp_path / "cars.csv")
    table = read_csv_data(str(tmp_path / "cars.csv"), "mpg", decimal=decimal)
    np.testing.assert_allclose(table.y, mpg)
    assert "decimal comma" not in notes(table)  # set, not detected


def test_a_bad_decimal_is_a_config_error(tmp_path):
    write_cars(tmp_path / "cars.csv")
    message = one_line_error(ConfigError, tmp_path / "cars.csv", target="mpg", decimal=";")
    assert message.startswith("data.decimal=';': the decimal mark is . or ,")
    (tmp_path / "houses.csv").write_text(table_text())
    message = one_line_error(ConfigError, tmp_path / "houses.csv", decimal=",")
    assert "separated by ',' too" in message


def test_a_point_decimal_file_separated_by_semicolons_is_unchanged(tmp_path):
    (tmp_path / "houses.csv").write_text(table_text(";"))
    table = read_csv_data(str(tmp_path / "houses.csv"), "price")
    assert_the_table(table)
    assert "decimal comma" not in notes(table)


# -- 5. whitespace-separated columns --------------------------------------------------------------


def test_r_write_table_output_is_read(tmp_path):
    # write.table(d, "d.txt", row.names = FALSE): quoted names, one space between fields.
    lines = ['"a" "b" "town" "price"'] + [
        f'{a} {b} "{"Le Mans" if i % 2 else "Lyon"}" {p}'
        for i, (a, b, p) in enumerate(zip(A, B, PRICE, strict=True))
    ]
    (tmp_path / "d.txt").write_text("\n".join(lines) + "\n")
    table = read_csv_data(str(tmp_path / "d.txt"), "price", features=["a", "b"])
    assert_the_table(table)
    assert table.separator == r"\s+"
    assert "separated by runs of spaces (data.sep=space)" in notes(table)


def test_aligned_fixed_width_text_is_read(tmp_path):
    lines = [f"{'a':>8}{'b':>8}{'price':>10}"] + [
        f"{a:8.3f}{b:8.3f}{p:10.3f}" for a, b, p in zip(A, B, PRICE, strict=True)
    ]
    (tmp_path / "fixed.txt").write_text("\n".join(lines) + "\n")
    assert_the_table(read_csv_data(str(tmp_path / "fixed.txt"), "price"))
    assert_the_table(read_csv_data(str(tmp_path / "fixed.txt"), "price", sep="space"))


def test_r_row_names_are_named_in_the_error(tmp_path):
    lines = ['"a" "b" "price"'] + [
        f'"{i + 1}" {a} {b} {p}' for i, (a, b, p) in enumerate(zip(A, B, PRICE, strict=True))
    ]
    (tmp_path / "d.txt").write_text("\n".join(lines) + "\n")
    message = one_line_error(DataError, tmp_path / "d.txt")
    assert "every row of" in message and "row.names=FALSE" in message


# -- 6. a separator at the end of every line --------------------------------------------------------


@pytest.mark.parametrize("sep", [",", ";"])
def test_a_trailing_separator_on_every_line_is_ignored(tmp_path, sep):
    (tmp_path / "houses.csv").write_text(table_text(sep, end=sep))
    table = read_csv_data(str(tmp_path / "houses.csv"), "price")
    assert_the_table(table)
    assert f"ends with {sep!r}, which makes an empty column without a name" in notes(table)


def test_an_unnamed_last_column_with_values_is_still_refused(tmp_path):
    text = table_text(end=",").splitlines()
    text[1] += "7"
    (tmp_path / "houses.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match="no name in the header"):
        read_csv_data(str(tmp_path / "houses.csv"), "price")


# -- end to end, and predict ----------------------------------------------------------------------


def test_training_on_a_gzipped_csv(fit, tmp_path):
    _gzip(tmp_path / "houses.csv.gz", table_text())
    run = fit(
        "data=csv",
        "data.path=houses.csv.gz",
        "data.target=price",
        "model=linreg",
        "trainer.max_epochs=1",
        "logger=none",
    )
    assert np.isfinite(run.metrics["train/loss"])
    described = (run.dir / "data.json").read_text()
    assert '"a"' in described and '"b"' in described


@pytest.mark.parametrize(
    ("name", "write", "said"),
    [
        ("new.csv.gz", lambda p: _gzip(p, table_text()), "gzip-compressed"),
        ("new.csv", write_xlsx, "an Excel workbook (.xlsx)"),
        ("new.csv", lambda p: p.write_bytes(table_text().encode("utf-16")), "UTF-16"),
        ("new.txt", lambda p: p.write_text(table_text().replace(",", "  ")), "runs of spaces"),
    ],
    ids=["gzip", "xlsx", "utf-16", "spaces"],
)
def test_predict_input_that_is_not_plain_csv_is_one_error(tmp_path, name, write, said):
    from dlbasics.using.predict import read_header

    write(tmp_path / name)
    with pytest.raises(DataError) as caught:
        read_header(tmp_path / name, "input")
    message = str(caught.value)
    assert message.startswith(f"input={tmp_path / name}: ") and said in message
    assert "\n" not in message
