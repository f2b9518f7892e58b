//! The least role each route asks for, in one table: every route has a
//! rule, and one without is refused to everybody (a test finds it first).
//! The finer rules (a token's scope of hosts, a run token's own jobs) need
//! the job, and are the handlers' to apply through `rje_domain::Principal`.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use rje_domain::{Principal, Role};

use crate::ApiError;

/// `(method, route, least role)`. Routes are axum's patterns, without the
/// trailing slash every path also answers with.
pub(crate) const RULES: &[(&str, &str, Role)] = &[
    ("GET", "/jobs", Role::Read),
    ("POST", "/jobs", Role::Run),
    ("GET", "/jobs/list", Role::Read),
    ("GET", "/jobs/stats", Role::Read),
    ("GET", "/jobs/{id}", Role::Read),
    ("PUT", "/jobs/{id}", Role::Run),
    ("PATCH", "/jobs/{id}", Role::Run),
    // Deleting is rewriting history: an admin's.
    ("DELETE", "/jobs/{id}", Role::Admin),
    ("POST", "/jobs/{id}/cancel", Role::Run),
    ("POST", "/jobs/{id}/retry", Role::Run),
    // Deleting many jobs at once: an admin's, as deleting one is.
    ("POST", "/jobs/prune", Role::Admin),
    ("GET", "/schedules", Role::Read),
    ("POST", "/schedules", Role::Run),
    ("GET", "/schedules/{id}", Role::Read),
    ("PUT", "/schedules/{id}", Role::Run),
    ("PATCH", "/schedules/{id}", Role::Run),
    ("DELETE", "/schedules/{id}", Role::Run),
    ("POST", "/schedules/{id}/pause", Role::Run),
    ("POST", "/schedules/{id}/resume", Role::Run),
    ("GET", "/runs", Role::Read),
    ("POST", "/runs", Role::Run),
    ("GET", "/runs/{id}", Role::Read),
    ("POST", "/runs/{id}/cancel", Role::Run),
    ("POST", "/runs/{id}/retry", Role::Run),
    ("GET", "/ws/runs/{id}", Role::Read),
    ("GET", "/jobs/{id}/logs", Role::Read),
    ("GET", "/ws/jobs", Role::Read),
    ("GET", "/ws/jobs/{id}", Role::Read),
    ("GET", "/hosts", Role::Read),
    ("POST", "/hosts/{name}/check", Role::Run),
    ("GET", "/workers", Role::Read),
    ("GET", "/metrics", Role::Read),
    ("GET", "/openapi.json", Role::Read),
    ("GET", "/docs", Role::Read),
    ("GET", "/docs/{*file}", Role::Read),
    ("GET", "/whoami", Role::Read),
    ("GET", "/tokens", Role::Admin),
    ("POST", "/tokens", Role::Admin),
    ("DELETE", "/tokens/{name}", Role::Admin),
    ("GET", "/audit", Role::Admin),
];

/// What a request to `route` with `method` needs.
pub(crate) enum Rule {
    /// At least this role.
    Least(Role),
    /// The route has rules, none for this method: the router answers 405.
    NoSuchMethod,
    /// A route the table does not know: refused, whoever asks.
    Unknown,
}

pub(crate) fn rule(method: &Method, route: &str) -> Rule {
    // HEAD is a GET without the body, as the router serves it.
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let mut route_known = false;
    for (rule_method, rule_route, role) in RULES {
        if *rule_route == route {
            if *rule_method == method {
                return Rule::Least(*role);
            }
            route_known = true;
        }
    }
    if route_known {
        Rule::NoSuchMethod
    } else {
        Rule::Unknown
    }
}

/// Holds every request to its route's rule, once `auth` said who it is.
pub(crate) async fn enforce(request: Request, next: Next) -> Result<Response, ApiError> {
    let Some(route) = request.extensions().get::<MatchedPath>() else {
        // No route matched: the fallback's 404.
        return Ok(next.run(request).await);
    };
    let principal = request
        .extensions()
        .get::<Principal>()
        .ok_or(ApiError::Unauthorized)?;
    match rule(request.method(), route.as_str()) {
        Rule::Least(role) => principal.require(role)?,
        Rule::NoSuchMethod => {}
        Rule::Unknown => {
            tracing::error!(route = route.as_str(), "a route without an access rule");
            return Err(ApiError::Forbidden(
                "this route has no access rule yet: nobody may use it".into(),
            ));
        }
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_and_method_has_one_rule() {
        for (index, (method, route, _)) in RULES.iter().enumerate() {
            assert!(
                !RULES[index + 1..]
                    .iter()
                    .any(|(m, r, _)| m == method && r == route),
                "{method} {route} twice"
            );
        }
        assert!(matches!(
            rule(&Method::HEAD, "/jobs"),
            Rule::Least(Role::Read)
        ));
        assert!(matches!(rule(&Method::DELETE, "/jobs"), Rule::NoSuchMethod));
        assert!(matches!(rule(&Method::GET, "/secret"), Rule::Unknown));
    }
}
