//! Room decisions, remembered per (person, room) until access changes.
//!
//! Whether someone takes part in a room is the policy's decision (`Policy::room`: the room,
//! the participant row, the relationship it is about — 4 to 6 queries). A conversation asks
//! it for every post, typing indicator and read receipt, and a WebSocket stream every
//! second, although the answer changes only when something that grants or revokes access
//! changes — and every such change fires an access event (`nc_messaging::Connections`). So a
//! granted decision is kept with the access epoch read *before* it was taken, and reused
//! while the epoch has not moved: any access event, or the event listener being down, sends
//! the next request back to the policy. A decision resting on a technician's temporary
//! grant also ends when the grant does. Refusals are not kept (a right gained, e.g. a new
//! participant row, fires no event and needs none).
//!
//! A room's participants (who is notified of a post when not connected) are kept the same
//! way, and for at most [`MEMBERS_FOR`] besides: someone joining a room fires no access
//! event, so another node learns of a new participant within that time (this node at once:
//! [`Memberships::joined`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nc_access::{Policy, Subject, UserSubject};
use nc_domain::{HospitalId, Role, RoomId, UserId};
use nc_entities::chat_rooms;
use nc_messaging::Connections;
use sea_orm::{DatabaseConnection, DbErr};

use crate::{store, ChatError};

/// Most decisions kept; past it the memo starts again (it is only a shortcut).
const MAX_KEPT: usize = 100_000;

/// How long a room's participants are kept at most (see the module's documentation).
const MEMBERS_FOR: Duration = Duration::from_secs(5);

/// A room's participants and their roles.
pub(crate) type Members = Arc<Vec<(UserId, Role)>>;

struct KeptMembers {
    members: Members,
    epoch: u64,
    at: Instant,
}

/// What a decision depends on from the subject: who, in which role and hospital.
type Key = (UserId, Role, HospitalId, RoomId);

struct Kept {
    room: chat_rooms::Model,
    epoch: u64,
    until: Option<DateTime<Utc>>,
}

/// The remembered decisions.
pub(crate) struct Memberships {
    registry: Arc<dyn Connections>,
    kept: Mutex<HashMap<Key, Kept>>,
    members: Mutex<HashMap<RoomId, KeptMembers>>,
}

impl Memberships {
    /// Decisions kept while `registry`'s access epoch stands (with no epoch, nothing is kept).
    pub(crate) fn new(registry: Arc<dyn Connections>) -> Memberships {
        Memberships { registry, kept: Mutex::default(), members: Mutex::default() }
    }

    fn epoch(&self) -> Option<u64> {
        self.registry.epoch()
    }

    /// The room, if `user` takes part in it now, and until when if that rests on a
    /// temporary grant: remembered, or asked of the policy.
    pub(crate) async fn room(
        &self,
        policy: &Policy,
        user: &UserSubject,
        room: RoomId,
    ) -> Result<(chat_rooms::Model, Option<DateTime<Utc>>), ChatError> {
        let key = (user.id, user.role, user.hospital, room);
        let epoch = self.epoch();
        if let Some(now) = epoch {
            let kept = self.kept.lock().expect("memberships");
            if let Some(k) = kept.get(&key) {
                if k.epoch == now && k.until.is_none_or(|u| u > Utc::now()) {
                    return Ok((k.room.clone(), k.until));
                }
            }
        }
        let subject = Subject::User(*user);
        // A technician (only ever in a device's room) through a hand-over: until it ends.
        // Read before the decision: read after, a grant that ended in between would look
        // like no grant (an assignment), and the decision would be kept with no end.
        let until = match policy.room_subjects(room).await?.0 {
            // The policy answers `None` unless the access rests on a hand-over.
            Some(device) => policy.grant_expiry(&subject, device).await?,
            None => None,
        };
        let found = policy.room(&subject, room).await?;
        if let Some(epoch) = epoch {
            let mut kept = self.kept.lock().expect("memberships");
            if kept.len() >= MAX_KEPT {
                kept.clear();
            }
            kept.insert(key, Kept { room: found.clone(), epoch, until });
        }
        Ok((found, until))
    }

    /// A room's participants and their roles: remembered, or read.
    pub(crate) async fn members(&self, db: &DatabaseConnection, room: RoomId) -> Result<Members, DbErr> {
        let epoch = self.epoch();
        if let Some(now) = epoch {
            if let Some(k) = self.members.lock().expect("room members").get(&room) {
                if k.epoch == now && k.at.elapsed() < MEMBERS_FOR {
                    return Ok(k.members.clone());
                }
            }
        }
        let at = Instant::now();
        let members: Members = Arc::new(store::members_with_roles(db, room).await?);
        if let Some(epoch) = epoch {
            let mut kept = self.members.lock().expect("room members");
            if kept.len() >= MAX_KEPT {
                kept.clear();
            }
            kept.insert(room, KeptMembers { members: members.clone(), epoch, at });
        }
        Ok(members)
    }

    /// Someone joined `room` (here): its participants are read again.
    pub(crate) fn joined(&self, room: RoomId) {
        self.members.lock().expect("room members").remove(&room);
    }

    /// Forgets decisions and participants that no longer hold (bounded memory).
    pub(crate) fn tidy(&self) {
        let epoch = self.epoch();
        let now = Utc::now();
        self.kept.lock().expect("memberships").retain(|_, k| Some(k.epoch) == epoch && k.until.is_none_or(|u| u > now));
        self.members
            .lock()
            .expect("room members")
            .retain(|_, k| Some(k.epoch) == epoch && k.at.elapsed() < MEMBERS_FOR);
    }
}
