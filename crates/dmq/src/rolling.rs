//! `dmq cluster rolling-restart`: restarts the brokers one at a time, each only when the
//! cluster is whole again — every broker ONLINE and every partition's ISR full — so that with
//! replication factor 3 and `min.insync.replicas=2` an `acks=all` producer never sees an error.
//!
//! dmq does not start processes on other hosts: the restart itself is the operator's
//! `--restart-command` (`systemctl restart dmq-broker@{id}`, `kubectl delete pod
//! dmq-broker-{ordinal}`, …), run with `sh -c` once per broker with `{id}` and `{host}`
//! replaced. It should stop the broker with SIGTERM (the broker's controlled shutdown moves its
//! leaderships away first) and start it again. The tool then waits until the broker has
//! registered anew (a larger broker epoch) and the ISRs are full before the next one.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

/// What the metadata says about the cluster's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Brokers not ONLINE.
    pub offline: Vec<i64>,
    /// Partitions whose ISR is smaller than their replica set.
    pub under_replicated: usize,
    /// Broker id → (broker epoch, host).
    pub brokers: Vec<(i64, u64, String)>,
}

impl Health {
    /// Reads a `GET /api/v1/metadata/cluster` document.
    pub fn of(cluster: &Value) -> Health {
        let empty = Vec::new();
        let brokers = cluster["brokers"].as_array().unwrap_or(&empty);
        let offline = brokers
            .iter()
            .filter(|b| b["status"] != "ONLINE")
            .filter_map(|b| b["brokerId"].as_i64())
            .collect();
        let under_replicated = cluster["topics"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .flat_map(|t| t["partitions"].as_array().unwrap_or(&empty).iter())
            .filter(|p| {
                let len = |k: &str| p[k].as_array().map_or(0, Vec::len);
                len("isr") < len("replicas")
            })
            .count();
        let mut brokers: Vec<(i64, u64, String)> = brokers
            .iter()
            .filter_map(|b| {
                Some((
                    b["brokerId"].as_i64()?,
                    b["brokerEpoch"].as_u64().unwrap_or(0),
                    b["host"].as_str().unwrap_or_default().to_string(),
                ))
            })
            .collect();
        brokers.sort();
        Health {
            offline,
            under_replicated,
            brokers,
        }
    }

    /// Every broker ONLINE and every ISR full.
    pub fn whole(&self) -> bool {
        self.offline.is_empty() && self.under_replicated == 0
    }

    fn epoch(&self, id: i64) -> Option<u64> {
        self.brokers.iter().find(|b| b.0 == id).map(|b| b.1)
    }

    fn describe(&self) -> String {
        format!(
            "offline brokers {:?}, {} under-replicated partition(s)",
            self.offline, self.under_replicated
        )
    }
}

/// `command` with `{id}` and `{host}` replaced.
pub fn restart_command(command: &str, id: i64, host: &str) -> String {
    command
        .replace("{id}", &id.to_string())
        .replace("{host}", host)
}

/// Restarts every broker (or those in `only`) in id order, waiting up to `step_timeout` for
/// the cluster to be whole before and after each.
pub async fn run(
    http: &reqwest::Client,
    metadata: &[String],
    command: &str,
    only: &[i64],
    step_timeout: Duration,
) -> anyhow::Result<()> {
    if !command.contains("{id}") && !command.contains("{host}") {
        bail!("--restart-command must name the broker with {{id}} or {{host}}");
    }
    let health = || async {
        let doc =
            crate::cli::metadata_get(http, metadata, "/api/v1/metadata/cluster?consistent=true")
                .await?;
        anyhow::Ok(Health::of(&doc))
    };
    let wait = |what: String, done: Box<dyn Fn(&Health) -> bool + Send>| {
        let health = &health;
        async move {
            let deadline = Instant::now() + step_timeout;
            loop {
                let last = match health().await {
                    Ok(h) if done(&h) => return anyhow::Ok(h),
                    Ok(h) => h.describe(),
                    Err(e) => format!("{e:#}"),
                };
                if Instant::now() >= deadline {
                    bail!("gave up after {step_timeout:?} waiting for {what}: {last}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    // Every read goes through `wait`: a metadata node may answer 503 for a moment (an
    // election), which is no reason to give up a rolling restart.
    let first = wait(
        "the cluster from the metadata nodes".into(),
        Box::new(|_: &Health| true),
    )
    .await
    .context("reading the cluster from the metadata nodes")?;
    let targets: Vec<(i64, String)> = first
        .brokers
        .iter()
        .filter(|b| only.is_empty() || only.contains(&b.0))
        .map(|b| (b.0, b.2.clone()))
        .collect();
    if let Some(missing) = only
        .iter()
        .find(|id| !first.brokers.iter().any(|b| b.0 == **id))
    {
        bail!("broker {missing} is not registered");
    }
    for (id, host) in targets {
        let before = wait(
            "every broker ONLINE and every ISR full".into(),
            Box::new(Health::whole),
        )
        .await?
        .epoch(id)
        .unwrap_or(0);
        let cmd = restart_command(command, id, &host);
        println!("broker {id}: restarting ({cmd})");
        let started = Instant::now();
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .status()
            .await
            .with_context(|| format!("running {cmd:?}"))?;
        if !status.success() {
            bail!("restart command for broker {id} failed ({status}): {cmd}");
        }
        let after = wait(
            format!("broker {id} to register again with every ISR full"),
            Box::new(move |h: &Health| h.epoch(id).is_some_and(|e| e > before) && h.whole()),
        )
        .await?;
        println!(
            "broker {id}: back (broker epoch {before} → {}), ISRs full after {:.1} s",
            after.epoch(id).unwrap_or(0),
            started.elapsed().as_secs_f64()
        );
    }
    println!("Rolling restart done.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn health_counts_offline_brokers_and_short_isrs() {
        let doc = json!({
            "brokers": [
                {"brokerId": 2, "status": "ONLINE", "brokerEpoch": 9, "host": "b"},
                {"brokerId": 1, "status": "OFFLINE", "brokerEpoch": 7, "host": "a"},
            ],
            "topics": [{"partitions": [
                {"replicas": [1, 2], "isr": [2]},
                {"replicas": [1, 2], "isr": [2, 1]},
            ]}],
        });
        let h = Health::of(&doc);
        assert_eq!(h.offline, vec![1]);
        assert_eq!(h.under_replicated, 1);
        assert!(!h.whole());
        assert_eq!(h.epoch(2), Some(9));
        assert_eq!(h.brokers[0], (1, 7, "a".to_string()));
        let whole = json!({"brokers": [{"brokerId": 1, "status": "ONLINE"}],
                           "topics": [{"partitions": [{"replicas": [1], "isr": [1]}]}]});
        assert!(Health::of(&whole).whole());
    }

    #[test]
    fn the_command_names_the_broker() {
        assert_eq!(
            restart_command("systemctl restart dmq-broker@{id} # {host}", 3, "h3"),
            "systemctl restart dmq-broker@3 # h3"
        );
    }
}
