//! A broker's life in the cluster (seed 001, phases 2–5):
//!
//! ```text
//!   discover ──► register ──► heartbeat every brokerHeartbeatIntervalMs ◄─┐
//!      ▲  (all metadata nodes      │  newer version in the answer → pull   │
//!      │   at once, first leader   │  503 + X-Controller-Leader → follow   │
//!      │   wins; backoff 1,2,4,8s) │  CONTROLLER_CHANGED push → beat now ──┘
//!      │                           │  (also abandoning a beat in flight)
//!      └──── 3 failed heartbeats ──┘  404 (controller forgot us) → register
//! ```
//!
//! Each transition is logged once, at info or warn, so an operator can follow the story.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::node::BrokerShared;

const BACKOFF_MAX: Duration = Duration::from_secs(8);
const FAILED_HEARTBEATS_BEFORE_REDISCOVERY: u32 = 3;

pub async fn run(shared: Arc<BrokerShared>) {
    let cfg = &shared.config;
    let id = cfg.broker_id;
    let mut last_controller: Option<u64> = None;
    loop {
        // Phase 2: controller discovery, with exponential backoff.
        let mut backoff = Duration::from_secs(1);
        let mut warned = false;
        let controller = loop {
            if let Some(c) = shared.meta.discover().await {
                break c;
            }
            if !warned {
                tracing::warn!(
                    broker = id,
                    "no metadata node names a controller yet; retrying with backoff (1, 2, 4, 8 s)"
                );
                warned = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shared.controller_changed.notified() => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        };
        tracing::info!(
            broker = id,
            controller = controller.id,
            url = %controller.url,
            "discovered the controller"
        );
        if last_controller.is_some_and(|c| c != controller.id) {
            tracing::info!(
                broker = id,
                from = ?last_controller,
                to = controller.id,
                "controller switched (found by rediscovery)"
            );
        }
        // Phase 3: registration.
        let mut backoff = Duration::from_secs(1);
        let registered = loop {
            match register(&shared).await {
                Ok(()) => break true,
                Err(e) => {
                    tracing::warn!(broker = id, "registration failed: {e}; retrying");
                    if backoff >= BACKOFF_MAX {
                        break false;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        };
        if !registered {
            shared.meta.forget_controller();
            continue;
        }
        tracing::info!(
            broker = id,
            host = %cfg.host,
            http_port = cfg.http_port,
            kafka_port = cfg.kafka_port,
            "registered with the controller"
        );
        match shared.refresh_metadata().await {
            Ok(v) => tracing::info!(broker = id, version = v, "metadata loaded"),
            Err(e) => tracing::warn!(broker = id, "metadata pull failed: {e}"),
        }
        heartbeat_loop(&shared).await;
        last_controller = shared.meta.controller().map(|c| c.id);
        shared.meta.forget_controller();
    }
}

/// Registers this process (its incarnation id) with the controller and remembers the broker
/// epoch it got; a registration counts as contact with the controller.
async fn register(shared: &Arc<BrokerShared>) -> crate::error::Result<()> {
    let cfg = &shared.config;
    let epoch = shared
        .meta
        .register(
            cfg.broker_id,
            &cfg.host,
            cfg.http_port,
            cfg.kafka_port,
            &shared.incarnation_id,
        )
        .await?;
    shared
        .heartbeat_ok_ms
        .store(dmq_log::now_ms(), std::sync::atomic::Ordering::Release);
    shared
        .registered_epoch
        .store(epoch, std::sync::atomic::Ordering::Release);
    Ok(())
}

/// How long one heartbeat may take before it counts as failed: half a session, so that a
/// heartbeat stuck on an unreachable controller leaves time for another to get through before
/// the session ends (and never longer than any other call to the quorum).
fn heartbeat_time_limit(cfg: &crate::config::BrokerConfig) -> Duration {
    (cfg.session_timeout / 2).min(cfg.metadata_timeout)
}

/// Heartbeats until they fail [`FAILED_HEARTBEATS_BEFORE_REDISCOVERY`] times in a row.
async fn heartbeat_loop(shared: &Arc<BrokerShared>) {
    let cfg = &shared.config;
    let id = cfg.broker_id;
    let mut failures = 0u32;
    let mut last_refresh = Instant::now();
    let mut known_controller = shared.meta.controller().map(|c| c.id);
    let mut next_beat = Instant::now() + cfg.heartbeat_interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_beat) => {}
            _ = shared.controller_changed.notified() => {}
            _ = shared.metadata_changed.notified() => {
                if let Err(e) = shared.refresh_metadata().await {
                    tracing::debug!(broker = id, "metadata pull after push failed: {e}");
                }
                continue;
            }
        }
        next_beat = Instant::now() + cfg.heartbeat_interval;
        if shared
            .shutting_down
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            // Controlled shutdown: a heartbeat would readmit the fenced broker. Metadata pulls
            // (to see the leaderships move) continue through the push path.
            continue;
        }
        let version = shared.image().version;
        let limit = heartbeat_time_limit(cfg);
        let answer = tokio::select! {
            answer = tokio::time::timeout(limit, shared.meta.heartbeat(id, version)) => {
                answer.unwrap_or_else(|_| {
                    Err(crate::error::BrokerError::Metadata(format!(
                        "no answer within {} ms",
                        limit.as_millis()
                    )))
                })
            }
            // A newly elected controller announced itself (its push names it): the heartbeat
            // in flight may be stuck on the old, unreachable one. Beat the new one now; it
            // started this broker's session at its election.
            _ = shared.controller_changed.notified() => {
                tracing::info!(
                    broker = id,
                    "a new controller announced itself during a heartbeat; heartbeating it now"
                );
                next_beat = Instant::now();
                continue;
            }
        };
        match answer {
            Ok(Some(hb)) => {
                let was_cut_off = shared.lost_the_controller();
                shared
                    .heartbeat_ok_ms
                    .store(dmq_log::now_ms(), std::sync::atomic::Ordering::Release);
                if was_cut_off {
                    tracing::info!(
                        broker = id,
                        "the controller is reachable again; leading again"
                    );
                }
                if failures > 0 {
                    tracing::info!(broker = id, "heartbeats recovered");
                }
                failures = 0;
                let now_controller = shared.meta.controller().map(|c| c.id);
                if now_controller != known_controller {
                    tracing::info!(
                        broker = id,
                        from = ?known_controller,
                        to = ?now_controller,
                        "controller switched; heartbeating the new controller"
                    );
                    known_controller = now_controller;
                }
                let stale = hb.version > version;
                let periodic = last_refresh.elapsed() >= cfg.periodic_refresh;
                if stale || periodic {
                    last_refresh = Instant::now();
                    if let Err(e) = shared.refresh_metadata().await {
                        tracing::debug!(broker = id, "metadata pull failed: {e}");
                    }
                }
            }
            Ok(None) => {
                tracing::warn!(
                    broker = id,
                    "the controller does not know this broker; registering again"
                );
                if let Err(e) = register(shared).await {
                    tracing::warn!(broker = id, "re-registration failed: {e}");
                }
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(broker = id, failures, "heartbeat failed: {e}");
                if failures >= FAILED_HEARTBEATS_BEFORE_REDISCOVERY {
                    tracing::warn!(
                        broker = id,
                        "{FAILED_HEARTBEATS_BEFORE_REDISCOVERY} heartbeats failed in a row; rediscovering the controller"
                    );
                    return;
                }
            }
        }
    }
}
