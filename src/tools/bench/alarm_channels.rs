//! The alarms benchmark's channels outside MQTT: an in-process alert manager (nc_hl7's MLLP
//! listener answering `AA`) that notes when it first hears of each alarm and then tells the
//! service, for a sample of open alarms, that a mapped pager *accepted* them (PCD-05): the
//! round trip is the time from that status to the alarm acknowledged in Nephrocare (its
//! `AA` follows the acknowledgement's commit). And the outbox's own figure per channel:
//! queued (in the alarm's transaction) to accepted by the manager (`AA`) or the SMTP server
//! (`250`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::PgPool;
use uuid::Uuid;

/// When the alert manager first heard of each alarm (its first PCD-04), by alert id.
pub(super) type Reports = Arc<Mutex<Vec<(Uuid, Instant)>>>;

/// An alert manager in the process (nc_hl7's MLLP listener answering `AA`), set as the
/// hospital's: it notes when each alarm's first report arrives.
pub(super) async fn alert_manager(
    hospital: Uuid,
    pool: &PgPool,
) -> Result<(tokio::task::JoinHandle<()>, Reports), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    sqlx::query("INSERT INTO alert_managers (hospital_id, address) VALUES ($1, $2)")
        .bind(hospital)
        .bind(addr.to_string())
        .execute(pool)
        .await
        .map_err(|e| e.to_string())?;
    let reports: Reports = Arc::default();
    let seen = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let (r, stop) = (reports.clone(), tokio_util::sync::CancellationToken::new());
    let handle = move |message: nc_hl7::message::Message, _| {
        let at = Instant::now();
        let id = message.get("OBR", 0, 3, 1).and_then(|a| Uuid::try_parse(a).ok());
        if let Some(id) = id {
            if seen.lock().expect("seen").insert(id) {
                r.lock().expect("reports").push((id, at));
            }
        }
        let now = Utc::now().fixed_offset();
        let control = Uuid::now_v7().simple().to_string();
        std::future::ready(nc_hl7::ack::acknowledge(&message, nc_hl7::ack::AckCode::Accepted, &[], &control, &now))
    };
    let task = tokio::spawn(async move {
        let _ = nc_hl7::server::serve(listener, nc_hl7::message::Limits::default(), 16, handle, stop).await;
    });
    Ok((task, reports))
}

/// The pager id the bench's alert manager reports acceptances from (mapped to the doctor).
const PAGER: &str = "BENCH-PAGER-1";

/// Sends a PCD-05 "accepted by the doctor's pager" for up to `n` open, unacknowledged
/// alarms, one at a time over one MLLP connection to `status_addr`; returns each round trip
/// (status sent → `AA`, which follows the acknowledgement's commit), in µs, and how many were
/// not accepted.
pub(super) async fn accepted_on_pagers(
    pool: &PgPool,
    status_addr: std::net::SocketAddr,
    hospital: Uuid,
    doctor: Uuid,
    n: i64,
) -> Result<(Vec<u64>, usize), String> {
    let e = |e: sqlx::Error| e.to_string();
    sqlx::query("INSERT INTO alert_manager_recipients (hospital_id, recipient_id, user_id) VALUES ($1, $2, $3)")
        .bind(hospital)
        .bind(PAGER)
        .bind(doctor)
        .execute(pool)
        .await
        .map_err(e)?;
    let open: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM alerts WHERE hospital_id = $1 AND state <> 'cleared' AND acknowledged_at IS NULL
          ORDER BY raised_at DESC LIMIT $2",
    )
    .bind(hospital)
    .bind(n)
    .fetch_all(pool)
    .await
    .map_err(e)?;
    let stream = tokio::net::TcpStream::connect(status_addr).await.map_err(|e| e.to_string())?;
    let limits = nc_hl7::message::Limits::default();
    let mut conn = nc_hl7::mllp::MllpConnection::new(stream, limits.clone());
    let (mut times, mut refused) = (Vec::new(), 0);
    for id in open {
        let now = Utc::now().format("%Y%m%d%H%M%S%z");
        let control = Uuid::now_v7().simple().to_string();
        let text = [
            format!(
                "MSH|^~\\&|BENCH_AM||NEPHROCARE||{now}||ORA^R41^ORA_R41|{control}|P|2.6|||AL|NE|||||IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.5.1^ISO"
            ),
            "MSA|AA|".to_owned(),
            format!("OBR|1||{id}|196616^MDC_EVT_ALARM^MDC{}^{id}", "|".repeat(25)),
            format!("PRT|1|AD|RESPONSE^ACCEPTED^IHE_PCD_ACM|AAP^Alert Acknowledging Provider^HL70912|{PAGER}^Bench^Doctor|||||pager-1|{now}"),
        ]
        .join("\r");
        let message = nc_hl7::message::Message::parse(&text, &limits).map_err(|e| format!("{e:?}"))?;
        let sent = Instant::now();
        let reply = conn.send_and_await_ack(&message, Duration::from_secs(10)).await.map_err(|e| e.to_string())?;
        if reply.get("MSA", 0, 1, 1) == Some("AA") {
            times.push(sent.elapsed().as_micros() as u64);
        } else {
            refused += 1;
        }
    }
    Ok((times, refused))
}

/// Per channel: messages sent, and queued → accepted p50 and p99 in ms.
pub(super) async fn outbox_latency(pool: &PgPool) -> Result<Vec<(String, i64, f64, f64)>, String> {
    sqlx::query_as(
        "SELECT channel, count(*),
                coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at)), 0) * 1000,
                coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at)), 0) * 1000
           FROM outbox WHERE state = 'sent' GROUP BY channel ORDER BY channel",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| e.to_string())
}
