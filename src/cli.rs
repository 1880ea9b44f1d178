//! The command line: `serve`, `migrate`, `admin`, `seed`. Exit codes: 0 success,
//! 1 runtime failure, 2 bad configuration or usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sea_orm_migration::MigratorTrait;

use crate::app::{self, App};
use crate::config::{Config, Overrides};
use crate::tools::demo;
use crate::{bootstrap, logging};

#[derive(Parser, Debug)]
#[command(
    name = "nephrocare",
    version,
    about = "Renal-care monitoring platform: MQTT broker, TimescaleDB ingest and REST API"
)]
struct Cli {
    /// TOML configuration file (also NEPHROCARE_CONFIG). See README.md, Configuration.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// PostgreSQL URL (overrides DATABASE_URL).
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Log format: text or json (overrides NEPHROCARE_LOG_FORMAT).
    #[arg(long, global = true)]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the broker, ingest and API in one process until SIGINT/SIGTERM.
    Serve {
        /// HTTP listen address (overrides NEPHROCARE_HTTP_ADDR).
        #[arg(long)]
        http_addr: Option<String>,
        /// MQTT/TCP listen address (overrides NEPHROCARE_MQTT_ADDR).
        #[arg(long)]
        mqtt_addr: Option<String>,
        /// MQTT/WebSocket listen address (overrides NEPHROCARE_MQTT_WS_ADDR).
        #[arg(long)]
        mqtt_ws_addr: Option<String>,
        /// Apply pending database migrations before serving.
        #[arg(long)]
        migrate: bool,
    },
    /// Manage the database schema.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Administration from the command line.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Act as a fleet of dialysis machines over MQTT (for the demo and load tests).
    Simulate {
        /// Number of machines (the demo hospital's, extended with SIM-nnnn machines as needed).
        #[arg(long, default_value_t = 4)]
        devices: usize,
        /// Readings per second per machine.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Stop after this long, e.g. 90s, 10m, 2h (default: until Ctrl-C); 0s only
        /// provisions the machines.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<std::time::Duration>,
        /// Treatment time compression: 60 plays a 4 h session in 4 min.
        #[arg(long, default_value_t = 60.0)]
        speed: f64,
        /// Abnormal episodes per machine per treatment hour (hypotension, high venous
        /// pressure, conductivity fault, disconnect).
        #[arg(long, default_value_t = 0.5)]
        episodes_per_hour: f64,
        /// No abrupt disconnects.
        #[arg(long)]
        no_disconnects: bool,
        /// The hospital whose machines are simulated.
        #[arg(long, default_value = "demo")]
        hospital: String,
        /// MQTT address of the service (default: NEPHROCARE_MQTT_ADDR); several nodes'
        /// addresses separated by commas: each machine moves to the next one when its
        /// connection breaks.
        #[arg(long)]
        mqtt: Option<String>,
        /// Seconds between progress lines (0: only the final summary).
        #[arg(long, default_value_t = 5)]
        progress_every: u64,
        /// Instead of running, write a labelled corpus of treatments into this directory
        /// (readings and ground truth, for `bench alarms`) and exit.
        #[arg(long)]
        corpus: Option<std::path::PathBuf>,
        /// Treatments in the corpus.
        #[arg(long, default_value_t = 200)]
        treatments: usize,
        /// The corpus' seed (the same seed writes the same corpus).
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Read commands from standard input, one a line: `episode SERIAL
        /// hypotension|high-venous|conductivity|disconnect [MINUTES]` starts that episode on
        /// that machine (MINUTES of treatment time, default 8).
        #[arg(long)]
        commands: bool,
        /// Days of past treatments (at most 29) each machine sends first, every other day,
        /// unless it has treatments from before yesterday: trends and summaries to show.
        #[arg(long, default_value_t = 0)]
        history: u32,
    },
    /// Benchmarks (results are recorded in bench/README.md; see bench/run.sh).
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
    /// Print the OpenAPI document (the same as GET /api/openapi.json), for generating clients.
    Openapi,
    /// Print the AsyncAPI document of the MQTT contract (the same as GET /api/asyncapi.json).
    Asyncapi,
    /// Create data.
    Seed {
        /// A demo hospital with staff, patients, devices and assignments; prints the logins.
        #[arg(long, required = true)]
        demo: bool,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Raw COPY rate versus the ingest path's batched inserts (on DATABASE_URL: use a scratch database).
    Copy {
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        #[arg(long, default_value_t = 3)]
        connections: usize,
    },
    /// Device -> app fan-out through the edge versus bare embedded rumqttd (in-process).
    Broker {
        #[arg(long, default_value_t = 300)]
        devices: usize,
        /// Messages per second offered, in total.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
    },
    /// Chat under load: rooms with a patient on MQTT and a doctor on the WebSocket (in-process).
    Chat {
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        /// Messages per second offered, in total.
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
    },
    /// Durable ingest against a running service: a lean fleet of the hospital's machines
    /// (provisioned as `simulate` does), QoS 1 readings, publish -> PUBACK latency, and the
    /// service's CPU per acknowledged reading with --server-pid.
    Ingest {
        #[arg(long)]
        mqtt: String,
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// Readings per second per machine.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
        /// Writer tasks driving the connections.
        #[arg(long, default_value_t = 4)]
        tasks: usize,
        #[arg(long, default_value = "demo")]
        hospital: String,
        /// The service's process id, to report its CPU over the measured window.
        #[arg(long)]
        server_pid: Option<u32>,
        /// The machines speak MQTT 5 (default: 3.1.1).
        #[arg(long)]
        mqtt5: bool,
    },
    /// A device gateway (IHE PCD-01: HL7 v2 ORU^R01 over MLLP, 15 OBX a message) against a
    /// running service's listener (NEPHROCARE_HL7_LISTEN_ADDR): a new hospital, its machines
    /// and the gateway are created on DATABASE_URL; ACK latency, messages and OBX per second,
    /// and the rows stored against the messages acknowledged.
    Hl7 {
        /// The service's MLLP listener for device gateways (host:port).
        #[arg(long)]
        hl7: String,
        #[arg(long, default_value_t = 100)]
        machines: usize,
        /// Messages per machine per second; 0: each connection sends its next message as
        /// soon as the last one's ACK is back (saturation).
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
        /// The gateway's MLLP connections (1 to 64).
        #[arg(long, default_value_t = 1)]
        connections: usize,
    },
    /// Many authenticated MQTT clients against a running service, each its own identity
    /// (machines and people), then a reconnect storm of machines.
    Connections {
        #[arg(long)]
        mqtt: String,
        /// The hospital (code) whose machines connect; people are created in it.
        #[arg(long, default_value = "demo")]
        hospital: String,
        #[arg(long, default_value_t = 8000)]
        machines: usize,
        #[arg(long, default_value_t = 2000)]
        people: usize,
        /// Machines that drop and reconnect at once.
        #[arg(long, default_value_t = 5000)]
        storm: usize,
        /// The clients speak MQTT 5 (default: 3.1.1).
        #[arg(long)]
        mqtt5: bool,
    },
    /// The labelled corpus replayed through the service (in-process): sensitivity, false
    /// alarms, alarms per treatment hour against naive thresholds, raise latency.
    Alarms {
        #[arg(long, default_value_t = 200)]
        treatments: usize,
        /// Readings per second each machine sends (the replay's compression).
        #[arg(long, default_value_t = 25.0)]
        rate: f64,
        /// The corpus directory (written there if absent).
        #[arg(long, default_value = "target/alarm-corpus")]
        corpus: std::path::PathBuf,
        #[arg(long, default_value_t = 2026)]
        seed: u64,
    },
    /// Trends and history latency on one patient's 1 Hz data (on DATABASE_URL: use a scratch database).
    Queries {
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Time the queries on data a previous run loaded and kept (`QUERY_KEEP_DB=1`): no
        /// load, no batch measurement.
        #[arg(long)]
        loaded: bool,
        /// Load the data (and measure the rollups' batch cost) without timing the queries:
        /// for `bench fhir-setup`.
        #[arg(long)]
        load_only: bool,
    },
    /// Prepares data loaded by `bench queries` for the FHIR benchmark: the patient's record,
    /// its machine, and a doctor of both who logs in with this e-mail and password.
    FhirSetup {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
    },
}

#[derive(Subcommand, Debug)]
enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Roll back the last N migrations (default 1).
    Down {
        #[arg(short = 'n', long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

#[derive(Subcommand, Debug)]
enum AdminAction {
    /// Create a hospital and its first admin account (active and verified).
    Bootstrap {
        /// The hospital's name, e.g. "St Mary's Renal Unit".
        #[arg(long)]
        hospital_name: String,
        /// A short unique code: lowercase letters, digits and dashes, e.g. "st-marys".
        #[arg(long)]
        hospital_code: String,
        /// The admin's e-mail (their login).
        #[arg(long)]
        email: String,
        /// The admin's name.
        #[arg(long)]
        name: String,
        /// The admin's password; read from NEPHROCARE_ADMIN_PASSWORD when not given, and
        /// generated (and printed once) when neither is set.
        #[arg(long, env = "NEPHROCARE_ADMIN_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
}

/// `90s`, `10m`, `2h 30m` (humantime's units) or a number of seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    match s.parse::<u64>() {
        Ok(secs) => Ok(std::time::Duration::from_secs(secs)),
        Err(_) => {
            humantime::parse_duration(s).map_err(|e| format!("'{s}' is not a duration such as 90s, 10m or 2h: {e}"))
        }
    }
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = match &cli.command {
        Command::Serve { http_addr, mqtt_addr, mqtt_ws_addr, .. } => Overrides {
            database_url: cli.database_url.clone(),
            http_addr: http_addr.clone(),
            mqtt_addr: mqtt_addr.clone(),
            mqtt_ws_addr: mqtt_ws_addr.clone(),
            log_format: cli.log_format.clone(),
        },
        _ => Overrides {
            database_url: cli.database_url.clone(),
            log_format: cli.log_format.clone(),
            ..Default::default()
        },
    };
    let config = match Config::load(cli.config.as_deref(), &|k| std::env::var(k).ok(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nephrocare: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(&config.log);

    match cli.command {
        Command::Openapi => {
            println!("{}", nc_api::openapi_json());
            return ExitCode::SUCCESS;
        }
        Command::Asyncapi => {
            println!("{}", nc_api::asyncapi_json());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nephrocare: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli.command, config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nephrocare: {e}");
            match e {
                Failure::Config(_) => ExitCode::from(2),
                Failure::Runtime(_) => ExitCode::from(1),
            }
        }
    }
}

/// A failed command: bad configuration/usage (exit 2) or a runtime failure (exit 1).
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Runtime(String),
}

impl From<app::StartError> for Failure {
    fn from(e: app::StartError) -> Self {
        match e {
            app::StartError::Database { .. }
            | app::StartError::MigrationsPending { .. }
            | app::StartError::Bind { .. }
            | app::StartError::Tls(_) => Failure::Config(e.to_string()),
            app::StartError::Other(_) => Failure::Runtime(e.to_string()),
        }
    }
}

async fn run(command: Command, config: Config) -> Result<(), Failure> {
    match command {
        Command::Serve { migrate, .. } => {
            let running = App::new(config).with_migrate(migrate).start().await?;
            let stopper = running.shutdown_handle();
            tokio::spawn(async move {
                app::shutdown_signal().await;
                stopper.cancel();
            });
            running.wait().await?;
            Ok(())
        }
        Command::Migrate { action } => {
            let db = app::connect(&config).await?;
            let runtime = |e: sea_orm::DbErr| Failure::Runtime(format!("migration failed: {e}"));
            match action {
                MigrateAction::Up => {
                    nc_migration::Migrator::up(&db, None).await.map_err(runtime)?;
                    println!("database schema is up to date");
                }
                MigrateAction::Down { steps } => {
                    nc_migration::Migrator::down(&db, Some(steps)).await.map_err(runtime)?;
                    println!("rolled back {steps} migration(s)");
                }
                MigrateAction::Status => {
                    for m in nc_migration::Migrator::get_migration_with_status(&db).await.map_err(runtime)? {
                        println!("{:<10} {}", format!("{:?}", m.status()).to_lowercase(), m.name());
                    }
                }
            }
            Ok(())
        }
        Command::Admin { action: AdminAction::Bootstrap { hospital_name, hospital_code, email, name, password } } => {
            let db = app::connect(&config).await?;
            let generated = password.is_none();
            let password = password.unwrap_or_else(nc_access::secret::random_token);
            let outcome = bootstrap::bootstrap_hospital(&db, &hospital_name, &hospital_code, &email, &name, &password)
                .await
                .map_err(|e| match e {
                    bootstrap::SeedError::Invalid(m) => Failure::Config(m),
                    other => Failure::Runtime(other.to_string()),
                })?;
            println!("hospital {} ({}) created: id {}", hospital_name, hospital_code, outcome.hospital_id);
            println!("admin {email} created: id {}", outcome.admin_id);
            if generated {
                println!("generated admin password (shown once): {password}");
            }
            Ok(())
        }
        Command::Openapi | Command::Asyncapi => Ok(()),
        Command::Bench { which } => {
            let url = config.database.url.expose().to_owned();
            let report = match which {
                BenchCommand::Copy { rows, connections } => crate::tools::bench::copy(&url, rows, connections).await,
                BenchCommand::Broker { devices, rate, seconds } => {
                    crate::tools::bench::broker(config, devices, rate, seconds).await
                }
                BenchCommand::Connections { mqtt, hospital, machines, people, storm, mqtt5 } => {
                    let addr: std::net::SocketAddr =
                        mqtt.parse().map_err(|_| Failure::Config(format!("--mqtt '{mqtt}' is not host:port")))?;
                    if machines == 0 {
                        return Err(Failure::Config("--machines must be > 0".into()));
                    }
                    let bench = crate::tools::bench::connections::ConnectionsBench {
                        host: addr.ip().to_string(),
                        port: addr.port(),
                        hospital,
                        machines,
                        people,
                        storm,
                        mqtt5,
                    };
                    crate::tools::bench::connections::run(&config, bench).await
                }
                BenchCommand::Ingest { mqtt, devices, rate, seconds, tasks, hospital, server_pid, mqtt5 } => {
                    let addr: std::net::SocketAddr =
                        mqtt.parse().map_err(|_| Failure::Config(format!("--mqtt '{mqtt}' is not host:port")))?;
                    if devices == 0 || !(rate > 0.0 && rate <= 1000.0) || seconds <= 0.0 {
                        return Err(Failure::Config(
                            "--devices must be > 0, --rate in (0, 1000], --seconds > 0".into(),
                        ));
                    }
                    let db = app::connect(&config).await?;
                    let fleet =
                        crate::tools::simulate::provision(&db, &hospital, devices).await.map_err(Failure::Runtime)?;
                    let options = crate::tools::bench::ingest::IngestBench {
                        host: addr.ip().to_string(),
                        port: addr.port(),
                        rate,
                        seconds,
                        tasks,
                        server_pid,
                        mqtt5,
                    };
                    crate::tools::bench::ingest::run(fleet, options).await
                }
                BenchCommand::Hl7 { hl7, machines, rate, seconds, connections } => {
                    let addr: std::net::SocketAddr =
                        hl7.parse().map_err(|_| Failure::Config(format!("--hl7 '{hl7}' is not host:port")))?;
                    if machines == 0
                        || !(0.0..=100.0).contains(&rate)
                        || seconds <= 0.0
                        || !(1..=64).contains(&connections)
                    {
                        return Err(Failure::Config(
                            "--machines must be > 0, --rate in [0, 100], --seconds > 0, --connections in [1, 64]"
                                .into(),
                        ));
                    }
                    let bench = crate::tools::bench::hl7::Hl7Bench { addr, machines, rate, seconds, connections };
                    crate::tools::bench::hl7::run(&url, bench).await
                }
                BenchCommand::Queries { days, loaded, load_only } => {
                    crate::tools::bench::queries::queries(&url, days, loaded, load_only).await
                }
                BenchCommand::FhirSetup { email, password } => {
                    crate::tools::bench::fhir::setup(&url, &email, &password).await
                }
                BenchCommand::Chat { rooms, rate, seconds } => {
                    crate::tools::bench::chat::chat(config, rooms, rate, seconds).await
                }
                BenchCommand::Alarms { treatments, rate, corpus, seed } => {
                    if treatments == 0 || !(rate > 0.0 && rate <= 200.0) {
                        return Err(Failure::Config("--treatments must be > 0, --rate in (0, 200]".into()));
                    }
                    let options = crate::tools::bench::alarms::AlarmsBench { treatments, rate, corpus, seed };
                    crate::tools::bench::alarms::alarms(config, options).await
                }
            };
            println!("{}", report.map_err(Failure::Runtime)?);
            Ok(())
        }
        Command::Simulate {
            devices,
            rate,
            duration,
            speed,
            episodes_per_hour,
            no_disconnects,
            hospital,
            mqtt,
            progress_every,
            corpus,
            treatments,
            seed,
            commands,
            history,
        } => {
            if let Some(dir) = corpus {
                let truth = crate::tools::corpus::write(&dir, treatments, seed)
                    .map_err(|e| Failure::Runtime(format!("cannot write the corpus into {}: {e}", dir.display())))?;
                let episodes: usize = truth.treatments.iter().map(|t| t.episodes.len()).sum();
                let artefacts: usize = truth.treatments.iter().map(|t| t.artifacts.len()).sum();
                println!(
                    "simulate: corpus of {treatments} treatments ({episodes} true episodes, {artefacts} nuisance artefacts) in {}",
                    dir.display()
                );
                return Ok(());
            }
            if devices == 0 || !(rate > 0.0 && rate <= 1000.0) || speed < 1.0 {
                return Err(Failure::Config("--devices must be > 0, --rate in (0, 1000], --speed >= 1".into()));
            }
            let addrs: Vec<std::net::SocketAddr> = match mqtt {
                Some(m) => m
                    .split(',')
                    .map(|a| a.trim().parse().map_err(|_| Failure::Config(format!("--mqtt '{a}' is not host:port"))))
                    .collect::<Result<_, _>>()?,
                None => vec![config.mqtt.addr],
            };
            let addr = addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",");
            let db = app::connect(&config).await?;
            let fleet = crate::tools::simulate::provision(&db, &hospital, devices).await.map_err(Failure::Runtime)?;
            println!(
                "simulate: {} machines of hospital '{hospital}' -> mqtt://{addr}, {rate}/s each, speed x{speed}",
                fleet.len()
            );
            let stop = tokio_util::sync::CancellationToken::new();
            let ctrl_c = stop.clone();
            tokio::spawn(async move {
                app::shutdown_signal().await;
                ctrl_c.cancel();
            });
            let options = crate::tools::simulate::SimulateOptions {
                devices,
                rate,
                duration,
                speed,
                hospital_code: hospital,
                mqtt: addrs,
                // Per simulated minute.
                episode_rate: episodes_per_hour / 60.0,
                progress_every,
                disconnects: !no_disconnects,
                commands,
                history_days: history,
            };
            println!("{}", crate::tools::simulate::run(fleet, options, stop).await);
            Ok(())
        }
        Command::Seed { demo: _ } => {
            let db = app::connect(&config).await?;
            let summary = demo::seed_demo(&db).await.map_err(|e| Failure::Runtime(e.to_string()))?;
            print!("{summary}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_parse_and_huge_ones_are_refused_not_a_panic() {
        assert_eq!(super::parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(super::parse_duration("2h 30m").unwrap().as_secs(), 9000);
        assert!(super::parse_duration("99999999999999999999999h").is_err());
        assert!(super::parse_duration("1e300s").is_err());
        assert!(super::parse_duration("-5s").is_err());
    }
}
