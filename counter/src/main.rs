//! `tellijn-counter`: see the crate documentation.

use clap::Parser;

#[global_allocator]
static ALLOC: tellijn_counter::alloc::ZeroingAlloc<std::alloc::System> =
    tellijn_counter::alloc::ZeroingAlloc(std::alloc::System);

fn main() -> std::process::ExitCode {
    tellijn_counter::app::main(tellijn_counter::app::Args::parse())
}
