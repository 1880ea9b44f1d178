//! The alarm endpoints: alerts, their life cycle, history, escalation policy and burden
//! ([`routes`]), and the limits alerts are raised at ([`thresholds`]).

mod alert_manager;
pub mod dto;
mod routes;
mod thresholds;

pub use alert_manager::AlertManagerApi;
pub use routes::AlertsApi;
pub use thresholds::ThresholdsApi;
