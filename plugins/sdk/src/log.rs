//! Logging through the host (`host.log`), tagged by the host with the instance name.

pub use crate::bindings::sonde::plugin::host::Level;

/// Sends one line to the host's log.
pub fn log(level: Level, message: &str) {
    crate::bindings::sonde::plugin::host::log(level, message);
}

pub fn warn(message: &str) {
    log(Level::Warn, message);
}

pub fn info(message: &str) {
    log(Level::Info, message);
}

pub fn debug(message: &str) {
    log(Level::Debug, message);
}
