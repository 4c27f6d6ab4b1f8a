//! The end-to-end tests that can share one process, as one test binary.
//!
//! Each module was its own binary (`tests/NAME.rs`) until every one of them linked a
//! 330 MB debug copy of DataFusion, and a clean CI build ran out of disk. A test is
//! still named after its old file: `cargo test --test e2e gate_e2e::`.
//!
//! Tests that measure the process itself stay apart: `hardening_e2e` and `attack_sql_e2e`
//! count this process's descriptors and memory, `bookings_e2e` installs the process's log
//! subscriber to read what was logged, and `crash_e2e` re-runs its own binary as the server
//! it kills.

#[path = "../common/mod.rs"]
mod common;

mod attack_flood_e2e;
mod attack_public_e2e;
mod camera_e2e;
mod delivery_e2e;
mod demo_e2e;
mod disk_full_e2e;
mod gate_e2e;
mod headcounts_e2e;
mod idle_e2e;
mod log_format_e2e;
mod ops_e2e;
mod package_e2e;
mod page_e2e;
mod provision_e2e;
mod reload_e2e;
mod report_e2e;
mod scripted_day_e2e;
mod sql_api_e2e;
mod sql_clients_e2e;
mod stdin_e2e;
mod tls_e2e;
