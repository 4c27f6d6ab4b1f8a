//! `tellijn`: the server, the demo, and the tools around them.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tellijn::demo::{self, DemoOptions};
use tellijn::server::{Server, ServerOptions};
use tellijn_config::Campus;
use tellijn_queries::{Format, History};
use tellijn_wire::Clock;

/// Tellijn: privacy-first people counting. Only counts leave a sensor.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines on stderr as text or as one JSON object per line (for Loki, ELK).
    #[arg(long, global = true, value_enum, default_value_t)]
    log_format: tellijn_agent::logging::LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything on a simulated campus, loopback only, until Ctrl-C.
    Demo {
        /// Stop after this long (e.g. 60s).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Simulated seconds per real second.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Number of simulated sensors.
        #[arg(long, default_value_t = 370)]
        sensors: usize,
        /// Start the simulated clock at the next HH:MM campus time (e.g. 07:30) instead of now.
        #[arg(long)]
        start: Option<String>,
        /// Where history is written.
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        /// Simulate the building entrances too, instead of running the real counter on
        /// generated doorway scenes there.
        #[arg(long)]
        no_cameras: bool,
        #[command(flatten)]
        ports: Ports,
    },
    /// The production server, configured from a file.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// Overrides server.data_dir.
        #[arg(long)]
        data: Option<PathBuf>,
        #[command(flatten)]
        ports: OptPorts,
    },
    /// SQL over the history.
    Sql {
        /// The data directory (default: the config's, else ./data).
        #[arg(long)]
        data: Option<PathBuf>,
        /// A campus.toml: adds the rooms, buildings and sensors tables.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// The statement.
        sql: String,
    },
    /// Validate a campus.toml; prints every error.
    CheckConfig { config: PathBuf },
    /// Read a secret on stdin; print its argon2id hash for the config.
    HashSecret,
    /// Print, from the config, what is collected, where it goes, who may read it and how long
    /// it is kept (Markdown).
    Transparency {
        #[arg(long)]
        config: PathBuf,
        /// The data directory (default: the config's), for sensor reports and refusals.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Head counts: people's counts of rooms, to check Tellijn's.
    Headcounts {
        #[command(subcommand)]
        command: HeadcountsCommand,
    },
    /// Reports for people who do not write SQL.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Provision sensors without hand-editing secrets (each change audited).
    Sensor {
        #[command(subcommand)]
        command: SensorCommand,
    },
}

#[derive(Subcommand)]
enum SensorCommand {
    /// Add a sensor: generates its secret, appends it with its argon2id hash to the config
    /// (comments and layout kept) and writes agent.toml and secret (0600) to --out for the
    /// camera computer. Run it while the server is stopped; it takes effect at the next start.
    Add {
        /// The sensor's id.
        id: String,
        #[arg(long)]
        config: PathBuf,
        /// The data directory (default: the config's), for the audit log.
        #[arg(long)]
        data: Option<PathBuf>,
        /// A counting line, LINE:INTO[:FROM] (rooms or, for INTO, a building entrance).
        #[arg(long = "line")]
        lines: Vec<String>,
        /// A zone, ZONE:ROOM.
        #[arg(long = "zone")]
        zones: Vec<String>,
        /// The broker as the camera computer reaches it, e.g. mqtts://campus.example:8883.
        #[arg(long)]
        broker: String,
        /// Where to write agent.toml and secret (created; nothing is overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Replace a sensor's secret: a new secret in --out, its hash in the config.
    Rotate {
        /// The sensor's id.
        id: String,
        #[arg(long)]
        config: PathBuf,
        /// The data directory (default: the config's), for the audit log.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Where to write the new secret (created; nothing is overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Booked vs used per room (docs/sql/booked-vs-used.sql) as one document.
    Rooms {
        #[arg(long)]
        config: PathBuf,
        /// The data directory (default: the config's).
        #[arg(long)]
        data: Option<PathBuf>,
        /// The first day (YYYY-MM-DD, campus time).
        #[arg(long)]
        from: String,
        /// The last day, included (YYYY-MM-DD, campus time).
        #[arg(long)]
        to: String,
        #[arg(long, value_enum, default_value_t = tellijn::report::ReportFormat::Markdown)]
        format: tellijn::report::ReportFormat,
        /// Markdown, HTML: the file to write; CSV: a directory, one file per section.
        /// Default: stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum HeadcountsCommand {
    /// Import a CSV of head counts (header `room,at,people`, times RFC 3339 with an offset):
    /// each is stored beside Tellijn's occupancy for that room and minute; nothing is stored
    /// when a line is wrong. Writes one audit line for the import. Run it while the server is
    /// stopped (two writers would fork the audit log's hash chain); while it runs, POST the
    /// CSV to /api/v1/headcounts instead.
    Import {
        #[arg(long)]
        config: PathBuf,
        /// The data directory (default: the config's).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Who counted: a [[users]] steward, or a user with headcounts = true.
        #[arg(long)]
        recorded_by: String,
        /// The CSV file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit log's hash chain; names the first broken line.
    Verify {
        /// The data directory.
        #[arg(long, default_value = "./data")]
        data: PathBuf,
    },
}

#[derive(clap::Args)]
struct Ports {
    /// MQTT listen address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: SocketAddr,
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Metrics (`/metrics`) listen address; loopback only in the demo.
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics: SocketAddr,
    /// PostgreSQL-wire listen address.
    #[arg(long, default_value = "127.0.0.1:5433")]
    postgres: SocketAddr,
}

#[derive(clap::Args)]
struct OptPorts {
    /// MQTT listen address (overrides server.mqtt).
    #[arg(long)]
    mqtt: Option<SocketAddr>,
    /// MQTT-over-TLS listen address (overrides server.mqtts; needs [tls]).
    #[arg(long)]
    mqtts: Option<SocketAddr>,
    /// HTTP listen address (overrides server.http).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Metrics (`/metrics`) listen address (overrides server.metrics).
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// PostgreSQL-wire listen address (overrides server.postgres).
    #[arg(long)]
    postgres: Option<SocketAddr>,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Csv,
    Json,
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// When a provisioned change takes effect: `what` the server does then.
fn when(queued: bool, what: &str) -> String {
    if queued {
        format!(
            "the running server {what} once reloaded (`systemctl reload tellijn` or `kill -HUP PID`), which also records the audit line waiting in its inbox."
        )
    } else {
        format!("the server {what} from its next start, or its next reload if it runs.")
    }
}

/// SIGHUP, as a stream of `()` (never on other platforms).
fn reload_signal() -> Result<tokio::sync::mpsc::Receiver<()>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                // Several SIGHUPs during one reload make one more reload, not a queue.
                let _ = tx.try_send(());
            }
        });
    }
    #[cfg(not(unix))]
    std::mem::forget(tx);
    Ok(rx)
}

fn load_campus(path: &std::path::Path) -> Result<Campus> {
    Campus::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Demo {
            duration,
            speed,
            sensors,
            start,
            data,
            no_cameras,
            ports,
        } => {
            anyhow::ensure!(
                speed.is_finite() && speed > 0.0,
                "--speed must be a positive number (found {speed})"
            );
            let opts = DemoOptions {
                sensors,
                start,
                speed,
                duration,
                data_dir: data,
                mqtt: ports.mqtt,
                http: ports.http,
                metrics: ports.metrics,
                postgres: ports.postgres,
                cameras: !no_cameras,
            };
            demo::run(opts, shutdown_signal()).await?;
        }
        Command::Serve {
            config,
            data,
            ports,
        } => {
            let campus = load_campus(&config)?;
            // Blocking, on every core; a restart verifies only new or changed secrets.
            let data_dir = data
                .clone()
                .unwrap_or_else(|| campus.server.data_dir.clone());
            let demo = tellijn::secrets::demo_credentials(&campus, &data_dir)?;
            anyhow::ensure!(
                demo.is_empty(),
                "{}: {} use the demo password; give each its own secret (`tellijn hash-secret`) before serving",
                config.display(),
                demo.join(", ")
            );
            // Listening for SIGTERM/SIGINT from before the start: one arriving while the
            // server starts then stops it cleanly instead of killing the process.
            let mut shutdown = tokio::spawn(shutdown_signal());
            // SIGHUP reloads (`systemctl reload tellijn`); listened for from before the start
            // too, since its default would end the process.
            let mut hangup = reload_signal()?;
            let data_dir_in_force = data_dir.clone();
            let mut server = Server::start(ServerOptions {
                campus: Arc::new(campus),
                mqtt: ports.mqtt,
                mqtts: ports.mqtts,
                http: ports.http,
                metrics: ports.metrics,
                postgres: ports.postgres,
                data_dir: data,
                clock: Clock::system(),
                source: config.display().to_string(),
            })
            .await?;
            let tls = server
                .mqtts_addr()
                .map(|a| format!(", MQTT over TLS mqtts://{a}"))
                .unwrap_or_default();
            println!(
                "Tellijn serving: MQTT mqtt://{}{tls}, HTTP http://{}/, metrics http://{}/metrics, PostgreSQL {}",
                server.mqtt_addr(),
                server.http_addr(),
                server.metrics_addr(),
                server.postgres_addr()
            );
            loop {
                tokio::select! {
                    _ = &mut shutdown => break,
                    Some(()) = hangup.recv() => {
                        tracing::info!("SIGHUP: reading {} again.", config.display());
                        match tellijn::server::reload_file(&mut server, &config, &data_dir_in_force).await {
                            Ok(r) => println!(
                                "Reloaded {}: config sha256 {}{}.",
                                config.display(),
                                r.config_sha256,
                                if r.changed {
                                    format!(", {} MQTT clients reconnecting under the new rules", r.disconnected)
                                } else {
                                    " (unchanged)".to_owned()
                                }
                            ),
                            Err(e) => eprintln!("Refused to reload {}: {e}", config.display()),
                        }
                    }
                }
            }
            let s = server.stop().await?;
            println!("Stopped after storing {} count messages.", s.accepted);
        }
        Command::Sql {
            data,
            config,
            format,
            sql,
        } => {
            let campus = config.as_deref().map(load_campus).transpose()?;
            let data = data
                .or_else(|| campus.as_ref().map(|c| c.server.data_dir.clone()))
                .unwrap_or_else(|| PathBuf::from("./data"));
            let history = History::open(&data, campus.as_ref()).await?;
            let format = match format {
                OutputFormat::Table => Format::Table,
                OutputFormat::Csv => Format::Csv,
                OutputFormat::Json => Format::Json,
            };
            let out = tellijn::progress::with_progress(history.query(&sql, format)).await?;
            println!("{}", out.trim_end());
        }
        Command::CheckConfig { config } => match Campus::load(&config) {
            Ok(c) => println!(
                "{}: OK ({} buildings, {} rooms, {} sensors, {} users).",
                config.display(),
                c.buildings.len(),
                c.rooms.len(),
                c.sensors.len(),
                c.users.len()
            ),
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!("{} error(s).", errors.0.len());
                return Ok(ExitCode::FAILURE);
            }
        },
        Command::Transparency { config, data } => {
            let campus = load_campus(&config)?;
            let data = data.unwrap_or_else(|| campus.server.data_dir.clone());
            // The accuracy section needs the history; without one the rest still prints.
            let accuracy = match History::open(&data, Some(&campus)).await {
                Ok(h) => tellijn::headcounts::accuracy(&campus, &h).await.ok(),
                Err(_) => None,
            };
            print!(
                "{}",
                tellijn::transparency::report_with(
                    &campus,
                    &data,
                    chrono::Utc::now(),
                    accuracy.as_ref()
                )
            );
        }
        Command::Audit {
            command: AuditCommand::Verify { data },
        } => match tellijn_config::audit::verify(&data) {
            Ok(r) => println!(
                "OK: the audit log in {} is intact ({} lines in {} files); latest hash {}",
                data.join("audit").display(),
                r.lines,
                r.files,
                r.head
            ),
            Err(e) => {
                eprintln!("BROKEN: {e}");
                return Ok(ExitCode::FAILURE);
            }
        },
        Command::Report {
            command:
                ReportCommand::Rooms {
                    config,
                    data,
                    from,
                    to,
                    format,
                    out,
                },
        } => {
            let campus = load_campus(&config)?;
            let opts = tellijn::report::RoomsOptions {
                data,
                from,
                to,
                format,
                out,
            };
            match tellijn::report::rooms(&campus, opts).await? {
                tellijn::report::Output::Stdout(text) => print!("{text}"),
                tellijn::report::Output::Files(files) => {
                    for f in files {
                        println!("wrote {}", f.display());
                    }
                }
            }
        }
        Command::Headcounts {
            command:
                HeadcountsCommand::Import {
                    config,
                    data,
                    recorded_by,
                    file,
                },
        } => {
            let campus = load_campus(&config)?;
            anyhow::ensure!(
                campus
                    .users
                    .iter()
                    .any(|u| u.name == recorded_by && u.records_headcounts()),
                "--recorded-by {recorded_by:?} is not a steward nor a [[users]] entry with headcounts = true in {}",
                config.display()
            );
            let data = data.unwrap_or_else(|| campus.server.data_dir.clone());
            let csv =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let history = History::open(&data, Some(&campus)).await?;
            let audit = tellijn_config::AuditLog::open(&data)?;
            let target = tellijn::headcounts::Target {
                campus: &campus,
                history: &history,
                audit: &audit,
                data_dir: &data,
            };
            let imported =
                tellijn::headcounts::import(&target, &csv, &recorded_by, "cli", chrono::Utc::now())
                    .await
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            audit.sync()?;
            println!(
                "Imported {} head counts into {}.",
                imported.rows.len(),
                data.join("headcounts").display()
            );
        }
        Command::Sensor { command } => match command {
            SensorCommand::Add {
                id,
                config,
                data,
                lines,
                zones,
                broker,
                out,
            } => {
                let sensor = tellijn::provision::NewSensor {
                    id: id.clone(),
                    lines,
                    zones,
                    broker,
                };
                let p = tellijn::provision::add(&config, data.as_deref(), &sensor, &out)?;
                println!(
                    "Added sensor {id} to {}. Copy {} and {} to the camera computer; {}",
                    p.config.display(),
                    p.agent.as_deref().unwrap_or(&out).display(),
                    p.secret.display(),
                    when(p.queued, "accepts it")
                );
            }
            SensorCommand::Rotate {
                id,
                config,
                data,
                out,
            } => {
                let p = tellijn::provision::rotate(&config, data.as_deref(), &id, &out)?;
                println!(
                    "Rotated the secret of {id} in {}. Replace the camera's secret file with {}; {}",
                    p.config.display(),
                    p.secret.display(),
                    when(p.queued, "accepts only the new one")
                );
            }
        },
        Command::HashSecret => {
            let mut secret = String::new();
            std::io::stdin()
                .read_to_string(&mut secret)
                .context("cannot read the secret from stdin")?;
            let secret = secret.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(
                !secret.is_empty(),
                "no secret on stdin; pipe it in, e.g. `tellijn hash-secret < secret`"
            );
            println!("{}", tellijn::secrets::hash(secret)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// glibc's malloc raises its mmap threshold to the size of each large block freed, so after the
/// first login the argon2id blocks of every further one (4–19 MiB each) come from the heap and
/// stay in the process when freed: a connect storm of 370 sensors left ~40 MB resident. A
/// fixed threshold keeps them mapped and gives them back to the system when freed.
fn release_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> ExitCode {
    release_large_blocks_to_the_system();
    // `tellijn demo` runs its cameras' counter and scene generator from this binary, under
    // these names, when the standalone binaries are not built (src/cameras.rs).
    match tellijn::cameras::invoked_as() {
        Some(tellijn::cameras::Tool::Counter) => {
            return tellijn_counter::app::main(<tellijn_counter::app::Args as Parser>::parse());
        }
        Some(tellijn::cameras::Tool::Scene) => return tellijn_scene::cli::main(),
        None => {}
    }
    let cli = Cli::parse();
    // The demo's 370 in-process agents would print a line each as they connect: their info
    // lines are hidden (RUST_LOG=info shows them), the demo prints one summary line instead.
    tellijn_agent::logging::init(
        cli.log_format,
        "info,tellijn_agent=warn,rmqtt=warn,rmqtt_net=warn,rmqtt_codec=warn",
    );
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
