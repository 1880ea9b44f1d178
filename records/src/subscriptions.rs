//! FHIR subscriptions (R4, the Subscriptions R5 Backport IG), the storage and rules; the
//! FHIR transport (`api/src/fhir/subscriptions`) renders and parses them and builds the
//! notifications.
//!
//! - A subscription ([`Subscription`], `fhir_subscriptions`, migration 43): its owner, a
//!   [`Topic`], an optional filter (one patient or one machine), a `rest-hook` endpoint with
//!   its headers, what a notification carries ([`Content`]), a heartbeat period, a timeout,
//!   an end. At most [`MAX_PER_OWNER`] live ones per person.
//! - Created `requested`, with its **handshake** queued in the same transaction; the
//!   handshake delivered makes it `active`; a notification given up (the outbox parks it
//!   after its last attempt, or at once when the endpoint refuses it) makes it `error`, its
//!   end passed `off`. Only `requested` and `active` ones get events.
//! - **Events** are queued by triggers in the transaction of what happened (a treatment that
//!   ended, an alarm raised or whose state or tier changed), one outbox item per matching
//!   subscription (channel `fhir`, ordered per subscription: delivered in order, each after
//!   the one before it was delivered or given up); the sender asks the policy whether the
//!   owner may read it now, and only a notification that goes out is **numbered**
//!   ([`Subscriptions::event_number`], kept across retries): numbers run 1, 2, 3 … without a
//!   gap for everything the subscriber is sent, so a gap means a lost notification.
//! - **Heartbeats** ([`Subscriptions::run`]): an active subscription with a heartbeat period
//!   that had nothing sent for that long is sent a heartbeat.

use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nc_access::policy::SubscriptionScope;
use nc_domain::{DeviceId, HospitalId, PatientId, UserId};
use nc_outbox::{Attempts, Channel, Item, NewItem, Outcome};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Live subscriptions a person may have, and a hospital.
pub const MAX_PER_OWNER: i64 = 20;
pub const MAX_PER_HOSPITAL: i64 = 200;
/// How a notification the owner may not read is recorded (the outbox item's receipt).
pub const WITHHELD: &str = "withheld";
/// The longest a notification's POST may take (well inside the outbox's lease).
pub const MAX_TIMEOUT_SECS: i32 = 30;
/// Headers a subscription may set, and the length of each.
pub const MAX_HEADERS: usize = 8;
pub const MAX_HEADER_LEN: usize = 1024;

/// What a subscription is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// A treatment session ended (completed or interrupted): the `Procedure` and its summary
    /// `Observation`s.
    TreatmentEnded,
    /// An alarm was raised, or its state (acknowledged, cleared) or escalation tier changed:
    /// the `DetectedIssue`.
    Alarm,
}

impl Topic {
    pub const ALL: [Topic; 2] = [Topic::TreatmentEnded, Topic::Alarm];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::TreatmentEnded => "treatment-ended",
            Topic::Alarm => "alarm",
        }
    }

    pub fn parse(s: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The resource type an event of the topic is about.
    pub fn focus_type(self) -> &'static str {
        match self {
            Topic::TreatmentEnded => "Procedure",
            Topic::Alarm => "DetectedIssue",
        }
    }
}

/// What a notification carries (the Backport IG's payload content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// The status only.
    Empty,
    /// The status and the focus's URL.
    IdOnly,
    /// The status and the resources.
    FullResource,
}

impl Content {
    pub const ALL: [Content; 3] = [Content::Empty, Content::IdOnly, Content::FullResource];

    pub fn as_str(self) -> &'static str {
        match self {
            Content::Empty => "empty",
            Content::IdOnly => "id-only",
            Content::FullResource => "full-resource",
        }
    }

    pub fn parse(s: &str) -> Option<Content> {
        Content::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A subscription's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for its handshake to be delivered (events are queued meanwhile).
    Requested,
    Active,
    /// A notification could not be delivered: nothing more is sent.
    Error,
    /// Its end passed.
    Off,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Active => "active",
            Status::Error => "error",
            Status::Off => "off",
        }
    }

    fn parse(s: &str) -> Status {
        match s {
            "active" => Status::Active,
            "error" => Status::Error,
            "off" => Status::Off,
            _ => Status::Requested,
        }
    }
}

/// Only one patient's, or one machine's, events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Patient(PatientId),
    Device(DeviceId),
}

/// What a subscriber asks for (parsed by the transport; a filter already allowed by the
/// policy).
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub topic: Topic,
    pub filter: Option<Filter>,
    pub endpoint: String,
    pub headers: Vec<String>,
    pub content: Content,
    pub heartbeat_secs: Option<i32>,
    pub timeout_secs: i32,
    pub reason: String,
    pub end: Option<DateTime<Utc>>,
}

/// A stored subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: Uuid,
    pub hospital: HospitalId,
    pub owner: UserId,
    pub spec: Spec,
    pub status: Status,
    /// Notifications numbered so far.
    pub events_since_start: i64,
    /// Why the last attempt failed (the endpoint's answer), if it did.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    hospital_id: Uuid,
    owner_id: Uuid,
    topic: String,
    patient_id: Option<Uuid>,
    device_id: Option<Uuid>,
    status: String,
    endpoint: String,
    headers: Vec<String>,
    content: String,
    heartbeat_secs: Option<i32>,
    timeout_secs: i32,
    reason: String,
    end_at: Option<DateTime<Utc>>,
    events_since_start: i64,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, hospital_id, owner_id, topic, patient_id, device_id, status, endpoint, headers, content,
    heartbeat_secs, timeout_secs, reason, end_at, events_since_start, last_error, created_at";

impl From<Row> for Subscription {
    fn from(r: Row) -> Self {
        let filter = match (r.patient_id, r.device_id) {
            (Some(p), _) => Some(Filter::Patient(PatientId(p))),
            (None, Some(d)) => Some(Filter::Device(DeviceId(d))),
            (None, None) => None,
        };
        Subscription {
            id: r.id,
            hospital: HospitalId(r.hospital_id),
            owner: UserId(r.owner_id),
            spec: Spec {
                topic: Topic::parse(&r.topic).unwrap_or(Topic::Alarm),
                filter,
                endpoint: r.endpoint,
                headers: r.headers,
                content: Content::parse(&r.content).unwrap_or(Content::IdOnly),
                heartbeat_secs: r.heartbeat_secs,
                timeout_secs: r.timeout_secs,
                reason: r.reason,
                end: r.end_at,
            },
            status: Status::parse(&r.status),
            events_since_start: r.events_since_start,
            last_error: r.last_error,
            created_at: r.created_at,
        }
    }
}

/// What a queued notification is (the outbox item's payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queued {
    pub subscription: Uuid,
    /// `handshake`, `heartbeat` or `event-notification`.
    #[serde(rename = "type")]
    pub kind: String,
    pub focus: Option<Focus>,
    /// When it happened (events).
    pub at: Option<DateTime<Utc>>,
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Focus {
    /// `Procedure` or `DetectedIssue`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Uuid,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("you have {MAX_PER_OWNER} live subscriptions; delete one first")]
    TooMany,
    #[error("the hospital has {MAX_PER_HOSPITAL} live subscriptions; its admins may delete some")]
    TooManyInHospital,
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

fn invalid(field: &'static str, message: impl Into<String>) -> SubscriptionError {
    SubscriptionError::Invalid { field, message: message.into() }
}

/// Checks what a subscriber may set: the endpoint (an absolute `https://` URL, or `http://`
/// where internal receivers are allowed; no credentials in it; not an internal address
/// unless allowed), the headers (`Name: value`, bounded), the periods, the reason.
pub fn validate(new: &Spec, allow_internal: bool) -> Result<(), SubscriptionError> {
    let endpoint = || {
        invalid(
            "channel.endpoint",
            "must be an absolute https:// URL with a host, no credentials, at most 2048 characters",
        )
    };
    if new.endpoint.len() > 2048 {
        return Err(endpoint());
    }
    let url = url::Url::parse(&new.endpoint).map_err(|_| endpoint())?;
    match url.scheme() {
        "https" => {}
        "http" if allow_internal => {}
        "http" => {
            return Err(invalid("channel.endpoint", "must be https:// (plain http is not allowed on this server)"))
        }
        _ => return Err(endpoint()),
    }
    if url.host().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(endpoint());
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    };
    if !allow_internal && literal.is_some_and(|ip| !nc_outbox::http::is_public(ip)) {
        return Err(invalid("channel.endpoint", "an internal address is not reachable from this server"));
    }
    if new.headers.len() > MAX_HEADERS {
        return Err(invalid("channel.header", format!("at most {MAX_HEADERS} headers")));
    }
    for h in &new.headers {
        let ok_name =
            |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        let well_formed = h.split_once(':').is_some_and(|(n, v)| {
            ok_name(n.trim_end()) && n == n.trim_end() && v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
        });
        if h.len() > MAX_HEADER_LEN || !well_formed {
            return Err(invalid(
                "channel.header",
                format!("each must be `Name: value`, at most {MAX_HEADER_LEN} characters"),
            ));
        }
        let name = h.split_once(':').map_or("", |(n, _)| n).to_ascii_lowercase();
        if ["content-type", "content-length", "host", "transfer-encoding", "connection"].contains(&name.as_str()) {
            return Err(invalid("channel.header", format!("`{name}` is set by the server")));
        }
    }
    if new.heartbeat_secs.is_some_and(|s| !(10..=86_400).contains(&s)) {
        return Err(invalid("channel.heartbeatPeriod", "from 10 to 86400 seconds"));
    }
    if !(1..=MAX_TIMEOUT_SECS).contains(&new.timeout_secs) {
        return Err(invalid("channel.timeout", format!("from 1 to {MAX_TIMEOUT_SECS} seconds")));
    }
    if new.reason.chars().count() > 1024 || new.reason.chars().any(|c| c.is_control() && !"\n\r\t".contains(c)) {
        return Err(invalid("reason", "at most 1024 characters, no control characters"));
    }
    if new.end.is_some_and(|end| end <= Utc::now()) {
        return Err(invalid("end", "must be in the future"));
    }
    Ok(())
}

/// The subscriptions. Cheap to clone.
#[derive(Clone)]
pub struct Subscriptions {
    pool: PgPool,
    /// Internal receivers accepted: plain `http://`, internal addresses
    /// (`NEPHROCARE_FHIR_REST_HOOK_ALLOW_INTERNAL`).
    allow_internal: bool,
}

impl Subscriptions {
    pub fn new(pool: PgPool, allow_internal: bool) -> Self {
        Self { pool, allow_internal }
    }

    /// Stores `owner`'s subscription, `requested`, and queues its handshake.
    pub async fn create(
        &self,
        hospital: HospitalId,
        owner: UserId,
        new: Spec,
    ) -> Result<Subscription, SubscriptionError> {
        validate(&new, self.allow_internal)?;
        let mut tx = self.pool.begin().await?;
        // One at a time per hospital (an owner's are in it), so both limits hold.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 43))")
            .bind(hospital.as_uuid())
            .execute(&mut *tx)
            .await?;
        let (own, in_hospital): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE owner_id = $2), count(*) FROM fhir_subscriptions
              WHERE hospital_id = $1 AND status IN ('requested', 'active')",
        )
        .bind(hospital.as_uuid())
        .bind(owner.as_uuid())
        .fetch_one(&mut *tx)
        .await?;
        if own >= MAX_PER_OWNER {
            return Err(SubscriptionError::TooMany);
        }
        if in_hospital >= MAX_PER_HOSPITAL {
            return Err(SubscriptionError::TooManyInHospital);
        }
        let (patient, device) = match new.filter {
            Some(Filter::Patient(p)) => (Some(p.as_uuid()), None),
            Some(Filter::Device(d)) => (None, Some(d.as_uuid())),
            None => (None, None),
        };
        let id = Uuid::now_v7();
        let row: Row = sqlx::query_as(&format!(
            "INSERT INTO fhir_subscriptions (id, hospital_id, owner_id, topic, patient_id, device_id, endpoint, headers,
                    content, heartbeat_secs, timeout_secs, reason, end_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(hospital.as_uuid())
        .bind(owner.as_uuid())
        .bind(new.topic.as_str())
        .bind(patient)
        .bind(device)
        .bind(&new.endpoint)
        .bind(&new.headers)
        .bind(new.content.as_str())
        .bind(new.heartbeat_secs)
        .bind(new.timeout_secs)
        .bind(&new.reason)
        .bind(new.end)
        .fetch_one(&mut *tx)
        .await?;
        nc_outbox::enqueue(&mut tx, queued(id, hospital, "handshake")).await?;
        tx.commit().await?;
        Ok(row.into())
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Subscription>, sqlx::Error> {
        let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM fhir_subscriptions WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Into::into))
    }

    /// The subscriptions in `scope` (the policy's), newest first, at most `limit`.
    pub async fn list(
        &self,
        scope: SubscriptionScope,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Subscription>, sqlx::Error> {
        let (column, value) = match scope {
            SubscriptionScope::Own(u) => ("owner_id", u.as_uuid()),
            SubscriptionScope::Hospital(h) => ("hospital_id", h.as_uuid()),
        };
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM fhir_subscriptions WHERE {column} = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(value)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Ends a subscription: deleted, and what was queued for it given up.
    pub async fn delete(&self, id: Uuid) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM fhir_subscriptions WHERE id = $1").bind(id).execute(&mut *tx).await?;
        nc_outbox::cancel(&mut tx, id, "the subscription was deleted").await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Sets a subscription `off` (its end passed).
    pub async fn switch_off(&self, id: Uuid) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE fhir_subscriptions SET status = 'off' WHERE id = $1 AND status IN ('requested', 'active')")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The number of the notification that outbox item `item` carries: given the first time
    /// it is asked (the next of the subscription's), the same on every retry.
    pub async fn event_number(&self, item: Uuid, subscription: Uuid, focus: &str) -> Result<i64, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let known: Option<i64> =
            sqlx::query_scalar("SELECT event_number FROM fhir_subscription_events WHERE outbox_id = $1")
                .bind(item)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(n) = known {
            return Ok(n);
        }
        let n: i64 = sqlx::query_scalar(
            "UPDATE fhir_subscriptions SET events_since_start = events_since_start + 1 WHERE id = $1
             RETURNING events_since_start",
        )
        .bind(subscription)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO fhir_subscription_events (outbox_id, subscription_id, event_number, focus) VALUES ($1, $2, $3, $4)",
        )
        .bind(item)
        .bind(subscription)
        .bind(n)
        .bind(focus)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// The number outbox item `item` was given, if it was (a retry of a notification sent
    /// before).
    pub async fn numbered(&self, item: Uuid) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT event_number FROM fhir_subscription_events WHERE outbox_id = $1")
            .bind(item)
            .fetch_optional(&self.pool)
            .await
    }

    /// Sends heartbeats until `shutdown`: every `tick`, to each active subscription with a
    /// heartbeat period that has had nothing sent for that long (cluster-safe: one node
    /// takes each).
    pub fn run(self, tick: Duration, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(tick) => {}
                }
                if let Err(e) = self.heartbeats().await {
                    tracing::warn!(error = %e, "could not queue FHIR subscription heartbeats");
                }
            }
        })
    }

    /// Queues the heartbeats that are due. Returns how many.
    pub async fn heartbeats(&self) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let due: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "UPDATE fhir_subscriptions SET heartbeat_due_at = now() + make_interval(secs => heartbeat_secs)
              WHERE id IN (SELECT id FROM fhir_subscriptions
                            WHERE status = 'active' AND heartbeat_due_at <= now()
                              AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.ordering_key = fhir_subscriptions.id
                                                                      AND o.state = 'pending')
                            LIMIT 500 FOR UPDATE SKIP LOCKED)
              RETURNING id, hospital_id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let items: Vec<NewItem> = due.iter().map(|(id, h)| queued(*id, HospitalId(*h), "heartbeat")).collect();
        nc_outbox::enqueue_all(&mut tx, &items).await?;
        tx.commit().await?;
        Ok(items.len())
    }
}

fn queued(subscription: Uuid, hospital: HospitalId, kind: &str) -> NewItem {
    let payload = Queued { subscription, kind: kind.to_owned(), focus: None, at: None };
    NewItem {
        channel: Channel::Fhir,
        hospital: Some(hospital.as_uuid()),
        alert: None,
        ordering_key: Some(subscription),
        destination: format!("Subscription/{subscription}"),
        payload: serde_json::to_string(&payload).unwrap_or_default(),
    }
}

/// What a subscriber is told of a failure: what happened, not the details of the network
/// (`cannot connect`, `HTTP 503`; the log and the outbox keep the rest).
fn coarse(error: &str) -> &str {
    error.split(':').next().unwrap_or(error)
}

/// Each attempt moves the subscription on: delivered, a `requested` one is `active` and its
/// next heartbeat is a period away; failed, its error is kept; given up, it is in `error`.
impl Attempts for Subscriptions {
    fn attempted<'a>(
        &'a self,
        item: &'a Item,
        outcome: &'a Outcome,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            if item.channel() != Some(Channel::Fhir) {
                return;
            }
            let id = item.ordering_key;
            let done = match outcome {
                // Nothing was sent: no heartbeat is saved by it.
                Outcome::Delivered(receipt) if receipt.0.starts_with(WITHHELD) => return,
                Outcome::Delivered(_) => {
                    sqlx::query(
                        "UPDATE fhir_subscriptions
                            SET status = CASE WHEN status = 'requested' THEN 'active' ELSE status END,
                                heartbeat_due_at = now() + make_interval(secs => heartbeat_secs), last_error = NULL
                          WHERE id = $1",
                    )
                    .bind(id)
                    .execute(&self.pool)
                    .await
                }
                Outcome::Failed { error, .. } => {
                    sqlx::query("UPDATE fhir_subscriptions SET last_error = $2 WHERE id = $1")
                        .bind(id)
                        .bind(coarse(error))
                        .execute(&self.pool)
                        .await
                }
                Outcome::Parked { error } => {
                    sqlx::query(
                        "UPDATE fhir_subscriptions SET status = 'error', last_error = $2
                          WHERE id = $1 AND status IN ('requested', 'active')",
                    )
                    .bind(id)
                    .bind(coarse(error))
                    .execute(&self.pool)
                    .await
                }
            };
            if let Err(e) = done {
                tracing::warn!(subscription = %id, error = %e, "could not record a notification attempt");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(endpoint: &str, headers: &[&str]) -> Spec {
        Spec {
            topic: Topic::TreatmentEnded,
            filter: None,
            endpoint: endpoint.to_owned(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            content: Content::IdOnly,
            heartbeat_secs: None,
            timeout_secs: 10,
            reason: String::new(),
            end: None,
        }
    }

    fn field(r: Result<(), SubscriptionError>) -> &'static str {
        match r {
            Err(SubscriptionError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn endpoints_are_https_with_a_host_and_no_credentials() {
        assert!(validate(&spec("https://emr.example/hook", &[]), false).is_ok());
        assert_eq!(field(validate(&spec("http://emr.example/hook", &[]), false)), "channel.endpoint");
        assert!(validate(&spec("http://emr.example/hook", &[]), true).is_ok());
        for bad in [
            "ftp://x/y",
            "https://",
            "https://user:pw@emr.example/",
            "https://emr.example:99999/",
            "https://[::1",
            "emr.example",
        ] {
            assert_eq!(field(validate(&spec(bad, &[]), true)), "channel.endpoint", "{bad}");
        }
        for internal in
            ["https://127.0.0.1/h", "https://10.0.0.5:8443/h", "https://[fd00::1]/h", "https://169.254.169.254/latest"]
        {
            assert_eq!(field(validate(&spec(internal, &[]), false)), "channel.endpoint", "{internal}");
            assert!(validate(&spec(internal, &[]), true).is_ok(), "{internal} allowed inside");
        }
    }

    #[test]
    fn headers_are_bounded_and_cannot_override_the_servers() {
        assert!(validate(&spec("https://e.example/", &["Authorization: Bearer x", "X-Tenant: 7"]), false).is_ok());
        for bad in ["no colon", "Bad Name: x", "Content-Type: text/plain", "Host: evil", "X: a\r\nInjected: b"] {
            assert_eq!(field(validate(&spec("https://e.example/", &[bad]), false)), "channel.header", "{bad}");
        }
        let many = vec!["X-A: 1"; MAX_HEADERS + 1];
        assert_eq!(field(validate(&spec("https://e.example/", &many), false)), "channel.header");
        let mut s = spec("https://e.example/", &[]);
        s.heartbeat_secs = Some(5);
        assert_eq!(field(validate(&s, false)), "channel.heartbeatPeriod");
        s.heartbeat_secs = Some(60);
        s.timeout_secs = 0;
        assert_eq!(field(validate(&s, false)), "channel.timeout");
        s.timeout_secs = 31;
        assert_eq!(field(validate(&s, false)), "channel.timeout");
        s.timeout_secs = 10;
        s.reason = "a\u{0}b".into();
        assert_eq!(field(validate(&s, false)), "reason");
        s.reason = String::new();
        s.end = Some(Utc::now() - chrono::Duration::minutes(1));
        assert_eq!(field(validate(&s, false)), "end");
    }
}
