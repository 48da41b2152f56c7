//! Delivery to an Alertmanager (API v2, `POST /api/v2/alerts`): an [`AlertSink`] with
//! a bounded queue (the oldest alerts are dropped and counted when it is full, as
//! Prometheus's notifier does), batches of 64, a per-request timeout and a few retries
//! with backoff, on a background task so rule evaluation never waits for it.

use crate::alert::{Alert, AlertSink};
use crate::timefmt::rfc3339;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Prometheus's `--alertmanager.notification-queue-capacity`.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;
/// Prometheus's maxBatchSize.
const MAX_BATCH: usize = 64;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per batch; waits 1 s, 2 s between them.
const ATTEMPTS: u32 = 3;

pub struct Client {
    /// As configured, for labels and messages.
    pub url: String,
    addr: String,
    path: String,
    timeout: Duration,
    capacity: usize,
    queue: Mutex<VecDeque<Alert>>,
    wake: tokio::sync::Notify,
    pub sent: AtomicU64,
    pub errors: AtomicU64,
    pub dropped: AtomicU64,
}

impl Client {
    pub fn new(url: &str, timeout: Duration, capacity: usize) -> Result<Client, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http:// Alertmanager URLs are supported"))?;
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() {
            return Err(format!("{url:?} has no host; write it like \"http://127.0.0.1:9093\""));
        }
        let addr = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Client {
            url: url.to_string(),
            addr,
            path: format!("{}/api/v2/alerts", prefix.trim_end_matches('/')),
            timeout,
            capacity: capacity.max(1),
            queue: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            sent: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    pub fn queue_len(&self) -> usize {
        self.queue.lock().unwrap().len()
    }

    /// Delivers queued alerts until `shutdown` changes.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            let batch: Vec<Alert> = {
                let mut q = self.queue.lock().unwrap();
                let n = q.len().min(MAX_BATCH);
                q.drain(..n).collect()
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => continue,
                    _ = shutdown.changed() => return,
                }
            }
            let body = body(&batch);
            let mut ok = false;
            for attempt in 0..ATTEMPTS {
                match self.post(body.clone()).await {
                    Ok(()) => {
                        ok = true;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(alertmanager = %self.url, attempt = attempt + 1, "sending {} alert(s) failed: {e}", batch.len());
                        if attempt + 1 < ATTEMPTS {
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1 << attempt)) => {}
                                _ = shutdown.changed() => return,
                            }
                        }
                    }
                }
            }
            if ok {
                self.sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
            } else {
                self.errors.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        }
    }

    async fn post(&self, body: String) -> Result<(), String> {
        let work = async {
            let stream = tokio::net::TcpStream::connect(&self.addr)
                .await
                .map_err(|e| e.to_string())?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = hyper::Request::post(&self.path)
                .header(hyper::header::HOST, &self.addr)
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
                Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes).trim()))
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
    }
}

impl AlertSink for Client {
    fn send(&self, alerts: &[Alert]) {
        let mut q = self.queue.lock().unwrap();
        let over = (q.len() + alerts.len()).saturating_sub(self.capacity);
        if over > 0 {
            let from_queue = over.min(q.len());
            q.drain(..from_queue);
            self.dropped.fetch_add(over as u64, Ordering::Relaxed);
        }
        let skip = alerts.len().saturating_sub(self.capacity);
        q.extend(alerts[skip..].iter().cloned());
        drop(q);
        self.wake.notify_one();
    }
}

/// Alertmanager's `postableAlerts`.
fn body(alerts: &[Alert]) -> String {
    let v: Vec<serde_json::Value> = alerts
        .iter()
        .map(|a| {
            serde_json::json!({
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at),
                "endsAt": rfc3339(a.ends_at),
                "generatorURL": a.generator_url,
            })
        })
        .collect();
    serde_json::Value::Array(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn alert(n: usize) -> Alert {
        Alert {
            labels: [("alertname".to_string(), format!("A{n}"))].into(),
            annotations: Default::default(),
            starts_at: UNIX_EPOCH,
            ends_at: UNIX_EPOCH + Duration::from_secs(60),
            generator_url: "http://x/graph".into(),
        }
    }

    #[test]
    fn rules_alertmanager_queue_drops_oldest_when_full() {
        let c = Client::new("http://127.0.0.1:9093", DEFAULT_TIMEOUT, 3).unwrap();
        c.send(&[alert(1), alert(2)]);
        c.send(&[alert(3), alert(4)]);
        assert_eq!(c.queue_len(), 3);
        assert_eq!(c.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(c.queue.lock().unwrap()[0].labels["alertname"], "A2");
        assert_eq!(c.path, "/api/v2/alerts");
        assert!(Client::new("https://x", DEFAULT_TIMEOUT, 1).is_err());
    }

    #[test]
    fn rules_alertmanager_body_is_postable_alerts() {
        let b: serde_json::Value = serde_json::from_str(&body(&[alert(1)])).unwrap();
        assert_eq!(b[0]["labels"]["alertname"], "A1");
        assert_eq!(b[0]["startsAt"], "1970-01-01T00:00:00Z");
        assert_eq!(b[0]["endsAt"], "1970-01-01T00:01:00Z");
    }
}
