#!/usr/bin/env bash
# The whole scenario on the bundled data, in a fresh state directory (var/demo):
#   broker -> base model v1 (oldest 80%) -> stream -> replay the newest 20% in two halves with a
#   retrain in between (v2, hot-swapped into the running stream) -> recommendations before/after
#   -> the HTTP API and dashboard (a new user's events in through POST /events, their list out).
set -euo pipefail
cd "$(dirname "$0")/.."
export STREAMREC_HOME=${STREAMREC_HOME:-$PWD/var/demo}
export STREAMREC_KAFKA_PORT=${STREAMREC_KAFKA_PORT:-9092}
PORT=${DEMO_PORT:-8000}            # the HTTP API and dashboard
S=".venv/bin/streamrec"
MID=${DEMO_MID:-2017-06-01}        # the live part is replayed before and after this date
SPEEDUP=${DEMO_SPEEDUP:-4000000}   # event-time gaps / SPEEDUP: ~2.5 years of ratings in ~20 s
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "fresh state in $STREAMREC_HOME"
$S kafka stop >/dev/null 2>&1 || true
rm -rf "$STREAMREC_HOME"
$S kafka start

step "base model v1 from the oldest 80% of ratings"
$S train --split-at 0.8 --no-event-log

# A user who only appears in the live 20% (a brand-new user) and one the base model knows.
read -r NEW_USER OLD_USER < <(.venv/bin/python - <<'PY'
from streamrec.history import window
from streamrec.movielens import load_ratings
from streamrec.settings import BUNDLED_DATA
r, _ = load_ratings(BUNDLED_DATA)
hist, live = window(r, split_at=0.8, part="before"), window(r, split_at=0.8)
new = live[~live.user_id.isin(hist.user_id)].user_id.value_counts()
old = live[live.user_id.isin(hist.user_id)].user_id.value_counts()
print(new.index[0], old.index[0])
PY
)

step "before the stream: user $NEW_USER is unknown (cold start), user $OLD_USER is in the model"
$S recommend --user "$NEW_USER" -k 5
$S recommend --user "$OLD_USER" -k 5

step "start the stream (log: $STREAMREC_HOME/stream.log)"
$S stream >"$STREAMREC_HOME/stream.log" 2>&1 &
STREAM_PID=$!
trap 'kill -TERM $STREAM_PID 2>/dev/null || true' EXIT

step "replay the live part up to $MID (speedup x$SPEEDUP)"
$S replay --split-at 0.8 --until "$MID" --speedup "$SPEEDUP"
# Wait (up to 2 minutes) until the fold-in query has taken in every replayed event: its first
# batch carries the whole history as initial state and takes tens of seconds on 2 cores.
MID="$MID" .venv/bin/python - <<'PY'
import os, sqlite3, time
from streamrec.history import parse_time, window
from streamrec.movielens import load_ratings
from streamrec.settings import BUNDLED_DATA
want = len(window(load_ratings(BUNDLED_DATA)[0], split_at=0.8, until=parse_time(os.environ["MID"])))
db = os.path.join(os.environ["STREAMREC_HOME"], "streamrec.db")
deadline, got = time.monotonic() + 120, 0
while time.monotonic() < deadline:
    try:
        got = sqlite3.connect(db).execute(
            "SELECT COALESCE(SUM(input_rows), 0) FROM stream_metrics WHERE query = 'foldin'").fetchone()[0]
    except sqlite3.Error:
        got = 0
    if got >= want:
        break
    time.sleep(1)
print(f"the fold-in query has taken in {got:,} of the {want:,} replayed events")
PY

step "the catalogue streams too: movies v1 never saw, folded in from their first ratings"
$S status | grep '^movies:'
read -r NEW_MOVIE NEW_TITLE < <(.venv/bin/python - <<'PY'
import os, sqlite3
from streamrec.model_store import ModelStore
from streamrec.movielens import load_movies
from streamrec.settings import BUNDLED_DATA
model = ModelStore().load()
db = sqlite3.connect(os.path.join(os.environ["STREAMREC_HOME"], "streamrec.db"))
rows = db.execute("SELECT movie_id, n_ratings FROM item_vectors WHERE source = 'stream' "
                  "ORDER BY n_ratings DESC").fetchall()
new = [(m, n) for m, n in rows if not model.items.rows([m])[1][0]]  # unknown to v1
titles = load_movies(BUNDLED_DATA).set_index("movie_id")["title"]
print(new[0][0], titles.get(new[0][0], "?")) if new else print(0, "-")
PY
)
if [ "$NEW_MOVIE" != 0 ]; then
  echo "-- $NEW_TITLE (movie $NEW_MOVIE) is not in v1; the stream solved its vectors from its raters:"
  .venv/bin/python - "$NEW_MOVIE" <<'PY'
import os, sqlite3, sys
db = sqlite3.connect(os.path.join(os.environ["STREAMREC_HOME"], "streamrec.db"))
m = int(sys.argv[1])
n, = db.execute("SELECT n_ratings FROM item_vectors WHERE movie_id = ?", (m,)).fetchone()
users = db.execute("SELECT COUNT(DISTINCT user_id), MIN(rank) FROM user_recommendations WHERE movie_id = ?",
                   (m,)).fetchone()
print(f"   {n} live ratings; now in the stream's lists of {users[0]} users (best rank {users[1]})")
PY
  echo "-- movies similar to it (its streamed vector against v1's):"
  $S similar --movie "$NEW_MOVIE" -k 5
fi

step "retrain on history + the stream's event log: v2 is published and hot-swapped"
$S retrain --once --split-at 0.8

step "replay the rest of the live part"
$S replay --split-at 0.8 --since "$MID" --speedup "$SPEEDUP"
sleep 10
$S status

step "after the stream: user $NEW_USER now has personal recommendations"
$S recommend --user "$NEW_USER" -k 5
$S recommend --user "$OLD_USER" -k 5

step "a brand-new user, before and after a few ratings (folded in on the spot, no state written)"
echo "-- no ratings yet: the most popular movies"
$S recommend --user 999999 -k 5
echo "-- after one rating (Star Wars IV: 5): mostly the top chart, nudged by the blend"
$S recommend --rated 260:5 -k 5
echo "-- after three ratings (Star Wars IV, V: 5, VI: 4.5) and a dislike (Titanic: 1)"
$S recommend --rated 260:5,1196:5,1210:4.5,1721:1 -k 5

step "the HTTP API and the live dashboard (log: $STREAMREC_HOME/serve.log)"
$S serve --port "$PORT" >"$STREAMREC_HOME/serve.log" 2>&1 &
SERVE_PID=$!
trap 'kill -TERM $STREAM_PID $SERVE_PID 2>/dev/null || true' EXIT
API="http://127.0.0.1:$PORT"
for _ in $(seq 100); do curl -sf "$API/healthz" >/dev/null && break; sleep 0.2; done
echo "-- a brand-new user 900001 rates three movies through POST /events"
curl -s -X POST "$API/events" -H 'Content-Type: application/json' -d '[
  {"user_id": 900001, "movie_id": 260, "rating": 5, "timestamp": 1537800000},
  {"user_id": 900001, "movie_id": 1196, "rating": 5, "timestamp": 1537800001},
  {"user_id": 900001, "movie_id": 2571, "rating": 4.5, "timestamp": 1537800002}]'; echo
for _ in $(seq 120); do
  curl -s "$API/recommendations/900001?k=5" | grep -q '"source":"stream"' && break; sleep 0.25
done
echo "-- GET /recommendations/900001?k=5 (the stream's list):"
curl -s "$API/recommendations/900001?k=5" | .venv/bin/python -c "
import json, sys
r = json.load(sys.stdin)
print(f\"source {r['source']}, model {r['model_version']}\")
for i, m in enumerate(r['items'], 1):
    print(f\"  {i}. {m['title']}  (predicted {m['predicted_rating']})\")"
echo "-- GET /readyz: $(curl -s "$API/readyz" | head -c 200)"

step "model versions"
$S model list

cat <<MSG

Where to look:
  dashboard    $API/   (API docs: $API/docs, metrics: $API/metrics)
  sink DB      $STREAMREC_HOME/streamrec.db  (sqlite3: movie_stats, genre_stats, user_activity,
               rating_histogram, trending, dead_letters, user_vectors, user_recommendations,
               stream_metrics)
  event log    $STREAMREC_HOME/eventlog/  (Delta table: streamrec eventlog stats)
  models       $STREAMREC_HOME/models/    (streamrec model list / show)
  logs         $STREAMREC_HOME/stream.log, $STREAMREC_HOME/serve.log
MSG
echo "demo done: v1 -> $(cat "$STREAMREC_HOME/models/CURRENT"), users $NEW_USER and $OLD_USER served from the stream; dashboard at $API/"
if [ -t 0 ] && [ -z "${DEMO_NO_WAIT:-}" ]; then
  echo "the stream and the server keep running: press Enter to stop them (the broker stays up)"
  read -r _
fi
step "stop the server and the stream (at a batch boundary)"
kill -TERM $SERVE_PID 2>/dev/null || true
kill -TERM $STREAM_PID; wait $STREAM_PID || true; wait $SERVE_PID 2>/dev/null || true; trap - EXIT
tail -n 1 "$STREAMREC_HOME/stream.log"
echo "The broker keeps running: STREAMREC_HOME=$STREAMREC_HOME $S kafka stop"
