//! Sending the plugins' outgoing HTTP requests (`wasi:http`), once the gate in
//! [`crate::state`] has checked the grants.
//!
//! Unlike wasmtime-wasi-http's `default_send_request`, which opens a connection per
//! request and drops it after the response:
//!
//! - a connection is kept after its response and reused for the next request to the
//!   same scheme and authority (HTTP/1.1 keep-alive, as Prometheus's scraper does): a
//!   plugin scraping an endpoint every second skips the TCP (and TLS) handshake;
//! - responses are read into fixed 64 KiB buffers. hyper's default buffer starts at
//!   8 KiB on every connection and grows by reallocation to ~400 KiB: a copy per step,
//!   and the large steps are fresh mappings, faulted in page by page.
//!
//! The timeouts of `wasi:http`'s request options apply as in wasmtime's sender:
//! connect (TCP and TLS handshakes), first byte (the response head) and between bytes
//! (each body frame).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// Bytes read from a connection at a time.
const READ_BUF: usize = 64 * 1024;
/// A kept connection unused this long is closed (Go's HTTP client waits 90 s; an
/// exporter scraped every 15 s or more often reuses its connection well within it).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections kept per plugin instance, the oldest closed first.
const MAX_IDLE: usize = 16;
/// A timeout the request options leave unset (as wasmtime's sender).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// What a connection is to: a request may reuse one to the same origin.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    tls: bool,
    /// `host:port`.
    authority: String,
}

struct Kept {
    origin: Origin,
    sender: SendRequest<WasiBody>,
    since: Instant,
}

/// The connections of one plugin instance kept between requests. Each lives in a task
/// of its own; dropping its sender (here, or when the pool goes with the instance)
/// ends it.
#[derive(Default)]
pub(crate) struct Pool {
    kept: Mutex<Vec<Kept>>,
}

impl Pool {
    /// A kept connection to `origin` that can take a request now. Closed and expired
    /// connections are dropped on the way.
    fn take(&self, origin: &Origin) -> Option<SendRequest<WasiBody>> {
        let mut kept = self.kept.lock().unwrap();
        let now = Instant::now();
        kept.retain(|k| !k.sender.is_closed() && now.duration_since(k.since) < IDLE_TIMEOUT);
        // One whose last response is still being read is not ready: left for later.
        let i = kept.iter().rposition(|k| k.origin == *origin && k.sender.is_ready())?;
        Some(kept.swap_remove(i).sender)
    }

    /// Keeps a connection whose response head was just received: it can take the next
    /// request once that response's body has been read.
    fn keep(&self, origin: Origin, sender: SendRequest<WasiBody>) {
        let mut kept = self.kept.lock().unwrap();
        if kept.len() >= MAX_IDLE {
            kept.remove(0);
        }
        kept.push(Kept {
            origin,
            sender,
            since: Instant::now(),
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.kept.lock().unwrap().len()
    }
}

/// What the hooks return for a request: the response and a future for the request
/// body's transmission (here always done: the connection's own task drives it).
pub(crate) type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// Sends `req` (its URI absolute, `http` or `https`) over a kept connection to its
/// origin, or a new one.
pub(crate) async fn send(
    pool: Arc<Pool>,
    mut req: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<Sent, Error> {
    let uri = req.uri();
    let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    let authority = match authority.port() {
        Some(_) => authority.to_string(),
        None => format!("{authority}:{}", if tls { 443 } else { 80 }),
    };
    let origin = Origin { tls, authority };
    let timeout =
        |pick: fn(&RequestOptions) -> Option<Duration>| options.as_ref().and_then(pick).unwrap_or(DEFAULT_TIMEOUT);
    let connect_timeout = timeout(|o| o.connect_timeout);
    let first_byte_timeout = timeout(|o| o.first_byte_timeout);
    let between_bytes_timeout = timeout(|o| o.between_bytes_timeout);
    // The request line carries the path only (the absolute form is for proxies).
    let path = uri.path_and_query().cloned();
    *req.uri_mut() = http::Uri::builder()
        .path_and_query(path.map_or_else(|| "/".to_string(), |p| p.to_string()))
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;

    let response = loop {
        let (mut sender, reused) = match pool.take(&origin) {
            Some(sender) => (sender, true),
            None => (connect(&origin, connect_timeout).await?, false),
        };
        let sent = tokio::time::timeout(first_byte_timeout, sender.try_send_request(req))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)?;
        match sent {
            Ok(response) => {
                pool.keep(origin, sender);
                break response;
            }
            Err(mut e) => match e.take_message() {
                // A kept connection the server had closed: the request never left, so
                // it goes again on a new connection.
                Some(back) if reused => req = back,
                _ => return Err(e.into_error().into()),
            },
        }
    };
    let response = response.map(|body| {
        TimedBody {
            body,
            gap: between_bytes_timeout,
            timer: Box::pin(tokio::time::sleep(between_bytes_timeout)),
        }
        .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) })))
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A new connection to `origin`, its task spawned.
async fn connect(origin: &Origin, timeout: Duration) -> Result<SendRequest<WasiBody>, Error> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(&origin.authority))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    // Requests are small and sent whole: no reason to wait for an ACK.
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Stream> = if origin.tls {
        let name = server_name(&origin.authority).map_err(Error::InvalidDnsNameError)?;
        let tls = tokio::time::timeout(timeout, tls_connector().connect(name, tcp))
            .await
            .map_err(|_| Error::ConnectionTimeout)?
            .map_err(Error::Tls)?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (sender, conn) = tokio::time::timeout(
        timeout,
        http1::Builder::new()
            .read_buf_exact_size(Some(READ_BUF))
            .handshake::<_, WasiBody>(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    let authority = origin.authority.clone();
    tokio::spawn(async move {
        // A failure also reaches the request or response it happened in.
        if let Err(e) = conn.await {
            tracing::debug!(target: "sonde::plugin", "HTTP connection to {authority} ended: {e}");
        }
    });
    Ok(sender)
}

/// The TLS client every plugin's HTTPS requests use: the Mozilla roots (webpki-roots),
/// no client certificate.
fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    });
    tokio_rustls::TlsConnector::from(config.clone())
}

/// The name a server's certificate must carry, from `host:port` (an IP address, or
/// `[v6]:port`, is checked as an address).
fn server_name(
    authority: &str,
) -> Result<rustls::pki_types::ServerName<'static>, rustls::pki_types::InvalidDnsNameError> {
    use rustls::pki_types::ServerName;
    if let Ok(addr) = authority.parse::<std::net::SocketAddr>() {
        return Ok(ServerName::from(addr.ip()));
    }
    let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
    Ok(ServerName::try_from(host)?.to_owned())
}

/// A response body that fails when no frame arrives within `gap` of the previous one
/// (or of the response head).
struct TimedBody {
    body: hyper::body::Incoming,
    gap: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + this.gap;
                this.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(if e.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                e.into()
            }))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests;
