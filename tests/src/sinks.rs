//! Local stand-ins for notification receivers: an HTTP server that records every
//! POST (and can fail the first ones with 500) and an SMTP server that records every
//! message. Both listen on 127.0.0.1 with a random port and stop with the process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Records the JSON bodies POSTed to it.
#[derive(Clone)]
pub struct WebhookSink {
    pub port: u16,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    fail_next: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
}

impl WebhookSink {
    pub fn start() -> WebhookSink {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let sink = WebhookSink {
            port: l.local_addr().unwrap().port(),
            bodies: Default::default(),
            fail_next: Default::default(),
            requests: Default::default(),
        };
        let s = sink.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || s.serve(conn));
            }
        });
        sink
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Answer the next `n` requests with 500 (not recorded).
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// The bodies received so far.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }

    fn serve(&self, conn: TcpStream) {
        let mut r = BufReader::new(conn.try_clone().expect("clone"));
        let mut w = conn;
        loop {
            let mut len = 0usize;
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 {
                    return;
                }
                if h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                return;
            }
            self.requests.fetch_add(1, Ordering::SeqCst);
            let fail = self
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let status = if fail {
                "500 Internal Server Error"
            } else {
                if let Ok(v) = serde_json::from_slice(&body) {
                    self.bodies.lock().unwrap().push(v);
                }
                "200 OK"
            };
            let _ = write!(w, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
        }
    }
}

/// Records the DATA of every message sent to it (no TLS, no auth).
#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let sink = SmtpSink {
            port: l.local_addr().unwrap().port(),
            messages: Default::default(),
        };
        let s = sink.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || s.serve(conn));
            }
        });
        sink
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    fn serve(&self, conn: TcpStream) {
        let mut r = BufReader::new(conn.try_clone().expect("clone"));
        let mut w = conn;
        let _ = w.write_all(b"220 sink ESMTP\r\n");
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let cmd = line.trim_end().to_ascii_uppercase();
            let answer = if cmd.starts_with("EHLO") {
                "250-sink\r\n250 8BITMIME\r\n"
            } else if cmd == "DATA" {
                let _ = w.write_all(b"354 go on\r\n");
                let mut msg = String::new();
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l).unwrap_or(0) == 0 {
                        return;
                    }
                    if l == ".\r\n" {
                        break;
                    }
                    msg.push_str(&l);
                }
                self.messages.lock().unwrap().push(msg);
                "250 queued\r\n"
            } else if cmd == "QUIT" {
                let _ = w.write_all(b"221 bye\r\n");
                return;
            } else {
                "250 ok\r\n"
            };
            let _ = w.write_all(answer.as_bytes());
        }
    }
}
