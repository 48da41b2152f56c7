//! The dispatcher task: takes queued alerts in, flushes aggregation groups when their
//! timers are due, and delivers each notification with retries and backoff.

use super::receivers::{Message, MessageAlert};
use super::state::{NflogEntry, StoredAlert};
use super::{Notifier, now_ms};
use crate::timefmt::rfc3339;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};
use tokio::sync::mpsc::UnboundedReceiver;

/// How often group timers are checked: the resolution of group_wait and friends.
const TICK: Duration = Duration::from_millis(100);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub async fn run(
    n: Arc<Notifier>,
    mut rx: UnboundedReceiver<Vec<StoredAlert>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    for (name, ints) in &n.receivers {
        for i in ints {
            n.metrics.update(name, i.kind(), |_| {});
        }
    }
    let mut tick = tokio::time::interval(TICK);
    let mut gc = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            Some(batch) = rx.recv() => n.ingest(batch),
            _ = tick.tick() => flush_due(&n),
            _ = gc.tick() => n.state.lock().unwrap().gc(now_ms()),
            _ = shutdown.changed() => {
                // Alerts already acknowledged to their sender but still queued.
                while let Ok(batch) = rx.try_recv() {
                    n.ingest(batch);
                }
                n.state.lock().unwrap().save_alerts();
                return;
            }
        }
        n.state.lock().unwrap().save_alerts();
    }
}

/// Flushes every group whose timer is due and that has no send in flight.
fn flush_due(n: &Arc<Notifier>) {
    let now = now_ms();
    let due: Vec<String> = {
        let st = n.state.lock().unwrap();
        st.groups
            .values()
            .filter(|g| g.next_flush <= now && g.busy == 0)
            .map(|g| g.key.clone())
            .collect()
    };
    for key in due {
        flush(n, &key, now);
    }
}

fn flush(n: &Arc<Notifier>, key: &str, now: i64) {
    let mut st = n.state.lock().unwrap();
    let Some(g) = st.groups.get(key) else { return };
    let (opts, group_labels) = (g.opts.clone(), g.labels.clone());
    let mut alerts: Vec<(String, StoredAlert)> = Vec::new();
    for fp in &g.alerts {
        if let Some(a) = st.alerts.get(fp) {
            let (silenced, inhibited) = n.muted(&st, &a.labels, now);
            if silenced.is_empty() && !inhibited {
                alerts.push((fp.clone(), a.clone()));
            }
        }
    }
    let firing: BTreeSet<String> = alerts
        .iter()
        .filter(|(_, a)| !a.resolved(now))
        .map(|(f, _)| f.clone())
        .collect();
    let resolved: BTreeSet<String> = alerts
        .iter()
        .filter(|(_, a)| a.resolved(now))
        .map(|(f, _)| f.clone())
        .collect();
    let integrations = n.receivers.get(&opts.receiver).map_or(&[][..], Vec::as_slice);
    let mut all_resolved_done = firing.is_empty();
    let mut sends = Vec::new();
    for (idx, integ) in integrations.iter().enumerate() {
        let log_key = format!("{key}/{}/{}/{idx}", opts.receiver, integ.kind());
        let send_resolved = integ.send_resolved();
        let prev = st.nflog.get(&log_key);
        let repeat = opts.repeat_interval.as_millis() as i64;
        if !NflogEntry::needs_update(prev, &firing, &resolved, send_resolved, repeat, now) {
            continue;
        }
        let entry = NflogEntry {
            firing: firing.clone(),
            resolved: resolved.clone(),
            at: now,
        };
        let list: Vec<&(String, StoredAlert)> = alerts
            .iter()
            .filter(|(f, _)| firing.contains(f) || send_resolved)
            .collect();
        if list.is_empty() {
            // Everything resolved and this integration does not say so: just record it.
            st.nflog.insert(log_key, entry);
            st.save_nflog();
            continue;
        }
        all_resolved_done = false;
        sends.push((
            idx,
            log_key,
            entry,
            message(n, key, &opts.receiver, &group_labels, &list, now),
        ));
    }
    let g = st.groups.get_mut(key).expect("checked above");
    g.next_flush = now + opts.group_interval.as_millis() as i64;
    g.busy += sends.len();
    if all_resolved_done && sends.is_empty() {
        // Every alert resolved and notified: the group ends (a new one starts if they fire again).
        g.alerts.retain(|fp| !resolved.contains(fp));
        if g.alerts.is_empty() {
            st.groups.remove(key);
        }
    }
    drop(st);
    for (idx, log_key, entry, msg) in sends {
        let n = n.clone();
        let (key, receiver) = (key.to_string(), opts.receiver.clone());
        let deadline = Instant::now() + opts.group_interval.max(Duration::from_secs(10));
        tokio::spawn(async move {
            let ok = deliver(&n, &receiver, idx, &msg, deadline).await;
            let mut st = n.state.lock().unwrap();
            if ok {
                st.nflog.insert(log_key, entry);
                st.save_nflog();
            }
            if let Some(g) = st.groups.get_mut(&key) {
                g.busy = g.busy.saturating_sub(1);
                if !ok {
                    // Try again at the next tick rather than a whole group_interval later.
                    g.next_flush = now_ms();
                }
            }
        });
    }
}

fn message(
    n: &Notifier,
    key: &str,
    receiver: &str,
    group_labels: &BTreeMap<String, String>,
    list: &[&(String, StoredAlert)],
    now: i64,
) -> Message {
    let common = |f: fn(&StoredAlert) -> &BTreeMap<String, String>| -> BTreeMap<String, String> {
        let mut c = list.first().map(|(_, a)| f(a).clone()).unwrap_or_default();
        for (_, a) in list {
            c.retain(|k, v| f(a).get(k) == Some(v));
        }
        c
    };
    let time = |t: i64| rfc3339(UNIX_EPOCH + Duration::from_millis(t.max(0) as u64));
    let alerts: Vec<MessageAlert> = list
        .iter()
        .map(|(fp, a)| MessageAlert {
            status: if a.resolved(now) { "resolved" } else { "firing" },
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            starts_at: time(a.starts_at),
            ends_at: if a.resolved(now) {
                time(a.ends_at)
            } else {
                "0001-01-01T00:00:00Z".into()
            },
            generator_url: a.generator_url.clone(),
            fingerprint: fp.clone(),
        })
        .collect();
    Message {
        version: "4",
        group_key: key.to_string(),
        truncated_alerts: 0,
        status: if alerts.iter().any(|a| a.status == "firing") {
            "firing"
        } else {
            "resolved"
        },
        receiver: receiver.to_string(),
        group_labels: group_labels.clone(),
        common_labels: common(|a| &a.labels),
        common_annotations: common(|a| &a.annotations),
        external_url: n.external_url.clone(),
        alerts,
    }
}

/// Sends until delivered or `deadline`, doubling the pause after each failure.
async fn deliver(n: &Notifier, receiver: &str, idx: usize, msg: &Message, deadline: Instant) -> bool {
    let integ = &n.receivers[receiver][idx];
    let kind = integ.kind();
    n.metrics.update(receiver, kind, |m| m.notifications += 1);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let start = Instant::now();
        let result = integ.notify(msg).await;
        let took = start.elapsed().as_secs_f64();
        n.metrics.update(receiver, kind, |m| {
            m.requests += 1;
            m.latency_sum += took;
            m.latency_count += 1;
            m.requests_failed += u64::from(result.is_err());
        });
        match result {
            Ok(()) => {
                tracing::info!(receiver, integration = kind, group = %msg.group_key, alerts = msg.alerts.len(), "notified");
                return true;
            }
            Err(e) if Instant::now() + backoff < deadline => {
                tracing::warn!(receiver, integration = kind, group = %msg.group_key, "notification failed, retrying in {backoff:?}: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                tracing::error!(receiver, integration = kind, group = %msg.group_key, "notification failed, giving up until the next flush: {e}");
                n.metrics.update(receiver, kind, |m| m.failed += 1);
                return false;
            }
        }
    }
}
