//! A client producing to the topic: one single-record batch per request, acks=all for most
//! and acks=1 for the rest, to whichever broker its metadata names as the partition's leader.
//! It does not retry a failed record (its outcome is unknown, and only acknowledged records
//! carry a promise); it refreshes its metadata after any error and every two seconds.
//!
//! Which partitions receive writes is decided by the world's workload (bursts and quiet
//! periods); each record's value is unique in the run.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::config::SimConfig;
use crate::io::{Io, Obs};
use crate::msg::{Image, Msg, ProduceError, Timer};
use crate::net::Node;
use crate::rng::Rng;

/// How often a client refreshes its metadata without a reason.
const METADATA_REFRESH_MS: i64 = 2_000;

#[derive(Debug, Clone, Copy)]
struct InFlight {
    acks: i16,
}

/// One client.
#[derive(Debug)]
pub struct Producer {
    pub id: u8,
    cfg: Rc<SimConfig>,
    image: Rc<Image>,
    inflight: BTreeMap<u64, InFlight>,
    next_req: u64,
    /// Requests sent / acks=all records acknowledged / failures (for the report).
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
}

impl Producer {
    pub fn new(id: u8, cfg: Rc<SimConfig>, io: &mut Io<'_>) -> Producer {
        io.send(Node::Controller, Msg::MetadataRequest);
        io.timer_ms(METADATA_REFRESH_MS, Timer::MetadataRefresh);
        io.timer_ms(cfg.produce_gap_ms.1, Timer::ProduceTick);
        Producer {
            id,
            cfg,
            image: Rc::new(Image::empty()),
            inflight: BTreeMap::new(),
            next_req: 0,
            sent: 0,
            acked: 0,
            failed: 0,
        }
    }

    /// A produce attempt; `writable` says which partitions the workload writes now.
    pub fn on_tick(&mut self, writable: &[bool], rng: &mut Rng, io: &mut Io<'_>) {
        let (lo, hi) = self.cfg.produce_gap_ms;
        io.timer_ms(rng.range(lo, hi), Timer::ProduceTick);
        if self.inflight.len() >= self.cfg.client_inflight_max {
            return;
        }
        let open: Vec<i32> = (0..writable.len())
            .filter(|p| writable[*p])
            .map(|p| p as i32)
            .collect();
        let Some(i) = rng.index(open.len()) else {
            return;
        };
        let partition = open[i];
        let Some(leader) = self
            .image
            .partitions
            .iter()
            .find(|p| p.partition_id == partition)
            .map(|p| p.leader)
            .filter(|l| *l >= 0)
        else {
            return;
        };
        let acks = if rng.below(1000) < self.cfg.acks_all_permille {
            -1
        } else {
            1
        };
        self.next_req += 1;
        let req = self.next_req;
        // Unique in the run: the client in the top bits, its request number below.
        let value = (u64::from(self.id) + 1) << 40 | req;
        self.inflight.insert(req, InFlight { acks });
        self.sent += 1;
        io.send(
            Node::Broker(leader),
            Msg::Produce {
                req,
                partition,
                value,
                acks,
            },
        );
        io.timer_ms(self.cfg.client_timeout_ms, Timer::RequestTimeout { req });
    }

    pub fn on_message(&mut self, msg: Msg, io: &mut Io<'_>) {
        match msg {
            Msg::Metadata(image) if image.version >= self.image.version => self.image = image,
            Msg::ProduceResponse {
                req,
                partition,
                result,
            } => {
                let Some(f) = self.inflight.remove(&req) else {
                    return;
                };
                match result {
                    Ok(offset) => {
                        if f.acks == -1 {
                            self.acked += 1;
                            let value = (u64::from(self.id) + 1) << 40 | req;
                            io.observe(Obs::Acked {
                                partition,
                                offset,
                                value,
                            });
                        }
                    }
                    Err(e) => {
                        self.failed += 1;
                        if !matches!(e, ProduceError::TimedOut) {
                            io.send(Node::Controller, Msg::MetadataRequest);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    pub fn on_timer(&mut self, timer: Timer, io: &mut Io<'_>) {
        match timer {
            Timer::MetadataRefresh => {
                io.timer_ms(METADATA_REFRESH_MS, Timer::MetadataRefresh);
                io.send(Node::Controller, Msg::MetadataRequest);
            }
            Timer::RequestTimeout { req } if self.inflight.remove(&req).is_some() => {
                self.failed += 1;
                io.send(Node::Controller, Msg::MetadataRequest);
            }
            _ => {}
        }
    }
}
