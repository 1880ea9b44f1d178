//! Device upkeep: who maintains a machine and who changes its status.
//!
//! - [`DeviceAction::Maintain`] (record a maintenance, switch between `active` and
//!   `maintenance`): the technicians responsible for the device — assigned to it, or holding
//!   an active hand-over (they run it while the hand-over lasts) — and admins, who manage
//!   devices. Doctors and patients do not.
//! - [`decide_device_status`]: admins make any change; retiring a device (`inactive`) or
//!   bringing a retired one back stays theirs alone, so a technician switches only between
//!   `active` and `maintenance`.

use nc_domain::{DeviceId, DeviceStatus};
use nc_entities::devices;

use super::{decide_device, Decision, Denied, DeviceAction, DeviceFacts, Policy, PolicyError, Subject};

/// Whether `subject` may change a device's status from `from` to `to`.
pub fn decide_device_status(subject: &Subject, facts: &DeviceFacts, from: DeviceStatus, to: DeviceStatus) -> Decision {
    if decide_device(subject, facts, DeviceAction::Manage).is_ok() {
        return Ok(());
    }
    decide_device(subject, facts, DeviceAction::Maintain)?;
    let serviceable = |s: DeviceStatus| matches!(s, DeviceStatus::Active | DeviceStatus::Maintenance);
    if serviceable(from) && serviceable(to) {
        Ok(())
    } else {
        Err(Denied::Forbidden("only admins retire a device or bring a retired one back"))
    }
}

impl Policy {
    /// The device, if `subject` may change its status to `to` (see [`decide_device_status`]).
    pub async fn device_status_change(
        &self,
        subject: &Subject,
        id: DeviceId,
        to: DeviceStatus,
    ) -> Result<devices::Model, PolicyError> {
        let (device, facts) = self.device_facts(subject, id).await?;
        let from = device.as_ref().map_or(DeviceStatus::Active, |d| d.status);
        decide_device_status(subject, &facts, from, to)?;
        Ok(device.expect("decide_device refuses a missing device"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nc_domain::{HospitalId, Role, UserId};

    use super::super::UserSubject;

    fn user(role: Role, hospital: HospitalId) -> Subject {
        Subject::User(UserSubject { id: UserId::new(), role, hospital, family: None })
    }

    #[test]
    fn the_devices_technicians_and_admins_maintain_it_and_staff_see_its_upkeep() {
        let (h, id) = (HospitalId::new(), DeviceId::new());
        let d = Some((id, h));
        let none = DeviceFacts { device: d, ..Default::default() };
        let assigned = DeviceFacts { device: d, assigned: true, ..Default::default() };
        let granted = DeviceFacts { device: d, granted: true, ..Default::default() };
        use DeviceAction::{Maintain, ViewMaintenance, ViewPerformance};
        let cases: &[(Role, DeviceFacts, DeviceAction, bool)] = &[
            (Role::Technician, assigned, Maintain, true),
            (Role::Technician, granted, Maintain, true),
            (Role::Technician, none, Maintain, false),
            (Role::Admin, none, Maintain, true),
            (Role::Doctor, assigned, Maintain, false),
            (Role::Patient, DeviceFacts { own: true, ..none }, Maintain, false),
            (Role::Technician, none, ViewMaintenance, true),
            (Role::Doctor, none, ViewMaintenance, true),
            (Role::Admin, none, ViewMaintenance, true),
            (Role::Patient, DeviceFacts { own: true, ..none }, ViewMaintenance, false),
            (Role::Technician, none, ViewPerformance, true),
            (Role::Doctor, none, ViewPerformance, true),
            (Role::Admin, none, ViewPerformance, true),
            (Role::Patient, DeviceFacts { own: true, ..none }, ViewPerformance, false),
        ];
        for (role, facts, action, allowed) in cases {
            let got = decide_device(&user(*role, h), facts, *action);
            assert_eq!(got.is_ok(), *allowed, "{role:?} {facts:?} {action:?}: {got:?}");
            if !allowed {
                assert!(matches!(got, Err(Denied::Forbidden(_))), "same hospital answers 403");
            }
        }
        let other_hospital = DeviceFacts { device: Some((DeviceId::new(), HospitalId::new())), assigned: true, ..none };
        assert_eq!(decide_device(&user(Role::Technician, h), &other_hospital, Maintain), Err(Denied::NotFound));
        let itself = Subject::Device { id, hospital: h };
        assert!(matches!(decide_device(&itself, &none, Maintain), Err(Denied::Forbidden(_))));
        assert!(matches!(decide_device(&itself, &none, ViewPerformance), Err(Denied::Forbidden(_))));
    }

    #[test]
    fn technicians_switch_between_active_and_maintenance_only() {
        use DeviceStatus::*;
        let h = HospitalId::new();
        let d = Some((DeviceId::new(), h));
        let assigned = DeviceFacts { device: d, assigned: true, ..Default::default() };
        let granted = DeviceFacts { device: d, granted: true, ..Default::default() };
        let none = DeviceFacts { device: d, ..Default::default() };
        let all = [Active, Maintenance, Inactive];
        for from in all {
            for to in all {
                let admin = decide_device_status(&user(Role::Admin, h), &none, from, to);
                assert!(admin.is_ok(), "admins: {from:?} -> {to:?}");
                let serviceable = from != Inactive && to != Inactive;
                for facts in [assigned, granted] {
                    let tech = decide_device_status(&user(Role::Technician, h), &facts, from, to);
                    assert_eq!(tech.is_ok(), serviceable, "technician {facts:?}: {from:?} -> {to:?}");
                }
                assert!(decide_device_status(&user(Role::Technician, h), &none, from, to).is_err());
                assert!(decide_device_status(&user(Role::Doctor, h), &assigned, from, to).is_err());
            }
        }
        let elsewhere = DeviceFacts { device: Some((DeviceId::new(), HospitalId::new())), ..Default::default() };
        assert_eq!(decide_device_status(&user(Role::Admin, h), &elsewhere, Active, Maintenance), Err(Denied::NotFound));
    }
}
