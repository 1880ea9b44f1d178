//! Alarms: who sees an alert and acts on it, and who is notified at each escalation tier.
//!
//! Tiers (issue of the distributed alarm system, IEC 60601-1-8 §6.11): an alert goes first
//! to the device's care team (tier 1: its assigned doctors and technicians, and technicians
//! holding a live hand-over); unanswered, it escalates to the doctors of the device's ward
//! (tier 2: every active doctor whose ward is the device's; the hospital's doctors when the
//! device has no ward or the ward has no doctor), then to the hospital's admins (tier 3).
//! Nobody outside the hospital, and no patient, is ever in a tier.
//!
//! Who may do what ([`decide_alert`]):
//! - the care team reads the alert and acknowledges, snoozes or clears it (a technician only
//!   within its read window, as for every other clinical datum);
//! - the patient the alert is about reads it (their own treatment) and does nothing else;
//! - a tier-2 doctor, once the alert has escalated to tier 2, reads and acts on it like the
//!   care team (that is what escalation is for);
//! - an admin, once the alert has escalated to tier 3, reads it in the administrative view
//!   (no patient, no values) and may acknowledge it (a charge role takes it on); snoozing
//!   and clearing stay clinical decisions.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use nc_domain::{AssignmentRole, DeviceId, HospitalId, PatientId, Role, UserId};
use nc_entities::{device_assignments, devices, temporary_access_grants, users};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

use super::{ClinicalView, Decision, Denied, DeviceScope, Policy, PolicyError, ReadScope, Subject};

/// The highest escalation tier.
pub const TOP_TIER: u8 = 3;

/// What may be done to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertAction {
    Read,
    /// Take it on: stops its escalation (the condition keeps being tracked).
    Acknowledge,
    /// Silence it for a bounded time; it re-alerts if still present afterwards.
    Snooze,
    /// End it by hand (technical alarms, or a value back in range).
    Clear,
}

/// How much of an alert a subject sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertView {
    /// Everything (the care team, tier-2 doctors, the patient it is about).
    Full,
    /// No patient, session, value, threshold or message: the device, the condition, its
    /// priority and its state (admins paged at tier 3).
    Administrative,
}

/// The alert as far as decisions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertRef {
    pub hospital: HospitalId,
    pub device: DeviceId,
    pub patient: Option<PatientId>,
    pub raised_at: DateTime<Utc>,
    /// The tier reached.
    pub escalation_level: u8,
}

/// What the alert decision depends on, for one subject and one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlertFacts {
    /// The alert's hospital and escalation level; `None`: no such alert.
    pub alert: Option<(HospitalId, u8)>,
    /// The subject is on the device's care team and the alert lies in what it may read.
    pub care_team: bool,
    /// The subject is the patient the alert is about.
    pub own: bool,
    /// The subject's escalation tier for the device (2: a doctor of its ward or hospital;
    /// 3: an admin), if it belongs to one beyond the care team.
    pub tier: Option<u8>,
}

pub fn decide_alert(subject: &Subject, facts: &AlertFacts, action: AlertAction) -> Result<AlertView, Denied> {
    let Some((hospital, level)) = facts.alert else { return Err(Denied::NotFound) };
    if hospital != subject.hospital() {
        return Err(Denied::NotFound);
    }
    let Subject::User(user) = subject else { return Err(Denied::NotFound) };
    use AlertAction::*;
    let paged = facts.tier.is_some_and(|t| t <= level);
    match (user.role, action) {
        (Role::Doctor | Role::Technician, _) if facts.care_team => Ok(AlertView::Full),
        (Role::Doctor, _) if paged => Ok(AlertView::Full),
        (Role::Doctor | Role::Technician, _) => {
            Err(Denied::Forbidden("this alert's device is not in your care and the alert was not escalated to you"))
        }
        (Role::Patient, Read) if facts.own => Ok(AlertView::Full),
        (Role::Patient, _) if facts.own => Err(Denied::Forbidden("patients do not act on alarms")),
        // Another patient's alert does not exist for a patient.
        (Role::Patient, _) => Err(Denied::NotFound),
        (Role::Admin, Read | Acknowledge) if paged => Ok(AlertView::Administrative),
        (Role::Admin, Snooze | Clear) if paged => {
            Err(Denied::Forbidden("snoozing and clearing an alarm are clinical decisions"))
        }
        (Role::Admin, _) => Err(Denied::Forbidden("admins see an alert only once it has escalated to them")),
    }
}

/// The escalation tier a role belongs to beyond a device's care team, if any: 2, doctors
/// (of the device's ward, or of its hospital when the ward has none: see
/// [`Policy::tier2_doctors`]); 3, admins.
pub fn tier_of_role(role: Role) -> Option<u8> {
    match role {
        Role::Admin => Some(TOP_TIER),
        Role::Doctor => Some(2),
        Role::Technician | Role::Patient => None,
    }
}

/// How a list of alerts shows them to a role: as [`decide_alert`] shows each alert it may
/// read (admins, who read no clinical data, the administrative view).
pub fn alert_list_view(role: Role) -> AlertView {
    match role {
        Role::Admin => AlertView::Administrative,
        Role::Doctor | Role::Technician | Role::Patient => AlertView::Full,
    }
}

/// Whether the subject may receive notifications of an alert at `level`: the care team
/// (decided by the caller through the device's alerts topic) or a tier reached.
pub fn decide_alert_notice(tier: Option<u8>, level: u8) -> Decision {
    if tier.is_some_and(|t| t <= level) {
        Ok(())
    } else {
        Err(Denied::Forbidden("the alert was not escalated to you"))
    }
}

impl Policy {
    /// The view of `alert` that `subject` may have for `action`.
    pub async fn alert(
        &self,
        subject: &Subject,
        alert: &AlertRef,
        action: AlertAction,
    ) -> Result<AlertView, PolicyError> {
        let mut facts = AlertFacts { alert: Some((alert.hospital, alert.escalation_level)), ..Default::default() };
        if let Subject::User(u) = subject {
            if u.hospital == alert.hospital {
                match self.clinical_view(subject, alert.device).await {
                    Ok(ClinicalView::Device) => {
                        facts.care_team = match self.read_scope(subject).await? {
                            ReadScope::All => true,
                            ReadScope::Windows(w) => w.iter().any(|w| {
                                w.device == alert.device && alert.raised_at >= w.from && alert.raised_at < w.to
                            }),
                        };
                    }
                    Ok(ClinicalView::OwnTreatment(p)) => facts.own = alert.patient == Some(p),
                    Err(PolicyError::Denied(_)) => {}
                    Err(e) => return Err(e),
                }
                facts.tier = self.escalation_tier(subject, alert.device).await?;
            }
        }
        Ok(decide_alert(subject, &facts, action)?)
    }

    /// The subject's escalation tier beyond the care team for `device`, if any.
    pub async fn escalation_tier(&self, subject: &Subject, device: DeviceId) -> Result<Option<u8>, DbErr> {
        let Subject::User(u) = subject else { return Ok(None) };
        Ok(match tier_of_role(u.role) {
            Some(2) => self.tier2_doctors(device).await?.contains(&u.id).then_some(2),
            tier => tier,
        })
    }

    /// Everyone notified once an alert of `device` has reached `tier`: the care team, and
    /// each tier up to `tier` (each person once, at their lowest tier), with their role.
    pub async fn alert_recipients(&self, device: DeviceId, tier: u8) -> Result<Vec<(UserId, Role, u8)>, DbErr> {
        let mut out: Vec<(UserId, Role, u8)> = Vec::new();
        let mut seen = HashSet::new();
        for (id, role) in self.care_team(device).await? {
            if seen.insert(id) {
                out.push((id, role, 1));
            }
        }
        if tier >= 2 {
            for id in self.tier2_doctors(device).await? {
                if seen.insert(id) {
                    out.push((id, Role::Doctor, 2));
                }
            }
        }
        if tier >= 3 {
            let Some(hospital) = self.device_hospital(device).await? else { return Ok(out) };
            for id in self.active_staff(hospital, Role::Admin, None).await? {
                if seen.insert(id) {
                    out.push((id, Role::Admin, 3));
                }
            }
        }
        Ok(out)
    }

    /// The device's care team now: its assigned doctors and technicians and the technicians
    /// holding an active hand-over (the one definition of an active grant: not revoked,
    /// not expired), active accounts only.
    pub async fn care_team(&self, device: DeviceId) -> Result<Vec<(UserId, Role)>, DbErr> {
        let assigned: Vec<(UserId, AssignmentRole)> = device_assignments::Entity::find()
            .select_only()
            .column(device_assignments::Column::UserId)
            .column(device_assignments::Column::Role)
            .filter(device_assignments::Column::DeviceId.eq(device))
            .filter(device_assignments::Column::EndedAt.is_null())
            .into_tuple()
            .all(&self.db)
            .await?;
        let granted: Vec<UserId> = temporary_access_grants::Entity::find()
            .select_only()
            .column(temporary_access_grants::Column::GrantedTo)
            .filter(temporary_access_grants::Column::DeviceId.eq(device))
            .filter(active_grant())
            .into_tuple()
            .all(&self.db)
            .await?;
        let people = assigned
            .into_iter()
            .map(|(u, r)| (u, if r == AssignmentRole::Doctor { Role::Doctor } else { Role::Technician }))
            .chain(granted.into_iter().map(|u| (u, Role::Technician)));
        let mut out: Vec<(UserId, Role)> = Vec::new();
        for (u, r) in people {
            if !out.iter().any(|(id, _)| *id == u) {
                out.push((u, r));
            }
        }
        let ids: Vec<UserId> = out.iter().map(|(u, _)| *u).collect();
        let active: HashSet<UserId> = users::Entity::find()
            .select_only()
            .column(users::Column::Id)
            .filter(users::Column::Id.is_in(ids))
            .filter(live_account())
            .into_tuple::<UserId>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        out.retain(|(u, _)| active.contains(u));
        Ok(out)
    }

    /// Tier 2 of `device`: the active doctors of its ward, or of its hospital when it has
    /// no ward or its ward has no active doctor.
    pub async fn tier2_doctors(&self, device: DeviceId) -> Result<Vec<UserId>, DbErr> {
        let Some((hospital, ward)) = devices::Entity::find_by_id(device)
            .select_only()
            .column(devices::Column::HospitalId)
            .column(devices::Column::Ward)
            .into_tuple::<(HospitalId, Option<String>)>()
            .one(&self.db)
            .await?
        else {
            return Ok(Vec::new());
        };
        if let Some(ward) = ward {
            let of_ward = self.active_staff(hospital, Role::Doctor, Some(&ward)).await?;
            if !of_ward.is_empty() {
                return Ok(of_ward);
            }
        }
        self.active_staff(hospital, Role::Doctor, None).await
    }

    /// The devices of the subject's hospital for which it is a tier-2 doctor.
    pub async fn tier2_devices(&self, subject: &Subject) -> Result<DeviceScope, DbErr> {
        let Subject::User(u) = subject else { return Ok(DeviceScope::Nothing) };
        if u.role != Role::Doctor {
            return Ok(DeviceScope::Nothing);
        }
        let all: Vec<(DeviceId, Option<String>)> = devices::Entity::find()
            .select_only()
            .column(devices::Column::Id)
            .column(devices::Column::Ward)
            .filter(devices::Column::HospitalId.eq(u.hospital))
            .into_tuple()
            .all(&self.db)
            .await?;
        let doctors: Vec<(UserId, Option<String>)> = users::Entity::find()
            .select_only()
            .column(users::Column::Id)
            .column(users::Column::Ward)
            .filter(users::Column::HospitalId.eq(u.hospital))
            .filter(users::Column::Role.eq(Role::Doctor))
            .filter(live_account())
            .into_tuple()
            .all(&self.db)
            .await?;
        let Some((_, mine)) = doctors.iter().find(|(id, _)| *id == u.id) else { return Ok(DeviceScope::Nothing) };
        let staffed: HashSet<&str> = doctors.iter().filter_map(|(_, w)| w.as_deref()).collect();
        Ok(DeviceScope::Only(
            all.into_iter()
                .filter(|(_, ward)| match ward {
                    None => true,
                    Some(w) => mine.as_deref() == Some(w.as_str()) || !staffed.contains(w.as_str()),
                })
                .map(|(d, _)| d)
                .collect(),
        ))
    }

    async fn device_hospital(&self, device: DeviceId) -> Result<Option<HospitalId>, DbErr> {
        devices::Entity::find_by_id(device)
            .select_only()
            .column(devices::Column::HospitalId)
            .into_tuple()
            .one(&self.db)
            .await
    }

    async fn active_staff(&self, hospital: HospitalId, role: Role, ward: Option<&str>) -> Result<Vec<UserId>, DbErr> {
        let mut q = users::Entity::find()
            .select_only()
            .column(users::Column::Id)
            .filter(users::Column::HospitalId.eq(hospital))
            .filter(users::Column::Role.eq(role))
            .filter(live_account());
        if let Some(w) = ward {
            q = q.filter(users::Column::Ward.eq(w));
        }
        q.into_tuple().all(&self.db).await
    }
}

/// A temporary grant in force: not revoked and not expired (checked at decision time, so
/// expiry needs no background job).
pub fn active_grant() -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(temporary_access_grants::Column::RevokedAt.is_null())
        .add(temporary_access_grants::Column::ExpiresAt.gt(Utc::now()))
}

/// An account that may act: active, verified, not deactivated.
fn live_account() -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(users::Column::IsActive.eq(true))
        .add(users::Column::VerifiedAt.is_not_null())
        .add(users::Column::DeactivatedAt.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::UserSubject;

    fn subject(role: Role, hospital: HospitalId) -> Subject {
        Subject::User(UserSubject { id: UserId::new(), role, hospital, family: None })
    }

    /// Every role × relationship × tier reached × action, against the rules in the module
    /// documentation.
    #[test]
    fn who_sees_and_acts_on_an_alert() {
        let h = HospitalId::new();
        let actions = [AlertAction::Read, AlertAction::Acknowledge, AlertAction::Snooze, AlertAction::Clear];
        for role in [Role::Admin, Role::Doctor, Role::Technician, Role::Patient] {
            for care_team in [false, true] {
                for own in [false, true] {
                    for tier in [None, Some(2), Some(3)] {
                        for level in 1..=3u8 {
                            for action in actions {
                                let s = subject(role, h);
                                let facts = AlertFacts { alert: Some((h, level)), care_team, own, tier };
                                let got = decide_alert(&s, &facts, action);
                                let paged = tier.is_some_and(|t| t <= level);
                                let want = match role {
                                    Role::Doctor | Role::Technician if care_team => Ok(AlertView::Full),
                                    Role::Doctor if paged => Ok(AlertView::Full),
                                    Role::Patient if own && action == AlertAction::Read => Ok(AlertView::Full),
                                    Role::Admin
                                        if paged && matches!(action, AlertAction::Read | AlertAction::Acknowledge) =>
                                    {
                                        Ok(AlertView::Administrative)
                                    }
                                    _ => Err(()),
                                };
                                assert_eq!(
                                    got.map_err(|_| ()),
                                    want,
                                    "{role:?} care_team={care_team} own={own} tier={tier:?} level={level} {action:?}"
                                );
                                if role == Role::Patient && !own {
                                    assert_eq!(got, Err(Denied::NotFound), "another patient's alert is not shown");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn nothing_crosses_hospitals_and_machines_act_on_no_alert() {
        let (h, other) = (HospitalId::new(), HospitalId::new());
        let facts = AlertFacts { alert: Some((other, 3)), care_team: true, own: true, tier: Some(2) };
        for role in [Role::Admin, Role::Doctor, Role::Technician, Role::Patient] {
            assert_eq!(decide_alert(&subject(role, h), &facts, AlertAction::Read), Err(Denied::NotFound));
        }
        let device = Subject::Device { id: DeviceId::new(), hospital: other };
        assert_eq!(decide_alert(&device, &facts, AlertAction::Read), Err(Denied::NotFound));
        assert_eq!(
            decide_alert(&subject(Role::Doctor, h), &AlertFacts::default(), AlertAction::Read),
            Err(Denied::NotFound)
        );
    }

    #[test]
    fn notices_follow_the_tier_reached() {
        assert!(decide_alert_notice(None, 3).is_err());
        assert!(decide_alert_notice(Some(2), 1).is_err());
        assert!(decide_alert_notice(Some(2), 2).is_ok());
        assert!(decide_alert_notice(Some(3), 2).is_err());
        assert!(decide_alert_notice(Some(3), 3).is_ok());
    }
}
