//! Typed identifiers: a `DeviceId` cannot be passed where a `PatientId` is expected.
//! All are UUIDs (v7 for new rows: time-ordered, index friendly).

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
                 serde::Serialize, serde::Deserialize, sea_orm::DeriveValueType)]
        #[serde(transparent)]
        #[cfg_attr(feature = "openapi", derive(poem_openapi::NewType))]
        #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
        #[cfg_attr(feature = "openapi", oai(from_json = true, to_json = true, from_parameter = true, to_header = false, from_multipart = false))]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered identifier.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            /// Only the canonical hyphenated form: an id parsed here is also a safe
            /// topic level (no `+`, `#` or `/` can ever be part of it).
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.len() != 36 {
                    return Err(Uuid::parse_str("invalid").unwrap_err());
                }
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl sea_orm::TryFromU64 for $name {
            fn try_from_u64(_: u64) -> Result<Self, sea_orm::DbErr> {
                Err(sea_orm::DbErr::ConvertFromU64(stringify!($name)))
            }
        }
    )*};
}

id_type!(
    /// A hospital: the tenant boundary nothing crosses.
    HospitalId,
    /// A person's account (doctor, patient, technician or admin).
    UserId,
    /// A dialysis machine.
    DeviceId,
    /// A FHIR Bulk Data export job.
    ExportJobId,
    /// A patient's clinical profile (distinct from the patient's login, a `UserId`).
    PatientId,
    /// One treatment session on one machine.
    SessionId,
    AssignmentId,
    GrantId,
    AlertId,
    ThresholdId,
    RoomId,
    MessageId,
    BookingId,
    /// A recurring series of bookings (e.g. Mon/Wed/Fri 07:00 for 8 weeks).
    SeriesId,
    /// A maintenance window during which a device cannot be booked.
    DowntimeId,
    RefreshTokenId,
    TokenFamilyId,
    CodeId,
    AuditId,
    MedicalUpdateId,
    OutboundMessageId,
    /// One maintenance done on a machine.
    MaintenanceId,
    /// A device gateway (IHE PCD-01 over MLLP) registered by a hospital.
    GatewayId,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_canonical_uuids() {
        let id = DeviceId::new();
        assert_eq!(id.to_string().parse::<DeviceId>().unwrap(), id);
        for bad in ["#", "+", "a/b", "", "0190c0de0000700080000000000000001", "{0190c0de-0000-7000-8000-000000000001}"]
        {
            assert!(bad.parse::<DeviceId>().is_err(), "{bad} parsed");
        }
    }
}
