//! Lists of alerts: which of its hospital's alerts a subject may list, how it sees them, and
//! whether it may narrow the list to a device or a patient at all. The same rule as
//! [`decide_alert`] for one alert (the care team within what it may read, a patient their
//! own, a tier reached), as one condition that the list query applies: the handler adds
//! no access rule of its own.
//!
//! A filter is a read in its own right: narrowing the list to a patient chooses that
//! patient's alarms, whose codes are clinical data about them, so it needs the right to
//! read the patient ([`PatientAction::Read`]: admins never have it); narrowing to a device
//! needs the right to see the device ([`DeviceAction::View`]).

use nc_domain::{DeviceId, PatientId, Role};
use nc_entities::alerts;
use sea_orm::{ColumnTrait, Condition};

use super::alarms::{alert_list_view, tier_of_role};
use super::{AlertView, DeviceAction, DeviceScope, PatientAction, Policy, PolicyError, ReadScope, Subject};

/// The filters of a list of alerts that select by object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertFilter {
    pub device: Option<DeviceId>,
    pub patient: Option<PatientId>,
}

/// What of its hospital's alerts a subject may list (see the module documentation).
#[derive(Debug, Clone)]
pub struct AlertScope {
    condition: Condition,
    view: AlertView,
}

impl AlertScope {
    /// The condition on `alerts` rows: the subject's hospital, the alerts it may see, and
    /// the filters it was allowed.
    pub fn condition(&self) -> Condition {
        self.condition.clone()
    }

    /// How every alert of the list is shown.
    pub fn view(&self) -> AlertView {
        self.view
    }
}

/// The lowest escalation level at which an alert reaches `tier` (tiers are 2 and 3).
fn reached(tier: u8) -> Condition {
    Condition::all().add(alerts::Column::EscalationLevel.gte(i16::from(tier)))
}

impl Policy {
    /// The alerts `subject` may list with `filter`. A refused filter is the same refusal as
    /// reading its object (404 across hospitals, 403 otherwise), returned with the name of
    /// the object (`device`, `patient`).
    pub async fn alert_scope(
        &self,
        subject: &Subject,
        filter: AlertFilter,
    ) -> Result<AlertScope, (&'static str, PolicyError)> {
        if let Some(d) = filter.device {
            self.device(subject, d, DeviceAction::View).await.map_err(|e| ("device", e))?;
        }
        if let Some(p) = filter.patient {
            self.patient(subject, p, PatientAction::Read).await.map_err(|e| ("patient", e))?;
        }
        self.visible_alerts(subject, filter).await.map_err(|e| ("alert", e))
    }

    /// The alerts whose notes `subject` receives on their notifications topic (and is sent
    /// again, open and unanswered, when subscribing): the alerts they may list, for the
    /// staff the alarm system notifies. `None` for a patient, whose own treatment's alerts
    /// come on their patient topic, and for devices.
    pub async fn alert_notification_scope(&self, subject: &Subject) -> Result<Option<AlertScope>, PolicyError> {
        match subject {
            Subject::User(user) if user.role != Role::Patient => {
                self.visible_alerts(subject, AlertFilter::default()).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The scope of an allowed filter.
    async fn visible_alerts(&self, subject: &Subject, filter: AlertFilter) -> Result<AlertScope, PolicyError> {
        let Subject::User(user) = subject else { return Err(super::Denied::NotFound.into()) };
        let mut visible = Condition::any();
        if let DeviceScope::Only(ids) = self.clinical_devices(subject).await? {
            let mut care = Condition::all().add(alerts::Column::DeviceId.is_in(ids));
            if user.role == Role::Patient {
                // A patient's own treatment only: a shared machine's other patients' alarms are not theirs.
                care = care.add(alerts::Column::PatientId.eq(self.patient_of_user(user.id).await?));
            }
            if let ReadScope::Windows(windows) = self.read_scope(subject).await? {
                let mut within = Condition::any().add(alerts::Column::Id.is_null());
                for w in &windows {
                    within = within.add(
                        Condition::all()
                            .add(alerts::Column::DeviceId.eq(w.device))
                            .add(alerts::Column::RaisedAt.gte(w.from))
                            .add(alerts::Column::RaisedAt.lt(w.to)),
                    );
                }
                care = care.add(within);
            }
            visible = visible.add(care);
        }
        match tier_of_role(user.role) {
            Some(2) => {
                let tier2 = self.tier2_devices(subject).await?;
                visible = visible.add(reached(2).add(alerts::Column::DeviceId.is_in(tier2.ids().to_vec())));
            }
            Some(tier) => visible = visible.add(reached(tier)),
            None => {}
        }
        let mut condition = Condition::all().add(alerts::Column::HospitalId.eq(user.hospital)).add(visible);
        if let Some(d) = filter.device {
            condition = condition.add(alerts::Column::DeviceId.eq(d));
        }
        if let Some(p) = filter.patient {
            condition = condition.add(alerts::Column::PatientId.eq(p));
        }
        Ok(AlertScope { condition, view: alert_list_view(user.role) })
    }
}
