"""MovieLens loaders for every official layout, normalised to one schema.

Layouts, detected from the files in the folder:
  csv   ratings.csv / movies.csv / tags.csv      ml-latest-small, ml-latest, ml-20m, ml-25m, ml-32m
  dat   ratings.dat / movies.dat / tags.dat, ::  ml-1m (latin-1), ml-10m
  100k  u.data (tab) / u.item (pipe, latin-1)    ml-100k

Ratings come out as (user_id int32, movie_id int32, rating float32, timestamp int64) and movies
as (movie_id int32, title str, year Int16, genres list[str]). Files are read in chunks of lines and
validated vectorised, so ml-25m loads in well under 4 GB. An invalid row stops the load with
`file:line: reason` unless skip_invalid is set, which counts and reports the rows instead.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .events import MAX_ID, MAX_TS

log = logging.getLogger(__name__)
CHUNK_LINES = 1_000_000
RATING_COLUMNS = ["user_id", "movie_id", "rating", "timestamp"]
RATING_DTYPES = {"user_id": "int32", "movie_id": "int32", "rating": "float32", "timestamp": "int64"}
GENRES_100K = [
    "(no genres listed)", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip
_YEAR = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")


@dataclass(frozen=True)
class Layout:
    name: str
    ratings: str
    movies: str
    tags: str | None
    sep: str
    header: bool
    encoding: str  # "utf-8", "latin-1", or "utf-8|latin-1" (try UTF-8, fall back per file)


LAYOUTS = [
    Layout("csv", "ratings.csv", "movies.csv", "tags.csv", ",", True, "utf-8"),
    Layout("dat", "ratings.dat", "movies.dat", "tags.dat", "::", False, "utf-8|latin-1"),
    Layout("100k", "u.data", "u.item", None, "\t", False, "latin-1"),
]


@dataclass
class LoadReport:
    """What a lenient load skipped, by reason."""

    skipped: Counter = field(default_factory=Counter)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        if not self.skipped:
            return "no invalid rows"
        parts = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
        return f"skipped {self.n_skipped} invalid rows ({parts})"


def detect_layout(folder: Path) -> Layout:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a directory (expected a MovieLens folder)")
    for layout in LAYOUTS:
        if (folder / layout.ratings).exists() and (folder / layout.movies).exists():
            return layout
    raise DataError(
        f"{folder}: no MovieLens layout found (expected ratings.csv+movies.csv, "
        "ratings.dat+movies.dat, or u.data+u.item)"
    )


# -- reading ----------------------------------------------------------------------------------


def _decode_lines(
    path: Path, encoding: str, replaced: list[int] | None = None
) -> Iterator[tuple[int, list[str]]]:
    """Yield (first line number, decoded lines) in chunks; CRLF and LF both accepted.

    Undecodable bytes stop the load, unless `replaced` is given: then they become U+FFFD and
    the line numbers are collected (the official ml-latest-small has one such title).
    """
    encodings = encoding.split("|")
    if len(encodings) > 1:
        encodings = [_sniff_encoding(path, encodings)]
    enc = encodings[0]
    with open(path, "rb") as fh:
        lineno = 1
        while True:
            raw = fh.readlines(CHUNK_LINES * 24)  # size hint in bytes, about CHUNK_LINES lines
            if not raw:
                return
            lines = []
            for i, b in enumerate(raw):
                try:
                    lines.append(b.decode(enc).rstrip("\r\n"))
                except UnicodeDecodeError:
                    if replaced is not None:
                        lines.append(b.decode(enc, errors="replace").rstrip("\r\n"))
                        replaced.append(lineno + i)
                        continue
                    raise DataError(f"{path}:{lineno + i}: not valid {enc} text (unknown encoding)") from None
            yield lineno, lines
            lineno += len(raw)


def _sniff_encoding(path: Path, candidates: list[str]) -> str:
    data = path.read_bytes()
    for enc in candidates[:-1]:
        try:
            data.decode(enc)
            return enc
        except UnicodeDecodeError:
            continue
    return candidates[-1]


def _split(lines: list[str], sep: str, n_fields: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Split lines into n_fields string columns; also return each line's field count."""
    s = pd.Series(lines, dtype=object)
    parts = s.str.split(sep, regex=False) if sep != "," else s.apply(_split_csv)
    counts = parts.str.len().to_numpy()
    ok = counts == n_fields
    cols = {
        f"f{i}": parts.where(ok, None).str[i] if ok.any() else pd.Series([None] * len(s))
        for i in range(n_fields)
    }
    return pd.DataFrame(cols), counts


def _split_csv(line: str) -> list[str]:
    if '"' not in line:
        return line.split(",")
    return next(csv.reader([line]))


def _fail_or_skip(
    path: Path,
    first_line: int,
    bad: np.ndarray,
    reasons: np.ndarray,
    skip: bool,
    report: LoadReport,
) -> None:
    """Raise on the first bad row, or count the bad rows by reason."""
    if not bad.any():
        return
    if not skip:
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}:{first_line + i}: {reasons[i]}")
    report.skipped.update(reasons[bad].tolist())


def _fast_ratings(lines: list[str], sep: str) -> pd.DataFrame | None:
    """Parse a clean chunk with pandas' C parser; None when anything is off (then the slow,
    diagnosing path takes over and names the first bad line)."""
    text = "\n".join(lines)
    if sep != "\t":
        text = text.replace(sep, "\t")  # ratings hold numbers only: the separator is unambiguous
    try:
        df = pd.read_csv(io.StringIO(text), sep="\t", header=None, names=RATING_COLUMNS,
                         dtype=np.float64, engine="c")  # fmt: skip
    except (ValueError, pd.errors.ParserError):
        return None
    v = df.to_numpy()
    if len(df) != sum(1 for ln in lines if ln.strip()) or not np.isfinite(v).all():
        return None
    ids = v[:, [0, 1, 3]]
    r = v[:, 2]
    if (
        (ids < 0).any()
        or (ids != np.floor(ids)).any()
        or (v[:, :2] > MAX_ID).any()
        or (v[:, 3] > MAX_TS).any()
    ):
        return None
    if (r < 0.5).any() or (r > 5.0).any() or (r * 2 != np.floor(r * 2)).any():
        return None
    return pd.DataFrame({"user_id": v[:, 0].astype(np.int32), "movie_id": v[:, 1].astype(np.int32),
                         "rating": r.astype(np.float32), "timestamp": v[:, 3].astype(np.int64)})  # fmt: skip


RATING_HEADER = ("userId", "movieId", "rating", "timestamp")  # MovieLens' names, in its order
MOVIE_HEADER = ("movieId", "title", "genres")


def header_order(path: Path, line: str, expected: tuple[str, ...], sep: str = ",") -> list[int] | None:
    """Column positions of `expected` in a header line, None when already in that order.

    Columns are read by name: any order is accepted; a missing, unknown or repeated name is a
    `file:1` error (a file without a header would otherwise lose its first row silently, and
    swapped id columns once trained a transposed model)."""
    names = [
        h.strip().strip('"').lstrip("\ufeff") for h in (_split_csv(line) if sep == "," else line.split(sep))
    ]
    if sorted(names) != sorted(expected):
        raise DataError(f"{path}:1: header must name the columns {','.join(expected)} (any order), "
                        f"got {line.strip()[:120]!r}")  # fmt: skip
    order = [names.index(c) for c in expected]
    return None if order == list(range(len(expected))) else order


def _reorder(lines: list[str], order: list[int], sep: str) -> list[str]:
    out = []
    for ln in lines:
        if not ln.strip():
            out.append(ln)
            continue
        f = ln.split(sep)
        out.append(sep.join(f[i] for i in order) if len(f) == len(order) else ln)
    return out


def _iter_rating_chunks(
    path: Path, layout: Layout, skip_invalid: bool, report: LoadReport
) -> Iterator[pd.DataFrame]:
    order = None
    for first, lines in _decode_lines(path, layout.encoding):
        if layout.header and first == 1:
            if not lines:
                return
            order = header_order(path, lines[0], RATING_HEADER, layout.sep)
            lines, first = lines[1:], 2
        if order is not None:
            lines = _reorder(lines, order, layout.sep)
        fast = _fast_ratings(lines, layout.sep)
        if fast is not None:
            yield fast
            continue
        blank = np.array([ln.strip() == "" for ln in lines])
        df, counts = _split(lines, layout.sep, 4)
        n = len(lines)
        reasons = np.full(n, "", dtype=object)
        bad = np.zeros(n, dtype=bool)

        wrong = (counts != 4) & ~blank
        reasons[wrong] = [f"expected 4 fields, found {c}" for c in counts[wrong]]
        bad |= wrong
        nums = {c: pd.to_numeric(df[f"f{i}"], errors="coerce") for i, c in enumerate(RATING_COLUMNS)}
        for col in RATING_COLUMNS:
            nonnum = nums[col].isna().to_numpy() & ~bad & ~blank
            reasons[nonnum] = f"{col} is not a number"
            bad |= nonnum
        for col in ("user_id", "movie_id", "timestamp"):
            v = nums[col].to_numpy()
            notint = ~bad & ~blank & (~np.isfinite(v) | (v != np.floor(v)) | (v < 0))
            reasons[notint] = f"{col} is not a non-negative integer"
            bad |= notint
            top = MAX_ID if col != "timestamp" else MAX_TS
            big = ~bad & ~blank & (v > top)
            reasons[big] = f"{col} is above {top}" + (" (ids are 32-bit)" if col != "timestamp" else "")
            bad |= big
        r = nums["rating"].to_numpy()
        badr = ~bad & ~blank & ((r < 0.5) | (r > 5.0) | (r * 2 != np.floor(r * 2)))
        reasons[badr] = "rating outside 0.5..5.0 in steps of 0.5"
        bad |= badr
        _fail_or_skip(path, first, bad, reasons, skip_invalid, report)

        keep = ~bad & ~blank
        yield pd.DataFrame(
            {
                "user_id": nums["user_id"][keep].astype(np.int32).to_numpy(),
                "movie_id": nums["movie_id"][keep].astype(np.int32).to_numpy(),
                "rating": r[keep].astype(np.float32),
                "timestamp": nums["timestamp"][keep].astype(np.int64).to_numpy(),
            }
        )


def iter_rating_chunks(folder: Path, skip_invalid: bool = False) -> Iterator[pd.DataFrame]:
    """The validated ratings of a MovieLens folder in file order, a chunk at a time (bounded memory)."""
    folder = Path(folder)
    layout = detect_layout(folder)
    yield from _iter_rating_chunks(folder / layout.ratings, layout, skip_invalid, LoadReport())


def load_ratings(folder: Path, skip_invalid: bool = False) -> tuple[pd.DataFrame, LoadReport]:
    """All ratings of a MovieLens folder in file order, validated."""
    folder = Path(folder)
    layout = detect_layout(folder)
    report = LoadReport()
    path = folder / layout.ratings
    chunks = list(_iter_rating_chunks(path, layout, skip_invalid, report))
    ratings = pd.concat(chunks, ignore_index=True) if chunks else empty_ratings()
    if ratings.empty:
        raise DataError(f"{path}: no ratings" + (f" ({report.summary()})" if report.n_skipped else ""))
    return ratings, report


def empty_ratings() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in RATING_DTYPES.items()})


def load_movies(folder: Path) -> pd.DataFrame:
    """Movies as (movie_id, title, year, genres list). A malformed row stops the load."""
    folder = Path(folder)
    layout = detect_layout(folder)
    path = folder / layout.movies
    rows: list[tuple[int, str, list[str]]] = []
    replaced: list[int] = []
    for first, lines in _decode_lines(path, layout.encoding, replaced):
        if layout.header and first == 1 and lines:
            if header_order(path, lines[0], MOVIE_HEADER) is not None:
                raise DataError(f"{path}:1: columns must be in the order {','.join(MOVIE_HEADER)}")
            lines, first = lines[1:], 2
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rows.append(_parse_movie(line, layout))
            except ValueError as exc:
                raise DataError(f"{path}:{first + i}: {exc}") from None
    if replaced:
        where = ", ".join(f"{path.name}:{n}" for n in replaced[:3])
        log.info("invalid %s bytes replaced in %d line(s): %s", layout.encoding, len(replaced), where)
    if not rows:
        raise DataError(f"{path}: no movies (titles and genres are needed to show lists)")
    movies = pd.DataFrame(rows, columns=["movie_id", "title", "genres"])
    movies["movie_id"] = movies["movie_id"].astype(np.int32)
    years = movies["title"].str.extract(_YEAR)[0]
    movies.insert(2, "year", pd.to_numeric(years, errors="coerce").astype("Int16"))
    return movies


def _parse_movie(line: str, layout: Layout) -> tuple[int, str, list[str]]:
    if layout.name == "100k":
        f = line.split("|")
        if len(f) != 5 + len(GENRES_100K):
            raise ValueError(f"expected {5 + len(GENRES_100K)} fields, found {len(f)}")
        flags = f[5:]
        genres = [g for g, flag in zip(GENRES_100K[1:], flags[1:], strict=True) if flag == "1"]
        return _int(f[0], "movie_id"), f[1], genres or [GENRES_100K[0]]
    if layout.sep == ",":
        f = _split_csv(line)
    else:
        f = line.split(layout.sep)
    if len(f) != 3:
        raise ValueError(f"expected 3 fields, found {len(f)}")
    genres = [g for g in f[2].split("|") if g] or [GENRES_100K[0]]
    return _int(f[0], "movie_id"), f[1], genres


def _int(s: str, name: str) -> int:
    try:
        return int(s)
    except ValueError:
        raise ValueError(f"{name} is not an integer") from None


def load_tags(folder: Path) -> pd.DataFrame:
    """Tags as (user_id, movie_id, tag, timestamp); empty when the layout has none."""
    folder = Path(folder)
    layout = detect_layout(folder)
    cols = ["user_id", "movie_id", "tag", "timestamp"]
    if layout.tags is None or not (folder / layout.tags).exists():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    path = folder / layout.tags
    if layout.sep == ",":
        df = pd.read_csv(path, dtype={"tag": str}, keep_default_na=False, encoding="utf-8")
        df.columns = cols
    else:
        enc = _sniff_encoding(path, layout.encoding.split("|"))
        text = path.read_text(encoding=enc)
        rows = [ln.split("::", 3) for ln in text.splitlines() if ln.strip()]
        df = pd.DataFrame(rows, columns=cols)
    for c in ("user_id", "movie_id", "timestamp"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df.dropna(subset=["user_id", "movie_id"]).astype({"user_id": int, "movie_id": int})
