//! Configuration: `sonde.toml` (daemon settings) and `plugins.toml` (plugin
//! instances and their grants). Loading reports every problem with its file, line and
//! column, like `promtool check config`.

pub mod discovery;
pub mod file_sd;
mod plugins;
mod sonde;
mod source;
pub mod units;

pub use discovery::DiscoverySpec;
pub use plugins::{TargetSpec, check_label_name};
pub use sonde::{AlertingConfig, DEFAULT_LISTEN, RulesConfig, SondeConfig, StorageConfig};
pub use source::{Problem, SourceFile};

use std::path::{Path, PathBuf};

/// The plugins.toml used when none is given and ./plugins.toml does not exist: the
/// node plugin with the grants it needs (the same file as the repository's).
pub const DEFAULT_PLUGINS_TOML: &str = include_str!("../../../../plugins.toml");

/// Where the configuration comes from (command-line flags and their defaults).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub config: Option<PathBuf>,
    pub plugins: Option<PathBuf>,
    pub plugin_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
}

/// Everything sonde needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub sonde: SondeConfig,
    pub listen: String,
    pub data_dir: PathBuf,
    /// Entries that are one plugin instance each.
    pub targets: Vec<TargetSpec>,
    /// Entries with `targets`/`file_sd`, whose instances are started (and, for
    /// file_sd, stopped) at run time.
    pub discovery: Vec<DiscoverySpec>,
    /// Which plugins.toml was used (a path, or "built-in default").
    pub plugins_origin: String,
}

/// Loads sonde.toml and plugins.toml. An explicitly named file must exist; without a
/// flag, ./sonde.toml and ./plugins.toml are used when present, else built-in defaults.
pub fn load(src: &Sources) -> Result<Config, Vec<Problem>> {
    let mut problems = Vec::new();
    let sonde = match pick(&src.config, "sonde.toml") {
        Some(path) => match SourceFile::read(&path) {
            Ok(f) => sonde::parse(&f, &mut problems),
            Err(p) => {
                problems.push(p);
                SondeConfig::default()
            }
        },
        None => SondeConfig::default(),
    };
    let plugin_dir = src
        .plugin_dir
        .clone()
        .or(sonde.plugin_dir.clone())
        .unwrap_or_else(|| "plugins".into());
    let data_dir = src
        .data_dir
        .clone()
        .or(sonde.data_dir.clone())
        .unwrap_or_else(|| "data".into());
    let listen = src
        .listen
        .clone()
        .or(sonde.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.into());
    if src.listen.is_some() && listen.parse::<std::net::SocketAddr>().is_err() {
        problems.push(Problem {
            file: "--listen".into(),
            line: 0,
            col: 0,
            message: format!("{listen:?} is not an address; write it like \"127.0.0.1:9190\""),
        });
    }
    let (plugins_file, plugins_origin) = match pick(&src.plugins, "plugins.toml") {
        Some(path) => match SourceFile::read(&path) {
            Ok(f) => (Some(f), path.display().to_string()),
            Err(p) => {
                problems.push(p);
                (None, path.display().to_string())
            }
        },
        None => (
            Some(SourceFile {
                path: "<built-in plugins.toml>".into(),
                text: DEFAULT_PLUGINS_TOML.into(),
            }),
            "built-in default".to_string(),
        ),
    };
    let entries = match &plugins_file {
        Some(f) => plugins::parse(f, &sonde, &plugin_dir, &mut problems),
        None => Default::default(),
    };
    if problems.is_empty() {
        Ok(Config {
            sonde,
            listen,
            data_dir,
            targets: entries.targets,
            discovery: entries.discovery,
            plugins_origin,
        })
    } else {
        Err(problems)
    }
}

impl Config {
    /// How many targets may run at once: the single instances, each entry's targets
    /// (for file_sd, those its files list now plus room for what they add while sonde
    /// runs). Sizes the engine's instance pool, which cannot grow later.
    pub fn target_capacity(&self) -> usize {
        let discovered: usize = self
            .discovery
            .iter()
            .map(|d| {
                if d.file_sd.is_empty() {
                    return d.targets.len();
                }
                let groups = d.read_files(&mut Vec::new());
                d.expand(&groups).len() + discovery::RUNTIME_TARGETS_PER_ENTRY
            })
            .sum();
        self.targets.len() + discovered
    }

    /// The largest memory limit of any instance.
    pub fn max_memory_limit(&self) -> u64 {
        let templates = self.discovery.iter().map(|d| &d.template);
        self.targets
            .iter()
            .chain(templates)
            .map(|t| t.memory_limit)
            .max()
            .unwrap_or(1 << 20)
    }

    /// Problems of the file_sd files as they are now. Not fatal at start-up (a file
    /// may be fixed later; its targets are then picked up), but `sonde check` fails.
    pub fn file_sd_problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for d in &self.discovery {
            d.read_files(&mut problems);
        }
        problems
    }
}

fn pick(flag: &Option<PathBuf>, default: &str) -> Option<PathBuf> {
    match flag {
        Some(p) => Some(p.clone()),
        None => Path::new(default).exists().then(|| PathBuf::from(default)),
    }
}
