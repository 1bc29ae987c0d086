//! Library side of the `dmq` binary: configuration loading shared by every role, and
//! [`procs`], a harness that runs real `dmq` processes on free loopback ports — used by the
//! integration tests and by `dmq bench failover`.

pub mod procs;

use std::path::{Path, PathBuf};

use anyhow::Context;
use dmq_types::ServicesConfig;

/// Default config location (SPEC §2).
pub const DEFAULT_CONFIG_PATH: &str = "config/services.json";

/// Loads `--config PATH`, or `config/services.json` when present, or the built-in example.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<(ServicesConfig, String)> {
    match path {
        Some(p) => Ok((ServicesConfig::load(p)?, p.display().to_string())),
        None => {
            let default = PathBuf::from(DEFAULT_CONFIG_PATH);
            if default.exists() {
                let cfg = ServicesConfig::load(&default)
                    .with_context(|| format!("loading {DEFAULT_CONFIG_PATH}"))?;
                Ok((cfg, DEFAULT_CONFIG_PATH.to_string()))
            } else {
                Ok((
                    ServicesConfig::example(),
                    "built-in example topology".to_string(),
                ))
            }
        }
    }
}
