//! The web client the relay serves on `/`: the files of `web/dist` built
//! into the binary, a folder on disk (`--web-dir`), or none (`--no-web`).
//!
//! Whatever the source, every file gets its `Content-Type` from one table
//! ([`content_type`]) and its caching from its path: files under `assets/`
//! are named by the hash of their content and never change
//! (`Cache-Control: public, max-age=31536000, immutable`); everything else
//! (`index.html`, `SHA256SUMS`) is revalidated on every use
//! (`Cache-Control: no-cache`) against its `ETag`, answered with `304 Not
//! Modified` when it still matches. Responses are compressed (gzip or
//! brotli) when the browser accepts it. Unknown paths get a text 404.
//!
//! The built-in client's `ETag` is the SHA-256 of the file's content, made
//! when the relay was compiled; from `--web-dir`, tower-http's `ServeDir`
//! makes it from the file's size and modification time, and reads each file
//! at each request, so a changed folder is served without a restart.
//!
//! The built-in files are embedded with `rust-embed` rather than
//! `include_dir`: with its `debug-embed` feature a debug build embeds them
//! just as a release build does (so `cargo run` and tests serve what a
//! release serves, from any working directory), and it hashes each file
//! when it embeds it, which gives the `ETag` for free.
//! `deterministic-timestamps` keeps the build's clock out of the binary.

use std::path::Path;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::handler::HandlerWithoutStateExt;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;

use crate::config::WebClient;
use crate::server::ServerError;

/// The built client, `web/dist` of the workspace when the relay was
/// compiled.
#[derive(rust_embed::RustEmbed)]
#[folder = "../web/dist/"]
struct Bundle;

/// The file whose SHA-256 is the published hash of a client build: it
/// lists the SHA-256 of every other file.
const SUMS: &str = "SHA256SUMS";

/// `Cache-Control` of a content-hashed file under `assets/`.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `Cache-Control` of every other response: use only once revalidated.
const REVALIDATE: &str = "no-cache";

/// Check that a `--web-dir` folder is one, so that a typo stops the relay
/// at start instead of serving 404s.
pub(crate) fn check(web: &WebClient) -> Result<(), ServerError> {
    let WebClient::Dir(dir) = web else {
        return Ok(());
    };
    let error = |reason: String| ServerError::WebDir {
        dir: dir.display().to_string(),
        reason,
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(error("not a directory".into())),
        Err(e) => Err(error(e.to_string())),
    }
}

/// The published hash of the served client: the SHA-256 (hex) of its
/// `SHA256SUMS` file, as `sha256sum web/dist/SHA256SUMS` prints it for a
/// build. `None` with `--no-web`, or when the client has no such file.
pub(crate) fn published_hash(web: &WebClient) -> Option<String> {
    let sums = match web {
        WebClient::Embedded => Bundle::get(SUMS)?.data.into_owned(),
        WebClient::Dir(dir) => std::fs::read(dir.join(SUMS)).ok()?,
        WebClient::Off => return None,
    };
    Some(hex::encode(
        ring::digest::digest(&ring::digest::SHA256, &sums).as_ref(),
    ))
}

/// The routes of the web client, for the relay's router to fall back to:
/// every path that is not an endpoint of the relay.
pub(crate) fn routes(web: &WebClient) -> Router {
    let files = match web {
        WebClient::Embedded => Router::new().fallback(embedded),
        WebClient::Dir(dir) => {
            Router::new().fallback_service(ServeDir::new(dir).fallback(not_found.into_service()))
        }
        WebClient::Off => Router::new().fallback(not_found),
    };
    files
        .layer(axum::middleware::from_fn(file_headers))
        .layer(CompressionLayer::new())
}

/// The relay's 404: a short text.
pub(crate) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found\n",
    )
        .into_response()
}

/// The file of the built-in client at the request's path (`index.html`
/// for a folder), with its `ETag`; `304` when `If-None-Match` holds it.
async fn embedded(request: Request) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "method not allowed\n",
        )
            .into_response();
    }
    let Some(file) = Bundle::get(&file_name(request.uri().path())) else {
        return not_found().await;
    };
    let etag = format!("W/\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let Ok(etag) = HeaderValue::from_str(&etag) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if matches_etag(request.headers(), &etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    // The weak tag stays true of the gzip and brotli encodings that the
    // compression layer makes of the same content.
    ([(header::ETAG, etag)], Body::from(file.data)).into_response()
}

/// The file a request path names, without its leading `/`: `index.html`
/// for a folder.
fn file_name(path: &str) -> String {
    let path = path.trim_start_matches('/');
    if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_owned()
    }
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110
/// 13.1.2 has it for this header) or is `*`.
fn matches_etag(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let ours = etag.to_str().map(opaque).unwrap_or_default();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == "*" || opaque(tag) == ours)
}

/// The content type of a file, by its name.
pub(crate) fn content_type(name: &str) -> HeaderValue {
    let extension = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let known = match (name.rsplit('/').next(), extension.as_deref()) {
        (Some(SUMS), _) | (_, Some("txt")) => "text/plain; charset=utf-8",
        (_, Some("html")) => "text/html; charset=utf-8",
        (_, Some("js" | "mjs")) => "text/javascript; charset=utf-8",
        (_, Some("css")) => "text/css; charset=utf-8",
        (_, Some("wasm")) => "application/wasm",
        (_, Some("json")) => "application/json",
        (_, Some("webmanifest")) => "application/manifest+json",
        (_, Some("svg")) => "image/svg+xml",
        _ => {
            return mime_guess::from_path(name)
                .first_raw()
                .map_or(HeaderValue::from_static("application/octet-stream"), |m| {
                    HeaderValue::from_static(m)
                });
        }
    };
    HeaderValue::from_static(known)
}

/// Set the content type and the caching of a web client response from its
/// request's path.
async fn file_headers(request: Request, next: Next) -> Response {
    let name = file_name(request.uri().path());
    let mut response = next.run(request).await;
    let status = response.status();
    let headers = response.headers_mut();
    if matches!(status, StatusCode::OK | StatusCode::PARTIAL_CONTENT) {
        headers.insert(header::CONTENT_TYPE, content_type(&name));
    }
    // Only a file that exists is immutable: a 404 under assets/ is not.
    let immutable = name.starts_with("assets/")
        && matches!(
            status,
            StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable { IMMUTABLE } else { REVALIDATE }),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn content_types_are_the_ones_browsers_insist_on() {
        assert_eq!(content_type("app.wasm"), "application/wasm");
        assert_eq!(
            content_type("assets/app-1f2e.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("SHA256SUMS"), "text/plain; charset=utf-8");
        assert_eq!(content_type("assets/logo.png"), "image/png");
        assert_eq!(content_type("blob"), "application/octet-stream");
    }

    #[test]
    fn a_folder_names_its_index_and_the_leading_slash_goes() {
        assert_eq!(file_name("/"), "index.html");
        assert_eq!(file_name("/assets/"), "assets/index.html");
        assert_eq!(file_name("/assets/a.css"), "assets/a.css");
    }

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists_and_stars() {
        let etag = HeaderValue::from_static("W/\"abc\"");
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(v));
            h
        };
        assert!(matches_etag(&with("W/\"abc\""), &etag));
        assert!(matches_etag(&with("\"abc\""), &etag));
        assert!(matches_etag(&with("\"x\", W/\"abc\""), &etag));
        assert!(matches_etag(&with("*"), &etag));
        assert!(!matches_etag(&with("\"abd\""), &etag));
        assert!(!matches_etag(&HeaderMap::new(), &etag));
    }

    #[test]
    fn the_built_in_client_has_an_index_and_a_published_hash() {
        assert!(Bundle::get("index.html").is_some());
        let hash = published_hash(&WebClient::Embedded).unwrap();
        assert_eq!(hash.len(), 64);
        assert_eq!(published_hash(&WebClient::Off), None);
    }
}
