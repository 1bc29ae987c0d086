//! Library side of the `dmq` binary: configuration loading shared by every role, and
//! [`procs`], a harness that runs real `dmq` processes on free loopback ports — used by the
//! integration tests and by `dmq bench failover`.

pub mod certs;
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

/// The id that `--id-from-hostname BASE` gives a process on `hostname`: the number that ends the
/// host name's first label, plus `base`. A Kubernetes StatefulSet names its pods `<set>-<ordinal>`,
/// so `dmq-broker-2` with base 101 is broker 103 and `dmq-metadata-0` with base 1 is node 1.
pub fn id_from_hostname(hostname: &str, base: u64) -> anyhow::Result<u64> {
    let label = hostname.split('.').next().unwrap_or_default();
    let digits = label.len() - label.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        anyhow::bail!(
            "host name {hostname:?} does not end in a number; --id-from-hostname needs a \
             StatefulSet-style name such as dmq-broker-0"
        );
    }
    let ordinal: u64 = label[label.len() - digits..]
        .parse()
        .with_context(|| format!("the number ending host name {hostname:?} is too large"))?;
    base.checked_add(ordinal)
        .with_context(|| format!("{base} + {ordinal} (from host name {hostname:?}) overflows"))
}

/// This machine's host name (what `hostname` prints; a Kubernetes pod's name).
pub fn hostname() -> anyhow::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `buf.len()` bytes; gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot read this host's name");
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec()).context("this host's name is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_from_statefulset_hostnames() {
        assert_eq!(id_from_hostname("dmq-metadata-0", 1).expect("valid"), 1);
        assert_eq!(id_from_hostname("dmq-broker-2", 101).expect("valid"), 103);
        assert_eq!(id_from_hostname("dmq-broker-12", 0).expect("valid"), 12);
        assert_eq!(
            id_from_hostname("dmq-broker-1.dmq-broker.dmq.svc.cluster.local", 101).expect("fqdn"),
            102
        );
        assert_eq!(id_from_hostname("host7", 100).expect("no dash"), 107);
    }

    #[test]
    fn id_from_hostname_without_a_number_is_refused() {
        for bad in ["dmq-broker", "", "broker-1x", "dmq-broker.ns-2"] {
            let err = id_from_hostname(bad, 1).expect_err(bad).to_string();
            assert!(err.contains("does not end in a number"), "{bad}: {err}");
        }
        let err = id_from_hostname("n-99999999999999999999999", 0).expect_err("too large");
        assert!(err.to_string().contains("too large"), "{err}");
        let err = id_from_hostname("n-5", u64::MAX).expect_err("overflow");
        assert!(err.to_string().contains("overflows"), "{err}");
    }

    #[test]
    fn hostname_is_readable() {
        assert!(!hostname().expect("gethostname works").is_empty());
    }
}
