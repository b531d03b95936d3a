"""Loaders: every official layout, CRLF, encodings, invalid rows with file:line errors."""

from pathlib import Path

import pytest

from streamrec.errors import DataError
from streamrec.movielens import detect_layout, load_movies, load_ratings, load_tags
from streamrec.settings import BUNDLED_DATA

FIX = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("folder", "layout", "n", "first"),
    [
        ("csv", "csv", 5, (1, 1, 4.0, 964982703)),
        ("csv_crlf", "csv", 5, (1, 1, 4.0, 964982703)),
        ("dat_1m", "dat", 3, (1, 1193, 5.0, 978300760)),
        ("dat_10m", "dat", 3, (1, 122, 5.0, 838985046)),
        ("ml100k", "100k", 3, (196, 242, 3.0, 881250949)),
    ],
)
def test_every_layout_loads_normalised_ratings(folder, layout, n, first):
    assert detect_layout(FIX / folder).name == layout
    ratings, report = load_ratings(FIX / folder)
    assert list(ratings.columns) == ["user_id", "movie_id", "rating", "timestamp"]
    assert [str(t) for t in ratings.dtypes] == ["int32", "int32", "float32", "int64"]
    assert len(ratings) == n and report.n_skipped == 0
    assert tuple(ratings.iloc[0].tolist()) == first


def test_half_star_ratings_from_dat():
    ratings, _ = load_ratings(FIX / "dat_10m")
    assert ratings["rating"].tolist() == [5.0, 4.5, 3.5]


def test_movies_csv_quoted_title_year_and_genres():
    movies = load_movies(FIX / "csv").set_index("movie_id")
    assert movies.loc[2, "title"] == "American President, The (1995)"
    assert movies.loc[2, "year"] == 1995
    assert movies.loc[1, "genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert movies.loc[3, "genres"] == ["(no genres listed)"]
    assert movies["year"].isna().tolist() == [False, False, True]


def test_crlf_titles_have_no_carriage_return():
    movies = load_movies(FIX / "csv_crlf")
    assert not movies["title"].str.contains("\r").any()
    assert all("\r" not in g for gs in movies["genres"] for g in gs)


def test_latin1_layouts_decode():
    assert load_movies(FIX / "dat_1m").set_index("movie_id").loc[1193, "title"].startswith("Café")
    item = load_movies(FIX / "ml100k").set_index("movie_id")
    assert item.loc[303, "title"] == "Café (1997)"
    assert item.loc[302, "genres"] == ["Crime", "Film-Noir", "Mystery", "Thriller"]
    assert item.loc[303, "genres"] == ["(no genres listed)"]
    assert item.loc[242, "year"] == 1996


def test_tags_csv_and_dat():
    tags = load_tags(FIX / "csv")
    assert tags["tag"].tolist() == ["funny", "dark, moody"]
    assert load_tags(FIX / "dat_10m")["tag"].tolist() == ["funny"]
    assert load_tags(FIX / "ml100k").empty


def test_first_invalid_row_stops_the_load_with_file_and_line(tmp_path):
    with pytest.raises(DataError) as err:
        load_ratings(FIX / "bad_rows")
    assert str(err.value) == f"{FIX / 'bad_rows' / 'ratings.csv'}:3: expected 4 fields, found 3"
    # Each kind of problem, alone in a file, names its own line and reason.
    for row, reason in [
        ("1,3,x,964981247", "rating is not a number"),
        ("1,4,5.5,964981247", "rating outside 0.5..5.0 in steps of 0.5"),
        ("1,5,4.2,964981247", "rating outside 0.5..5.0 in steps of 0.5"),
        ("1,-5,4.0,964981247", "movie_id is not a non-negative integer"),
        ("1,6,3.0,964981247,extra", "expected 4 fields, found 5"),
    ]:
        (tmp_path / "ratings.csv").write_text(f"userId,movieId,rating,timestamp\n1,1,4.0,1\n{row}\n")
        (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,A (2000),Drama\n")
        with pytest.raises(DataError, match=f"ratings.csv:3: {reason}"):
            load_ratings(tmp_path)


def test_skip_invalid_counts_each_reason():
    ratings, report = load_ratings(FIX / "bad_rows", skip_invalid=True)
    assert ratings["movie_id"].tolist() == [1, 1]
    assert report.n_skipped == 5
    assert report.skipped == {
        "expected 4 fields, found 3": 1,
        "expected 4 fields, found 5": 1,
        "rating is not a number": 1,
        "rating outside 0.5..5.0 in steps of 0.5": 2,
    }
    assert "skipped 5 invalid rows" in report.summary()


def test_undecodable_rating_row_is_an_encoding_error(tmp_path):
    (tmp_path / "ratings.csv").write_bytes(b"userId,movieId,rating,timestamp\n1,1,4.0,1\n1\xe9,2,4.0,1\n")
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,A (2000),Drama\n")
    with pytest.raises(DataError, match=r"ratings.csv:3: not valid utf-8 text"):
        load_ratings(tmp_path)


def test_undecodable_title_bytes_are_replaced_and_reported(caplog):
    with caplog.at_level("INFO"):
        movies = load_movies(FIX / "bad_encoding")
    assert movies["title"].tolist() == ["Caf\ufffd (1995)"]
    assert "movies.csv:2" in caplog.text


def test_unknown_folder_and_layout_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        load_ratings(tmp_path / "missing")
    with pytest.raises(DataError, match="no MovieLens layout found"):
        load_ratings(tmp_path)


def test_bundled_dataset_counts():
    ratings, report = load_ratings(BUNDLED_DATA)
    movies = load_movies(BUNDLED_DATA)
    assert len(ratings) == 100_836 and report.n_skipped == 0
    assert ratings["user_id"].nunique() == 610
    assert len(movies) == 9742 and movies["movie_id"].is_unique
    assert len(load_tags(BUNDLED_DATA)) == 3683


def _folder(
    tmp_path: Path, ratings: str, movies: str = "movieId,title,genres\n1,Toy Story (1995),Comedy\n"
) -> Path:
    (tmp_path / "ratings.csv").write_text(ratings)
    (tmp_path / "movies.csv").write_text(movies)
    return tmp_path


def test_rating_columns_are_read_by_header_name_in_any_order(tmp_path):
    # swapped id columns used to load as a transposed model (9,724 "users")
    ratings, _ = load_ratings(_folder(tmp_path, "movieId,userId,timestamp,rating\n31,7,1260759144,2.5\n"))
    assert tuple(ratings.iloc[0].tolist()) == (7, 31, 2.5, 1260759144)


@pytest.mark.parametrize(
    ("ratings", "message"),
    [
        (
            "foo,bar\n1,31,2.5,1260759144\n",
            ":1: header must name the columns userId,movieId,rating,timestamp",
        ),
        ("1,31,2.5,1260759144\n2,31,3.0,1260759145\n", ":1: header must name"),  # no header: row 1 lost
        ("userId,movieId,rating,rating\n1,31,2.5,3\n", ":1: header must name"),
        (
            "userId,movieId,rating,timestamp\n3000000000,31,2.5,1260759144\n",
            ":2: user_id is above 2147483647",
        ),
        ("userId,movieId,rating,timestamp\n1,31,2.5,inf\n", ":2: timestamp is not a non-negative integer"),
        ("userId,movieId,rating,timestamp\n", "ratings.csv: no ratings"),
        ("", "ratings.csv: no ratings"),
    ],
)
def test_untrusted_rating_files_are_refused_in_one_line(tmp_path, ratings, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        load_ratings(_folder(tmp_path, ratings))


@pytest.mark.parametrize(
    "movies", ["", "movieId,title,genres\n", "title,movieId,genres\nToy Story,1,Comedy\n"]
)
def test_a_movies_file_without_titles_is_refused(tmp_path, movies):
    with pytest.raises(DataError, match="movies.csv"):
        load_movies(_folder(tmp_path, "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n", movies))
