//! # Tellijn server
//!
//! The `tellijn` binary's parts, as a library so end-to-end tests can start them.
//!
//! # Layout
//! - [`server`]: starts the broker, the processors, the bridge that publishes their retained
//!   topics into the broker (and into [`live`]), HTTP and the PostgreSQL wire endpoint; stops
//!   them in the order that loses nothing.
//! - [`http`]: the public router (`/`, `/api/v1`, `/healthz`, `/transparency`) and the
//!   separate metrics listener (`/metrics`, Prometheus text format, optional bearer token).
//! - [`view`]: what each reader sees of a room or building now, for the API and the public
//!   MQTT tree alike; [`public_history`]: anonymous history on one fixed grid.
//! - [`api`]: `/api/v1` (current and historical occupancy, with bands for small numbers), its
//!   OpenAPI document and the public free-places page at `/`; a folder: `auth` (who is asking),
//!   `now` (rooms and buildings now), `history`, `documents` (OpenAPI, transparency, page).
//! - [`headcounts`]: head counts people record, stored beside Tellijn's figure, and the
//!   accuracy per room and sensor they give.
//! - [`bookings`]: the `[[calendars]]` feeds read on their refresh, each room's booking state
//!   (no-shows, use without a booking, open study places) published and stored.
//! - [`live`]: the latest occupancy of every room and building, fed from the retained outputs.
//! - [`demo`]: a generated campus with simulated agents, each its own MQTT connection with its
//!   own credential.
//! - [`page`]: the free-places page (`src/page/`: the HTML, its string table per language,
//!   the service worker that keeps it usable offline).
//! - [`progress`]: the progress line of `tellijn sql` on a terminal.
//! - [`sim`]: the demo's campus simulator (a timetable, sensors that miss a few crossings);
//!   [`timetable`]: its lectures as an iCalendar feed served to the demo itself.
//! - [`transparency`]: the transparency report (`tellijn transparency`, `/transparency`).
//! - [`report`]: `tellijn report rooms` (booked vs used), from `docs/sql/booked-vs-used.sql`.
//! - [`secrets`]: argon2id hashing for `hash-secret` and the demo, and the demo-password check
//!   of `serve` (a re-export of `tellijn_config::secrets`).

pub mod api;
pub mod bookings;
pub mod cameras;
pub mod demo;
pub mod headcounts;
pub mod http;
pub mod live;
pub mod page;
pub mod progress;
pub mod provision;
pub mod public_history;
pub mod report;
pub mod secrets;
pub mod server;
pub mod sim;
pub mod timetable;
pub mod transparency;
pub mod transparency_html;
pub mod view;
