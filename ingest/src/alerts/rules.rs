//! The alarm limits (`alert_thresholds`): a hospital's defaults per metric, overridden per
//! metric by a patient's own. Every committed batch needs them and they change rarely, so
//! they are kept in memory, per hospital and per patient, as they are first needed. Any
//! change, on any node, empties what is kept: a statement that changes the table sends
//! `NOTIFY nc_alert_thresholds` at its commit (migration 39) and [`Rules::listen`] hears it.
//! While nothing listens (before the listener is up, after its connection was lost and
//! until it is back) every batch reads the table as before, so a change is never missed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Duration;
use nc_domain::AlertPriority;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::writer::Row;

/// What `alert_thresholds`' trigger notifies.
const CHANNEL: &str = "nc_alert_thresholds";

/// One metric's limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rule {
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub priority: AlertPriority,
    pub delay: Duration,
    pub hysteresis: f64,
}

/// Metric → rule.
pub(super) type RuleSet = HashMap<String, Rule>;

#[derive(Default)]
struct Kept {
    /// Bumped by every change heard: what was read before one is not kept.
    generation: u64,
    defaults: HashMap<Uuid, RuleSet>,
    overrides: HashMap<Uuid, RuleSet>,
}

/// The limits, kept while a listener hears of every change (see the module).
#[derive(Default)]
pub(super) struct Rules {
    listening: AtomicBool,
    kept: Mutex<Kept>,
}

/// The stored priority (a CHECK constraint allows only the three), medium if ever unknown.
fn priority(p: &str) -> AlertPriority {
    p.parse().unwrap_or(AlertPriority::Medium)
}

impl Rules {
    /// The effective rules of each (hospital, patient) of `rows`.
    pub async fn of(&self, pool: &PgPool, rows: &[Row]) -> Result<HashMap<(Uuid, Option<Uuid>), RuleSet>, sqlx::Error> {
        let hospitals: HashSet<Uuid> = rows.iter().map(|r| r.hospital_id).collect();
        let patients: HashSet<Uuid> = rows.iter().filter_map(|r| r.patient_id).collect();
        let listening = self.listening.load(Ordering::Acquire);
        let (generation, missing_h, missing_p) = {
            let kept = self.kept.lock().expect("rules lock");
            let (h, p): (Vec<Uuid>, Vec<Uuid>) = if listening {
                (
                    hospitals.iter().filter(|h| !kept.defaults.contains_key(h)).copied().collect(),
                    patients.iter().filter(|p| !kept.overrides.contains_key(p)).copied().collect(),
                )
            } else {
                (hospitals.iter().copied().collect(), patients.iter().copied().collect())
            };
            (kept.generation, h, p)
        };
        let mut defaults: HashMap<Uuid, RuleSet> = missing_h.iter().map(|h| (*h, RuleSet::new())).collect();
        let mut overrides: HashMap<Uuid, RuleSet> = missing_p.iter().map(|p| (*p, RuleSet::new())).collect();
        if !missing_h.is_empty() || !missing_p.is_empty() {
            /// hospital, patient, metric, low, high, priority, delay (s), hysteresis
            type ThresholdRow = (Uuid, Option<Uuid>, String, Option<f64>, Option<f64>, String, i32, f64);
            let found: Vec<ThresholdRow> = sqlx::query_as(
                "SELECT hospital_id, patient_id, metric, low, high, priority, delay_seconds, hysteresis
                   FROM alert_thresholds
                  WHERE enabled AND ((patient_id IS NULL AND hospital_id = ANY($1)) OR patient_id = ANY($2))",
            )
            .bind(&missing_h)
            .bind(&missing_p)
            .fetch_all(pool)
            .await?;
            for (h, p, metric, low, high, prio, delay, hysteresis) in found {
                let rule = Rule {
                    low,
                    high,
                    priority: priority(&prio),
                    delay: Duration::seconds(i64::from(delay)),
                    hysteresis,
                };
                match p {
                    None => defaults.entry(h).or_default().insert(metric, rule),
                    Some(p) => overrides.entry(p).or_default().insert(metric, rule),
                };
            }
        }
        let mut kept = self.kept.lock().expect("rules lock");
        if listening && kept.generation == generation && self.listening.load(Ordering::Acquire) {
            kept.defaults.extend(defaults.iter().map(|(k, v)| (*k, v.clone())));
            kept.overrides.extend(overrides.iter().map(|(k, v)| (*k, v.clone())));
        }
        let mut out = HashMap::new();
        for r in rows {
            out.entry((r.hospital_id, r.patient_id)).or_insert_with(|| {
                let mut rules = defaults
                    .get(&r.hospital_id)
                    .or_else(|| kept.defaults.get(&r.hospital_id))
                    .cloned()
                    .unwrap_or_default();
                let own = r.patient_id.and_then(|p| overrides.get(&p).or_else(|| kept.overrides.get(&p)));
                if let Some(own) = own {
                    rules.extend(own.iter().map(|(k, v)| (k.clone(), *v)));
                }
                rules
            });
        }
        Ok(out)
    }

    /// Forgets everything kept (a change was heard, or may have been missed).
    fn forget(&self) {
        let mut kept = self.kept.lock().expect("rules lock");
        kept.generation += 1;
        kept.defaults.clear();
        kept.overrides.clear();
    }

    /// Stops keeping (and forgets): every batch reads the table.
    fn stop_keeping(&self) {
        self.listening.store(false, Ordering::Release);
        self.forget();
    }

    /// Listens for changes until `stop`; keeps the limits only while it does.
    pub async fn listen(self: Arc<Self>, pool: PgPool, stop: CancellationToken) {
        let mut delays =
            crate::retry::delays(std::time::Duration::from_millis(200), std::time::Duration::from_secs(10));
        loop {
            let listener = async {
                let mut l = PgListener::connect_with(&pool).await?;
                l.listen(CHANNEL).await?;
                Ok::<_, sqlx::Error>(l)
            };
            let mut listener = tokio::select! {
                _ = stop.cancelled() => return,
                l = listener => match l {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for changes of the alarm limits; reading them for every batch");
                        let wait = delays.next().unwrap_or(std::time::Duration::from_secs(10));
                        if !crate::retry::wait(wait, &stop).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            // Heard from now on: what is read from here may be kept.
            self.forget();
            self.listening.store(true, Ordering::Release);
            loop {
                // `try_recv` answers `None` when the connection was lost (a reconnect
                // follows): changes may have been missed meanwhile.
                let got = tokio::select! {
                    _ = stop.cancelled() => return,
                    got = listener.try_recv() => got,
                };
                match got {
                    Ok(Some(_)) => self.forget(),
                    Ok(None) => {
                        tracing::info!("lost the connection that hears of changes of the alarm limits; reading them for every batch until it is back");
                        self.stop_keeping();
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "stopped hearing of changes of the alarm limits; reading them for every batch");
                        self.stop_keeping();
                        break;
                    }
                }
            }
        }
    }
}
