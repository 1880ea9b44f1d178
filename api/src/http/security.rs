//! Bearer authentication (declared as an OpenAPI security scheme, so generated clients send
//! it) and the client address used for throttling and the audit log.

use std::net::IpAddr;

use nc_access::authn::AuthnError;
use nc_access::{Subject, UserSubject};
use poem::http::StatusCode;
use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::SecurityScheme;

use crate::state::ApiState;

/// A JWT access token from `POST /api/auth/login` or `/api/auth/refresh`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub UserSubject);

impl BearerAuth {
    pub fn subject(&self) -> Subject {
        Subject::User(self.0)
    }
}

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<UserSubject> {
    let state = req.data::<ApiState>().expect("ApiState is attached to every route");
    state.authn.user(&bearer.token).await.map_err(|e| {
        let (status, message) = match &e {
            AuthnError::Db(db) => {
                tracing::error!(error = %db, "authentication lookup failed");
                (StatusCode::SERVICE_UNAVAILABLE, "the service is temporarily unavailable; retry later".to_owned())
            }
            other => (StatusCode::UNAUTHORIZED, other.to_string()),
        };
        poem::Error::from_string(message, status)
    })
}

/// The client's IP address, from the connection.
pub fn client_ip(req: &Request) -> Option<IpAddr> {
    req.remote_addr().as_socket_addr().map(|a| a.ip())
}

impl BearerAuth {
    /// Audits a change this person made to a setting or registry entry (`resource`), with
    /// what changed (`detail`).
    pub(crate) async fn audit_change(
        &self,
        state: &crate::state::ApiState,
        action: nc_domain::AuditAction,
        resource: &'static str,
        detail: serde_json::Value,
    ) -> Result<(), crate::error::ApiError> {
        let access = nc_access::audit::Access {
            subject: &self.subject(),
            action,
            resource,
            patient: None,
            device: None,
            interface: nc_domain::Interface::Rest,
            client_addr: None,
        };
        nc_access::audit::record_with(&state.db, access, Some(detail)).await?;
        Ok(())
    }
}
