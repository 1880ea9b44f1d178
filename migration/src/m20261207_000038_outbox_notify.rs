//! Every node's outbox learns of a new message when it is committed, wherever it was
//! queued: a statement that inserts into `outbox` sends `NOTIFY nc_outbox` (delivered at
//! commit, once per transaction), which each node's outbox listens for (crate `outbox`).
//! The periodic look stays as the safety net for a lost notification.

crate::sql_migration!(UP, DOWN);

const UP: &str = "
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nc_outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
";

const DOWN: &str = "
DROP TRIGGER outbox_notify ON outbox;
DROP FUNCTION outbox_notify();
";
