//! `sonde`: one observability daemon whose data sources are sandboxed WebAssembly
//! plugins. This file is the command line; the subsystems live in their modules.

mod alert;
mod api;
mod config;
mod import;
mod notify;
mod process;
mod query_cli;
mod rules;
mod scrape;
mod storage;
mod timefmt;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use sonde_plugin_host::{EngineOptions, PluginEngine};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

#[derive(Parser)]
#[command(
    name = "sonde",
    version,
    about = "One observability daemon: sandboxed WebAssembly data sources, storage, PromQL, alerting."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run(RunArgs),
    /// Validate configuration; print every problem as file:line:col and exit non-zero.
    Check(CheckArgs),
    /// Work with plugin components.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Backfill samples into the data directory (sonde must not be running on it).
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Evaluate a PromQL expression on a running sonde and print the result as a table.
    Query(query_cli::QueryArgs),
    /// Inspect the data directory (sonde must not be running on it).
    Tsdb {
        #[command(subcommand)]
        command: TsdbCommand,
    },
    /// Internal: compile one plugin into the compile cache (run by the daemon in a
    /// child process so the compiler's memory never lands in the daemon).
    #[command(hide = true)]
    CompilePlugin(scrape::CompileJob),
}

#[derive(Subcommand)]
enum ImportCommand {
    /// An OpenMetrics text file with timestamps (the input of `promtool tsdb
    /// create-blocks-from openmetrics`), written as blocks into --data-dir.
    Openmetrics { file: PathBuf },
}

#[derive(Subcommand)]
enum TsdbCommand {
    /// Print stored samples as `name{labels} value timestamp_ms`, one per line, like
    /// `promtool tsdb dump`. Opening replays (and if needed repairs) the WAL.
    Dump {
        /// Series selector; repeat for several (default: every series).
        #[arg(long = "match", value_name = "SELECTOR")]
        matchers: Vec<String>,
        /// Earliest timestamp to print, in ms since the epoch.
        #[arg(long, default_value_t = i64::MIN, allow_negative_numbers = true)]
        min_time: i64,
        /// Latest timestamp to print, in ms since the epoch.
        #[arg(long, default_value_t = i64::MAX, allow_negative_numbers = true)]
        max_time: i64,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Show what a component is, what it imports and what it says about itself.
    Inspect { file: PathBuf },
}

#[derive(Args, Clone, Default)]
struct ConfigArgs {
    /// Daemon settings (default ./sonde.toml if present).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Plugin instances and grants (default ./plugins.toml if present, else the built-in default).
    #[arg(long, value_name = "FILE", global = true)]
    plugins: Option<PathBuf>,
    /// Directory of plugin components (default ./plugins).
    #[arg(long, value_name = "DIR", global = true)]
    plugin_dir: Option<PathBuf>,
}

#[derive(Args, Clone, Default)]
struct RunArgs {
    #[command(flatten)]
    files: ConfigArgs,
    /// Data directory (default ./data).
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// HTTP listen address (default 127.0.0.1:9190).
    #[arg(long, value_name = "ADDR", global = true)]
    listen: Option<String>,
}

#[derive(Args)]
struct CheckArgs {
    /// What to check: config (both files and the rule files they name, the default),
    /// plugins (also compiles each plugin) or rules (the rule files given, like
    /// `promtool check rules`).
    #[arg(value_parser = ["config", "plugins", "rules"])]
    what: Option<String>,
    /// With `rules`: the rule files to check.
    files: Vec<PathBuf>,
}

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.run),
        Some(Command::Run(args)) => run(merge(cli.run, args)),
        Some(Command::Check(c)) => check(cli.run, c),
        Some(Command::Plugin {
            command: PluginCommand::Inspect { file },
        }) => inspect(&file),
        Some(Command::CompilePlugin(job)) => job.run(),
        Some(Command::Query(q)) => Ok(query_cli::run(
            q,
            cli.run.files.config.as_deref(),
            cli.run.listen.as_deref(),
        )),
        Some(Command::Import {
            command: ImportCommand::Openmetrics { file },
        }) => import_openmetrics(&cli.run, &file),
        Some(Command::Tsdb {
            command:
                TsdbCommand::Dump {
                    matchers,
                    min_time,
                    max_time,
                },
        }) => dump(&cli.run, &matchers, min_time, max_time),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Global flags may come before or after `run`; the later ones win.
fn merge(a: RunArgs, b: RunArgs) -> RunArgs {
    RunArgs {
        files: ConfigArgs {
            config: b.files.config.or(a.files.config),
            plugins: b.files.plugins.or(a.files.plugins),
            plugin_dir: b.files.plugin_dir.or(a.files.plugin_dir),
        },
        data_dir: b.data_dir.or(a.data_dir),
        listen: b.listen.or(a.listen),
    }
}

fn sources(a: &RunArgs) -> config::Sources {
    config::Sources {
        config: a.files.config.clone(),
        plugins: a.files.plugins.clone(),
        plugin_dir: a.files.plugin_dir.clone(),
        data_dir: a.data_dir.clone(),
        listen: a.listen.clone(),
    }
}

fn print_problems(problems: &[config::Problem]) {
    for p in problems {
        eprintln!("{p}");
    }
    eprintln!(
        "{} problem{} found",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
}

fn check(args: RunArgs, c: CheckArgs) -> Result<ExitCode> {
    if c.what.as_deref() == Some("rules") {
        return Ok(rules::check(&c.files));
    }
    let cfg = match config::load(&sources(&args)) {
        Ok(cfg) => cfg,
        Err(problems) => {
            print_problems(&problems);
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Err(problems) = load_rules(&args, &cfg) {
        print_problems(&problems);
        return Ok(ExitCode::FAILURE);
    }
    let sd_problems = cfg.file_sd_problems();
    if !sd_problems.is_empty() {
        print_problems(&sd_problems);
        return Ok(ExitCode::FAILURE);
    }
    if c.what.as_deref() == Some("plugins") {
        let engine = new_engine(&cfg, None)?;
        let mut failed = false;
        for t in cfg.targets.iter().chain(cfg.discovery.iter().map(|d| &d.template)) {
            if let Err(e) = engine.load(&t.plugin_path) {
                eprintln!("[{}] {e}", t.name);
                failed = true;
            }
        }
        if failed {
            return Ok(ExitCode::FAILURE);
        }
    }
    let discovered = match cfg.discovery.len() {
        0 => String::new(),
        n => format!(" and {n} with targets/file_sd"),
    };
    println!(
        "OK: {} plugin instance(s){discovered} from {}",
        cfg.targets.len(),
        cfg.plugins_origin
    );
    Ok(ExitCode::SUCCESS)
}

/// The rule files `[rules]` names (relative to sonde.toml's directory), validated.
fn load_rules(args: &RunArgs, cfg: &config::Config) -> Result<rules::Manager, Vec<config::Problem>> {
    let dir = args
        .files
        .config
        .as_deref()
        .and_then(std::path::Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf);
    rules::Manager::load(&cfg.sonde.rules, &cfg.sonde.alerting, &dir, &cfg.listen)
}

fn new_engine(cfg: &config::Config, cache_dir: Option<PathBuf>) -> Result<PluginEngine> {
    PluginEngine::new(&engine_options(cfg, cache_dir)).context("cannot start the plugin engine")
}

fn engine_options(cfg: &config::Config, cache_dir: Option<PathBuf>) -> EngineOptions {
    EngineOptions {
        // One live instance per target, one being re-created, and one for describe.
        max_instances: (cfg.target_capacity() as u32) * 2 + 2,
        max_memory_bytes: cfg.max_memory_limit() as usize,
        cache_dir,
    }
}

fn inspect(file: &std::path::Path) -> Result<ExitCode> {
    let engine = PluginEngine::new(&EngineOptions {
        max_instances: 2,
        max_memory_bytes: 256 << 20,
        cache_dir: None,
    })?;
    let (plugin, stats) = engine.load(file)?;
    println!("file:     {}", file.display());
    println!("sha256:   {}", plugin.sha256);
    println!("compiled: {:.1} ms", stats.took.as_secs_f64() * 1e3);
    println!("imports:");
    for i in &plugin.imports {
        println!("  {i}");
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let spec = sonde_plugin_host::InstanceSpec {
        name: "inspect".into(),
        grants: Default::default(),
        memory_limit: 256 << 20,
    };
    let info = rt.block_on(async {
        let mut inst = plugin.instantiate(&spec, Duration::from_secs(5)).await?;
        inst.describe(Duration::from_secs(5)).await
    });
    match info {
        Ok(i) => {
            println!("name:     {}", i.name);
            println!("version:  {}", i.version);
            println!("about:    {}", i.description);
            if i.default_interval_ms > 0 {
                println!("interval: {} ms (default)", i.default_interval_ms);
            }
        }
        Err(e) => println!("describe failed: {e}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn import_openmetrics(args: &RunArgs, file: &std::path::Path) -> Result<ExitCode> {
    init_logging(Some("warn"));
    let data_dir = args.data_dir.clone().unwrap_or_else(|| "data".into());
    let s = import::import_openmetrics(file, &data_dir).map_err(anyhow::Error::msg)?;
    println!(
        "imported {} samples of {} series into {} block(s) in {:.2} s ({} duplicate samples dropped, {} exemplars skipped)",
        s.samples,
        s.series,
        s.blocks,
        s.took.as_secs_f64(),
        s.duplicates,
        s.exemplars_skipped
    );
    Ok(ExitCode::SUCCESS)
}

fn dump(args: &RunArgs, selectors: &[String], min_time: i64, max_time: i64) -> Result<ExitCode> {
    use std::io::Write;
    // Opening replays the WAL and repairs a damaged tail: say so on stderr.
    init_logging(Some("warn"));
    let data_dir = args.data_dir.clone().unwrap_or_else(|| "data".into());
    let mut sets = Vec::new();
    for s in if selectors.is_empty() {
        vec![r#"{__name__=~".+"}"#.to_string()]
    } else {
        selectors.to_vec()
    } {
        sets.extend(api::parse_selector(&s).map_err(anyhow::Error::msg)?);
    }
    let storage = storage::Storage::open(&data_dir, &Default::default()).map_err(anyhow::Error::msg)?;
    let mut seen = std::collections::HashSet::new();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for matchers in &sets {
        for (labels, samples) in storage.select(matchers, min_time, max_time) {
            if !seen.insert(labels.clone()) {
                continue;
            }
            for (t, v) in samples {
                writeln!(out, "{labels:?} {} {t}", api::format_value(v))?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level.unwrap_or("info")))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let cfg = match config::load(&sources(&args)) {
        Ok(cfg) => cfg,
        Err(problems) => {
            print_problems(&problems);
            return Ok(ExitCode::FAILURE);
        }
    };
    let rules = match load_rules(&args, &cfg) {
        Ok(r) => Arc::new(r),
        Err(problems) => {
            print_problems(&problems);
            return Ok(ExitCode::FAILURE);
        }
    };
    init_logging(cfg.sonde.log_level.as_deref());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sonde")
        .build()?;
    let status = api::prom::StatusInfo::new(&cfg, flags(&args, &cfg));
    rt.block_on(serve(cfg, status, rules))?;
    Ok(ExitCode::SUCCESS)
}

/// The flags as `/api/v1/status/flags` reports them: each one's effective value.
fn flags(args: &RunArgs, cfg: &config::Config) -> Vec<(String, String)> {
    let path = |p: &Option<PathBuf>| p.as_ref().map_or_else(String::new, |p| p.display().to_string());
    vec![
        ("config".into(), path(&args.files.config)),
        ("plugins".into(), cfg.plugins_origin.clone()),
        ("plugin-dir".into(), path(&args.files.plugin_dir)),
        ("data-dir".into(), cfg.data_dir.display().to_string()),
        ("listen".into(), cfg.listen.clone()),
    ]
}

async fn serve(cfg: config::Config, status: api::prom::StatusInfo, rules: Arc<rules::Manager>) -> Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
    let opts = engine_options(&cfg, Some(cfg.data_dir.join("plugin-cache")));
    let engine = Arc::new(PluginEngine::new(&opts).context("cannot start the plugin engine")?);
    let head = Arc::new(storage::Storage::open(&cfg.data_dir, &cfg.sonde.storage).map_err(anyhow::Error::msg)?);
    let listener = match tokio::net::TcpListener::bind(&cfg.listen).await {
        Ok(l) => l,
        Err(e) => bail!(
            "cannot listen on {}: {e} (is another sonde running? use --listen)",
            cfg.listen
        ),
    };
    tracing::info!(addr = %cfg.listen, plugins = %cfg.plugins_origin, targets = cfg.targets.len(), "sonde {} starting", env!("CARGO_PKG_VERSION"));
    let scrapers = scrape::load_targets(&cfg, &engine, &opts).await;
    release_freed_memory();
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let targets = scrape::TargetSet::new(scrapers.iter().map(|s| s.target.clone()));
    let manager = scrape::TargetManager::new(
        &cfg,
        targets.clone(),
        head.clone(),
        engine.clone(),
        opts.clone(),
        &scrapers,
    );
    // The rule evaluator registers it as one of its `AlertSink`s.
    let notifier = cfg
        .sonde
        .notifier
        .as_ref()
        .map(|n| notify::Notifier::start(n, &cfg.data_dir, &cfg.listen, shutdown_rx.clone()));
    let notifier_handle = notifier.clone();
    let state = Arc::new(api::AppState {
        rules: rules.clone(),
        notifier,
        targets,
        head: head.clone(),
        ready: false.into(),
        started: SystemTime::now(),
        status,
    });
    let mut tasks = Vec::new();
    // Hot reload: a replaced .wasm file is loaded and swapped into its targets.
    let reloader = scrape::Reloader::new(engine.clone(), opts.clone());
    for mut s in scrapers {
        s.follow_reloads(&reloader);
        tasks.push(tokio::spawn(s.run(head.clone(), shutdown_rx.clone())));
    }
    manager.follow_reloads(reloader.clone());
    reloader.spawn(shutdown_rx.clone());
    tasks.push(manager.spawn(cfg.discovery.clone(), shutdown_rx.clone()).await);
    let fsync_every = cfg
        .sonde
        .storage
        .wal_fsync_interval
        .map_or(Duration::from_secs(10), |d| d.0);
    // Where alerts go: each configured Alertmanager, then any other sink (the built-in
    // notifier registers itself here).
    let mut sinks: Vec<Arc<dyn alert::AlertSink>> = Vec::new();
    for am in &rules.alertmanagers {
        tasks.push(tokio::spawn(am.clone().run(shutdown_rx.clone())));
        sinks.push(am.clone());
    }
    sinks.extend(extra_alert_sinks(&state));
    rules.spawn(head.clone(), sinks, shutdown_rx.clone());
    tokio::spawn(reload_rules_on_sighup(rules.clone()));
    tracing::info!(
        groups = rules.groups().len(),
        alertmanagers = rules.alertmanagers.len(),
        "rules loaded"
    );
    tokio::spawn(maintain_storage(head.clone(), fsync_every, shutdown_rx.clone()));
    state.ready.store(true, Ordering::Relaxed);
    let app = api::router(state);
    let mut rx = shutdown_rx.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = rx.changed().await;
    });
    let server = tokio::spawn(async move { server.await });
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    // One deadline for everything, not one per task.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for t in tasks {
        let _ = tokio::time::timeout_at(deadline, t).await;
    }
    rules.stopped(deadline).await;
    if let Some(n) = &notifier_handle {
        n.stopped(deadline).await;
    }
    let _ = tokio::time::timeout_at(deadline, server).await;
    head.close();
    Ok(())
}

/// SIGHUP reads the rule files again, as it makes Prometheus reload.
async fn reload_rules_on_sighup(rules: Arc<rules::Manager>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let r = rules.clone();
        if let Ok(Err(problems)) = tokio::task::spawn_blocking(move || r.reload()).await {
            for p in problems {
                tracing::error!("rule reload failed, the previous rules stay: {p}");
            }
        }
    }
}

/// Alert destinations besides the Alertmanagers of `[alerting]`.
fn extra_alert_sinks(state: &api::AppState) -> Vec<Arc<dyn alert::AlertSink>> {
    let mut sinks: Vec<Arc<dyn alert::AlertSink>> = Vec::new();
    if let Some(n) = &state.notifier {
        sinks.push(n.clone());
    }
    sinks
}

/// Two settings of glibc's malloc, for a daemon whose memory per series is a goal:
/// - each thread that allocates gets its own arena (up to 8 per core), rarely
///   returned; two shared arenas are enough here, and `malloc_trim` shrinks them;
/// - a large block (at least 128 KiB) gets a mapping of its own, unmapped when freed,
///   but glibc raises that threshold to the largest such block freed so far. The
///   buffers of every collection (the batch, its samples, the WAL record: megabytes
///   at 100k series) then come from the heap, whose holes the series' small blocks
///   fill, and the heap keeps growing: a fixed threshold cost ~10 MiB less RSS at
///   100k series (docs/BENCHMARKS.md).
///
/// `MALLOC_ARENA_MAX` and `MALLOC_MMAP_THRESHOLD_` in the environment still win.
fn tune_malloc() {
    // SAFETY: mallopt only tunes the allocator; called before any thread is spawned.
    unsafe {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

/// Hands freed heap back to the OS: compiling plugins (Cranelift, when done in
/// process) and cutting blocks allocate tens of MB that glibc would otherwise keep.
fn release_freed_memory() {
    // SAFETY: malloc_trim only releases free heap memory; no pointers are invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Hands WAL records that no append flushed to the OS within [`storage::FLUSH_WITHIN`]
/// (samples then survive the process being killed); every `wal_fsync_interval` fsyncs
/// the WAL (survives power loss); every 10 s cuts full head ranges into blocks, compacts
/// and applies retention.
async fn maintain_storage(
    head: Arc<storage::Storage>,
    fsync_every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut fsync = tokio::time::interval(fsync_every);
    let mut retention = tokio::time::interval(Duration::from_secs(10));
    // Armed by the first record left in the buffer after a flush; an append half a second
    // or more after the last flush flushes by itself, so scrapes at 1 s or slower never
    // arm it.
    let flush = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(flush);
    let mut armed = false;
    loop {
        tokio::select! {
            _ = head.flush_wanted.notified(), if !armed => {
                flush.as_mut().reset((head.flushed_at() + storage::FLUSH_WITHIN).into());
                armed = true;
            }
            _ = &mut flush, if armed => {
                armed = false;
                head.flush_waiting();
            }
            _ = fsync.tick() => {
                let h = head.clone();
                let _ = tokio::task::spawn_blocking(move || h.sync()).await;
            }
            _ = retention.tick() => {
                let h = head.clone();
                let now = scrape::now_ms(SystemTime::now());
                let _ = tokio::task::spawn_blocking(move || {
                    h.maintain(now);
                    // A cut logs the series it drops: to the OS now, not at the next append.
                    h.flush();
                    // Cutting a block builds every series' samples in temporary buffers.
                    release_freed_memory();
                })
                .await;
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
