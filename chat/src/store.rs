//! Chat storage: rooms, participants, messages and read watermarks, in the tables of the
//! `care` and `chat` migrations. Messages are ordered by (sent_at, id) everywhere; a
//! message posted again with the same client message id is stored once; a watermark never
//! moves backwards.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use nc_access::RoomGrant;
use nc_domain::{ChatRoomKind, HospitalId, MessageId, Role, RoomId, UserId};
use nc_entities::{chat_messages, chat_room_participants, chat_rooms, users};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter, Statement,
    TransactionTrait,
};

use crate::model::{Message, MessagePage, PageFrom, Participant, ReadState, Receipt, Room};

fn stmt(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Opens the conversation `grant` describes (or finds it): returns the room and whether
/// it was created now. Idempotent, also under concurrent calls (a unique key decides).
pub async fn open(
    db: &DatabaseConnection,
    hospital: HospitalId,
    grant: &RoomGrant,
    creator: UserId,
) -> Result<(RoomId, bool), DbErr> {
    let txn = db.begin().await?;
    let kind = match grant.kind {
        ChatRoomKind::DoctorPatient => "doctor-patient",
        ChatRoomKind::DoctorTechnician => "doctor-technician",
    };
    let inserted = txn
        .query_one(stmt(
            "INSERT INTO chat_rooms (id, hospital_id, kind, device_id, patient_id, created_by, conversation_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (hospital_id, conversation_key) WHERE conversation_key IS NOT NULL DO NOTHING RETURNING id",
            vec![
                RoomId::new().as_uuid().into(),
                hospital.as_uuid().into(),
                kind.into(),
                grant.device.map(|d| d.as_uuid()).into(),
                grant.patient.map(|p| p.as_uuid()).into(),
                creator.as_uuid().into(),
                grant.key.clone().into(),
            ],
        ))
        .await?;
    let created = inserted.is_some();
    let id: uuid::Uuid = match inserted {
        Some(row) => row.try_get("", "id")?,
        None => txn
            .query_one(stmt(
                "SELECT id FROM chat_rooms WHERE hospital_id = $1 AND conversation_key = $2",
                vec![hospital.as_uuid().into(), grant.key.clone().into()],
            ))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("chat room".into()))?
            .try_get("", "id")?,
    };
    for user in &grant.participants {
        txn.execute(stmt(
            "INSERT INTO chat_room_participants (room_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            vec![id.into(), user.as_uuid().into()],
        ))
        .await?;
    }
    txn.commit().await?;
    Ok((RoomId(id), created))
}

/// The rooms `user` takes part in, newest activity first.
pub async fn rooms_of(db: &DatabaseConnection, user: UserId) -> Result<Vec<chat_rooms::Model>, DbErr> {
    let ids: Vec<RoomId> = chat_room_participants::Entity::find()
        .filter(chat_room_participants::Column::UserId.eq(user))
        .all(db)
        .await?
        .into_iter()
        .map(|p| p.room_id)
        .collect();
    let mut rooms = chat_rooms::Entity::find().filter(chat_rooms::Column::Id.is_in(ids)).all(db).await?;
    rooms.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
    Ok(rooms)
}

/// The participants of a room, with names, roles and watermarks (and each watermark's
/// position, for comparisons).
async fn participants(db: &impl ConnectionTrait, room: RoomId) -> Result<Marks, DbErr> {
    let rows = db
        .query_all(stmt(
            "SELECT p.user_id, u.name, u.role, p.last_read_message_id, p.last_read_at, m.sent_at AS mark_at
               FROM chat_room_participants p JOIN users u ON u.id = p.user_id
               LEFT JOIN chat_messages m ON m.id = p.last_read_message_id
              WHERE p.room_id = $1 ORDER BY p.joined_at, p.user_id",
            vec![room.as_uuid().into()],
        ))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let user: uuid::Uuid = r.try_get("", "user_id")?;
        let role: String = r.try_get("", "role")?;
        let mark: Option<uuid::Uuid> = r.try_get("", "last_read_message_id")?;
        let mark_at: Option<DateTime<Utc>> = r.try_get("", "mark_at")?;
        out.push((
            Participant {
                user_id: UserId(user),
                name: r.try_get("", "name")?,
                role: role.parse().unwrap_or(Role::Patient),
                last_read_message_id: mark.map(MessageId),
                last_read_at: r.try_get("", "last_read_at")?,
            },
            mark.zip(mark_at).map(|(id, at)| (at, id)),
        ));
    }
    Ok(out)
}

/// A participant and the position of their read watermark (sent_at, id), if any.
type Mark = (Participant, Option<(DateTime<Utc>, uuid::Uuid)>);
type Marks = Vec<Mark>;

fn view(m: chat_messages::Model, roles: &HashMap<UserId, Role>, marks: &Marks) -> Message {
    let position = (m.sent_at, m.id.as_uuid());
    let others: Vec<&Mark> = marks.iter().filter(|(p, _)| Some(p.user_id) != m.sender_id).collect();
    let read_by: Vec<ReadState> = others
        .iter()
        .filter(|(_, mark)| mark.is_some_and(|mk| mk >= position))
        .map(|(p, _)| ReadState { user_id: p.user_id, read_at: p.last_read_at })
        .collect();
    let is_read = !others.is_empty() && read_by.len() == others.len();
    let read_at = if is_read { read_by.iter().filter_map(|r| r.read_at).max() } else { None };
    Message {
        id: m.id,
        chat_room_id: m.room_id,
        sender_role: m.sender_id.and_then(|s| roles.get(&s).copied()),
        sender_id: m.sender_id,
        message: m.body,
        client_message_id: m.client_msg_id,
        timestamp: m.sent_at,
        is_read,
        read_at,
        read_by,
    }
}

/// The room as `viewer` sees it.
pub async fn room(db: &DatabaseConnection, room: &chat_rooms::Model, viewer: UserId) -> Result<Room, DbErr> {
    let marks = participants(db, room.id).await?;
    let roles: HashMap<UserId, Role> = marks.iter().map(|(p, _)| (p.user_id, p.role)).collect();
    let last = db
        .query_one(stmt(
            "SELECT id FROM chat_messages WHERE room_id = $1 ORDER BY sent_at DESC, id DESC LIMIT 1",
            vec![room.id.as_uuid().into()],
        ))
        .await?;
    let last_message = match last {
        Some(r) => {
            let id: uuid::Uuid = r.try_get("", "id")?;
            chat_messages::Entity::find_by_id(MessageId(id)).one(db).await?.map(|m| view(m, &roles, &marks))
        }
        None => None,
    };
    let mark = marks.iter().find(|(p, _)| p.user_id == viewer).and_then(|(_, m)| *m);
    let unread = db
        .query_one(stmt(
            "SELECT count(*) AS n FROM chat_messages
              WHERE room_id = $1 AND sender_id IS DISTINCT FROM $2
                AND ($3::timestamptz IS NULL OR (sent_at, id) > ($3, $4))",
            vec![room.id.as_uuid().into(), viewer.as_uuid().into(), mark.map(|m| m.0).into(), mark.map(|m| m.1).into()],
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    Ok(Room {
        id: room.id,
        hospital_id: room.hospital_id,
        kind: room.kind,
        device_id: room.device_id,
        patient_id: room.patient_id,
        participants: marks.into_iter().map(|(p, _)| p).collect(),
        created_at: room.created_at,
        updated_at: room.updated_at,
        last_message,
        unread_count: unread,
    })
}

/// Stores a message (once per client message id) and returns it, and whether it was new.
pub async fn post(
    db: &DatabaseConnection,
    room: RoomId,
    sender: UserId,
    sender_role: Option<Role>,
    client_id: Option<&str>,
    body: &str,
) -> Result<(Message, bool), DbErr> {
    // One statement, so one round trip: the message, and the room's activity time if it
    // is new (a retry of a stored `client_id` inserts nothing and returns nothing).
    let now = Utc::now();
    let inserted = chat_messages::Entity::find()
        .from_raw_sql(stmt(
            "WITH m AS (
                 INSERT INTO chat_messages (id, room_id, sender_id, client_msg_id, body, sent_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (room_id, sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING
                 RETURNING *),
             r AS (UPDATE chat_rooms SET updated_at = GREATEST(updated_at, $6)
                   WHERE id = $2 AND EXISTS (SELECT 1 FROM m))
             SELECT * FROM m",
            vec![
                MessageId::new().as_uuid().into(),
                room.as_uuid().into(),
                sender.as_uuid().into(),
                client_id.map(str::to_owned).into(),
                body.to_owned().into(),
                now.into(),
            ],
        ))
        .one(db)
        .await?;
    let created = inserted.is_some();
    let stored = match inserted {
        Some(m) => m,
        None => chat_messages::Entity::find()
            .filter(chat_messages::Column::RoomId.eq(room))
            .filter(chat_messages::Column::SenderId.eq(sender))
            .filter(chat_messages::Column::ClientMsgId.eq(client_id))
            .one(db)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("chat message".into()))?,
    };
    if created {
        // Just stored: nobody else has read it yet.
        let mut roles = HashMap::new();
        if let Some(r) = sender_role {
            roles.insert(sender, r);
        }
        return Ok((view(stored, &roles, &Vec::new()), true));
    }
    let marks = participants(db, room).await?;
    let roles: HashMap<UserId, Role> = marks.iter().map(|(p, _)| (p.user_id, p.role)).collect();
    Ok((view(stored, &roles, &marks), created))
}

/// The message `sender` already stored in `room` under `client_id`, if any.
pub async fn existing(
    db: &DatabaseConnection,
    room: RoomId,
    sender: UserId,
    client_id: &str,
) -> Result<Option<Message>, DbErr> {
    let found = chat_messages::Entity::find()
        .filter(chat_messages::Column::RoomId.eq(room))
        .filter(chat_messages::Column::SenderId.eq(sender))
        .filter(chat_messages::Column::ClientMsgId.eq(client_id))
        .one(db)
        .await?;
    let Some(m) = found else { return Ok(None) };
    let marks = participants(db, room).await?;
    let roles: HashMap<UserId, Role> = marks.iter().map(|(p, _)| (p.user_id, p.role)).collect();
    Ok(Some(view(m, &roles, &marks)))
}

/// A page of a room's messages, oldest first within the page.
pub async fn messages(db: &DatabaseConnection, room: RoomId, from: PageFrom, limit: u64) -> Result<MessagePage, DbErr> {
    let anchor = match from {
        PageFrom::Newest => None,
        PageFrom::Before(id) | PageFrom::After(id) => Some(
            chat_messages::Entity::find_by_id(id)
                .one(db)
                .await?
                .filter(|m| m.room_id == room)
                .ok_or_else(|| DbErr::RecordNotFound("message".into()))?,
        ),
    };
    let (condition, order) = match from {
        PageFrom::Newest => ("TRUE", "DESC"),
        PageFrom::Before(_) => ("(sent_at, id) < ($2, $3)", "DESC"),
        PageFrom::After(_) => ("(sent_at, id) > ($2, $3)", "ASC"),
    };
    let sql = format!(
        "SELECT id FROM chat_messages WHERE room_id = $1 AND ($2::timestamptz IS NULL OR {condition})
          ORDER BY sent_at {order}, id {order} LIMIT $4"
    );
    let rows = db
        .query_all(stmt(
            &sql,
            vec![
                room.as_uuid().into(),
                anchor.as_ref().map(|a| a.sent_at).into(),
                anchor.as_ref().map(|a| a.id.as_uuid()).into(),
                (limit as i64 + 1).into(),
            ],
        ))
        .await?;
    let mut ids: Vec<MessageId> =
        rows.iter().map(|r| r.try_get::<uuid::Uuid>("", "id").map(MessageId)).collect::<Result<_, _>>()?;
    let has_more = ids.len() as u64 > limit;
    ids.truncate(limit as usize);
    let mut found = chat_messages::Entity::find().filter(chat_messages::Column::Id.is_in(ids)).all(db).await?;
    found.sort_by_key(|m| (m.sent_at, m.id));
    let marks = participants(db, room).await?;
    let roles: HashMap<UserId, Role> = marks.iter().map(|(p, _)| (p.user_id, p.role)).collect();
    Ok(MessagePage { items: found.into_iter().map(|m| view(m, &roles, &marks)).collect(), has_more })
}

/// A message by id, if it exists.
pub async fn message(db: &DatabaseConnection, id: MessageId) -> Result<Option<chat_messages::Model>, DbErr> {
    chat_messages::Entity::find_by_id(id).one(db).await
}

/// Moves `user`'s watermark in the message's room up to the message (never backwards).
/// Returns the receipt if it moved.
pub async fn read(db: &DatabaseConnection, m: &chat_messages::Model, user: UserId) -> Result<Option<Receipt>, DbErr> {
    let now = Utc::now();
    let moved = db
        .execute(stmt(
            "UPDATE chat_room_participants p SET last_read_message_id = $3, last_read_at = $5
              WHERE p.room_id = $1 AND p.user_id = $2
                AND (p.last_read_message_id IS NULL
                     OR (SELECT (c.sent_at, c.id) FROM chat_messages c WHERE c.id = p.last_read_message_id) < ($4, $3))",
            vec![m.room_id.as_uuid().into(), user.as_uuid().into(), m.id.as_uuid().into(), m.sent_at.into(), now.into()],
        ))
        .await?
        .rows_affected();
    Ok((moved > 0).then_some(Receipt { room_id: m.room_id, user_id: user, last_read_message_id: m.id, at: now }))
}

/// The ids of a room's participants.
pub async fn members(db: &DatabaseConnection, room: RoomId) -> Result<Vec<UserId>, DbErr> {
    Ok(chat_room_participants::Entity::find()
        .filter(chat_room_participants::Column::RoomId.eq(room))
        .all(db)
        .await?
        .into_iter()
        .map(|p| p.user_id)
        .collect())
}

/// A room's participants with their roles.
pub async fn members_with_roles(db: &DatabaseConnection, room: RoomId) -> Result<Vec<(UserId, Role)>, DbErr> {
    Ok(participants(db, room).await?.into_iter().map(|(p, _)| (p.user_id, p.role)).collect())
}

/// The role of a user.
pub async fn role_of(db: &DatabaseConnection, user: UserId) -> Result<Option<Role>, DbErr> {
    Ok(users::Entity::find_by_id(user).one(db).await?.map(|u| u.role))
}
