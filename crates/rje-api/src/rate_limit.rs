//! Rate limits per token, or per client address for requests without a
//! valid one: tower_governor's GCRA, keyed by what a request presents.
//! Keys are a token's place in the configured list (never the secret) or
//! an address, so a flood of made-up tokens is limited by its address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use axum::response::IntoResponse;
use governor::clock::QuantaInstant;
use governor::middleware::NoOpMiddleware;
use ipnet::IpNet;
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder, SharedRateLimiter};
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

use crate::ApiError;
use crate::auth::{presented_token, token_index};
use crate::state::RateLimit;

/// Whose budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ClientKey {
    /// The configured token at this place in the list.
    Token(usize),
    /// The client's address.
    Address(IpAddr),
}

#[derive(Clone)]
pub(crate) struct ClientKeys {
    tokens: Arc<[String]>,
    trusted_proxies: Arc<[IpNet]>,
}

impl ClientKeys {
    pub(crate) fn new(tokens: &[String], trusted_proxies: &[IpNet]) -> Self {
        Self {
            tokens: tokens.into(),
            trusted_proxies: trusted_proxies.into(),
        }
    }

    fn is_trusted(&self, address: IpAddr) -> bool {
        self.trusted_proxies
            .iter()
            .any(|net| net.contains(&address))
    }

    /// The client's address: the peer's, or, when the peer is a trusted
    /// proxy, the nearest address in `X-Forwarded-For` that is not one.
    pub(crate) fn client_address<B>(&self, request: &Request<B>) -> IpAddr {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip().to_canonical())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if !self.is_trusted(peer) {
            return peer;
        }
        // From the nearest hop outwards: each trusted proxy names the one
        // before it. The first untrusted address is the client; an entry
        // that does not parse ends the walk at the last trusted hop, so a
        // client cannot hide behind junk of its own to get a new budget.
        let entries: Vec<&str> = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for entry in entries.iter().rev() {
            match forwarded_address(entry) {
                Some(address) if self.is_trusted(address) => client = address,
                Some(address) => return address,
                None => return client,
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry's address: bare, or with a port as some
/// proxies write it (`192.0.2.1:5555`, `[2001:db8::1]:5555`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        .map(|address| address.to_canonical())
}

impl KeyExtractor for ClientKeys {
    type Key = ClientKey;

    fn extract<T>(&self, request: &Request<T>) -> Result<ClientKey, GovernorError> {
        let token = presented_token(request).ok().flatten();
        Ok(
            match token.and_then(|token| token_index(&self.tokens, &token)) {
                Some(index) => ClientKey::Token(index),
                None => ClientKey::Address(bucket_of(self.client_address(request))),
            },
        )
    }
}

/// The address a client's budget is kept under: an IPv4 address as it
/// is, an IPv6 one by its /64, since one host is usually given a whole /64
/// and could otherwise take a new budget with each of its addresses.
fn bucket_of(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

type Middleware = NoOpMiddleware<QuantaInstant>;

pub(crate) type Limiter = GovernorLayer<ClientKeys, Middleware, Body>;

/// The layer for `limit`, or `None` when it allows nothing sensible (a
/// rate or burst of zero means no limit).
pub(crate) fn layer(limit: RateLimit, keys: ClientKeys) -> Option<Limiter> {
    if limit.per_second.is_nan() || limit.per_second <= 0.0 || limit.burst == 0 {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / limit.per_second).max(Duration::from_nanos(1));
    let config: GovernorConfig<ClientKeys, _> = GovernorConfigBuilder::default()
        .key_extractor(keys)
        .period(period)
        .burst_size(limit.burst)
        .finish()?;
    let config = Arc::new(config);
    forget_idle_clients(Arc::downgrade(config.limiter()));
    Some(GovernorLayer::new(config).error_handler(too_many_requests))
}

fn too_many_requests(error: GovernorError) -> Response<Body> {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => ApiError::TooManyRequests {
            retry_after_secs: wait_time.max(1),
        }
        .into_response(),
        other => ApiError::Internal(format!("rate limiter: {other}")).into_response(),
    }
}

/// Drops the state of clients that have been quiet long enough to have
/// their whole burst back, so that memory follows the recent clients, not
/// every address ever seen. Ends with the limiter.
fn forget_idle_clients(limiter: Weak<SharedLimiter>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            let Some(limiter) = limiter.upgrade() else {
                return;
            };
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    });
}

type SharedLimiter = <SharedRateLimiter<ClientKey, Middleware> as std::ops::Deref>::Target;

#[cfg(test)]
mod tests {
    use super::*;

    fn request_from(peer: &str, forwarded: Option<&str>) -> Request<()> {
        let mut request = Request::builder().uri("/jobs/");
        if let Some(forwarded) = forwarded {
            request = request.header("x-forwarded-for", forwarded);
        }
        let mut request = request.body(()).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        request
    }

    #[test]
    fn a_mapped_peer_is_the_ipv4_proxy_it_is() {
        let keys = ClientKeys::new(&[], &["127.0.0.1/32".parse().unwrap()]);
        // A dual-stack listener sees an IPv4 proxy as ::ffff:127.0.0.1.
        for peer in ["127.0.0.1:5000", "[::ffff:127.0.0.1]:5000"] {
            for (forwarded, client) in [
                ("203.0.113.7", "203.0.113.7"),
                ("::ffff:203.0.113.8", "203.0.113.8"),
            ] {
                let request = request_from(peer, Some(forwarded));
                assert_eq!(
                    keys.client_address(&request),
                    client.parse::<IpAddr>().unwrap(),
                    "{peer} {forwarded}"
                );
            }
        }
        let untrusted = request_from("[::ffff:10.1.2.3]:5000", Some("203.0.113.7"));
        assert_eq!(
            keys.client_address(&untrusted),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn junk_in_the_forwarded_chain_stops_at_the_proxy() {
        let proxy = "127.0.0.1/32".parse().unwrap();
        let keys = ClientKeys::new(&[], &[proxy]);
        let address =
            |forwarded: &str| keys.client_address(&request_from("127.0.0.1:1", Some(forwarded)));
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        // A client's own left-hand entries never count past junk.
        assert_eq!(address("192.0.2.7, 192.0.2.200:5555"), ip("192.0.2.200"));
        assert_eq!(address("192.0.2.7, unknown"), ip("127.0.0.1"));
        assert_eq!(address("192.0.2.7, [2001:db8::1]:80"), ip("2001:db8::1"));
        assert_eq!(address("192.0.2.7, 192.0.2.8"), ip("192.0.2.8"));
        assert_eq!(address("192.0.2.7, 127.0.0.1"), ip("192.0.2.7"));
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_64() {
        let keys = ClientKeys::new(&[], &[]);
        let key = |peer: &str| keys.extract(&request_from(peer, None)).unwrap();
        assert_eq!(key("[2001:db8:1:2::1]:1"), key("[2001:db8:1:2:ffff::9]:2"));
        assert_ne!(key("[2001:db8:1:2::1]:1"), key("[2001:db8:1:3::1]:1"));
        assert_ne!(key("192.0.2.1:1"), key("192.0.2.2:1"));
        assert_eq!(key("[::ffff:192.0.2.1]:1"), key("192.0.2.1:2"));
    }
}
