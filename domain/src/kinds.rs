//! Enumerations stored as CHECK-constrained text columns. The string of each variant is
//! the one in the database, in JSON and in the OpenAPI document.

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
                 sea_orm::EnumIter, sea_orm::DeriveActiveEnum)]
        #[sea_orm(rs_type = "String", db_type = "Text")]
        #[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
        #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
        pub enum $name {
            $(
                $(#[$vdoc])*
                #[sea_orm(string_value = $s)]
                #[serde(rename = $s)]
                #[cfg_attr(feature = "openapi", oai(rename = $s))]
                $variant,
            )+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownVariant;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok($name::$variant),)+
                    _ => Err(UnknownVariant { kind: stringify!($name), value: s.to_owned() }),
                }
            }
        }
    };
}

/// A string that names no variant of an enumeration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariant {
    pub kind: &'static str,
    pub value: String,
}

impl std::fmt::Display for UnknownVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "'{}' is not a valid {}", self.value, self.kind)
    }
}

impl std::error::Error for UnknownVariant {}

text_enum!(
    /// What a person is to the platform. Staff roles are given by a hospital admin, never chosen.
    Role {
        Doctor = "doctor",
        Patient = "patient",
        Technician = "technician",
        /// Manages staff, devices and assignments of one hospital; reads no clinical data.
        Admin = "admin",
    }
);

text_enum!(
    /// The role through which a staff member is assigned to a device.
    AssignmentRole { Doctor = "doctor", Technician = "technician" }
);

text_enum!(DeviceStatus { Active = "active", Inactive = "inactive", Maintenance = "maintenance" });

text_enum!(SessionStatus { Active = "active", Completed = "completed", Interrupted = "interrupted" });

text_enum!(Gender { Male = "male", Female = "female", Other = "other", Unknown = "unknown" });

text_enum!(BloodGroup {
    APos = "A+", ANeg = "A-", BPos = "B+", BNeg = "B-",
    AbPos = "AB+", AbNeg = "AB-", OPos = "O+", ONeg = "O-",
});

text_enum!(VascularAccess { AvFistula = "av_fistula", AvGraft = "av_graft", Catheter = "catheter" });

text_enum!(
    /// The machine's own summary of its state, sent with every reading.
    SystemStatus { Normal = "normal", Warning = "warning", Danger = "danger" }
);

text_enum!(
    /// Physiological (the patient) or technical (the machine, the connection).
    AlertKind { Physiological = "physiological", Technical = "technical" }
);

text_enum!(
    /// IEC 60601-1-8 alarm priorities.
    AlertPriority { High = "high", Medium = "medium", Low = "low" }
);

text_enum!(AlertState { Active = "active", Acknowledged = "acknowledged", Cleared = "cleared" });

text_enum!(ChatRoomKind { DoctorPatient = "doctor-patient", DoctorTechnician = "doctor-technician" });

text_enum!(BookingStatus {
    Scheduled = "scheduled", Confirmed = "confirmed", Completed = "completed", Cancelled = "cancelled",
});

text_enum!(
    /// A day of the week, for opening hours and recurring bookings.
    Weekday { Mon = "mon", Tue = "tue", Wed = "wed", Thu = "thu", Fri = "fri", Sat = "sat", Sun = "sun" }
);

text_enum!(
    /// Why a time could not be booked.
    ConflictReason {
        /// The device is booked then (a session and the changeover after it).
        DeviceBooked = "device_booked",
        /// The patient has another session then.
        PatientBooked = "patient_booked",
        /// The device has a maintenance window then.
        DeviceMaintenance = "device_maintenance",
        /// The device is inactive or in maintenance.
        DeviceNotBookable = "device_not_bookable",
        /// The session does not lie within the unit's opening hours that day.
        OutsideOpeningHours = "outside_opening_hours",
        InThePast = "in_the_past",
        /// Beyond the unit's booking horizon.
        TooFarAhead = "too_far_ahead",
        /// The local start time does not exist that day (clocks go forward).
        TimeDoesNotExist = "time_does_not_exist",
    }
);

text_enum!(CodePurpose { VerifyAccount = "verify_account", ResetPassword = "reset_password" });

text_enum!(Channel { Email = "email", Sms = "sms" });

text_enum!(
    /// Who did something, for the audit log: a person's role, a device, or the system.
    ActorRole {
        Doctor = "doctor", Patient = "patient", Technician = "technician", Admin = "admin",
        Device = "device", System = "system",
    }
);

text_enum!(AuditAction {
    Read = "read", Create = "create", Update = "update", Delete = "delete",
    Subscribe = "subscribe", Denied = "denied",
});

text_enum!(
    /// The interface through which data was accessed.
    Interface { Rest = "rest", Mqtt = "mqtt", Websocket = "websocket", Cli = "cli", Hl7 = "hl7" }
);

impl From<Role> for ActorRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Doctor => ActorRole::Doctor,
            Role::Patient => ActorRole::Patient,
            Role::Technician => ActorRole::Technician,
            Role::Admin => ActorRole::Admin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_their_strings() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), *r);
        }
        assert_eq!(BloodGroup::AbNeg.as_str(), "AB-");
        assert!("superuser".parse::<Role>().is_err());
    }
}
