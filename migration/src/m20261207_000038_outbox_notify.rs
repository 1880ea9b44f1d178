//! Every node's outbox learns of a new message when it is committed, wherever it was
//! queued: a statement that inserts into `outbox` sends `NOTIFY nc_outbox` (delivered at
//! commit, once per transaction), which each node's outbox listens for (crate `outbox`).
//! The periodic look stays as the safety net for a lost notification.

crate::sql_migration!(&crate::notify_trigger("outbox", "nc_outbox", "INSERT"), &crate::drop_notify_trigger("outbox"));
