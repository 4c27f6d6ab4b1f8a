-- Accuracy of Tellijn's counting, from the head counts staff recorded (the `headcounts` table:
-- room, at, people, recorded_by, counted — `counted` is Tellijn's occupancy of the room at
-- that moment). Run with `tellijn sql --config campus.toml "…"` or over the PostgreSQL wire
-- (psql, Grafana: grafana/dashboards/accuracy.json draws the same queries).
--
--   mean absolute error = mean of |counted − people|   (people)
--   bias                = mean of counted − people      (positive: Tellijn counts too many)
--   checks              = number of head counts
--
-- Every configured room and sensor is listed, with 0 checks and NULL figures when none was
-- recorded (so the queries answer on an empty table too). Days past the aggregate retention
-- are not seen, as everywhere.

-- 1. Per room.
SELECT r.id AS room,
       count(h.people) AS checks,
       round(avg(abs(h.counted - h.people)), 2) AS mean_abs_error,
       round(avg(h.counted - h.people), 2) AS bias
FROM rooms r
LEFT JOIN headcounts h ON h.room = r.id
GROUP BY r.id
ORDER BY r.id;

-- 2. Per sensor: over the head counts of the rooms its lines and zones count into. The
-- `sensors` table lists them as text: lines "line:from->into,…" (from may be empty), zones
-- "zone:room,…". A room a sensor counts into twice (two lines) counts once. Room ids are
-- lower-case letters, digits and '-', so LIKE's '_' and '%' cannot occur in them.
SELECT s.id AS sensor,
       count(h.people) AS checks,
       round(avg(abs(h.counted - h.people)), 2) AS mean_abs_error,
       round(avg(h.counted - h.people), 2) AS bias
FROM sensors s
LEFT JOIN headcounts h
  ON (',' || s.lines || ',') LIKE ('%->' || h.room || ',%')
  OR (',' || s.lines || ',') LIKE ('%:' || h.room || '->%')
  OR (',' || s.zones || ',') LIKE ('%:' || h.room || ',%')
GROUP BY s.id
ORDER BY s.id;

-- 3. Each head count beside Tellijn's number, newest first.
SELECT room, at, people, counted, counted - people AS error, recorded_by
FROM headcounts
ORDER BY at DESC
LIMIT 100;
