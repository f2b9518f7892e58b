//! The dashboard's scripts, styles and icon, compiled into the binary.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

/// `assets/` as it was at build time, in debug builds too, so that tests
/// serve what ships.
#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

#[cfg(test)]
pub(crate) fn exists(file: &str) -> bool {
    Assets::get(file).is_some()
}

/// The file, revalidated by its content hash: a browser keeps it and asks
/// again cheaply (304), so a new binary's assets are never mixed with an
/// old page's.
pub(crate) fn serve(file: &str, headers: &HeaderMap) -> Response {
    let Some(content_type) = content_type(file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(asset) = Assets::get(file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = etag(&asset.metadata.sha256_hash());
    let revalidated = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tags| tags.as_bytes() == etag.as_bytes());
    let cache = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if revalidated {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        cache,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        asset.data.into_owned(),
    )
        .into_response()
}

fn content_type(file: &str) -> Option<&'static str> {
    match file.rsplit_once('.')?.1 {
        "js" => Some("text/javascript; charset=utf-8"),
        "css" => Some("text/css; charset=utf-8"),
        "svg" => Some("image/svg+xml"),
        _ => None,
    }
}

fn etag(hash: &[u8; 32]) -> HeaderValue {
    let hex: String = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
    // Hex digits and quotes only: always a valid header value.
    HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}
