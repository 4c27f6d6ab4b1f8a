-- Booked vs used: the queries behind `tellijn report rooms` and the Grafana board
-- "Tellijn · Booked vs used" (grafana/dashboards/booked-vs-used.json).
--
-- One statement per report section; each section starts at a line `-- @section NAME`
-- and runs to the next one. `tellijn report rooms` loads this very file (include_str!),
-- fills the placeholders and runs each section, so this text and the report cannot drift.
--
-- Placeholders (fill them before running a statement by hand):
--   {from}  the window's first instant, UTC, as 'YYYY-MM-DD HH:MM:SS' (inclusive)
--   {to}    the window's end, UTC, as 'YYYY-MM-DD HH:MM:SS' (exclusive)
--   {tz}    the campus time zone (campus.toml `server.timezone`, e.g. Europe/Amsterdam)
-- `tellijn report rooms --from D1 --to D2` uses local midnight of D1 to local midnight after D2
-- in {tz}, converted to UTC. By hand, e.g. the summary for the week of 2 November 2026:
--   sql=$(awk '/^-- @section summary/{on=1;next} /^-- @section /{on=0} on' docs/sql/booked-vs-used.sql |
--     sed "s/{from}/2026-11-01 23:00:00/g; s/{to}/2026-11-08 23:00:00/g; s|{tz}|Europe/Amsterdam|g")
--   tellijn sql --config campus.toml --data DIR "$sql"
-- or paste the filled statement into psql (port 5433). The Grafana board uses the same text with
-- '{from}' and '{to}' replaced by $__timeFrom() and $__timeTo().
--
-- Tables: bookings(room, start, end, status, no_show, uid_hash) (one row per occurrence,
-- recurrences expanded), occupancy(room, building, minute, ..., occupancy_max, capacity) (one
-- row per room and minute, `minute` = the minute's start, UTC), rooms(id, name, building, kind,
-- capacity, public) (from the config). Every statement stays in the SQL that both DataFusion
-- (Tellijn) and DuckDB run alike (tests/report_e2e.rs runs both on the same Parquet files).
--
-- Definitions:
--   booking          a row of `bookings` with status <> 'cancelled' (confirmed or tentative)
--                    overlapping the window; its time is clipped to the window.
--   booked hours     the sum of the bookings' (clipped) durations, per room. Two bookings
--                    of the same room at the same time both count.
--   used hours       minutes of `occupancy` with occupancy_max > 0, / 60, per room.
--   no-show share    no_show = true among the decided bookings (no_show not null; it stays null
--                    until `no_show_after` has passed after the start).
--   booked minute    an occupancy minute (room, minute) with minute >= a booking's start and
--                    minute < its end (a minute counts once however many bookings cover it).
--   booked-but-empty booked minutes with occupancy_max = 0, / 60, by room and by weekday and
--   hours            hour of the minute in the campus time zone {tz}. Booked minutes without
--                    an occupancy row (server down, no data) count as neither used nor empty.
--   under 30 %       bookings whose peak occupancy (max occupancy_max over the booking's
--                    minutes in the window) is below 0.3 x the room's capacity (config): a
--                    smaller room would do. Bookings without any occupancy minute are left out;
--                    no-shows (peak 0) are listed, marked by no_show.
--   used without     occupancy minutes with occupancy_max > 0 that no booking covers, / 60,
--   a booking        per room.
-- Weekdays are ISO (1 = Monday ... 7 = Sunday), hours 0-23, both in {tz}; start and end of a
-- booking are shown in {tz} as well. Rooms are those of the config: rooms no longer configured
-- show without a name (or, in the summary, not at all).
--
-- The booked minutes are matched to bookings per room and UTC day (`bd`: each booking once per
-- day it touches), so that the join compares a room-day's minutes with that day's bookings only.

-- @section summary: Per room: bookings, booked hours, used hours, no-show share.
WITH b AS (
  SELECT room, no_show,
         greatest("start", CAST('{from}' AS TIMESTAMP)) AS s,
         least("end", CAST('{to}' AS TIMESTAMP)) AS e
  FROM bookings
  WHERE status <> 'cancelled'
    AND "start" < CAST('{to}' AS TIMESTAMP) AND "end" > CAST('{from}' AS TIMESTAMP)
),
booked AS (
  SELECT room,
         count(*) AS bookings,
         sum(extract(epoch FROM e) - extract(epoch FROM s)) / 3600.0 AS hours,
         sum(CASE WHEN no_show IS NOT NULL THEN 1 ELSE 0 END) AS decided,
         sum(CASE WHEN no_show THEN 1 ELSE 0 END) AS no_shows
  FROM b
  GROUP BY room
),
used AS (
  SELECT room, sum(CASE WHEN occupancy_max > 0 THEN 1 ELSE 0 END) / 60.0 AS hours
  FROM occupancy
  WHERE minute >= CAST('{from}' AS TIMESTAMP) AND minute < CAST('{to}' AS TIMESTAMP)
  GROUP BY room
)
SELECT r.id AS room, r.name AS name, r.capacity AS capacity,
       CAST(coalesce(k.bookings, 0) AS BIGINT) AS bookings,
       round(coalesce(k.hours, 0), 2) AS booked_hours,
       round(coalesce(u.hours, 0), 2) AS used_hours,
       CAST(coalesce(k.decided, 0) AS BIGINT) AS decided,
       CAST(coalesce(k.no_shows, 0) AS BIGINT) AS no_shows,
       round(CAST(k.no_shows AS DOUBLE) / nullif(k.decided, 0), 3) AS no_show_share
FROM rooms r
LEFT JOIN booked k ON k.room = r.id
LEFT JOIN used u ON u.room = r.id
ORDER BY r.id

-- @section booked_empty: Booked-but-empty hours by room, weekday and hour (campus time).
WITH b AS (
  SELECT room,
         greatest("start", CAST('{from}' AS TIMESTAMP)) AS s,
         least("end", CAST('{to}' AS TIMESTAMP)) AS e
  FROM bookings
  WHERE status <> 'cancelled'
    AND "start" < CAST('{to}' AS TIMESTAMP) AND "end" > CAST('{from}' AS TIMESTAMP)
),
days AS (
  SELECT DISTINCT date_trunc('day', minute) AS day
  FROM occupancy
  WHERE minute >= CAST('{from}' AS TIMESTAMP) AND minute < CAST('{to}' AS TIMESTAMP)
),
bd AS (
  SELECT b.room AS room, d.day AS day, b.s AS s, b.e AS e
  FROM b JOIN days d ON d.day < b.e AND d.day + INTERVAL '1 day' > b.s
),
em AS (
  SELECT DISTINCT o.room AS room, o.minute AS minute
  FROM occupancy o
  JOIN bd ON o.room = bd.room AND date_trunc('day', o.minute) = bd.day
         AND o.minute >= bd.s AND o.minute < bd.e
  WHERE o.minute >= CAST('{from}' AS TIMESTAMP) AND o.minute < CAST('{to}' AS TIMESTAMP)
    AND o.occupancy_max = 0
),
lt AS (
  SELECT room, (minute AT TIME ZONE 'UTC') AT TIME ZONE '{tz}' AS t FROM em
),
cells AS (
  SELECT room, CAST(extract(isodow FROM t) AS INT) AS weekday,
         CAST(extract(hour FROM t) AS INT) AS hour, count(*) AS minutes
  FROM lt
  GROUP BY 1, 2, 3
)
SELECT c.room AS room, r.name AS name, c.weekday AS weekday, c.hour AS hour,
       round(c.minutes / 60.0, 2) AS booked_empty_hours
FROM cells c LEFT JOIN rooms r ON r.id = c.room
ORDER BY c.room, c.weekday, c.hour

-- @section under_30: Bookings whose peak occupancy stayed under 30 % of the room's capacity.
WITH b AS (
  SELECT room, uid_hash, "start", "end", no_show,
         greatest("start", CAST('{from}' AS TIMESTAMP)) AS s,
         least("end", CAST('{to}' AS TIMESTAMP)) AS e
  FROM bookings
  WHERE status <> 'cancelled'
    AND "start" < CAST('{to}' AS TIMESTAMP) AND "end" > CAST('{from}' AS TIMESTAMP)
),
days AS (
  SELECT DISTINCT date_trunc('day', minute) AS day
  FROM occupancy
  WHERE minute >= CAST('{from}' AS TIMESTAMP) AND minute < CAST('{to}' AS TIMESTAMP)
),
bd AS (
  SELECT b.*, d.day AS day
  FROM b JOIN days d ON d.day < b.e AND d.day + INTERVAL '1 day' > b.s
),
peaks AS (
  SELECT bd.room AS room, bd.uid_hash AS uid_hash, bd."start" AS bstart, bd."end" AS bend,
         bd.no_show AS no_show, max(o.occupancy_max) AS peak
  FROM bd
  JOIN occupancy o ON o.room = bd.room AND date_trunc('day', o.minute) = bd.day
                  AND o.minute >= bd.s AND o.minute < bd.e
  WHERE o.minute >= CAST('{from}' AS TIMESTAMP) AND o.minute < CAST('{to}' AS TIMESTAMP)
  GROUP BY 1, 2, 3, 4, 5
)
SELECT p.room AS room, r.name AS name,
       (p.bstart AT TIME ZONE 'UTC') AT TIME ZONE '{tz}' AS "start",
       (p.bend AT TIME ZONE 'UTC') AT TIME ZONE '{tz}' AS "end",
       p.peak AS peak_people, r.capacity AS capacity,
       round(CAST(p.peak AS DOUBLE) / r.capacity, 3) AS peak_share,
       p.no_show AS no_show, p.uid_hash AS series
FROM peaks p JOIN rooms r ON r.id = p.room
WHERE r.capacity > 0 AND p.peak < 0.3 * r.capacity
ORDER BY p.room, p.bstart

-- @section unbooked: Rooms used without a booking: hours with people present and no booking.
WITH b AS (
  SELECT room,
         greatest("start", CAST('{from}' AS TIMESTAMP)) AS s,
         least("end", CAST('{to}' AS TIMESTAMP)) AS e
  FROM bookings
  WHERE status <> 'cancelled'
    AND "start" < CAST('{to}' AS TIMESTAMP) AND "end" > CAST('{from}' AS TIMESTAMP)
),
days AS (
  SELECT DISTINCT date_trunc('day', minute) AS day
  FROM occupancy
  WHERE minute >= CAST('{from}' AS TIMESTAMP) AND minute < CAST('{to}' AS TIMESTAMP)
),
bd AS (
  SELECT b.room AS room, d.day AS day, b.s AS s, b.e AS e
  FROM b JOIN days d ON d.day < b.e AND d.day + INTERVAL '1 day' > b.s
),
loose AS (
  SELECT o.room AS room, count(*) AS minutes
  FROM occupancy o
  LEFT JOIN bd ON o.room = bd.room AND date_trunc('day', o.minute) = bd.day
              AND o.minute >= bd.s AND o.minute < bd.e
  WHERE o.minute >= CAST('{from}' AS TIMESTAMP) AND o.minute < CAST('{to}' AS TIMESTAMP)
    AND o.occupancy_max > 0 AND bd.room IS NULL
  GROUP BY o.room
)
SELECT l.room AS room, r.name AS name, round(l.minutes / 60.0, 2) AS unbooked_used_hours
FROM loose l LEFT JOIN rooms r ON r.id = l.room
ORDER BY unbooked_used_hours DESC, l.room
