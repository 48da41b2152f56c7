//! Delivery to an Alertmanager (API v2, `POST /api/v2/alerts`): an [`AlertSink`] with
//! a bounded queue (the oldest alerts are dropped and counted when it is full, as
//! Prometheus's notifier does), batches of 64, a per-request timeout and a few retries
//! with backoff, on a background task so rule evaluation never waits for it.

use crate::alert::{Alert, AlertSink};
use crate::notify::receivers::http::{parse_url, post_json_within};
use crate::timefmt::rfc3339;
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
    /// `<url>/api/v2/alerts`.
    endpoint: String,
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
        let u = parse_url(url).map_err(|e| format!("{e}; write it like \"http://127.0.0.1:9093\""))?;
        if u.host.is_empty() {
            return Err(format!("{url:?} has no host; write it like \"http://127.0.0.1:9093\""));
        }
        Ok(Client {
            url: url.to_string(),
            endpoint: format!("{}/api/v2/alerts", url.trim_end_matches('/')),
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
        post_json_within(&self.endpoint, body.into_bytes(), self.timeout).await
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
        assert_eq!(c.endpoint, "http://127.0.0.1:9093/api/v2/alerts");
        let prefixed = Client::new("https://am.example:9443/prefix/", DEFAULT_TIMEOUT, 1).unwrap();
        assert_eq!(prefixed.endpoint, "https://am.example:9443/prefix/api/v2/alerts");
        assert!(Client::new("ftp://x", DEFAULT_TIMEOUT, 1).is_err());
        assert!(Client::new("http://", DEFAULT_TIMEOUT, 1).is_err());
    }

    #[test]
    fn rules_alertmanager_body_is_postable_alerts() {
        let b: serde_json::Value = serde_json::from_str(&body(&[alert(1)])).unwrap();
        assert_eq!(b[0]["labels"]["alertname"], "A1");
        assert_eq!(b[0]["startsAt"], "1970-01-01T00:00:00Z");
        assert_eq!(b[0]["endsAt"], "1970-01-01T00:01:00Z");
    }
}
