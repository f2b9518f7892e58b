//! What a browser can make of rje, refused before any route runs. A page
//! the operator visits can reach `127.0.0.1` as well as curl can, so:
//!
//! - **DNS rebinding**: without tokens, a request must name rje by a
//!   loopback name or address (or one listed in `RJE_ALLOWED_HOSTS`) in its
//!   `Host`; an attacker's name that resolves to 127.0.0.1 is refused.
//! - **Cross-site requests**: a WebSocket upgrade, or a request that changes
//!   something, whose `Origin` (or `Sec-Fetch-Site`) says another site sent
//!   it is refused unless that origin is in `RJE_CORS_ORIGINS`.
//! - **"Simple" requests**: a request that changes something and carries a
//!   body that is not JSON (an HTML form's) is refused, so no form can
//!   reach a mutating route even from a browser that sends no `Origin`.
//!
//! Clients that are not browsers (curl, the `rje` CLI, the original
//! system's CLI) send no `Origin` and are unaffected.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ApiError;
use crate::extract::is_json_media_type;

/// Which `Host` names a request may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowedHosts {
    /// Any name: the API takes tokens, which no rebinding page has.
    #[default]
    Any,
    /// Loopback names and addresses, and these patterns: `name` exactly,
    /// `.example.com` for the domain and every name under it, `*` for any.
    LoopbackAnd(Vec<String>),
}

impl AllowedHosts {
    /// Whether a `Host` header's name (port and brackets removed) is one
    /// a request may use.
    pub fn allows(&self, name: &str) -> bool {
        let patterns = match self {
            AllowedHosts::Any => return true,
            AllowedHosts::LoopbackAnd(patterns) => patterns,
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if is_loopback_name(&name) {
            return true;
        }
        patterns.iter().any(|pattern| {
            let pattern = pattern.to_ascii_lowercase();
            match pattern.strip_prefix('.') {
                _ if pattern == "*" => true,
                Some(domain) => name == domain || name.ends_with(&pattern),
                None => name == pattern,
            }
        })
    }
}

/// `localhost`, a name under it (RFC 6761 keeps them on loopback),
/// `ip6-localhost`, this machine's own name, or an address literal that
/// reaches this machine (loopback, or the unspecified address that tools
/// print for a server on all addresses). None of these can be a page's
/// origin of an attacker's choosing, which is what rebinding needs.
fn is_loopback_name(name: &str) -> bool {
    if matches!(name, "localhost" | "ip6-localhost" | "ip6-loopback")
        || name.ends_with(".localhost")
        || machine_name().is_some_and(|own| own == name)
    {
        return true;
    }
    let literal = name.trim_start_matches('[').trim_end_matches(']');
    literal.parse::<IpAddr>().is_ok_and(|ip| {
        let ip = ip.to_canonical();
        ip.is_loopback() || ip.is_unspecified()
    })
}

/// This machine's host name, lowercase, read once.
fn machine_name() -> Option<&'static str> {
    static NAME: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|name| name.into_string().ok())
            .map(|name| name.to_ascii_lowercase())
    })
    .as_deref()
}

/// The name part of a `Host` value: `[::1]:8000` → `::1`, `a:80` → `a`;
/// `None` when the value is not a name with an optional port
/// (`localhost:80@evil.example`, `[::1]evil.example`).
fn host_name(authority: &str) -> Option<&str> {
    let (name, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (name, after) = rest.split_once(']')?;
            (
                name,
                after.strip_prefix(':').or(after.is_empty().then_some(""))?,
            )
        }
        None => match authority.split_once(':') {
            Some((name, port)) => (name, port),
            None => (authority, ""),
        },
    };
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    (name_ok && port.chars().all(|c| c.is_ascii_digit())).then_some(name)
}

/// The browser-facing rules, shared by every request.
#[derive(Debug, Clone)]
pub(crate) struct BrowserGuard {
    allowed_hosts: AllowedHosts,
    cors_origins: Arc<[HeaderValue]>,
    /// Whether a request's origin matters: only without tokens, when a
    /// page could act with what the browser holds by itself (being on
    /// this machine). A token is never sent by a browser on its own, and a
    /// proxy that rewrites `Host` would make the dashboard look foreign.
    judge_origins: bool,
}

impl BrowserGuard {
    pub(crate) fn new(
        allowed_hosts: AllowedHosts,
        cors_origins: &[HeaderValue],
        judge_origins: bool,
    ) -> Self {
        Self {
            allowed_hosts,
            cors_origins: cors_origins.into(),
            judge_origins,
        }
    }

    /// Why a request for `path` must be refused, if it must.
    fn judge(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
        let mut hosts = headers.get_all(header::HOST).iter();
        let (first, second) = (hosts.next(), hosts.next());
        let misdirected = |value: &HeaderValue| {
            ApiError::MisdirectedHost(String::from_utf8_lossy(value.as_bytes()).into_owned())
        };
        if let Some(second) = second {
            // Which of two a proxy would act on is a guess.
            return Err(misdirected(second));
        }
        let authority = match first {
            // A request without `Host` comes from no browser (they always
            // send it); HTTP/1.0 clients may leave it out.
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| misdirected(value))?),
        };
        // The probes answer anyone (a prober names the pod's address): they
        // tell nothing and change nothing.
        let probe = matches!(path, "/health" | "/ready");
        if let Some(authority) = authority
            && !probe
        {
            match host_name(authority) {
                Some(name) if self.allowed_hosts.allows(name) => {}
                Some(name) => return Err(ApiError::MisdirectedHost(name.to_owned())),
                None => return Err(ApiError::MisdirectedHost(authority.to_owned())),
            }
        }
        let upgrade = headers
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        let changes_something = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if self.judge_origins && (upgrade || changes_something) {
            self.judge_origin(authority, headers)?;
        }
        if changes_something && carries_body(headers) && !carries_json(headers) {
            return Err(ApiError::UnsupportedMediaType);
        }
        Ok(())
    }

    /// A cross-site sender is refused unless its origin is allowed.
    fn judge_origin(&self, authority: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError> {
        match headers.get(header::ORIGIN) {
            Some(origin) => {
                // rje's own pages are served over HTTP, or HTTPS through a
                // proxy; no other scheme is its origin.
                let same_origin = origin
                    .to_str()
                    .ok()
                    .and_then(|origin| origin.split_once("://"))
                    .zip(authority)
                    .is_some_and(|((scheme, origin_authority), authority)| {
                        matches!(scheme, "http" | "https")
                            && origin_authority.eq_ignore_ascii_case(authority)
                    });
                if same_origin || self.cors_origins.iter().any(|allowed| allowed == origin) {
                    Ok(())
                } else {
                    Err(ApiError::CrossSite(
                        String::from_utf8_lossy(origin.as_bytes()).into_owned(),
                    ))
                }
            }
            // A browser that sends no Origin may still say where the
            // request comes from; `none` is the user's own navigation.
            None => match headers
                .get("sec-fetch-site")
                .map(|v| v.as_bytes().to_ascii_lowercase())
                .as_deref()
            {
                Some(b"cross-site") | Some(b"same-site") => {
                    Err(ApiError::CrossSite("another site".into()))
                }
                _ => Ok(()),
            },
        }
    }
}

/// Whether the request has a body: a length above zero, or chunks.
/// (`curl -d ''` sends a form's type with no body: nothing to misread.)
fn carries_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|length| length.trim() != "0")
}

/// No `Content-Type`, or a JSON one. A form's or `text/plain` is what a
/// cross-site page can send without asking first.
fn carries_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_none_or(is_json_media_type)
}

/// The middleware: every request passes [`BrowserGuard::judge`] first.
pub(crate) async fn guard(
    axum::extract::State(guard): axum::extract::State<Arc<BrowserGuard>>,
    request: Request,
    next: Next,
) -> Response {
    match guard.judge(request.method(), request.uri().path(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(err) => {
            tracing::debug!(%err, "refused a request a browser may have been made to send");
            err.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(patterns: &[&str]) -> AllowedHosts {
        AllowedHosts::LoopbackAnd(patterns.iter().map(|p| (*p).to_owned()).collect())
    }

    #[test]
    fn loopback_names_are_always_allowed() {
        let hosts = only(&[]);
        for name in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "app.localhost",
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "[::]",
            "ip6-localhost",
        ] {
            assert!(hosts.allows(name), "{name}");
        }
        for name in [
            "rebind.attacker.example",
            "localhost.attacker.example",
            "10.0.0.1",
            "",
            "2130706433",
        ] {
            assert!(!hosts.allows(name), "{name}");
        }
    }

    #[test]
    fn tokens_make_origins_moot_but_not_hosts_or_bodies() {
        let guard = BrowserGuard::new(only(&["rje.internal"]), &[], false);
        let evil = headers(&[("host", "rje.internal"), ("origin", "https://evil.example")]);
        assert!(guard.judge(&Method::POST, "/jobs/", &evil).is_ok());
        let rebound = headers(&[("host", "rebind.attacker.example")]);
        assert!(guard.judge(&Method::POST, "/jobs/", &rebound).is_err());
        assert!(
            guard.judge(&Method::GET, "/health", &rebound).is_ok(),
            "probes"
        );
        let form = headers(&[
            ("host", "rje.internal"),
            ("content-type", "text/plain"),
            ("content-length", "2"),
        ]);
        assert!(guard.judge(&Method::POST, "/jobs/", &form).is_err());
    }

    #[test]
    fn listed_names_and_domains_are_allowed() {
        let hosts = only(&["rje.internal", ".ops.example"]);
        assert!(hosts.allows("rje.internal"));
        assert!(hosts.allows("RJE.Internal"));
        assert!(hosts.allows("ops.example"));
        assert!(hosts.allows("a.ops.example"));
        assert!(!hosts.allows("xops.example"));
        assert!(!hosts.allows("rje.internal.attacker.example"));
        assert!(only(&["*"]).allows("anything.example"));
        assert!(AllowedHosts::Any.allows("anything.example"));
    }

    #[test]
    fn the_host_name_drops_port_and_brackets() {
        assert_eq!(host_name("[::1]:8000"), Some("::1"));
        assert_eq!(host_name("[::1]"), Some("::1"));
        assert_eq!(host_name("localhost:8000"), Some("localhost"));
        assert_eq!(host_name("example"), Some("example"));
        for malformed in [
            "localhost:80@evil.example",
            "[::1]evil.example",
            "[localhost",
            "localhost:8o",
            "",
            "a b",
        ] {
            assert_eq!(host_name(malformed), None, "{malformed}");
        }
    }

    #[test]
    fn two_hosts_or_a_foreign_scheme_are_refused() {
        let guard = BrowserGuard::new(only(&[]), &[], true);
        let two = headers(&[("host", "localhost"), ("host", "evil.example")]);
        assert!(guard.judge(&Method::GET, "/jobs/", &two).is_err());
        let scheme = headers(&[
            ("host", "localhost:8000"),
            ("origin", "evil://localhost:8000"),
        ]);
        assert!(guard.judge(&Method::POST, "/jobs/", &scheme).is_err());
        let smuggled = headers(&[("host", "localhost:80@evil.example")]);
        assert!(guard.judge(&Method::GET, "/jobs/", &smuggled).is_err());
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn cross_site_senders_are_refused_unless_allowed() {
        let guard = BrowserGuard::new(
            only(&[]),
            &[HeaderValue::from_static("https://ops.example")],
            true,
        );
        let host = ("host", "127.0.0.1:8000");
        let post = Method::POST;
        assert!(
            guard.judge(&post, "/jobs/", &headers(&[host])).is_ok(),
            "curl"
        );
        assert!(
            guard
                .judge(
                    &post,
                    "/jobs/",
                    &headers(&[host, ("origin", "http://127.0.0.1:8000")])
                )
                .is_ok(),
            "the dashboard"
        );
        assert!(
            guard
                .judge(
                    &post,
                    "/jobs/",
                    &headers(&[host, ("origin", "https://ops.example")])
                )
                .is_ok()
        );
        for origin in ["https://evil.example", "null", "http://127.0.0.1:9999"] {
            assert!(
                guard
                    .judge(&post, "/jobs/", &headers(&[host, ("origin", origin)]))
                    .is_err(),
                "{origin}"
            );
        }
        assert!(
            guard
                .judge(
                    &post,
                    "/jobs/",
                    &headers(&[host, ("sec-fetch-site", "cross-site")])
                )
                .is_err()
        );
        assert!(
            guard
                .judge(
                    &post,
                    "/jobs/",
                    &headers(&[host, ("sec-fetch-site", "none")])
                )
                .is_ok()
        );
        let evil_get = headers(&[host, ("origin", "https://evil.example")]);
        assert!(
            guard.judge(&Method::GET, "/jobs/", &evil_get).is_ok(),
            "reads need CORS to be seen"
        );
        let evil_upgrade = headers(&[
            host,
            ("origin", "https://evil.example"),
            ("upgrade", "websocket"),
        ]);
        assert!(
            guard
                .judge(&Method::GET, "/ws/jobs/", &evil_upgrade)
                .is_err()
        );
    }

    #[test]
    fn a_changing_request_carries_json_or_nothing() {
        let guard = BrowserGuard::new(AllowedHosts::Any, &[], true);
        for (content_type, ok) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
            ("text/plain", false),
        ] {
            let with_body = headers(&[("content-type", content_type), ("content-length", "3")]);
            let result = guard.judge(&Method::POST, "/jobs/", &with_body);
            assert_eq!(result.is_ok(), ok, "{content_type}");
            // `curl -d ''`: a form's type, and nothing in it.
            let empty = headers(&[("content-type", content_type), ("content-length", "0")]);
            assert!(
                guard
                    .judge(&Method::POST, "/jobs/x/cancel/", &empty)
                    .is_ok()
            );
        }
    }
}
