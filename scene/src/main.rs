//! `tellijn-scene`: see `tellijn_scene::cli`.

fn main() -> std::process::ExitCode {
    tellijn_scene::cli::main()
}
