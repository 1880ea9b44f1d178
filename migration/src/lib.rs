//! Database schema for the whole product, as sea-orm-migration migrations.
//!
//! Each migration is plain PostgreSQL DDL: CHECK constraints, exclusion constraints,
//! partial unique indexes and TimescaleDB hypertables are clearer as SQL than through a
//! schema builder, and they are exactly what runs in production. Every `up` has a `down`
//! that removes what it created (extensions are left installed: other databases of the
//! cluster may share them).
//!
//! Naming: `<table>_<columns>_idx` for indexes, `<table>_<what>_key` for unique ones,
//! `<table>_<rule>_check` / `_excl` for constraints, so an error names the rule it broke.

pub use sea_orm_migration::prelude::*;

/// The one migrator; `nephrocare migrate` and the test harness both run it.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_accounts::Migration),
            Box::new(m20261124_000002_access::Migration),
            Box::new(m20261124_000003_telemetry::Migration),
            Box::new(m20261124_000004_care::Migration),
            Box::new(m20261124_000005_full_edition::Migration),
            Box::new(m20261124_000006_access_events::Migration),
            Box::new(m20261201_000007_grants_follow_grantor::Migration),
            Box::new(m20261201_000008_chat::Migration),
            Box::new(m20261201_000009_bookings::Migration),
            Box::new(m20261201_000010_maintenance_and_reading_identity::Migration),
            Box::new(m20261201_000011_fine_rollups::Migration),
            Box::new(m20261201_000012_wide_hourly_rollups::Migration),
            Box::new(m20261203_000013_alarm_system::Migration),
            Box::new(m20261203_000020_fhir_export_jobs::Migration),
            Box::new(m20261203_000030_device_performance::Migration),
            Box::new(m20261203_000031_derived_backlog::Migration),
            Box::new(m20261203_000032_mqtt_kept_sessions::Migration),
            Box::new(m20261203_000033_ingest_write_batch::Migration),
            Box::new(m20261203_000034_derived_backlog_uncompressed::Migration),
            Box::new(m20261207_000035_ward_is_access::Migration),
            Box::new(m20261207_000036_alarm_reach_unknown::Migration),
            Box::new(m20261207_000037_outbox::Migration),
            Box::new(m20261207_000038_outbox_notify::Migration),
            Box::new(m20261207_000039_thresholds_notify::Migration),
            Box::new(m20261207_000040_mqtt_session_expiry::Migration),
            Box::new(m20261207_000041_hl7_gateways::Migration),
            Box::new(m20261207_000042_treatment_records::Migration),
            Box::new(m20261207_000043_fhir_subscriptions::Migration),
            Box::new(m20261207_000044_fhir_notify_guard::Migration),
        ]
    }
}

/// Runs a block of SQL statements (separated by `;` at line ends) in one call.
pub(crate) async fn exec(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager.get_connection().execute_unprepared(sql).await.map(|_| ())
}

/// Declares a migration whose `up` and `down` are SQL strings.
macro_rules! sql_migration {
    ($up:expr, $down:expr) => {
        pub struct Migration;

        impl sea_orm_migration::MigrationName for Migration {
            fn name(&self) -> &str {
                module_path!().rsplit("::").next().unwrap_or("unknown")
            }
        }

        #[async_trait::async_trait]
        impl sea_orm_migration::MigrationTrait for Migration {
            async fn up(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), sea_orm_migration::DbErr> {
                crate::exec(manager, $up).await
            }

            async fn down(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), sea_orm_migration::DbErr> {
                crate::exec(manager, $down).await
            }
        }
    };
}
pub(crate) use sql_migration;

/// A statement trigger that sends `NOTIFY {channel}` after `events` on `table`: delivered at
/// commit, once per transaction, for the nodes that keep something in step with the table.
fn notify_trigger(table: &str, channel: &str, events: &str) -> String {
    format!(
        "CREATE FUNCTION {table}_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{channel}', '');
    RETURN NULL;
END $$;

CREATE TRIGGER {table}_notify AFTER {events} ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION {table}_notify();"
    )
}

/// Removes what [`notify_trigger`] created.
fn drop_notify_trigger(table: &str) -> String {
    format!("DROP TRIGGER {table}_notify ON {table};\nDROP FUNCTION {table}_notify();")
}

mod m20261124_000001_accounts;
mod m20261124_000002_access;
mod m20261124_000003_telemetry;
mod m20261124_000004_care;
mod m20261124_000005_full_edition;
mod m20261124_000006_access_events;
mod m20261201_000007_grants_follow_grantor;
mod m20261201_000008_chat;
mod m20261201_000009_bookings;
mod m20261201_000010_maintenance_and_reading_identity;
mod m20261201_000011_fine_rollups;
mod m20261201_000012_wide_hourly_rollups;
mod m20261203_000013_alarm_system;
mod m20261203_000020_fhir_export_jobs;
mod m20261203_000030_device_performance;
mod m20261203_000031_derived_backlog;
mod m20261203_000032_mqtt_kept_sessions;
mod m20261203_000033_ingest_write_batch;
mod m20261203_000034_derived_backlog_uncompressed;
mod m20261207_000035_ward_is_access;
mod m20261207_000036_alarm_reach_unknown;
mod m20261207_000037_outbox;
mod m20261207_000038_outbox_notify;
mod m20261207_000039_thresholds_notify;
mod m20261207_000040_mqtt_session_expiry;
mod m20261207_000041_hl7_gateways;
mod m20261207_000042_treatment_records;
mod m20261207_000043_fhir_subscriptions;
mod m20261207_000044_fhir_notify_guard;

/// The SQL that builds the finer rollup tiers from raw readings (the migration's backfill),
/// for the benchmark that loads raw readings directly.
pub use m20261201_000011_fine_rollups::backfill as backfill_fine_rollups_sql;
