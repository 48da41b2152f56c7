//! One scrape request over `wasi:http/outgoing-handler`, called directly (the `wstd`
//! client lost 2-30% of requests on wasmtime 48, /work notes): headers as
//! Prometheus 2.42 sends them, a deadline over the whole exchange, gzip decoding and
//! the body size limit.

use sonde_plugin_sdk::Error;
use std::io::Read;
use std::time::Duration;

/// The Accept header of Prometheus 2.42.
pub const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Where the body of a successful (2xx) response goes, decoded, as it arrives.
pub trait BodySink {
    /// Before any byte: the response's Content-Type and the body's decoded length when
    /// it is known (Content-Length of an identity body, the trailer of a gzip one).
    fn start(&mut self, content_type: &str, decoded_len: Option<u64>) -> Result<(), Error>;
    /// The next bytes of the body, cut anywhere.
    fn data(&mut self, bytes: &[u8]) -> Result<(), Error>;
}

/// The request headers of a scrape.
pub fn request_headers(timeout: Duration) -> Vec<(&'static str, String)> {
    vec![
        ("Accept", ACCEPT.to_string()),
        ("Accept-Encoding", "gzip".to_string()),
        ("User-Agent", concat!("sonde/", env!("CARGO_PKG_VERSION")).to_string()),
        (
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", timeout.as_secs_f64()),
        ),
    ]
}

/// Whether a Content-Encoding is gzip; an error for one that is neither gzip nor
/// identity.
pub fn is_gzip(encoding: &str, url: &str) -> Result<bool, Error> {
    match encoding.trim() {
        "" | "identity" => Ok(false),
        e if e.eq_ignore_ascii_case("gzip") => Ok(true),
        e => Err(Error::failed(format!("{url}: unsupported Content-Encoding {e:?}"))),
    }
}

/// Bytes decoded per call to the sink.
const PIECE: usize = 64 * 1024;

/// A whole gzip `body`, decoded piece by piece into `sink` (after its `start`), refused
/// past `limit` decoded bytes (0 = none).
pub fn gunzip_into(body: &[u8], limit: u64, url: &str, sink: &mut impl BodySink) -> Result<(), Error> {
    let mut decoder = flate2::read::GzDecoder::new(body);
    let mut piece = vec![0u8; PIECE];
    let mut total = 0u64;
    loop {
        let n = decoder
            .read(&mut piece)
            .map_err(|e| Error::failed(format!("{url}: cannot decode the gzip body: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        total += n as u64;
        check_limit(total, limit, url)?;
        sink.data(&piece[..n])?;
    }
}

/// The decoded size of a one-member gzip `body`, from its trailer (the size modulo
/// 2^32), bounded by what deflate can expand to (1032:1). Only a hint (the first page
/// sizes the plugin's registry from it).
pub fn gzip_size_hint(body: &[u8]) -> u64 {
    let Some(trailer) = body.len().checked_sub(4).map(|at| &body[at..]) else {
        return 0;
    };
    let size = u32::from_le_bytes(trailer.try_into().expect("4 bytes")) as u64;
    size.min(body.len() as u64 * 1032)
}

fn check_limit(len: u64, limit: u64, url: &str) -> Result<(), Error> {
    if limit > 0 && len > limit {
        return Err(Error::failed(format!(
            "{url}: body size limit exceeded: the response is larger than body_size_limit ({limit} bytes)"
        )));
    }
    Ok(())
}

/// `server returned HTTP status 500 Internal Server Error`, as Prometheus words it.
pub fn status_error(status: u16) -> Error {
    Error::unreachable(format!("server returned HTTP status {status} {}", reason(status)))
}

fn reason(status: u16) -> &'static str {
    match status {
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(target_arch = "wasm32")]
pub use wasi::get;

#[cfg(not(target_arch = "wasm32"))]
pub fn get(
    endpoint: &crate::config::Endpoint,
    _authorization: Option<&str>,
    _timeout: Duration,
    _limit: u64,
    _sink: &mut impl BodySink,
) -> Result<(), Error> {
    Err(Error::failed(format!(
        "{}: HTTP needs the wasm32-wasip2 component",
        endpoint.url()
    )))
}

#[cfg(target_arch = "wasm32")]
mod wasi {
    use super::{BodySink, check_limit, gunzip_into, gzip_size_hint, is_gzip, request_headers, status_error};
    use crate::config::Endpoint;
    use sonde_plugin_sdk::Error;
    use std::time::Duration;
    use wasip2::clocks::monotonic_clock;
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingRequest, RequestOptions, Scheme};
    use wasip2::io::poll::{Pollable, poll};
    use wasip2::io::streams::StreamError;

    /// Bytes asked for per read of the body stream.
    const READ_CHUNK: u64 = 256 * 1024;
    /// Most body bytes reserved up front from a Content-Length (the limit, when set, is lower).
    const MAX_RESERVE: u64 = 64 * 1024 * 1024;

    pub fn get(
        endpoint: &Endpoint,
        authorization: Option<&str>,
        timeout: Duration,
        limit: u64,
        sink: &mut impl BodySink,
    ) -> Result<(), Error> {
        let url = endpoint.url();
        let deadline = monotonic_clock::now().saturating_add(timeout.as_nanos() as u64);
        let timed_out = || Error::Timeout(format!("{url}: no complete answer within {timeout:?}"));
        let wait = |p: &Pollable| -> Result<(), Error> {
            if monotonic_clock::now() >= deadline {
                return Err(timed_out());
            }
            let timer = monotonic_clock::subscribe_instant(deadline);
            if poll(&[p, &timer]).contains(&0) {
                Ok(())
            } else {
                Err(timed_out())
            }
        };

        let mut headers: Vec<(String, Vec<u8>)> = request_headers(timeout)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.into_bytes()))
            .collect();
        if let Some(a) = authorization {
            headers.push(("Authorization".into(), a.as_bytes().to_vec()));
        }
        let fields = Fields::from_list(&headers).map_err(|e| Error::failed(format!("{url}: bad header: {e:?}")))?;
        let req = OutgoingRequest::new(fields);
        let scheme = if endpoint.https { Scheme::Https } else { Scheme::Http };
        let bad = |what: &str| Error::config(format!("{url}: the host refused the {what}"));
        req.set_method(&Method::Get).map_err(|()| bad("method"))?;
        req.set_scheme(Some(&scheme)).map_err(|()| bad("scheme"))?;
        req.set_authority(Some(&endpoint.authority))
            .map_err(|()| bad("authority"))?;
        req.set_path_with_query(Some(&endpoint.path_with_query))
            .map_err(|()| bad("path"))?;
        let options = RequestOptions::new();
        let ns = timeout.as_nanos() as u64;
        // Best effort: a host may not support a timeout; the deadline above holds anyway.
        let _ = options.set_connect_timeout(Some(ns));
        let _ = options.set_first_byte_timeout(Some(ns));
        let _ = options.set_between_bytes_timeout(Some(ns));

        let future =
            outgoing_handler::handle(req, Some(options)).map_err(|e| http_error(&url, &endpoint.authority, e))?;
        let response = loop {
            if let Some(r) = future.get() {
                break r
                    .map_err(|()| Error::failed(format!("{url}: response taken twice")))?
                    .map_err(|e| http_error(&url, &endpoint.authority, e))?;
            }
            wait(&future.subscribe())?;
        };
        let status = response.status();
        let (content_type, encoding, content_length) = {
            let h = response.headers();
            let first = |name: &str| {
                h.get(name)
                    .first()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            (
                first("content-type"),
                first("content-encoding"),
                first("content-length").trim().parse::<u64>().ok(),
            )
        };
        if !(200..300).contains(&status) {
            return Err(status_error(status));
        }
        let gzip = is_gzip(&encoding, &url)?;
        let body = response
            .consume()
            .map_err(|()| Error::failed(format!("{url}: response body taken twice")))?;
        // A gzip body is read whole (a tenth of the page, about) and decoded into the
        // sink piece by piece; an identity body goes to the sink as it arrives. Either
        // way the decoded page is never held whole.
        let mut raw = Vec::new();
        if gzip {
            // Sized once from Content-Length: grown by doubling, it would leave copies
            // in the plugin's memory, which never shrinks. A wrong length only costs a
            // reallocation.
            let reserve = content_length.map_or(0, |n| n.min(if limit > 0 { limit } else { MAX_RESERVE }));
            raw.reserve_exact(reserve as usize);
        } else {
            sink.start(&content_type, content_length)?;
        }
        let mut read = 0u64;
        {
            let stream = body
                .stream()
                .map_err(|()| Error::failed(format!("{url}: body stream taken twice")))?;
            loop {
                match stream.read(READ_CHUNK) {
                    Ok(chunk) if chunk.is_empty() => wait(&stream.subscribe())?,
                    Ok(chunk) => {
                        read += chunk.len() as u64;
                        // A compressed body is checked again as it is decoded.
                        check_limit(read, limit, &url)?;
                        if gzip {
                            raw.extend_from_slice(&chunk);
                        } else {
                            sink.data(&chunk)?;
                        }
                    }
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        return Err(Error::unreachable(format!(
                            "{url}: reading the body failed: {}",
                            e.to_debug_string()
                        )));
                    }
                }
            }
        }
        drop(body);
        drop(response);
        if gzip {
            sink.start(&content_type, Some(gzip_size_hint(&raw)))?;
            gunzip_into(&raw, limit, &url, sink)?;
        }
        Ok(())
    }

    fn http_error(url: &str, authority: &str, e: ErrorCode) -> Error {
        match e {
            ErrorCode::HttpRequestDenied => Error::denied(format!(
                "HTTP request to {authority} denied: add \"{authority}\" to grants.http in plugins.toml"
            )),
            ErrorCode::ConnectionRefused => Error::unreachable(format!("{url}: connection refused")),
            ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::HttpResponseTimeout
            | ErrorCode::DnsTimeout => Error::Timeout(format!("{url}: {e:?}")),
            ErrorCode::DnsError(d) => {
                Error::unreachable(format!("{url}: DNS lookup failed: {}", d.rcode.unwrap_or_default()))
            }
            ErrorCode::InternalError(Some(m)) => Error::unreachable(format!("{url}: {m}")),
            e => Error::unreachable(format!("{url}: {e:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_bodies_are_decoded_and_limited_after_decoding() {
        /// Collects what a sink receives.
        #[derive(Default)]
        struct Collect(Vec<u8>, usize);
        impl BodySink for Collect {
            fn start(&mut self, _: &str, _: Option<u64>) -> Result<(), Error> {
                Ok(())
            }
            fn data(&mut self, bytes: &[u8]) -> Result<(), Error> {
                self.0.extend_from_slice(bytes);
                self.1 += 1;
                Ok(())
            }
        }
        let decode = |packed: &[u8], limit: u64| {
            let mut c = Collect::default();
            gunzip_into(packed, limit, "u", &mut c).map(|()| c)
        };
        let page = b"a 1\n".repeat(40_000);
        let packed = gzip(&page);
        assert!(packed.len() < 1000);
        assert_eq!(gzip_size_hint(&packed), page.len() as u64);
        assert_eq!(gzip_size_hint(b"abc"), 0);
        let got = decode(&packed, 0).unwrap();
        assert_eq!(got.0, page);
        assert_eq!(got.1, page.len().div_ceil(PIECE), "in pieces, never whole");
        assert_eq!(decode(&packed, page.len() as u64).unwrap().0, page);
        let Err(Error::Failed(m)) = decode(&packed, page.len() as u64 - 1) else {
            panic!("limit not applied")
        };
        assert_eq!(
            m,
            "u: body size limit exceeded: the response is larger than body_size_limit (159999 bytes)"
        );
        assert!(matches!(decode(b"junk", 0), Err(Error::Failed(m)) if m.starts_with("u: cannot decode the gzip body")));
        assert!(!is_gzip("", "u").unwrap());
        assert!(is_gzip(" GZIP", "u").unwrap());
        assert!(matches!(is_gzip("br", "u"), Err(Error::Failed(m)) if m == "u: unsupported Content-Encoding \"br\""));
    }

    #[test]
    fn request_headers_are_prometheus_242s() {
        let h = request_headers(Duration::from_millis(2500));
        assert_eq!(h[0], ("Accept", ACCEPT.to_string()));
        assert_eq!(h[1], ("Accept-Encoding", "gzip".to_string()));
        assert_eq!(h[3], ("X-Prometheus-Scrape-Timeout-Seconds", "2.5".to_string()));
        let Error::Unreachable(m) = status_error(500) else {
            panic!()
        };
        assert_eq!(m, "server returned HTTP status 500 Internal Server Error");
    }
}
