//! The command line as an operator uses it: bad settings, an unreachable database,
//! `migrate`, `admin bootstrap` and `seed --demo`.

use crate::support::{binary, TestDb};

fn run(cmd: &mut std::process::Command) -> (i32, String, String) {
    let out = cmd.output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_setting_stops_startup_with_one_clear_message() {
    let (code, _, err) = run(binary().arg("serve").env("NEPHROCARE_HTTP_ADDR", "localhost:eighty"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("NEPHROCARE_HTTP_ADDR") && err.contains("localhost:eighty") && err.contains("e.g."), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one message: {err}");

    let (code, _, err) = run(binary().arg("serve").env("NEPHROCARE_LOG_FORMAT", "xml"));
    assert_eq!(code, 2);
    assert!(err.contains("NEPHROCARE_LOG_FORMAT"), "{err}");
}

#[test]
fn an_unreachable_database_says_what_to_do_without_leaking_the_password() {
    let (code, _, err) = run(binary()
        .args(["serve", "--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--mqtt-ws-addr", "127.0.0.1:0"])
        .env("DATABASE_URL", "postgres://someone:hunter2secret@127.0.0.1:1/nowhere"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot connect to the database") && err.contains("DATABASE_URL"), "{err}");
    assert!(err.contains("provision-db.sh"), "{err}");
    assert!(!err.contains("hunter2secret"), "{err}");
}

#[tokio::test]
async fn migrate_status_bootstrap_and_demo_seed() {
    let db = TestDb::empty().await;
    let url = db.url.clone();
    let (code, out, err) = run(binary().args(["migrate", "status"]).env("DATABASE_URL", &url));
    assert_eq!(code, 0, "{err}");
    let migrations = <nc_migration::Migrator as sea_orm_migration::MigratorTrait>::migrations().len();
    assert!(out.lines().all(|l| l.starts_with("pending")) && out.lines().count() == migrations, "{out}");
    let (code, out, err) = run(binary().args(["migrate", "up"]).env("DATABASE_URL", &url));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("up to date"));
    let (_, out, _) = run(binary().args(["migrate", "status"]).env("DATABASE_URL", &url));
    assert!(out.lines().all(|l| l.starts_with("applied")), "{out}");

    let bootstrap = |code: &str, password: &str| {
        run(binary()
            .args(["admin", "bootstrap", "--hospital-name", "St Mary's", "--hospital-code", code])
            .args(["--email", "boss@stmarys.test", "--name", "The Boss"])
            .env("NEPHROCARE_ADMIN_PASSWORD", password)
            .env("DATABASE_URL", &url))
    };
    let (code, _, err) = bootstrap("st-marys", "weak");
    assert_eq!(code, 2);
    assert!(err.contains("at least 10 characters"), "{err}");
    let (code, out, err) = bootstrap("st-marys", "Very-strong-42");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("admin boss@stmarys.test created"), "{out}");
    let (code, _, err) = bootstrap("st-marys", "Very-strong-42");
    assert_eq!(code, 2);
    assert!(err.contains("already exists"), "{err}");

    let (code, out, err) = run(binary().args(["seed", "--demo"]).env("DATABASE_URL", &url));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("demo data created") && out.contains("dr.okafor@demo.nephrocare.test"), "{out}");
    assert!(out.contains("DM-001"), "{out}");
    let (code, out, _) = run(binary().args(["seed", "--demo"]).env("DATABASE_URL", &url));
    assert_eq!(code, 0);
    assert!(out.contains("already present"), "seeding twice is harmless: {out}");

    let mut c = db.sql().await;
    let counts: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM devices),
                (SELECT count(*) FROM patients), (SELECT count(*) FROM device_assignments)",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    // 1 bootstrap admin + demo: admin, 2 doctors, 2 technicians, 4 patients + riverside admin.
    assert_eq!(counts, (11, 4, 4, 8));
    // Two demo conversations, three messages.
    let chat: (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM chat_rooms), (SELECT count(*) FROM chat_messages)")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(chat, (2, 3));
    // Opening hours and each patient's recurring series: four weeks, three sessions a week.
    let bookings: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM booking_settings), (SELECT count(*) FROM booking_series),
                (SELECT count(*) FROM session_bookings WHERE status = 'scheduled')",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(bookings, (1, 4, 48));
}
