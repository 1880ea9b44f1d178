//! Chat: a room is opened once per conversation (`conversation_key`: a doctor-patient pair,
//! or a device's room of its doctors and technicians), so opening it again (or twice at
//! once) gives the same room; `updated_at` is the room's last activity. Messages are read
//! in (sent_at, id) order.

crate::sql_migration!(UP, DOWN);

const UP: &str = r#"
ALTER TABLE chat_rooms
    ADD COLUMN conversation_key text CONSTRAINT chat_rooms_conversation_key_check CHECK (length(conversation_key) BETWEEN 1 AND 200),
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE UNIQUE INDEX chat_rooms_conversation_key ON chat_rooms (hospital_id, conversation_key) WHERE conversation_key IS NOT NULL;
CREATE INDEX chat_messages_room_order_idx ON chat_messages (room_id, sent_at, id);
"#;

const DOWN: &str = r#"
DROP INDEX chat_messages_room_order_idx;
DROP INDEX chat_rooms_conversation_key;
ALTER TABLE chat_rooms DROP COLUMN updated_at, DROP COLUMN conversation_key;
"#;
