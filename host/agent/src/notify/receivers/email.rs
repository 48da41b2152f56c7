//! Email over SMTP: a minimal client (EHLO, optional STARTTLS, AUTH PLAIN, one
//! plain-text message). Written here rather than pulling in `lettre`: a notifier
//! needs only this path, and with the TLS stack already built for the plugin host it
//! costs no new dependency, where lettre would add its own builder, MIME and
//! transport stacks for features we do not use.

use super::Message;
use crate::notify::config::{EmailConfig, StartTls, read_secret};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The whole session, from connect to QUIT.
const TIMEOUT: Duration = Duration::from_secs(30);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub async fn send(c: &EmailConfig, msg: &Message) -> Result<(), String> {
    tokio::time::timeout(TIMEOUT, session(c, msg))
        .await
        .map_err(|_| format!("SMTP {}: no answer within {TIMEOUT:?}", c.smarthost))?
        .map_err(|e| format!("SMTP {}: {e}", c.smarthost))
}

async fn session(c: &EmailConfig, msg: &Message) -> Result<(), String> {
    let host = c.smarthost.rsplit_once(':').map_or(c.smarthost.as_str(), |(h, _)| h);
    let hello = c.hello.as_deref().unwrap_or("localhost");
    let tcp = TcpStream::connect(&c.smarthost)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut s = BufReader::new(tcp);
    reply(&mut s, 220).await?;
    let caps = command(&mut s, &format!("EHLO {hello}"), 250).await?;
    let offers_tls = caps.lines().any(|l| l.to_ascii_uppercase().contains("STARTTLS"));
    let mode = c.starttls.unwrap_or_default();
    let (mut s, tls, caps): (BufReader<Box<dyn Io>>, bool, String) = if offers_tls && mode != StartTls::Never {
        command(&mut s, "STARTTLS", 220).await?;
        let tls = super::http::tls_connect(host, s.into_inner()).await?;
        let mut s = BufReader::new(Box::new(tls) as Box<dyn Io>);
        let caps = command(&mut s, &format!("EHLO {hello}"), 250).await?;
        (s, true, caps)
    } else if mode == StartTls::Always {
        return Err("the server does not offer STARTTLS (starttls = \"always\")".into());
    } else {
        (BufReader::new(Box::new(s.into_inner()) as Box<dyn Io>), false, caps)
    };
    if let Some(user) = &c.auth_username {
        if !tls && !c.auth_without_tls {
            return Err("refusing to send the password without TLS (set auth_without_tls for a local relay)".into());
        }
        if !caps.to_ascii_uppercase().contains("PLAIN") {
            return Err("the server does not offer AUTH PLAIN".into());
        }
        let pass = read_secret(&c.auth_password_file, &c.auth_password_env)?;
        let token = base64(format!("\0{user}\0{pass}").as_bytes());
        command(&mut s, &format!("AUTH PLAIN {token}"), 235).await?;
    }
    command(&mut s, &format!("MAIL FROM:<{}>", c.from.trim()), 250).await?;
    let to: Vec<&str> = c.to.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
    for t in &to {
        command(&mut s, &format!("RCPT TO:<{t}>"), 250).await?;
    }
    command(&mut s, "DATA", 354).await?;
    let data = render(c, &to, msg);
    s.get_mut()
        .write_all(data.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    command(&mut s, ".", 250).await?;
    let _ = command(&mut s, "QUIT", 221).await;
    Ok(())
}

/// Sends one command line and waits for the reply with the expected code.
async fn command<S: AsyncBufRead + AsyncWrite + Unpin>(s: &mut S, line: &str, want: u16) -> Result<String, String> {
    s.write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    let shown = if line.starts_with("AUTH") {
        "AUTH PLAIN ..."
    } else {
        line
    };
    reply(s, want).await.map_err(|e| format!("{shown}: {e}"))
}

/// Reads a (possibly multi-line) reply; Err unless its code is `want`.
async fn reply<S: AsyncBufRead + Unpin>(s: &mut S, want: u16) -> Result<String, String> {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            if code != want {
                return Err(format!("server answered {:?}", all.trim()));
            }
            return Ok(all);
        }
    }
}

fn render(c: &EmailConfig, to: &[&str], msg: &Message) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let subject: String = msg.title().chars().filter(|c| !c.is_control()).collect();
    let mut out = format!(
        "From: {}\r\nTo: {}\r\nSubject: {subject}\r\nDate: {}\r\nMessage-ID: <{}.{}@sonde>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        c.from.trim(),
        to.join(", "),
        rfc5322_date(now.as_secs() as i64),
        now.as_nanos(),
        std::process::id(),
    );
    let mut body = msg.text();
    if !msg.external_url.is_empty() {
        body.push_str(&format!("\nsonde: {}\n", msg.external_url));
    }
    for line in body.lines() {
        // Dot-stuffing (RFC 5321 4.5.2).
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

fn rfc5322_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs.div_euclid(86_400);
    let (y, m, d) = crate::timefmt::civil_from_days(days);
    let r = secs.rem_euclid(86_400);
    format!(
        "{}, {d} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[m as usize - 1],
        r / 3600,
        r % 3600 / 60,
        r % 60
    )
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn notify_email_helpers() {
        assert_eq!(super::base64(b"\0user\0pass"), "AHVzZXIAcGFzcw==");
        assert_eq!(super::base64(b"ab"), "YWI=");
        assert_eq!(super::rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
    }
}
