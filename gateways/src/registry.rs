//! The gateways a hospital registered: who they are in MSH-3/MSH-4, the digest of the secret
//! they send in MSH-8 (issued here, shown once), their code mappings, how many connections
//! each may hold, and the codes they sent that map to nothing.

use chrono::{DateTime, Utc};
use nc_domain::{GatewayId, HospitalId, UserId};
use serde::Serialize;
use sqlx::types::Json;

use crate::codes::{measurements, Mapping};
use crate::{GatewayError, Gateways};

/// A registered gateway.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    pub id: GatewayId,
    pub hospital: HospitalId,
    #[serde(flatten)]
    pub spec: GatewaySpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What an admin sets.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    pub name: String,
    pub sending_application: String,
    pub sending_facility: String,
    pub codes: Vec<Mapping>,
    pub max_connections: u16,
    pub enabled: bool,
    /// The SHA-256 (lower-case hex) of the TLS client certificate it connects with, if any.
    pub certificate_sha256: Option<String>,
}

/// A code a gateway sent that maps to no measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnknownCode {
    pub system: String,
    pub code: String,
    pub text: String,
    pub seen: i64,
    pub last_seen: DateTime<Utc>,
}

type GatewayRow = (
    uuid::Uuid,
    uuid::Uuid,
    String,
    String,
    String,
    Json<Vec<Mapping>>,
    i32,
    bool,
    Option<String>,
    DateTime<Utc>,
    DateTime<Utc>,
);

const COLUMNS: &str = "id, hospital_id, name, sending_application, sending_facility, codes, max_connections, enabled, \
                       certificate_sha256, created_at, updated_at";

fn gateway(r: GatewayRow) -> Gateway {
    let spec = GatewaySpec {
        name: r.2,
        sending_application: r.3,
        sending_facility: r.4,
        codes: r.5 .0,
        max_connections: u16::try_from(r.6).unwrap_or(1),
        enabled: r.7,
        certificate_sha256: r.8,
    };
    Gateway { id: GatewayId(r.0), hospital: HospitalId(r.1), spec, created_at: r.9, updated_at: r.10 }
}

/// Most code mappings one gateway may have.
pub const MAX_MAPPINGS: usize = 200;

impl GatewaySpec {
    /// Checks what the database does not: each mapping names a measurement, once per code.
    fn check(&self) -> Result<(), GatewayError> {
        if let Some(f) = &self.certificate_sha256 {
            if f.len() != 64 || !f.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(GatewayError::invalid("certificateSha256", "must be 64 lower-case hex digits"));
            }
        }
        if self.codes.len() > MAX_MAPPINGS {
            return Err(GatewayError::invalid("codes", format!("at most {MAX_MAPPINGS} mappings")));
        }
        for (i, m) in self.codes.iter().enumerate() {
            let field = format!("codes[{i}]");
            if !measurements().any(|k| k == m.measurement) {
                let known = measurements().collect::<Vec<_>>().join(", ");
                return Err(GatewayError::invalid(&field, format!("measurement must be one of {known}")));
            }
            for (name, v) in [("system", &m.system), ("code", &m.code)] {
                if v.trim().is_empty() || v.len() > 64 || v.contains('\0') {
                    return Err(GatewayError::invalid(&field, format!("{name} must be 1 to 64 characters")));
                }
            }
            let same = |o: &Mapping| o.code == m.code && o.system.eq_ignore_ascii_case(&m.system);
            if self.codes[..i].iter().any(same) {
                return Err(GatewayError::invalid(&field, "this system and code are mapped twice"));
            }
        }
        Ok(())
    }
}

impl Gateways {
    /// Registers a gateway; returns it and its secret (only its digest is kept).
    pub async fn create(
        &self,
        hospital: HospitalId,
        spec: &GatewaySpec,
        by: UserId,
    ) -> Result<(Gateway, String), GatewayError> {
        spec.check()?;
        let secret = nc_access::secret::random_token();
        let row: GatewayRow = sqlx::query_as(&format!(
            "INSERT INTO hl7_gateways (id, hospital_id, name, sending_application, sending_facility, secret_hash, codes,
                                       max_connections, enabled, created_by, certificate_sha256)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {COLUMNS}"
        ))
        .bind(GatewayId::new().as_uuid())
        .bind(hospital.as_uuid())
        .bind(&spec.name)
        .bind(&spec.sending_application)
        .bind(&spec.sending_facility)
        .bind(nc_access::secret::hash_device_secret(&secret))
        .bind(Json(&spec.codes))
        .bind(i32::from(spec.max_connections))
        .bind(spec.enabled)
        .bind(by.as_uuid())
        .bind(&spec.certificate_sha256)
        .fetch_one(&self.pool)
        .await
        .map_err(GatewayError::from_db)?;
        Ok((gateway(row), secret))
    }

    /// A hospital's gateways, by name.
    pub async fn list(&self, hospital: HospitalId) -> Result<Vec<Gateway>, GatewayError> {
        let rows: Vec<GatewayRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM hl7_gateways WHERE hospital_id = $1 ORDER BY name, id"))
                .bind(hospital.as_uuid())
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(gateway).collect())
    }

    /// One gateway (of any hospital: the caller asks the policy whether it is visible).
    pub async fn get(&self, id: GatewayId) -> Result<Option<Gateway>, GatewayError> {
        let row: Option<GatewayRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM hl7_gateways WHERE id = $1"))
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(gateway))
    }

    /// The gateway whose secret this is, if any.
    pub(crate) async fn by_secret(&self, secret: &str) -> Result<Option<Gateway>, sqlx::Error> {
        let row: Option<GatewayRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM hl7_gateways WHERE secret_hash = $1"))
                .bind(nc_access::secret::hash_device_secret(secret))
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(gateway))
    }

    /// The gateway whose TLS client certificate has this SHA-256, if any.
    pub(crate) async fn by_certificate(&self, sha256: &[u8; 32]) -> Result<Option<Gateway>, sqlx::Error> {
        let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
        let row: Option<GatewayRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM hl7_gateways WHERE certificate_sha256 = $1"))
                .bind(hex)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(gateway))
    }

    /// Changes a gateway (its secret stays).
    pub async fn update(&self, id: GatewayId, spec: &GatewaySpec) -> Result<Gateway, GatewayError> {
        spec.check()?;
        let row: Option<GatewayRow> = sqlx::query_as(&format!(
            "UPDATE hl7_gateways SET name = $2, sending_application = $3, sending_facility = $4, codes = $5,
                    max_connections = $6, enabled = $7, certificate_sha256 = $8, updated_at = now()
              WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .bind(id.as_uuid())
        .bind(&spec.name)
        .bind(&spec.sending_application)
        .bind(&spec.sending_facility)
        .bind(Json(&spec.codes))
        .bind(i32::from(spec.max_connections))
        .bind(spec.enabled)
        .bind(&spec.certificate_sha256)
        .fetch_optional(&self.pool)
        .await
        .map_err(GatewayError::from_db)?;
        row.map(gateway).ok_or(GatewayError::NotFound)
    }

    /// Issues a new secret; the old one stops working at once.
    pub async fn rotate_secret(&self, id: GatewayId) -> Result<String, GatewayError> {
        let secret = nc_access::secret::random_token();
        let done = sqlx::query("UPDATE hl7_gateways SET secret_hash = $2, updated_at = now() WHERE id = $1")
            .bind(id.as_uuid())
            .bind(nc_access::secret::hash_device_secret(&secret))
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(GatewayError::NotFound);
        }
        Ok(secret)
    }

    /// Removes a gateway (its record of messages and unknown codes too; the readings stay).
    pub async fn delete(&self, id: GatewayId) -> Result<(), GatewayError> {
        let done = sqlx::query("DELETE FROM hl7_gateways WHERE id = $1").bind(id.as_uuid()).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(GatewayError::NotFound);
        }
        Ok(())
    }

    /// The codes a gateway sent that map to nothing, most recent first.
    pub async fn unknown_codes(&self, id: GatewayId) -> Result<Vec<UnknownCode>, GatewayError> {
        let rows: Vec<(String, String, String, i64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT system, code, text, seen, last_seen FROM hl7_gateway_unknown_codes
              WHERE gateway_id = $1 ORDER BY last_seen DESC, system, code LIMIT 500",
        )
        .bind(id.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(system, code, text, seen, last_seen)| UnknownCode { system, code, text, seen, last_seen })
            .collect())
    }
}
