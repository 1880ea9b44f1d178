//! The command line: `serve`, `migrate`, `admin`, `seed`. Exit codes: 0 success,
//! 1 runtime failure, 2 bad configuration or usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sea_orm_migration::MigratorTrait;

use crate::app::{self, App};
use crate::config::{Config, Overrides};
use crate::{demo, logging};

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
    /// Print the OpenAPI document (the same as GET /api/openapi.json), for generating clients.
    Openapi,
    /// Create data.
    Seed {
        /// A demo hospital with staff, patients, devices and assignments; prints the logins.
        #[arg(long, required = true)]
        demo: bool,
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

    if matches!(cli.command, Command::Openapi) {
        println!("{}", nc_api::openapi_json());
        return ExitCode::SUCCESS;
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
            | app::StartError::Bind { .. } => Failure::Config(e.to_string()),
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
            let outcome = demo::bootstrap_hospital(&db, &hospital_name, &hospital_code, &email, &name, &password)
                .await
                .map_err(|e| match e {
                    demo::SeedError::Invalid(m) => Failure::Config(m),
                    other => Failure::Runtime(other.to_string()),
                })?;
            println!("hospital {} ({}) created: id {}", hospital_name, hospital_code, outcome.hospital_id);
            println!("admin {email} created: id {}", outcome.admin_id);
            if generated {
                println!("generated admin password (shown once): {password}");
            }
            Ok(())
        }
        Command::Openapi => Ok(()),
        Command::Seed { demo: _ } => {
            let db = app::connect(&config).await?;
            let summary = demo::seed_demo(&db).await.map_err(|e| Failure::Runtime(e.to_string()))?;
            print!("{summary}");
            Ok(())
        }
    }
}
