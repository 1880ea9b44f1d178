//! Escalation policies: per hospital and priority, how long an alert may stay
//! unacknowledged before it escalates, and the tiers it escalates to, one after the other.
//! A hospital without a stored rule for a priority uses the service's configured default
//! (high: tiers 2 then 3 after 60 s each; medium: after 180 s; low: never).

use chrono::{DateTime, Utc};
use nc_domain::{AlertPriority, HospitalId, UserId};
use sqlx::PgPool;

/// One priority's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationRule {
    /// Seconds an alert may stay unacknowledged at a tier before the next; `None`: never escalates.
    pub after_seconds: Option<u32>,
    /// The tiers reached, in order (each of 2 and 3 at most once, increasing).
    pub tiers: Vec<u8>,
}

impl EscalationRule {
    pub const fn never() -> Self {
        EscalationRule { after_seconds: None, tiers: Vec::new() }
    }

    /// The tier after `level`, if the rule escalates beyond it.
    pub fn next_tier(&self, level: u8) -> Option<u8> {
        self.after_seconds?;
        self.tiers.iter().copied().find(|t| *t > level)
    }

    /// When an alert now at `level` escalates next, counting from `from`.
    pub fn next_at(&self, level: u8, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let after = self.after_seconds?;
        self.next_tier(level).map(|_| from + chrono::Duration::seconds(after.into()))
    }

    /// Why the rule cannot be stored, if it cannot (the field is named by the caller).
    pub fn problem(&self) -> Option<&'static str> {
        if self.after_seconds.is_some_and(|s| !(1..=3600).contains(&s)) {
            return Some("afterSeconds must be between 1 and 3600");
        }
        if self.after_seconds.is_none() && !self.tiers.is_empty() {
            return Some("a rule that never escalates (afterSeconds null) has no tiers");
        }
        if self.after_seconds.is_some() && self.tiers.is_empty() {
            return Some("give the tiers to escalate to (2, 3 or both), or afterSeconds null to never escalate");
        }
        if !self.tiers.iter().all(|t| (2..=3).contains(t)) || !self.tiers.windows(2).all(|w| w[0] < w[1]) {
            return Some("tiers are 2 (the ward's doctors) and/or 3 (the hospital's admins), increasing");
        }
        None
    }
}

/// A hospital's escalation policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationPolicy {
    pub high: EscalationRule,
    pub medium: EscalationRule,
    pub low: EscalationRule,
    /// Who last changed it and when (`None`: the configured defaults).
    pub updated_by: Option<UserId>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Default for EscalationPolicy {
    /// The documented defaults: high after 60 s, medium after 180 s, each to tier 2 then 3;
    /// low never.
    fn default() -> Self {
        EscalationPolicy {
            high: EscalationRule { after_seconds: Some(60), tiers: vec![2, 3] },
            medium: EscalationRule { after_seconds: Some(180), tiers: vec![2, 3] },
            low: EscalationRule::never(),
            updated_by: None,
            updated_at: None,
        }
    }
}

impl EscalationPolicy {
    pub fn rule(&self, priority: AlertPriority) -> &EscalationRule {
        match priority {
            AlertPriority::High => &self.high,
            AlertPriority::Medium => &self.medium,
            AlertPriority::Low => &self.low,
        }
    }

    fn rule_mut(&mut self, priority: AlertPriority) -> &mut EscalationRule {
        match priority {
            AlertPriority::High => &mut self.high,
            AlertPriority::Medium => &mut self.medium,
            AlertPriority::Low => &mut self.low,
        }
    }

    /// The hospital's policy: its stored rules over `defaults`.
    pub async fn load(pool: &PgPool, hospital: HospitalId, defaults: &EscalationPolicy) -> Result<Self, sqlx::Error> {
        type RuleRow = (String, Option<i32>, Vec<i16>, Option<uuid::Uuid>, DateTime<Utc>);
        let rows: Vec<RuleRow> = sqlx::query_as(
            "SELECT priority, after_seconds, tiers, updated_by, updated_at FROM alert_escalation_rules WHERE hospital_id = $1",
        )
        .bind(hospital.as_uuid())
        .fetch_all(pool)
        .await?;
        let mut policy = defaults.clone();
        for (priority, after, tiers, by, at) in rows {
            if let Ok(priority) = priority.parse() {
                *policy.rule_mut(priority) = EscalationRule {
                    after_seconds: after.and_then(|s| u32::try_from(s).ok()),
                    tiers: tiers.into_iter().filter_map(|t| u8::try_from(t).ok()).collect(),
                };
            }
            if policy.updated_at.is_none_or(|u| at > u) {
                policy.updated_at = Some(at);
                policy.updated_by = by.map(UserId);
            }
        }
        Ok(policy)
    }

    /// Stores every priority's rule for the hospital (one transaction).
    pub async fn store(&self, pool: &PgPool, hospital: HospitalId, by: UserId) -> Result<(), sqlx::Error> {
        let mut tx = pool.begin().await?;
        for (priority, rule) in
            [(AlertPriority::High, &self.high), (AlertPriority::Medium, &self.medium), (AlertPriority::Low, &self.low)]
        {
            let tiers: Vec<i16> = rule.tiers.iter().map(|t| i16::from(*t)).collect();
            sqlx::query(
                "INSERT INTO alert_escalation_rules (hospital_id, priority, after_seconds, tiers, updated_by, updated_at)
                 VALUES ($1, $2, $3, $4, $5, now())
                 ON CONFLICT (hospital_id, priority) DO UPDATE
                    SET after_seconds = EXCLUDED.after_seconds, tiers = EXCLUDED.tiers,
                        updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at",
            )
            .bind(hospital.as_uuid())
            .bind(priority.as_str())
            .bind(rule.after_seconds.map(|s| s as i32))
            .bind(&tiers)
            .bind(by.as_uuid())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_steps_through_its_tiers_and_stops() {
        let rule = EscalationRule { after_seconds: Some(60), tiers: vec![2, 3] };
        let t = Utc::now();
        assert_eq!(rule.next_tier(1), Some(2));
        assert_eq!(rule.next_tier(2), Some(3));
        assert_eq!(rule.next_tier(3), None);
        assert_eq!(rule.next_at(1, t), Some(t + chrono::Duration::seconds(60)));
        assert_eq!(rule.next_at(3, t), None);
        let straight_to_admins = EscalationRule { after_seconds: Some(30), tiers: vec![3] };
        assert_eq!(straight_to_admins.next_tier(1), Some(3));
        assert_eq!(EscalationRule::never().next_tier(1), None);
        assert_eq!(EscalationRule::never().next_at(1, t), None);
    }

    #[test]
    fn rules_that_cannot_be_meant_are_refused() {
        for (after, tiers) in [
            (Some(0), vec![2]),
            (Some(3601), vec![2]),
            (None, vec![2]),
            (Some(60), vec![]),
            (Some(60), vec![1]),
            (Some(60), vec![3, 2]),
            (Some(60), vec![2, 2]),
            (Some(60), vec![4]),
        ] {
            assert!(
                EscalationRule { after_seconds: after, tiers: tiers.clone() }.problem().is_some(),
                "{after:?} {tiers:?}"
            );
        }
        assert!(EscalationRule { after_seconds: Some(1), tiers: vec![2, 3] }.problem().is_none());
        assert!(EscalationRule::never().problem().is_none());
    }
}
