//! The writer's batches: with `NEPHROCARE_INGEST_GATHER_MS`, readings that arrive within
//! the gather time after a batch's first one share its statement (fewer, larger commits
//! for less CPU per reading at low load); every reading is still acknowledged and stored
//! once.

use std::time::Duration;

use chrono::{DurationRound, Utc};

use crate::derived::{reading, seed, SECRET};
use crate::metrics::samples;
use crate::support::{JsonClient, Service, TestDb};

/// `nephrocare_ingest_batch_readings`'s count and sum, scraped from the service.
async fn batches(service: &Service) -> (f64, f64) {
    let text = reqwest::get(format!("{}/metrics", service.http)).await.unwrap().text().await.unwrap();
    let s = samples(&text);
    (s["nephrocare_ingest_batch_readings_count"], s["nephrocare_ingest_batch_readings_sum"])
}

#[tokio::test]
async fn readings_within_the_gather_time_share_one_batch() {
    let db = TestDb::migrated().await;
    let s = seed(&db).await;
    let service = Service::start(&db, &[("NEPHROCARE_INGEST_GATHER_MS", "50"), ("NEPHROCARE_INGEST_WRITERS", "1")]);
    let id = s.device.to_string();
    let mut m = JsonClient::connect(service.mqtt, &id, &id, SECRET, true).await;
    let topic = format!("nc/v1/h/{}/d/{}/telemetry", s.hospital, s.device);
    let base = Utc::now().duration_trunc(chrono::Duration::seconds(1)).unwrap() - chrono::Duration::hours(1);

    // The first reading starts the treatment session and warms the writer's connection.
    m.publish_acked(&topic, &reading(&s, 1, base)).await;
    let (first, _) = batches(&service).await;

    // Six readings 8 ms apart (40 ms in all): without a gather time each would be its own
    // statement, as a commit takes less than that on an idle service.
    for seq in 2..=7 {
        m.publish(&topic, &reading(&s, seq, base)).await;
        // Under test: the spacing of the readings.
        tokio::time::sleep(Duration::from_millis(8)).await;
    }
    m.until("every PUBACK", |m| (m.acked.len() == 7).then_some(())).await;
    let (count, sum) = batches(&service).await;
    assert_eq!(sum, 7.0, "each reading written once");
    assert!(count - first <= 2.0, "6 readings sent within 40 ms went in {} batches", count - first);

    let mut c = db.sql().await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM health_metrics").fetch_one(&mut c).await.unwrap();
    assert_eq!(stored, 7);

    // A reading alone is written when the gather time has passed, not when a batch fills.
    m.publish_acked(&topic, &reading(&s, 8, base)).await;
    assert_eq!(batches(&service).await.1, 8.0);
}
