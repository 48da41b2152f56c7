//! The daemon's own resource use, read from /proc/self (for /metrics and benchmarks).

pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
}

impl ProcessStats {
    pub fn read() -> Self {
        // SAFETY: sysconf has no memory-safety preconditions.
        let (tick, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK) as f64,
                libc::sysconf(libc::_SC_PAGESIZE) as f64,
            )
        };
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        // Fields after the command name (which may contain spaces) start at field 3.
        let fields: Vec<&str> = stat
            .as_deref()
            .and_then(|s| s.rsplit_once(')'))
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let cpu_seconds = match (field(14), field(15)) {
            (Some(u), Some(s)) => Some((u + s) / tick),
            _ => None,
        };
        let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as f64);
        let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        });
        ProcessStats {
            cpu_seconds,
            resident_bytes: field(24).map(|p| p * page),
            virtual_bytes: field(23),
            open_fds,
            max_fds,
        }
    }
}
