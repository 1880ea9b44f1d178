//! E-mail through a real SMTP server (aiosmtpd): a patient registers and verifies with the
//! code that arrived by mail, a password reset works end to end, and an SMTP server that is
//! down when the message is queued receives it once it is up (the outbox retries).

use std::time::Duration;

use nephrocare::bootstrap::bootstrap_hospital;
use nephrocare::config::Secret;
use serde_json::{json, Value};

use crate::support::{eventually, free_port, SmtpServer, TestApp, LONG_WAIT};

const PASSWORD: &str = "Kidney-care-2026";

fn code_in(mail: &Value) -> String {
    let body = mail["body"].as_str().unwrap_or_default();
    body.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .unwrap_or_else(|| panic!("no six-digit code in {body:?}"))
        .to_owned()
}

#[tokio::test]
async fn codes_arrive_by_mail_and_an_smtp_server_that_was_down_gets_them_later() {
    let port = free_port();
    let app = TestApp::spawn_with(|c| {
        c.email.smtp_url = Some(Secret::new(format!("smtp://127.0.0.1:{port}")));
        c.email.from = "Nephrocare Unit <unit@nephro.example.org>".into();
    })
    .await;
    bootstrap_hospital(&app.db.db, "Mail Hospital", "mail-h", "ada@mail.example.org", "Ada", "Dialysis-unit-2026")
        .await
        .expect("hospital");
    let c = &app.client;
    let email = "pat.mail@example.org";
    // The SMTP server is down: the code waits in the outbox, retried.
    let r = c
        .post(
            "/api/auth/register",
            json!({ "email": email, "password": PASSWORD, "name": "Pat Mail", "hospitalCode": "mail-h" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    eventually("a failed attempt", LONG_WAIT, || {
        let db = &app.db;
        async move {
            let (attempts, error): (i32, Option<String>) =
                sqlx::query_as("SELECT attempts, last_error FROM outbox WHERE destination = $1")
                    .bind(email)
                    .fetch_one(&mut db.sql().await)
                    .await
                    .unwrap();
            (attempts >= 1 && error.is_some()).then_some(())
        }
    })
    .await;
    let metrics = c.get("/metrics").await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("nephrocare_outbox_deliveries_total{channel=\"email\",outcome=\"failed\"}")
                && !l.ends_with(" 0")),
        "{metrics}"
    );

    // Up now: the retry delivers it, once.
    let mut smtp = SmtpServer::start(port).await;
    let mail = smtp.next(Duration::from_secs(30)).await;
    assert_eq!(mail["to"], json!([email]), "{mail}");
    assert_eq!(mail["from"], "unit@nephro.example.org");
    assert_eq!(mail["subject"], "Verify your Nephrocare account");
    let code = code_in(&mail);
    let r = c.post("/api/auth/verify-otp", json!({ "email": email, "code": code })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut sql = app.db.sql().await;
    let sent: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT sent_at FROM outbound_messages WHERE recipient = $1")
            .bind(email)
            .fetch_one(&mut sql)
            .await
            .unwrap();
    assert!(sent.is_some(), "the account message is marked sent");

    // A password reset, end to end by mail.
    let r = c.post("/api/auth/reset-password", json!({ "email": email })).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let mail = smtp.next(Duration::from_secs(10)).await;
    let r = c
        .post(
            "/api/auth/reset-password/confirm",
            json!({ "email": email, "code": code_in(&mail), "newPassword": "Fresh-Filter-77!" }),
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "{} {}", r.status, r.text);
    let r = c.post("/api/auth/login", json!({ "email": email, "password": "Fresh-Filter-77!" })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Nothing was sent twice.
    assert!(smtp.mail_is_empty(), "no duplicate e-mail");
    app.stop().await;
}
