//! FHIR subscriptions (rest-hook notifications of a treatment that ended, an alarm raised or
//! changed): who may subscribe, see and end a subscription, and whom a notification is for.
//!
//! - Any person may subscribe (devices may not): a subscription only ever carries what its
//!   owner may read, decided **when each notification is sent** (the owner's rights then, not
//!   when it subscribed: a right that ended stops the data), through the same decisions as a
//!   read ([`Policy::session`], [`Policy::alert`]); a filter naming a patient or machine must
//!   name one the subscriber may read at the time it subscribes.
//! - A subscription is its owner's; a hospital's admins see and end its hospital's (they run
//!   its integrations), never another hospital's; nobody else knows it exists (404).
//! - An owner whose account is no longer live (deactivated, unverified) has no notifications.

use nc_domain::{HospitalId, Role, UserId};
use nc_entities::users;
use sea_orm::EntityTrait;

use super::{decide_visible, Decision, Denied, Policy, PolicyError, Subject, UserSubject};

/// What may be done to a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionAction {
    /// Read it and its `$status`.
    Read,
    /// End it (delete).
    Delete,
}

/// Which subscriptions a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionScope {
    /// The subject's own.
    Own(UserId),
    /// The hospital's (its admins).
    Hospital(HospitalId),
}

/// Whether `subject` may subscribe at all: people, not machines.
pub fn decide_subscribe(subject: &Subject) -> Decision {
    match subject {
        Subject::User(_) => Ok(()),
        Subject::Device { .. } => Err(Denied::Forbidden("machines do not subscribe")),
    }
}

/// Whether `subject` may do `action` to a subscription of `hospital` owned by `owner`.
pub fn decide_subscription(
    subject: &Subject,
    hospital: HospitalId,
    owner: UserId,
    _action: SubscriptionAction,
) -> Decision {
    decide_visible(subject, hospital)?;
    match subject {
        Subject::User(u) if u.id == owner || u.role == Role::Admin => Ok(()),
        _ => Err(Denied::NotFound),
    }
}

/// The subscriptions `subject` lists.
pub fn subscription_scope(subject: &Subject) -> Result<SubscriptionScope, Denied> {
    match subject {
        Subject::User(u) if u.role == Role::Admin => Ok(SubscriptionScope::Hospital(u.hospital)),
        Subject::User(u) => Ok(SubscriptionScope::Own(u.id)),
        Subject::Device { .. } => Err(Denied::Forbidden("machines do not subscribe")),
    }
}

impl Policy {
    /// The owner of a subscription as the subject its notifications are decided for, now:
    /// refused if the account is no longer live.
    pub async fn subscriber(&self, owner: UserId) -> Result<Subject, PolicyError> {
        let user = users::Entity::find_by_id(owner).one(&self.db).await?.ok_or(Denied::NotFound)?;
        if !crate::authn::is_live(&user) {
            return Err(Denied::Forbidden("the subscription's owner is no longer active").into());
        }
        Ok(Subject::User(UserSubject { id: user.id, role: user.role, hospital: user.hospital_id, family: None }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, hospital: HospitalId) -> (Subject, UserId) {
        let id = UserId(uuid::Uuid::new_v4());
        (Subject::User(UserSubject { id, role, hospital, family: None }), id)
    }

    #[test]
    fn a_subscription_is_its_owners_and_its_hospitals_admins() {
        let (a, b) = (HospitalId(uuid::Uuid::new_v4()), HospitalId(uuid::Uuid::new_v4()));
        let (owner, owner_id) = user(Role::Doctor, a);
        for action in [SubscriptionAction::Read, SubscriptionAction::Delete] {
            assert_eq!(decide_subscription(&owner, a, owner_id, action), Ok(()));
            assert_eq!(decide_subscription(&user(Role::Admin, a).0, a, owner_id, action), Ok(()));
            for other in [Role::Doctor, Role::Technician, Role::Patient] {
                assert_eq!(decide_subscription(&user(other, a).0, a, owner_id, action), Err(Denied::NotFound));
            }
            assert_eq!(decide_subscription(&user(Role::Admin, b).0, a, owner_id, action), Err(Denied::NotFound));
            let device = Subject::Device { id: nc_domain::DeviceId(uuid::Uuid::new_v4()), hospital: a };
            assert_eq!(decide_subscription(&device, a, owner_id, action), Err(Denied::NotFound));
        }
    }

    #[test]
    fn people_subscribe_machines_do_not() {
        let a = HospitalId(uuid::Uuid::new_v4());
        for role in [Role::Admin, Role::Doctor, Role::Technician, Role::Patient] {
            let (s, id) = user(role, a);
            assert_eq!(decide_subscribe(&s), Ok(()));
            let scope = if role == Role::Admin { SubscriptionScope::Hospital(a) } else { SubscriptionScope::Own(id) };
            assert_eq!(subscription_scope(&s), Ok(scope));
        }
        let device = Subject::Device { id: nc_domain::DeviceId(uuid::Uuid::new_v4()), hospital: a };
        assert!(decide_subscribe(&device).is_err());
        assert!(subscription_scope(&device).is_err());
    }
}
