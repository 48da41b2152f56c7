use super::*;
use http_body_util::Empty;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How a test server answers each request on a connection.
#[derive(Clone, Copy)]
enum Answer {
    /// `HTTP/1.1 200` with a body, connection kept open.
    KeepAlive,
    /// The same, then the connection is closed without saying so (an idle timeout).
    ThenClose,
    /// `HTTP/1.0` without keep-alive: the connection ends with the response (as
    /// Python's http.server does).
    Http10,
    /// The head and half the body, then nothing.
    Stall,
    /// As `KeepAlive`, with 4 MiB of padding after the first line: more than a
    /// connection buffers before its reader takes some.
    Big,
}

/// A server on 127.0.0.1 answering every request on every connection with `answer`;
/// returns its address and the number of connections it accepted.
async fn server(answer: Answer) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut served = 0;
                loop {
                    // One request head at a time (the tests send no request bodies).
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    served += 1;
                    let mut body = format!("connection {n} request {served}\n");
                    if matches!(answer, Answer::Big) {
                        body.push_str(&".".repeat(4 << 20));
                    }
                    let head = |version: &str| {
                        format!(
                            "{version} 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        )
                    };
                    match answer {
                        Answer::KeepAlive | Answer::ThenClose | Answer::Big => {
                            sock.write_all(format!("{}{body}", head("HTTP/1.1")).as_bytes())
                                .await
                                .unwrap();
                            if matches!(answer, Answer::ThenClose) {
                                return;
                            }
                        }
                        Answer::Http10 => {
                            sock.write_all(format!("{}{body}", head("HTTP/1.0")).as_bytes())
                                .await
                                .unwrap();
                            return;
                        }
                        Answer::Stall => {
                            sock.write_all(format!("{}{}", head("HTTP/1.1"), &body[..5]).as_bytes())
                                .await
                                .unwrap();
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

fn get(addr: &str) -> http::Request<WasiBody> {
    http::Request::get(format!("http://{addr}/metrics"))
        .header("host", addr)
        .body(Empty::<Bytes>::new().map_err(|_| unreachable!()).boxed_unsync())
        .unwrap()
}

fn options(between_bytes: Duration) -> Option<RequestOptions> {
    Some(RequestOptions {
        connect_timeout: Some(Duration::from_secs(5)),
        first_byte_timeout: Some(Duration::from_secs(5)),
        between_bytes_timeout: Some(between_bytes),
    })
}

/// The body of a response, read to the end.
async fn fetch(pool: &Arc<Pool>, addr: &str) -> Result<String, Error> {
    let (response, _) = send(pool.clone(), get(addr), options(Duration::from_secs(5))).await?;
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8(body.to_vec()).unwrap())
}

/// Lets the connection tasks see the end of a response or of a connection.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_kept_connection_serves_the_next_request() {
    let (addr, accepted) = server(Answer::KeepAlive).await;
    let pool = Arc::new(Pool::default());
    assert_eq!(fetch(&pool, &addr).await.unwrap(), "connection 1 request 1\n");
    settle().await;
    assert_eq!(fetch(&pool, &addr).await.unwrap(), "connection 1 request 2\n");
    settle().await;
    assert_eq!(fetch(&pool, &addr).await.unwrap(), "connection 1 request 3\n");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pool.len(), 1);
}

#[tokio::test]
async fn a_connection_the_server_ends_is_not_reused() {
    for answer in [Answer::Http10, Answer::ThenClose] {
        let (addr, accepted) = server(answer).await;
        let pool = Arc::new(Pool::default());
        assert_eq!(fetch(&pool, &addr).await.unwrap(), "connection 1 request 1\n");
        settle().await;
        assert_eq!(fetch(&pool, &addr).await.unwrap(), "connection 2 request 1\n");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}

#[tokio::test]
async fn connections_are_kept_per_origin() {
    let (a, accepted_a) = server(Answer::KeepAlive).await;
    let (b, accepted_b) = server(Answer::KeepAlive).await;
    let pool = Arc::new(Pool::default());
    for round in 1..=2 {
        assert_eq!(
            fetch(&pool, &a).await.unwrap(),
            format!("connection 1 request {round}\n")
        );
        assert_eq!(
            fetch(&pool, &b).await.unwrap(),
            format!("connection 1 request {round}\n")
        );
        settle().await;
    }
    assert_eq!(
        (accepted_a.load(Ordering::SeqCst), accepted_b.load(Ordering::SeqCst)),
        (1, 1)
    );
}

#[tokio::test]
async fn a_response_still_being_read_does_not_lend_its_connection() {
    let (addr, accepted) = server(Answer::Big).await;
    let pool = Arc::new(Pool::default());
    let (first, _) = send(pool.clone(), get(&addr), options(Duration::from_secs(5)))
        .await
        .unwrap();
    settle().await;
    // The first body is not read yet: the second request needs a connection of its own.
    let second = fetch(&pool, &addr).await.unwrap();
    assert!(second.starts_with("connection 2 request 1\n"), "{}", &second[..30]);
    let body = first.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"connection 1 request 1\n") && body.len() > 4 << 20);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // Both read: the next request takes a kept connection.
    settle().await;
    let third = fetch(&pool, &addr).await.unwrap();
    assert!(third.starts_with("connection 1 request 2\n") || third.starts_with("connection 2 request 2\n"));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_body_that_stops_arriving_fails_after_the_gap() {
    let (addr, _) = server(Answer::Stall).await;
    let pool = Arc::new(Pool::default());
    let (response, _) = send(pool, get(&addr), options(Duration::from_millis(200)))
        .await
        .unwrap();
    let err = response.into_body().collect().await.unwrap_err();
    assert!(matches!(err, Error::ConnectionReadTimeout), "{err:?}");
}

#[tokio::test]
async fn a_refused_connection_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let pool = Arc::new(Pool::default());
    let err = fetch(&pool, &addr).await.unwrap_err();
    assert!(
        matches!(&err, Error::Connect(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "{err:?}"
    );
}

#[test]
fn certificate_names_come_from_the_authority() {
    use rustls::pki_types::ServerName;
    assert_eq!(
        server_name("example.com:443").unwrap(),
        ServerName::try_from("example.com").unwrap()
    );
    assert_eq!(
        server_name("127.0.0.1:8443").unwrap(),
        ServerName::from(std::net::Ipv4Addr::LOCALHOST)
    );
    assert_eq!(
        server_name("[::1]:443").unwrap(),
        ServerName::from(std::net::Ipv6Addr::LOCALHOST)
    );
}
