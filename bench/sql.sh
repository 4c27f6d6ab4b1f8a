#!/usr/bin/env bash
# SQL over history: DAYS days (default a year) of per-minute occupancy for ROOMS rooms
# (default 370: ≈ 194 M rows) and a month of raw counts (one per door per minute, ≈ 16 M rows),
# written in Tellijn's layout (occupancy/date=YYYY-MM-DD/*.parquet,
# zstd, sorted by room and minute, row groups of ROW_GROUP rows) by DuckDB; six steward
# queries with `tellijn sql` and with DuckDB (PyPI) on the same files. RUNS runs each after a
# warm-up, min/median/max, `tellijn sql` a fresh process each run (its start-up counted), DuckDB
# a fresh connection in one Python process (interpreter start-up not counted). Prints Markdown rows.
source "$(dirname "$0")/common.sh"
DAYS=${DAYS:-365}
ROOMS=${ROOMS:-370}
ROW_GROUP=${ROW_GROUP:-122880}
RUNS=${RUNS:-3}
python3 -c 'import duckdb' 2>/dev/null || python3 -m pip install -q duckdb
work=${SQL_BENCH_DIR:-$TARGET/bench-sql}
data=$work/data-$DAYS-$ROOMS
mkdir -p "$work"
campus "$work/campus.toml" "$data" 1 "$ROOMS"
if [ ! -d "$data/occupancy" ]; then
  gen0=$(date +%s); mkdir -p "$data"
  python3 - "$data" "$DAYS" "$ROOMS" "$ROW_GROUP" <<'PY'
import sys, duckdb
data, days, rooms, row_group = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
con = duckdb.connect()
con.sql("SET preserve_insertion_order = true")
# Ends yesterday (UTC), so nothing is past the default retention.
con.sql(f"""
CREATE TEMP TABLE minutes AS
SELECT CAST(current_date - INTERVAL {days} DAY AS TIMESTAMP) + to_minutes(m) AS minute
FROM range(0, {days} * 1440) t(m)""")
con.sql(f"""
CREATE TEMP TABLE rooms AS
SELECT r, 'room-' || r AS room, 'b-' || (r // 10) AS building,
       CASE r % 3 WHEN 0 THEN 200 ELSE 40 END AS capacity
FROM range(0, {rooms}) t(r)""")
# People follow the working day: busy 8-18 on weekdays, nobody at night, per room and hour.
con.sql(f"""
COPY (
  SELECT room, building, minute,
    CAST(occ % 3 AS INTEGER) AS people_in, CAST(occ % 2 AS INTEGER) AS people_out,
    CAST(greatest(occ - 1, 0) AS INTEGER) AS occupancy_min, CAST(occ AS DOUBLE) AS occupancy_avg,
    CAST(occ + (occ > 0)::INT AS INTEGER) AS occupancy_max, CAST(capacity AS INTEGER) AS capacity,
    strftime(minute, '%Y-%m-%d') AS date
  FROM (
    SELECT room, building, minute, capacity,
      CASE WHEN isodow(minute) <= 5 AND hour(minute) BETWEEN 8 AND 17 AND hash(r, date_trunc('hour', minute)) % 5 > 0
           THEN hash(r, minute) % (capacity * 3 // 4) ELSE 0 END AS occ
    FROM rooms, minutes
  )
  ORDER BY date, room, minute
) TO '{data}/occupancy' (FORMAT PARQUET, COMPRESSION ZSTD, PARTITION_BY (date), ROW_GROUP_SIZE {row_group}, OVERWRITE_OR_IGNORE)""")
PY
  echo "generated $(du -sh "$data/occupancy" | cut -f1) in $(( $(date +%s) - gen0 )) s" >&2
fi
if [ ! -d "$data/counts" ]; then
  gen0=$(date +%s)
  python3 - "$data" "$ROOMS" "$ROW_GROUP" <<'PY'
import sys, duckdb
data, rooms, row_group = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
con = duckdb.connect()
con.sql("SET preserve_insertion_order = true")
# A month of raw line counts: each room's door sensor reports once a minute, ending yesterday.
con.sql(f"""
COPY (
  SELECT 'bench-' || r AS sensor, 'main' AS line, m + 1 AS seq,
    t AS start, t + INTERVAL 1 MINUTE AS "end",
    CAST(CASE WHEN isodow(t) <= 5 AND hour(t) BETWEEN 8 AND 17 THEN hash(r, m) % 7 ELSE 0 END AS INTEGER) AS people_in,
    CAST(CASE WHEN isodow(t) <= 5 AND hour(t) BETWEEN 8 AND 17 THEN hash(m, r) % 7 ELSE 0 END AS INTEGER) AS people_out,
    t + INTERVAL 61 SECOND AS received,
    strftime(t, '%Y-%m-%d') AS date
  FROM range(0, {rooms}) a(r),
       (SELECT m, CAST(current_date - INTERVAL 30 DAY AS TIMESTAMP) + to_minutes(m) AS t FROM range(0, 30 * 1440) b(m))
  ORDER BY date, sensor, seq
) TO '{data}/counts' (FORMAT PARQUET, COMPRESSION ZSTD, PARTITION_BY (date), ROW_GROUP_SIZE {row_group}, OVERWRITE_OR_IGNORE)""")
PY
  echo "generated counts $(du -sh "$data/counts" | cut -f1) in $(( $(date +%s) - gen0 )) s" >&2
fi
count_rows=$(python3 -c "import duckdb,sys; print(duckdb.sql(\"SELECT count(*) FROM read_parquet('$data/counts/*/*.parquet')\").fetchall()[0][0])")
rows=$(python3 -c "import duckdb,sys; print(duckdb.sql(\"SELECT count(*) FROM read_parquet('$data/occupancy/*/*.parquet')\").fetchall()[0][0])")
day=$(python3 -c "import datetime; print(datetime.date.today() - datetime.timedelta(days=30))")

q1="SELECT room, extract(dow FROM minute) AS dow, extract(hour FROM minute) AS hour, avg(occupancy_avg / capacity) AS utilisation FROM occupancy GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
q2="SELECT building, day, max(people) AS peak FROM (SELECT building, date_trunc('day', minute) AS day, minute, sum(occupancy_max) AS people FROM occupancy GROUP BY 1, 2, 3) t GROUP BY 1, 2 ORDER BY 1, 2"
q3="SELECT room FROM occupancy GROUP BY room HAVING max(occupancy_max) <= 0.3 * max(capacity) ORDER BY room"
q4="SELECT count(*) AS empty_hours FROM (SELECT o.room, date_trunc('hour', o.minute) AS h FROM occupancy o JOIN rooms r ON r.id = o.room WHERE r.kind = 'lecture-hall' AND extract(hour FROM o.minute) BETWEEN 9 AND 16 GROUP BY 1, 2 HAVING max(o.occupancy_max) = 0) t"
q5="SELECT minute, occupancy_avg FROM occupancy WHERE room = 'room-17' AND date = '$day' ORDER BY minute"
q6="SELECT date_trunc('hour', start) AS hour, sum(people_in) AS entered, sum(people_out) AS left FROM counts WHERE sensor = 'bench-17' AND date = '$day' GROUP BY 1 ORDER BY 1"
# A steward's join with the campus tables: utilisation per building, room kind and size class.
q7="SELECT b.name AS building, r.kind, CASE WHEN r.capacity >= 100 THEN 'large' ELSE 'small' END AS size, avg(o.occupancy_avg / r.capacity) AS utilisation FROM occupancy o JOIN rooms r ON r.id = o.room JOIN buildings b ON b.id = r.building GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
# A window over one day: each room's busiest quarter of an hour (a 15-minute moving average).
q8="SELECT room, max(avg15) AS busiest_quarter FROM (SELECT room, avg(occupancy_avg) OVER (PARTITION BY room ORDER BY minute ROWS BETWEEN 14 PRECEDING AND CURRENT ROW) AS avg15 FROM occupancy WHERE date = '$day') t GROUP BY room ORDER BY room"
names=("utilisation per room per hour of week" "peak per building per day" "rooms never above 30 % of capacity" "empty lecture-hall hours 9–17" "one room's day" "one door's day from the raw counts" "utilisation per building, room kind and size (join)" "each room's busiest quarter of an hour in a day (window)")
day_rows=$((ROOMS * 1440))
sizes=("$rows" "$rows" "$rows" "$rows" "$rows" "$count_rows" "$rows" "$day_rows")

"$BIN" sql --data "$data" --config "$work/campus.toml" --format csv "SELECT id, kind, building, capacity FROM rooms" >"$work/rooms.csv"
"$BIN" sql --data "$data" --config "$work/campus.toml" --format csv "SELECT id, name FROM buildings" >"$work/buildings.csv"
# DuckDB times itself inside one Python process (a fresh connection per run, the interpreter
# and `import duckdb` not counted): RUNS runs after a warm-up, one time per line.
duck_runs() {
  python3 - "$data" "$work" "$1" "$RUNS" <<'PY'
import sys, time, duckdb
data, work, q, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def run():
    t = time.monotonic()
    con = duckdb.connect()
    con.sql(f"CREATE VIEW occupancy AS SELECT * FROM read_parquet('{data}/occupancy/*/*.parquet', hive_partitioning = true)")
    con.sql(f"CREATE VIEW counts AS SELECT * FROM read_parquet('{data}/counts/*/*.parquet', hive_partitioning = true)")
    con.sql(f"CREATE VIEW rooms AS SELECT * FROM read_csv('{work}/rooms.csv')")
    con.sql(f"CREATE VIEW buildings AS SELECT * FROM read_csv('{work}/buildings.csv')")
    con.sql(q).fetchall()
    con.close()
    return time.monotonic() - t
run()
for _ in range(runs):
    print(run())
PY
}
tell() { "$BIN" sql --data "$data" --config "$work/campus.toml" --format csv "$1" >/dev/null; }
tell_runs() {  # tell_runs SQL: seconds of RUNS runs after one warm-up, one per line
  local i s
  tell "$1"
  for i in $(seq 1 "$RUNS"); do
    s=$(date +%s.%N); tell "$1"; python3 -c "print($(date +%s.%N) - $s)"
  done
}
echo "<!-- sql: commit $(commit); occupancy $rows rows ($DAYS days × $ROOMS rooms), counts $count_rows rows (30 days), row groups of $ROW_GROUP; $RUNS runs each after a warm-up; figures are min/median/max -->"
i=0
for q in "$q1" "$q2" "$q3" "$q4" "$q5" "$q6" "$q7" "$q8"; do
  a=($(tell_runs "$q")); b=($(duck_runs "$q"))
  printf '| SQL: %s (%s rows) | tellijn sql %s s | DuckDB %s s | %s | ≤ 0.8 |\n' "${names[$i]}" "${sizes[$i]}" "$(DEC=2 stats "${a[@]}")" "$(DEC=2 stats "${b[@]}")" "$(ratio "$(median "${a[@]}")" "$(median "${b[@]}")")"
  echo "sql ${names[$i]}: tellijn $(median "${a[@]}") s, duckdb $(median "${b[@]}") s" >&2
  i=$((i + 1))
done
