//! Dialysis session bookings over REST (`routes`) and their request and answer types (`dto`).

pub(crate) mod dto;
pub(crate) mod routes;
