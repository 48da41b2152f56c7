//! What a plugin instance may reach outside its own memory, and the checks that
//! enforce it at the WASI boundary. Everything not granted is denied.

use crate::sql::SqlConnection;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The capabilities granted to one plugin instance (the `grants` table of its entry in
/// plugins.toml, already validated by the agent's config module).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// Host directories preopened read-only under the same path in the guest.
    pub read: Vec<PathBuf>,
    /// Outbound HTTP authorities (`host:port`, or `host` for the scheme's default port).
    pub http: Vec<String>,
    /// TCP addresses the plugin may connect to.
    pub tcp: Vec<SocketAddr>,
    /// May call `host.statfs`.
    pub statfs: bool,
    /// Database connections the plugin may query through `sql.query`, by the name it
    /// uses (the sonde.toml `[connections.<name>]` key). Holds where the password is,
    /// not the password.
    pub sql: BTreeMap<String, SqlConnection>,
    /// UDP addresses the host listens on for this instance and feeds to its `push`
    /// export (StatsD and the like). The socket stays in the host: the guest never
    /// gets network access from this grant, only the datagrams.
    pub listen_udp: Vec<SocketAddr>,
    /// TCP addresses the host listens on for this instance; it hands over what
    /// clients send, cut at line ends (`\n`).
    pub listen_tcp: Vec<SocketAddr>,
}

impl Grants {
    /// Whether an outbound HTTP request to `authority` (as in the request URI, before
    /// any DNS lookup) is granted. Comparison is ASCII case-insensitive on the host;
    /// a grant without a port matches the scheme's default port only.
    pub fn allows_http(&self, authority: &str, default_port: u16) -> bool {
        let (host, port) = split_authority(authority, default_port);
        self.http.iter().any(|g| {
            let (gh, gp) = split_authority(g, default_port);
            gh.eq_ignore_ascii_case(host) && gp == port
        })
    }

    /// Whether the host owns a socket for this instance (it is a push source).
    pub fn listens(&self) -> bool {
        !self.listen_udp.is_empty() || !self.listen_tcp.is_empty()
    }

    /// Whether a TCP connect to `addr` is granted.
    pub fn allows_tcp_connect(&self, addr: &SocketAddr) -> bool {
        self.tcp.contains(addr)
    }
}

fn split_authority(authority: &str, default_port: u16) -> (&str, u16) {
    // Bracketed IPv6: [::1]:8080
    if let Some(rest) = authority.strip_prefix('[')
        && let Some((host, tail)) = rest.split_once(']')
    {
        let port = tail
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(default_port);
        return (host, port);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port.parse().unwrap_or(0)),
        _ => (authority, default_port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_grants_match_host_and_port() {
        let g = Grants {
            http: vec!["127.0.0.1:9100".into(), "Example.com".into()],
            ..Default::default()
        };
        assert!(g.allows_http("127.0.0.1:9100", 80));
        assert!(!g.allows_http("127.0.0.1:9101", 80));
        assert!(!g.allows_http("127.0.0.2:9100", 80));
        assert!(g.allows_http("example.com", 443));
        assert!(g.allows_http("example.com:443", 443));
        assert!(!g.allows_http("example.com:8443", 443));
        assert!(!g.allows_http("evil.example.com", 443));
    }

    #[test]
    fn ipv6_authorities() {
        let g = Grants {
            http: vec!["[::1]:8080".into()],
            ..Default::default()
        };
        assert!(g.allows_http("[::1]:8080", 80));
        assert!(!g.allows_http("[::1]:8081", 80));
    }

    #[test]
    fn tcp_grants_are_exact() {
        let g = Grants {
            tcp: vec!["127.0.0.1:6379".parse().unwrap()],
            ..Default::default()
        };
        assert!(g.allows_tcp_connect(&"127.0.0.1:6379".parse().unwrap()));
        assert!(!g.allows_tcp_connect(&"127.0.0.1:6380".parse().unwrap()));
    }
}
