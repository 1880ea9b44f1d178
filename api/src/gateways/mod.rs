//! `/api/gateways`: the hospital's device gateways (IHE PCD-01 over MLLP), registered by its
//! admins; the capability is `nc_gateways`.

mod routes;

pub use routes::GatewaysApi;
