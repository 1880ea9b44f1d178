//! The simulated patient and machine: noise, physiology over a treatment, and episodes.

use chrono::{DateTime, Utc};
use nc_domain::PatientId;

/// Small deterministic PRNG (xorshift): the simulator needs noise, not cryptography, and a
/// seed per device keeps runs reproducible.
pub(crate) use crate::tools::corpus::Noise;

#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Episode {
    None,
    Hypotension,
    HighVenous,
    ConductivityFault,
    Disconnect,
}

/// One patient's treatment: their baseline, drifting over the session.
pub(crate) struct Body {
    base_hr: f64,
    base_sbp: f64,
}

impl Body {
    pub(crate) fn new(noise: &mut Noise) -> Body {
        Body { base_hr: 72.0 + noise.gauss() * 6.0, base_sbp: 135.0 + noise.gauss() * 10.0 }
    }

    /// The reading at `progress` (0..1) through a 4 h treatment, during `episode`.
    pub(crate) fn reading(
        &self,
        noise: &mut Noise,
        progress: f64,
        episode: Episode,
        seq: i64,
        ts: DateTime<Utc>,
        patient: PatientId,
    ) -> serde_json::Value {
        let (base_hr, base_sbp) = (self.base_hr, self.base_sbp);
        let mut sbp = base_sbp - 15.0 * progress + noise.gauss() * 4.0;
        let mut hr = base_hr + 4.0 * progress + noise.gauss() * 2.0;
        let mut venous = 160.0 + noise.gauss() * 12.0;
        let mut conductivity = 13.8 + noise.gauss() * 0.05;
        let mut status = "normal";
        match episode {
            Episode::Hypotension => {
                sbp = 82.0 + noise.gauss() * 3.0;
                hr += 18.0;
            }
            Episode::HighVenous => {
                venous = 430.0 + noise.gauss() * 10.0;
                status = "warning";
            }
            Episode::ConductivityFault => {
                conductivity = 16.6 + noise.gauss() * 0.1;
                status = "danger";
            }
            Episode::None | Episode::Disconnect => {}
        }
        sbp = sbp.clamp(60.0, 220.0);
        hr = hr.clamp(35.0, 180.0);
        let treated_hours = progress * 4.0;
        serde_json::json!({
            "v": 1, "seq": seq, "ts": ts, "patientId": patient,
            "heartRate": (hr * 10.0).round() / 10.0,
            "temperature": ((98.2 + noise.gauss() * 0.3) * 10.0).round() / 10.0,
            "bloodPressure": sbp.round(),
            "diastolicPressure": (sbp * 0.6).round(),
            "oxygenSaturation": (97.0 + noise.gauss() * 0.8).clamp(85.0, 100.0).round(),
            "flowRate": (400.0 + noise.gauss() * 8.0).round(),
            "totalVolume": ((400.0 * 60.0 * treated_hours / 1000.0) * 100.0).round() / 100.0,
            "systemStatus": status,
            "dialysateFlowRate": 500.0,
            "arterialPressure": (-150.0 + noise.gauss() * 10.0).round(),
            "venousPressure": venous.round(),
            "transmembranePressure": (80.0 + noise.gauss() * 8.0).round(),
            "conductivity": (conductivity * 100.0).round() / 100.0,
            "dialysateTemperature": ((36.8 + noise.gauss() * 0.1) * 10.0).round() / 10.0,
            "ufRate": 600.0,
            "ufVolume": (600.0 * treated_hours).round(),
            "ufGoal": 2400.0,
        })
    }
}
