//! Sockets the host owns for push plugins (`grants.listen_udp` / `listen_tcp`): reads
//! what arrives in batches and hands them to the target's task, which calls the
//! plugin's `ingest`.
//!
//! UDP is read by one OS thread per socket with `recvmmsg(2)` (up to [`SLOTS`]
//! datagrams per system call, waiting only for the first), so a busy StatsD port costs
//! a few thousand system calls a second, not one per datagram. Datagrams are packed
//! back to back into one buffer with their end offsets, the shape `push.ingest` takes.
//! TCP connections are read by tokio tasks and cut at the last line end.
//!
//! When the plugin falls behind, the bounded channel fills, the reader stops reading
//! and the kernel's socket buffer absorbs the burst; past that the kernel drops
//! datagrams, and the count it reports (`SO_RXQ_OVFL`) is exported as
//! `sonde_receiver_udp_drops_total`, so loss is never silent.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Datagrams read per `recvmmsg` call.
const SLOTS: usize = 128;
/// Bytes per datagram slot: the largest UDP payload, so nothing is ever truncated.
/// The slots are allocated lazily by the kernel's zero pages: a reader receiving
/// small StatsD packets touches one page per slot, not 64 KiB.
const SLOT_BYTES: usize = 65536;
/// A batch is handed over once it holds this many bytes (or the socket is empty).
const BATCH_BYTES: usize = 1 << 20;
/// Batches queued between the readers and the plugin: bounds host memory when the
/// plugin is slower than the senders (the kernel buffer takes the rest).
const QUEUE: usize = 4;
/// Receive buffer asked of the kernel (SO_RCVBUFFORCE as root, else capped by
/// net.core.rmem_max): ~0.2 s of StatsD traffic at 1M short lines per second.
const RCVBUF: libc::c_int = 32 << 20;
/// How long a small batch waits for more datagrams once the socket is drained: bounds
/// the wake-ups of the plugin's task to ~1,000 a second at any rate, for at most this
/// much added latency (StatsD aggregates over seconds).
const LINGER: Duration = Duration::from_millis(1);
/// A batch this many datagrams long is handed over without lingering.
const LINGER_DATAGRAMS: usize = 4096;
/// How often a blocked reader checks whether it should stop.
const POLL: Duration = Duration::from_millis(200);
/// A TCP line longer than this without a `\n` is dropped (counted as oversize).
const MAX_TCP_LINE: usize = 64 * 1024;
/// Open TCP connections per target; more are refused until one closes.
const MAX_TCP_CONNECTIONS: usize = 256;

/// What the readers hand to the plugin: datagrams back to back, and where each ends.
#[derive(Default)]
pub struct Received {
    pub payload: Vec<u8>,
    pub ends: Vec<u32>,
}

impl Received {
    fn push(&mut self, data: &[u8]) {
        self.payload.extend_from_slice(data);
        self.ends.push(self.payload.len() as u32);
    }
}

/// Counters of one target's sockets, exported as `sonde_receiver_*{plugin="<name>"}`.
#[derive(Default)]
pub struct ReceiverStats {
    pub datagrams: AtomicU64,
    pub bytes: AtomicU64,
    pub batches: AtomicU64,
    /// Datagrams the kernel dropped because the socket buffer was full.
    pub udp_drops: AtomicU64,
    pub tcp_connections: AtomicU64,
    /// TCP lines longer than [`MAX_TCP_LINE`], dropped.
    pub tcp_oversize: AtomicU64,
    /// Batches the plugin failed to ingest (a trap, a timeout or an error value).
    pub ingest_failures: AtomicU64,
}

/// The sockets of one push target. Dropping it stops the readers.
pub struct Listeners {
    pub rx: mpsc::Receiver<Received>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tcp_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tcp_tasks {
            t.abort();
        }
    }
}

/// Binds every granted address; the first failure is returned as a message naming
/// the address (and what to do), and nothing stays bound.
pub async fn listen(
    udp: &[SocketAddr],
    tcp: &[SocketAddr],
    target: &str,
    stats: Arc<ReceiverStats>,
) -> Result<Listeners, String> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut udp_sockets = Vec::new();
    for addr in udp {
        let sock = bind_udp(*addr).map_err(|e| bind_error("udp", addr, &e))?;
        udp_sockets.push(sock);
    }
    let mut tcp_listeners = Vec::new();
    for addr in tcp {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| bind_error("tcp", addr, &e))?;
        tcp_listeners.push(l);
    }
    for (sock, addr) in udp_sockets.into_iter().zip(udp) {
        let (tx, stop, stats) = (tx.clone(), stop.clone(), stats.clone());
        let name = format!("udp {addr}");
        std::thread::Builder::new()
            .name(format!("sonde-udp-{}", addr.port()))
            .spawn(move || {
                if let Err(e) = read_udp(&sock, &tx, &stop, &stats) {
                    tracing::error!(socket = %name, "receiver stopped: {e}");
                }
            })
            .map_err(|e| format!("cannot start a reader thread for udp {addr}: {e}"))?;
    }
    let tcp_tasks = tcp_listeners
        .into_iter()
        .map(|l| tokio::spawn(accept_tcp(l, tx.clone(), stats.clone(), target.to_string())))
        .collect();
    Ok(Listeners { rx, stop, tcp_tasks })
}

fn bind_error(proto: &str, addr: &SocketAddr, e: &io::Error) -> String {
    let hint = match e.kind() {
        io::ErrorKind::AddrInUse => " (another process, or another plugins.toml entry, listens there)",
        io::ErrorKind::AddrNotAvailable => " (no interface of this machine has that address)",
        io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
        _ => "",
    };
    format!("cannot listen on {proto} {addr}: {e}{hint}")
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(addr)?;
    sock.set_read_timeout(Some(POLL))?;
    let fd = sock.as_raw_fd();
    // Best effort: a smaller buffer only means drops come sooner, and are counted.
    if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF).is_err() {
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF);
    }
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)?;
    Ok(sock)
}

fn setsockopt_int(fd: libc::c_int, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` outlives the call and the length matches its type.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Room for one `SO_RXQ_OVFL` control message (a u32) per slot.
const CMSG_BYTES: usize = 64;

/// The buffers `recvmmsg` fills. The headers point into `data`, `iov` and `cmsg`,
/// which are heap allocations that never move while the struct lives.
struct MultiRecv {
    data: Vec<u8>,
    cmsg: Vec<u8>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iov`/`hdrs` point into the struct's own heap buffers.
unsafe impl Send for MultiRecv {}

impl MultiRecv {
    fn new() -> Self {
        let mut data = vec![0u8; SLOTS * SLOT_BYTES];
        let mut cmsg = vec![0u8; SLOTS * CMSG_BYTES];
        let iov: Vec<libc::iovec> = (0..SLOTS)
            .map(|i| libc::iovec {
                // SAFETY: i * SLOT_BYTES is within `data`.
                iov_base: unsafe { data.as_mut_ptr().add(i * SLOT_BYTES) }.cast(),
                iov_len: SLOT_BYTES,
            })
            .collect();
        let mut m = MultiRecv {
            data: Vec::new(),
            cmsg: Vec::new(),
            iov,
            hdrs: Vec::with_capacity(SLOTS),
        };
        for i in 0..SLOTS {
            // SAFETY: an all-zero mmsghdr is a valid "empty" header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = &mut m.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            // SAFETY: i * CMSG_BYTES is within `cmsg`.
            h.msg_hdr.msg_control = unsafe { cmsg.as_mut_ptr().add(i * CMSG_BYTES) }.cast();
            h.msg_hdr.msg_controllen = CMSG_BYTES as _;
            m.hdrs.push(h);
        }
        m.data = data;
        m.cmsg = cmsg;
        m
    }

    /// One `recvmmsg`: blocks (up to the socket's read timeout) for the first
    /// datagram unless `dontwait`, then takes whatever else is queued.
    fn recv(&mut self, fd: libc::c_int, dontwait: bool) -> io::Result<usize> {
        for h in &mut self.hdrs {
            h.msg_hdr.msg_controllen = CMSG_BYTES as _;
            h.msg_len = 0;
        }
        let flags = if dontwait {
            libc::MSG_DONTWAIT
        } else {
            libc::MSG_WAITFORONE
        };
        // SAFETY: every header points at live buffers of the lengths it states.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                SLOTS as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn datagram(&self, i: usize) -> &[u8] {
        let len = (self.hdrs[i].msg_len as usize).min(SLOT_BYTES);
        &self.data[i * SLOT_BYTES..i * SLOT_BYTES + len]
    }

    /// The kernel's running count of datagrams dropped on this socket, as attached
    /// to datagram `i` (`SO_RXQ_OVFL`).
    fn drops(&self, i: usize) -> Option<u32> {
        let hdr = &self.hdrs[i].msg_hdr;
        // SAFETY: the CMSG_* walk stays within msg_control/msg_controllen, which the
        // kernel set to the control data it wrote.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                    return Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
                }
                c = libc::CMSG_NXTHDR(hdr, c);
            }
        }
        None
    }
}

/// Whether `fd` has data within `wait` (rounded up to whole milliseconds).
fn readable_within(fd: libc::c_int, wait: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut p, 1, ms) };
    rc > 0 && p.revents & libc::POLLIN != 0
}

fn read_udp(
    sock: &UdpSocket,
    tx: &mpsc::Sender<Received>,
    stop: &std::sync::atomic::AtomicBool,
    stats: &ReceiverStats,
) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    let mut bufs = MultiRecv::new();
    let mut batch = Received::default();
    let mut first = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) || tx.is_closed() {
            return Ok(());
        }
        // Keep reading without waiting while the socket has more; hand the batch over
        // when it is big enough or the socket is drained.
        let dontwait = !batch.ends.is_empty();
        let n = match bufs.recv(fd, dontwait) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n > 0 && batch.ends.is_empty() {
            first = Instant::now();
        }
        for i in 0..n {
            batch.push(bufs.datagram(i));
        }
        if n > 0
            && let Some(d) = bufs.drops(n - 1)
        {
            stats.udp_drops.store(d as u64, Ordering::Relaxed);
        }
        if batch.ends.is_empty() {
            continue;
        }
        let big = batch.payload.len() >= BATCH_BYTES || batch.ends.len() >= LINGER_DATAGRAMS;
        if n == SLOTS && !big {
            // The socket had more than one read's worth: keep reading.
            continue;
        }
        // Drained: a small batch waits up to LINGER for more rather than waking the
        // plugin's task for a few datagrams (one-line senders at 100k/s otherwise cost
        // a context switch per ~17 datagrams).
        let left = LINGER.saturating_sub(first.elapsed());
        if !big && !left.is_zero() && readable_within(fd, left) {
            continue;
        }
        stats.datagrams.fetch_add(batch.ends.len() as u64, Ordering::Relaxed);
        stats.bytes.fetch_add(batch.payload.len() as u64, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        let cap = batch.payload.capacity().min(BATCH_BYTES);
        let out = std::mem::replace(
            &mut batch,
            Received {
                payload: Vec::with_capacity(cap),
                ends: Vec::with_capacity(SLOTS),
            },
        );
        if tx.blocking_send(out).is_err() {
            return Ok(());
        }
    }
}

async fn accept_tcp(l: tokio::net::TcpListener, tx: mpsc::Sender<Received>, stats: Arc<ReceiverStats>, target: String) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (conn, peer) = match l.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: back off rather than spin.
                tracing::warn!(target_name = %target, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        stats.tcp_connections.fetch_add(1, Ordering::Relaxed);
        let (tx, stats) = (tx.clone(), stats.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = read_tcp(conn, &tx, &stats).await {
                tracing::debug!(%peer, "tcp receiver connection ended: {e}");
            }
        });
    }
}

/// Reads one connection, handing over whole lines as they complete. A partial line
/// that grows past [`MAX_TCP_LINE`] is dropped up to its `\n`, so a client that never
/// sends one cannot grow host memory.
async fn read_tcp(
    mut conn: tokio::net::TcpStream,
    tx: &mpsc::Sender<Received>,
    stats: &ReceiverStats,
) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut skipping = false;
    loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            // The last line may lack its `\n`; it is still a line.
            if !skipping && !buf.is_empty() {
                send_lines(tx, stats, &buf).await;
            }
            return Ok(());
        }
        let mut data = &chunk[..n];
        if skipping {
            match data.iter().position(|&b| b == b'\n') {
                None => continue,
                Some(p) => {
                    skipping = false;
                    data = &data[p + 1..];
                }
            }
        }
        buf.extend_from_slice(data);
        if let Some(end) = buf.iter().rposition(|&b| b == b'\n') {
            if !send_lines(tx, stats, &buf[..=end]).await {
                return Ok(());
            }
            buf.drain(..=end);
        }
        if buf.len() > MAX_TCP_LINE {
            stats.tcp_oversize.fetch_add(1, Ordering::Relaxed);
            buf.clear();
            skipping = true;
        }
    }
}

async fn send_lines(tx: &mpsc::Sender<Received>, stats: &ReceiverStats, lines: &[u8]) -> bool {
    let mut r = Received::default();
    r.push(lines);
    stats.datagrams.fetch_add(1, Ordering::Relaxed);
    stats.bytes.fetch_add(lines.len() as u64, Ordering::Relaxed);
    stats.batches.fetch_add(1, Ordering::Relaxed);
    tx.send(r).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn next(l: &mut Listeners) -> Received {
        tokio::time::timeout(Duration::from_secs(5), l.rx.recv())
            .await
            .expect("a batch within 5s")
            .expect("channel open")
    }

    fn datagrams(r: &Received) -> Vec<&[u8]> {
        let mut start = 0;
        r.ends
            .iter()
            .map(|&e| {
                let d = &r.payload[start..e as usize];
                start = e as usize;
                d
            })
            .collect()
    }

    #[tokio::test]
    async fn udp_datagrams_arrive_whole_and_in_order() {
        let stats = Arc::new(ReceiverStats::default());
        let free = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut l = listen(&[free], &[], "t", stats.clone()).await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let big = vec![b'x'; 60_000];
        let sent: Vec<Vec<u8>> = vec![b"a:1|c".to_vec(), b"b:2|g\nc:3|ms".to_vec(), big, vec![0xff, 0xfe]];
        for d in &sent {
            client.send_to(d, free).unwrap();
        }
        let mut got: Vec<Vec<u8>> = Vec::new();
        while got.len() < sent.len() {
            let r = next(&mut l).await;
            got.extend(datagrams(&r).into_iter().map(<[u8]>::to_vec));
        }
        assert_eq!(got, sent);
        assert_eq!(stats.datagrams.load(Ordering::Relaxed), 4);
        assert_eq!(stats.udp_drops.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_busy_address_is_reported_with_a_hint() {
        let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = listen(&[addr], &[], "t", Default::default()).await.err().unwrap();
        assert!(e.starts_with(&format!("cannot listen on udp {addr}:")), "{e}");
        assert!(e.contains("another plugins.toml entry"), "{e}");
    }

    #[tokio::test]
    async fn tcp_is_handed_over_in_whole_lines() {
        let stats = Arc::new(ReceiverStats::default());
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut l = listen(&[], &[addr], "t", stats.clone()).await.unwrap();
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"a:1|c\nb:2").await.unwrap();
        c.flush().await.unwrap();
        let r = next(&mut l).await;
        assert_eq!(datagrams(&r), vec![&b"a:1|c\n"[..]]);
        c.write_all(b"|g\nlast:3|c").await.unwrap();
        c.shutdown().await.unwrap();
        let r = next(&mut l).await;
        assert_eq!(datagrams(&r), vec![&b"b:2|g\n"[..]]);
        let r = next(&mut l).await;
        assert_eq!(datagrams(&r), vec![&b"last:3|c"[..]]);
    }

    #[tokio::test]
    async fn an_oversize_tcp_line_is_dropped_and_the_next_one_kept() {
        let stats = Arc::new(ReceiverStats::default());
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut l = listen(&[], &[addr], "t", stats.clone()).await.unwrap();
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(&vec![b'y'; MAX_TCP_LINE * 3]).await.unwrap();
        // Let the reader see the partial line grow past the limit before its end comes.
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.write_all(b"yyy\nok:1|c\n").await.unwrap();
        let r = next(&mut l).await;
        assert_eq!(datagrams(&r), vec![&b"ok:1|c\n"[..]]);
        assert_eq!(stats.tcp_oversize.load(Ordering::Relaxed), 1);
    }
}
