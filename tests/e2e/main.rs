//! End-to-end tests of the whole system: a real PostgreSQL + TimescaleDB (a fresh database
//! per test, built by the real migrator), the service started in-process on port 0, or the
//! real binary, and real clients.
//!
//! The database server comes from `scripts/provision-db.sh` (which `scripts/test.sh` runs);
//! `NEPHROCARE_TEST_DATABASE_URL` (or `DATABASE_URL`) points at a role that may create
//! databases.

mod support;

mod acm;
mod alarm_reach;
mod alarms;
mod auth;
mod authz;
mod batching;
mod bookings;
mod bookings_authz;
mod chat;
mod cli;
mod cluster;
mod compose;
mod contract;
mod dashboard;
mod deliveries;
mod derived;
mod email;
mod failover;
mod fhir;
mod gateways;
mod limits;
mod list_filters;
mod maintenance;
mod metrics;
mod mqtt;
mod mqtt5;
mod openapi;
mod patients;
mod performance;
mod readings;
mod records;
mod schema;
mod scopes;
mod serve;
mod sessions;
mod subscriptions;
mod telemetry;
mod telemetry_queries;
mod tls;
