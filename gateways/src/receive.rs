//! One PCD-01 message to readings, answered after COMMIT.
//!
//! In order, each step answering on its own when it fails:
//! 1. read the message (`nc_hl7::pcd01`): `AR` for another message type, processing id or
//!    version, `AE` with the ERR of the field at fault otherwise;
//! 2. the gateway: the secret in MSH-8 names a registered, enabled gateway whose MSH-3/MSH-4
//!    are the message's, on a connection of its own within its limit; else `AR` (207);
//! 3. every observation, before anything is stored: its machine (OBX-18) and patient (PID-3)
//!    through the policy (the gateway's own hospital: 204 when unknown), its code mapped
//!    (an unknown code is reported with a warning ERR and counted, not stored), its value a
//!    number in a unit we know (102, 101, 103), each reading (machine × time) within the
//!    plausible ranges and times of every reading (102, naming the OBX); a machine's status
//!    alone is not a reading (a warning ERR);
//! 4. the control id (MSH-10): a message already taken with the same readings is answered
//!    `AA` again and not stored again; other readings under a used control id are refused
//!    (`AE` 205);
//! 5. the readings go through the one ingest pipeline and the message is answered `AA`
//!    once every one is committed (with a warning ERR per unknown code). If storage fails
//!    midway the answer is `AE` 207 and the gateway sends it again: a reading's identity
//!    (machine, seq) comes from the gateway, the control id and the time, so what was
//!    stored is recognised and stored once.
//!
//! The seq of a gateway reading is `(µs since 1970 << 8) | h`, `h` eight bits of a digest of
//! the gateway and control id: it grows with time (the writer's fast path for a device
//! counting up) and tells two messages at the same instant apart (a 1-in-256 collision is
//! refused as a conflict, never merged).

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, Utc};
use futures_util::future::join_all;
use nc_domain::{DeviceId, HospitalId, PatientId, SystemStatus};
use nc_hl7::ack::{acknowledge, acknowledge_error, AckCode, ErrorEntry, Severity};
use nc_hl7::acm::Code;
use nc_hl7::message::{ErrorCode, Location, Message, ParseError};
use nc_hl7::pcd01::{read_pcd01, Observation, Pcd01, Value};
use nc_hl7::server::{uuid_like, Peer};
use nc_ingest::reading::{ReadingIn, COLUMNS};
use nc_ingest::Outcome;
use sha2::{Digest, Sha256};

use crate::codes::{convert, measurement_of, units_named, SYSTEM_STATUS};
use crate::{Gateway, Gateways};

/// A refusal: the acknowledgement code and the error.
type Refusal = (AckCode, ParseError);

fn refused(code: ErrorCode, at: Location, why: impl Into<String>) -> Refusal {
    (AckCode::Rejected, ParseError::new(code, at, why))
}

fn error(code: ErrorCode, at: Location, why: impl Into<String>) -> Refusal {
    (AckCode::Error, ParseError::new(code, at, why))
}

fn unavailable(e: impl std::fmt::Display) -> Refusal {
    tracing::warn!(error = %e, "a gateway's message could not be taken: storage unavailable");
    error(
        ErrorCode::ApplicationInternal,
        Location::default(),
        "storage is unavailable for now: send the message again (it is stored once)",
    )
}

fn obx(o: &Observation, field: usize) -> Location {
    Location::field("OBX", o.obx as usize, field)
}

/// One reading being assembled: a machine at one instant.
struct Draft {
    device: DeviceId,
    serial: String,
    at: DateTime<Utc>,
    patient: Option<PatientId>,
    /// Measurement → (value in its unit, the OBX it came from).
    values: HashMap<&'static str, (f64, u32)>,
    status: Option<SystemStatus>,
    first_obx: u32,
}

impl Gateways {
    /// The acknowledgement of `message` from `peer`.
    pub(crate) async fn receive(&self, message: Message, peer: Peer) -> Message {
        let started = std::time::Instant::now();
        let control = uuid_like();
        let answer = match read_pcd01(&message) {
            Err(e) => {
                tracing::info!(peer = %peer.addr, error = %e, "a gateway's message refused");
                acknowledge_error(&e, Some(&message), &control, &Utc::now().fixed_offset())
            }
            Ok(pcd) => {
                let taken = self.take(&pcd, peer).await;
                let now = Utc::now().fixed_offset();
                match taken {
                    Ok(warnings) => acknowledge(&message, AckCode::Accepted, &warnings, &control, &now),
                    Err((code, e)) => {
                        tracing::info!(peer = %peer.addr, control_id = %pcd.control_id, error = %e, "a gateway's message refused");
                        acknowledge(&message, code, &[ErrorEntry::from_parse_error(&e)], &control, &now)
                    }
                }
            }
        };
        let code = match answer.get("MSA", 0, 1, 1) {
            Some("AA") => "AA",
            Some("AR") => "AR",
            _ => "AE",
        };
        nc_metrics::get()
            .hl7_ack_seconds
            .get_or_create(&nc_metrics::Hl7Answer { answer: code })
            .observe(started.elapsed().as_secs_f64());
        answer
    }

    /// Steps 2 to 5; the warnings of an accepted message.
    async fn take(&self, pcd: &Pcd01, peer: Peer) -> Result<Vec<ErrorEntry>, Refusal> {
        let gateway = self.authenticate(pcd, peer).await?;
        let total: usize = pcd.groups.iter().map(|g| g.observations.len()).sum();
        if total > self.inner.settings.max_observations {
            return Err(error(
                ErrorCode::ApplicationInternal,
                Location::segment("OBX", self.inner.settings.max_observations + 1),
                format!("at most {} observations a message", self.inner.settings.max_observations),
            ));
        }
        let (drafts, unknown, mut warnings) = self.drafts(&gateway, pcd).await?;
        let readings = readings(&gateway, pcd, drafts, &mut warnings)?;
        let digest = readings_digest(&readings);
        let seen: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT digest FROM hl7_gateway_messages WHERE gateway_id = $1 AND control_id = $2")
                .bind(gateway.id.as_uuid())
                .bind(&pcd.control_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        match seen {
            Some(d) if d == digest => return Ok(warnings),
            Some(_) => {
                return Err(error(
                    ErrorCode::DuplicateKeyIdentifier,
                    Location::field("MSH", 1, 10),
                    "this control id was used for another message of this gateway",
                ))
            }
            None => {}
        }
        let outcomes =
            join_all(readings.iter().map(|(d, r)| self.inner.ingest.submit(d.device, gateway.hospital, r.clone())))
                .await;
        // Every stored reading is published, whatever became of the others.
        let (mut stored, mut refused, mut failed) = (0, None, None);
        for ((draft, reading), outcome) in readings.iter().zip(outcomes) {
            match outcome {
                Ok(Outcome::Stored { patient, .. }) => {
                    stored += 1;
                    self.publish(draft.device, gateway.hospital, patient, reading).await;
                }
                Ok(Outcome::Invalid(e, _)) => {
                    refused.get_or_insert(format!("machine {} at {}: {}", draft.serial, draft.at, e.message));
                }
                Err(e) => {
                    failed.get_or_insert(e.0);
                }
            }
        }
        if let Some(e) = failed {
            return Err(unavailable(e));
        }
        if let Some(why) = refused {
            return Err(error(ErrorCode::DuplicateKeyIdentifier, Location::field("MSH", 1, 10), why));
        }
        self.record(&gateway, pcd, &digest, stored, &unknown).await.map_err(unavailable)?;
        warnings.extend(unknown.iter().map(|(o, c)| ErrorEntry {
            code: ErrorCode::TableValueNotFound.code(),
            location: Some(Location::field("OBX", *o as usize, 3)),
            severity: Severity::Warning,
            diagnostic: Some(format!(
                "{}^{}^{} maps to no measurement: not stored (see the gateway's unknown codes)",
                c.code, c.text, c.system
            )),
        }));
        Ok(warnings)
    }

    /// The gateway: the one whose TLS client certificate the connection presented, else the
    /// one whose secret MSH-8 holds (unless that gateway is registered with a certificate);
    /// enabled, named as in MSH-3/MSH-4, on a connection of its own within its limit.
    async fn authenticate(&self, pcd: &Pcd01, peer: Peer) -> Result<Gateway, Refusal> {
        let unknown = || {
            refused(
                ErrorCode::ApplicationInternal,
                Location::field("MSH", 1, 8),
                "not a registered gateway: connect with its client certificate, or write in MSH-8 the secret issued when it was registered",
            )
        };
        let by_certificate = match &peer.certificate {
            Some(c) => self.by_certificate(c).await.map_err(unavailable)?,
            None => None,
        };
        let gateway = match by_certificate {
            Some(g) => g,
            None => {
                let secret = pcd.security.as_deref().ok_or_else(unknown)?;
                let g = self.by_secret(secret).await.map_err(unavailable)?.ok_or_else(unknown)?;
                if g.spec.certificate_sha256.is_some() {
                    return Err(refused(
                        ErrorCode::ApplicationInternal,
                        Location::field("MSH", 1, 8),
                        "this gateway is registered with a client certificate: connect over TLS with it",
                    ));
                }
                g
            }
        };
        if !gateway.spec.enabled {
            return Err(refused(
                ErrorCode::ApplicationInternal,
                Location::field("MSH", 1, 8),
                "the gateway is disabled",
            ));
        }
        if gateway.spec.sending_application != pcd.sending_application
            || gateway.spec.sending_facility != pcd.sending_facility
        {
            return Err(refused(
                ErrorCode::ApplicationInternal,
                Location::field("MSH", 1, 3),
                "MSH-3 and MSH-4 are not the sending application and facility registered for this gateway",
            ));
        }
        self.bind(peer, gateway.id, gateway.spec.max_connections)
            .map_err(|why| refused(ErrorCode::ApplicationInternal, Location::default(), why))?;
        Ok(gateway)
    }

    /// Every observation checked and gathered by machine and instant; the unknown codes
    /// (OBX, code); warnings.
    #[allow(clippy::type_complexity)]
    async fn drafts(
        &self,
        gateway: &Gateway,
        pcd: &Pcd01,
    ) -> Result<(Vec<Draft>, Vec<(u32, Code)>, Vec<ErrorEntry>), Refusal> {
        let policy = &self.inner.policy;
        let mut devices: HashMap<&str, DeviceId> = HashMap::new();
        let mut drafts: Vec<Draft> = Vec::new();
        let mut unknown: Vec<(u32, Code)> = Vec::new();
        let mut warnings = Vec::new();
        for group in &pcd.groups {
            let patient = match &group.patient {
                None => None,
                Some((number, pid)) => Some(
                    policy
                        .gateway_patient(gateway.hospital, number)
                        .await
                        .map_err(|e| denied(e, Location::component("PID", *pid as usize, 3, 1), "patient number"))?,
                ),
            };
            for o in &group.observations {
                // Table 0085: no result in D (deleted), W (wrong), X (cannot be obtained),
                // N (not asked), I (pending), O (order detail).
                if matches!(o.status.as_str(), "D" | "W" | "X" | "N" | "I" | "O") {
                    continue;
                }
                let Some(measurement) = measurement_of(&o.code, &gateway.spec.codes) else {
                    if !unknown.iter().any(|(_, c)| *c == o.code) {
                        unknown.push((o.obx, o.code.clone()));
                    }
                    continue;
                };
                let measurement = crate::codes::measurements().find(|m| *m == measurement).unwrap_or(SYSTEM_STATUS);
                let device = match devices.get(o.equipment.as_str()) {
                    Some(d) => *d,
                    None => {
                        let d = policy
                            .gateway_device(gateway.hospital, &o.equipment)
                            .await
                            .map_err(|e| denied(e, obx(o, 18), "machine (serial)"))?;
                        devices.insert(&o.equipment, d);
                        d
                    }
                };
                let at = utc(&o.at);
                let draft = match drafts.iter().position(|d| d.device == device && d.at == at) {
                    Some(i) => &mut drafts[i],
                    None => {
                        drafts.push(Draft {
                            device,
                            serial: o.equipment.clone(),
                            at,
                            patient,
                            values: HashMap::new(),
                            status: None,
                            first_obx: o.obx,
                        });
                        drafts.last_mut().expect("just pushed")
                    }
                };
                if patient.is_some() && draft.patient.is_some() && draft.patient != patient {
                    return Err(error(
                        ErrorCode::DataType,
                        obx(o, 18),
                        "one machine at one instant is reported for two patients",
                    ));
                }
                draft.patient = draft.patient.or(patient);
                if measurement == SYSTEM_STATUS {
                    draft.status = Some(status(o)?);
                    continue;
                }
                let value = value(o, measurement)?;
                if let Some((_, first)) = draft.values.get(measurement) {
                    warnings.push(ErrorEntry {
                        code: ErrorCode::DataType.code(),
                        location: Some(obx(o, 3)),
                        severity: Severity::Warning,
                        diagnostic: Some(format!(
                            "{measurement} of this machine at this instant is OBX {first}'s: not stored twice"
                        )),
                    });
                    continue;
                }
                draft.values.insert(measurement, (value, o.obx));
            }
        }
        Ok((drafts, unknown, warnings))
    }

    /// Publishes a stored reading on its machine's (and patient's) MQTT topics, as one sent
    /// over MQTT or HTTP is.
    async fn publish(&self, device: DeviceId, hospital: HospitalId, patient: Option<PatientId>, reading: &ReadingIn) {
        let topic = nc_messaging::topic::Topic::Device {
            hospital,
            device,
            channel: nc_messaging::topic::DeviceChannel::Telemetry,
        };
        let payload = serde_json::to_vec(reading).unwrap_or_default();
        if let Err(e) = self.inner.publisher.publish_committed(&topic, patient, payload).await {
            tracing::warn!(error = %e, %device, "a reading stored from a gateway could not be published");
        }
    }

    /// Records the message as taken, and the codes that mapped to nothing.
    async fn record(
        &self,
        gateway: &Gateway,
        pcd: &Pcd01,
        digest: &[u8],
        readings: i32,
        unknown: &[(u32, Code)],
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO hl7_gateway_messages (gateway_id, control_id, digest, readings) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(gateway.id.as_uuid())
        .bind(&pcd.control_id)
        .bind(digest)
        .bind(readings)
        .execute(&mut *tx)
        .await?;
        for (_, c) in unknown {
            sqlx::query(
                "INSERT INTO hl7_gateway_unknown_codes (gateway_id, system, code, text)
                 SELECT $1, $2, $3, $4
                  WHERE EXISTS (SELECT 1 FROM hl7_gateway_unknown_codes WHERE gateway_id = $1 AND system = $2 AND code = $3)
                     OR (SELECT count(*) FROM hl7_gateway_unknown_codes WHERE gateway_id = $1) < $5
                 ON CONFLICT (gateway_id, system, code)
                 DO UPDATE SET seen = hl7_gateway_unknown_codes.seen + 1, last_seen = now(), text = EXCLUDED.text",
            )
            .bind(gateway.id.as_uuid())
            .bind(trim(&c.system))
            .bind(trim(&c.code))
            .bind(trim(&c.text))
            .bind(crate::MAX_UNKNOWN_CODES)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}

/// At most 64 characters of a code we keep.
fn trim(s: &str) -> &str {
    s.char_indices().nth(64).map_or(s, |(i, _)| &s[..i])
}

/// A policy refusal as the ERR at `at`.
fn denied(e: nc_access::PolicyError, at: Location, what: &str) -> Refusal {
    match e {
        nc_access::PolicyError::Denied(nc_access::Denied::NotFound) => {
            error(ErrorCode::UnknownKeyIdentifier, at, format!("no such {what} in the gateway's hospital"))
        }
        nc_access::PolicyError::Denied(nc_access::Denied::Forbidden(why)) => {
            error(ErrorCode::ApplicationInternal, at, why)
        }
        nc_access::PolicyError::Db(e) => unavailable(e),
    }
}

/// The instant in whole microseconds, as it is stored.
fn utc(at: &DateTime<FixedOffset>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or_else(|| at.with_timezone(&Utc))
}

/// The machine's status from a `system-status` observation.
fn status(o: &Observation) -> Result<SystemStatus, Refusal> {
    let text = match &o.value {
        Value::Coded(c) => c.code.as_str(),
        Value::Other { text, .. } => text.as_str(),
        Value::Numeric(_) => "",
    };
    text.trim().to_ascii_lowercase().parse().map_err(|_| {
        error(ErrorCode::TableValueNotFound, obx(o, 5), "the machine's status must be normal, warning or danger")
    })
}

/// A measurement's value in its own unit.
fn value(o: &Observation, measurement: &str) -> Result<f64, Refusal> {
    let Value::Numeric(v) = o.value else {
        return Err(error(ErrorCode::DataType, obx(o, 2), format!("{measurement} must be a number (OBX-2 NM)")));
    };
    let units = o.units.as_ref().ok_or_else(|| {
        error(ErrorCode::RequiredFieldMissing, obx(o, 6), format!("OBX-6 (units) is required for {measurement}"))
    })?;
    convert(measurement, v, units).ok_or_else(|| {
        error(
            ErrorCode::TableValueNotFound,
            obx(o, 6),
            format!("{measurement} is taken in {}", units_named(measurement)),
        )
    })
}

/// The readings of the drafts, each validated (the ERR names the OBX of a value out of
/// range, or of a time out of bounds).
fn readings(
    gateway: &Gateway,
    pcd: &Pcd01,
    drafts: Vec<Draft>,
    warnings: &mut Vec<ErrorEntry>,
) -> Result<Vec<(Draft, ReadingIn)>, Refusal> {
    let now = Utc::now();
    let tag = {
        let mut h = Sha256::new();
        h.update(gateway.id.as_uuid().as_bytes());
        h.update(pcd.control_id.as_bytes());
        i64::from(h.finalize()[0])
    };
    let mut out = Vec::with_capacity(drafts.len());
    for d in drafts {
        if d.values.is_empty() {
            // A status alone is not a reading: said, not stored.
            warnings.push(ErrorEntry {
                code: ErrorCode::RequiredFieldMissing.code(),
                location: Some(Location::segment("OBX", d.first_obx as usize)),
                severity: Severity::Warning,
                diagnostic: Some(format!("machine {}: a status without a measurement is not stored", d.serial)),
            });
            continue;
        }
        let values = COLUMNS.map(|(json, _)| d.values.get(json).map(|(v, _)| *v));
        let seq = (d.at.timestamp_micros().max(0) << 8) | tag;
        let mut reading = ReadingIn::from_values(seq, d.at, d.status.unwrap_or(SystemStatus::Normal), values);
        reading.patient_id = d.patient;
        if let Err(e) = reading.validate(now) {
            let (obx, field) = match d.values.get(e.field.as_str()) {
                Some((_, obx)) => (*obx, 5),
                None => (d.first_obx, 14),
            };
            return Err(error(
                ErrorCode::DataType,
                Location::field("OBX", obx as usize, field),
                format!("machine {}: {}", d.serial, e.message),
            ));
        }
        out.push((d, reading));
    }
    Ok(out)
}

/// What makes a message the same message: the readings it makes (machine, time, seq,
/// patient, status, values). A resend that re-stamps MSH-7 is the same message unless its
/// readings took their time from MSH-7.
fn readings_digest(readings: &[(Draft, ReadingIn)]) -> Vec<u8> {
    let mut h = Sha256::new();
    for (d, r) in readings {
        h.update(d.device.as_uuid().as_bytes());
        h.update(serde_json::to_vec(r).unwrap_or_default());
    }
    h.finalize().to_vec()
}
