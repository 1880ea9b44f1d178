//! Accounts: registration, login sessions, codes and password resets (`auth`), profiles,
//! staff management, enrollment and device assignments (`users`).

pub(crate) mod auth;
pub(crate) mod users;
