//! A small HTTP/1.1 POST client for the receivers (hyper, as `sonde query` uses it),
//! with TLS from tokio-rustls and the Mozilla roots of webpki-roots: both are already
//! built for the plugin host's wasi:http, so HTTPS receivers add no dependency.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Per attempt: connecting, sending and reading the answer.
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Url<'a> {
    pub tls: bool,
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
    pub authority: &'a str,
}

pub fn parse_url(url: &str) -> Result<Url<'_>, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url:?} is not an http(s) URL"));
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h, p.parse().map_err(|_| format!("bad port in {url:?}"))?)
        }
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(Url {
        tls,
        host,
        port,
        path,
        authority,
    })
}

pub fn tls_config() -> Arc<tokio_rustls::rustls::ClientConfig> {
    static CFG: OnceLock<Arc<tokio_rustls::rustls::ClientConfig>> = OnceLock::new();
    CFG.get_or_init(|| {
        let roots = tokio_rustls::rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        Arc::new(
            tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    })
    .clone()
}

pub async fn tls_connect(host: &str, tcp: TcpStream) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("bad TLS server name {host:?}: {e}"))?;
    tokio_rustls::TlsConnector::from(tls_config())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {host}: {e}"))
}

/// POSTs JSON; any 2xx is success, anything else an error with the status and the
/// start of the body.
pub async fn post_json(url: &str, body: Vec<u8>) -> Result<(), String> {
    post_json_within(url, body, TIMEOUT).await
}

/// [`post_json`] with its own deadline (the Alertmanager client's `timeout`).
pub async fn post_json_within(url: &str, body: Vec<u8>, timeout: Duration) -> Result<(), String> {
    tokio::time::timeout(timeout, post(url, body))
        .await
        .map_err(|_| format!("POST {}: no answer within {timeout:?}", redact(url)))?
}

async fn post(url: &str, body: Vec<u8>) -> Result<(), String> {
    let u = parse_url(url)?;
    let tcp = TcpStream::connect((u.host, u.port))
        .await
        .map_err(|e| format!("connect to {}: {e}", u.authority))?;
    if u.tls {
        exchange(tls_connect(u.host, tcp).await?, &u, body).await
    } else {
        exchange(tcp, &u, body).await
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: S,
    u: &Url<'_>,
    body: Vec<u8>,
) -> Result<(), String> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::post(u.path)
        .header(hyper::header::HOST, u.authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, concat!("sonde/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if status.is_success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        Err(format!("answered {status}: {}", text.trim()))
    }
}

/// A URL for logs: scheme and authority only (Slack URLs carry their secret in the path).
pub fn redact(url: &str) -> String {
    parse_url(url).map_or_else(
        |_| "<bad url>".into(),
        |u| format!("{}://{}/...", if u.tls { "https" } else { "http" }, u.authority),
    )
}
