//! A minimal RESP2 client: one blocking connection with connect, read and write
//! timeouts, commands as arrays of bulk strings, replies parsed into [`Reply`].

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest bulk string or array accepted: INFO ALL is a few KiB, so anything near
/// this is a protocol error rather than a real reply.
const MAX_BULK: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (simple or bulk string), or the server's error.
    pub fn text(self) -> Result<String, String> {
        match self {
            Reply::Simple(s) => Ok(s),
            Reply::Bulk(Some(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Reply::Error(e) => Err(e),
            other => Err(format!("unexpected reply {other:?}")),
        }
    }
}

pub struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    pub fn connect(addr: SocketAddr, connect_timeout: Duration, io_timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, connect_timeout)?;
        // On wasm32-wasip2 a refused non-blocking connect can come back as success;
        // the socket then has no peer.
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
        if stream.peer_addr().is_err() {
            return Err(io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused"));
        }
        stream.set_read_timeout(Some(io_timeout))?;
        stream.set_write_timeout(Some(io_timeout))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream: BufReader::new(stream),
        })
    }

    /// Sends one command and reads its reply. A server error is `Ok(Reply::Error)`;
    /// `Err` means the connection is unusable.
    pub fn call(&mut self, args: &[&str]) -> io::Result<Reply> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a.as_bytes());
            buf.extend_from_slice(b"\r\n");
        }
        self.stream.get_mut().write_all(&buf)?;
        read_reply(&mut self.stream)
    }
}

pub fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed by Redis",
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(protocol("reply line without CRLF"));
    }
    line.truncate(line.len() - 2);
    let (kind, rest) = (line[0], String::from_utf8_lossy(&line[1..]).into_owned());
    let len = || -> io::Result<i64> { rest.parse().map_err(|_| protocol("bad length")) };
    match kind {
        b'+' => Ok(Reply::Simple(rest)),
        b'-' => Ok(Reply::Error(rest)),
        b':' => Ok(Reply::Int(len()?)),
        b'$' => {
            let n = len()?;
            if n < 0 {
                return Ok(Reply::Bulk(None));
            }
            let n = n as usize;
            if n > MAX_BULK {
                return Err(protocol("bulk string too long"));
            }
            let mut data = vec![0; n + 2];
            r.read_exact(&mut data)?;
            data.truncate(n);
            Ok(Reply::Bulk(Some(data)))
        }
        b'*' => {
            let n = len()?;
            if n < 0 {
                return Ok(Reply::Array(None));
            }
            if n as usize > MAX_BULK {
                return Err(protocol("array too long"));
            }
            let items = (0..n).map(|_| read_reply(r)).collect::<io::Result<_>>()?;
            Ok(Reply::Array(Some(items)))
        }
        _ => Err(protocol("unknown reply type (is this a Redis server?)")),
    }
}

fn protocol(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("RESP protocol error: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_replies() {
        let mut r: &[u8] = b"*3\r\n$3\r\nfoo\r\n:42\r\n*-1\r\n";
        let got = read_reply(&mut r).unwrap();
        assert_eq!(
            got,
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"foo".to_vec())),
                Reply::Int(42),
                Reply::Array(None)
            ]))
        );
        let mut r: &[u8] = b"-ERR wrong\r\n";
        assert_eq!(read_reply(&mut r).unwrap().text(), Err("ERR wrong".into()));
    }
}
