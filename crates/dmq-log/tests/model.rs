//! Model-based property test: random sequences of append / read / truncate / roll /
//! delete-records / reopen (clean and unclean) against a simple in-memory model.

mod common;

use common::tempdir;
use dmq_log::batch::{BatchHeader, Batches};
use dmq_log::{Log, LogConfig, LogError, RecordBatchBuilder};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        value_len: usize,
        leader: bool,
    },
    Read {
        at: u16,
        max_bytes: usize,
    },
    Truncate {
        at: u16,
    },
    DeleteBefore {
        at: u16,
    },
    Roll,
    Flush,
    Reopen {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..6, 0usize..300, any::<bool>()).prop_map(|(records, value_len, leader)| Op::Append { records, value_len, leader }),
        4 => (any::<u16>(), 1usize..3000).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => any::<u16>().prop_map(|at| Op::Truncate { at }),
        1 => any::<u16>().prop_map(|at| Op::DeleteBefore { at }),
        1 => Just(Op::Roll),
        1 => Just(Op::Flush),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

/// The model: batches with their final bytes, plus start and end offsets.
#[derive(Default)]
struct Model {
    batches: Vec<(i64, i64, Vec<u8>)>,
    start: i64,
    end: i64,
}

impl Model {
    /// Index of the first batch whose last offset ≥ `offset`.
    fn containing(&self, offset: i64) -> usize {
        self.batches.partition_point(|b| b.1 < offset)
    }
    fn pick(&self, at: u16) -> i64 {
        // Offsets in [start, end], plus occasionally just outside.
        let span = (self.end - self.start + 3).max(1);
        self.start - 1 + (at as i64 % span)
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1500,
        index_interval_bytes: 200,
        max_batch_bytes: 4096,
        ..LogConfig::default()
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempdir();
    let mut log = Some(Log::open(dir.path(), config()).expect("open"));
    let mut m = Model::default();
    let mut ts = 0i64;
    for op in ops {
        let l = log.as_ref().expect("log");
        match op {
            Op::Append {
                records,
                value_len,
                leader,
            } => {
                let mut b = RecordBatchBuilder::new(m.end);
                for i in 0..records {
                    ts += 1;
                    b.push(
                        ts,
                        Some(format!("k{i}").as_bytes()),
                        Some(&vec![i as u8; value_len]),
                        &[],
                    );
                }
                let mut bytes = b.build();
                let info = if leader {
                    l.append_as_leader(&mut bytes, 0, ts).expect("append")
                } else {
                    l.append_replicated(&bytes).expect("append replicated")
                };
                prop_assert_eq!(info.base_offset, m.end);
                prop_assert_eq!(info.last_offset, m.end + records as i64 - 1);
                m.batches.push((info.base_offset, info.last_offset, bytes));
                m.end = info.last_offset + 1;
            }
            Op::Read { at, max_bytes } => {
                let offset = m.pick(at);
                let res = l.read(offset, max_bytes);
                if offset < m.start || offset > m.end {
                    let out_of_range = matches!(res, Err(LogError::OffsetOutOfRange { .. }));
                    prop_assert!(
                        out_of_range,
                        "offset {} expected out of range: {:?}",
                        offset,
                        res
                    );
                    continue;
                }
                let slice = res.expect("read");
                if offset == m.end {
                    prop_assert!(slice.is_none());
                    continue;
                }
                let slice = slice.expect("some");
                let bytes = slice.read_to_vec().expect("bytes");
                let first = m.containing(offset);
                let mut n = 0;
                let mut pos = 0;
                for b in Batches::new(&bytes, true) {
                    let (_, b) = b.expect("valid");
                    prop_assert_eq!(
                        b,
                        &m.batches[first + n].2[..],
                        "batch {} of read at {}",
                        n,
                        offset
                    );
                    n += 1;
                    pos += b.len();
                }
                prop_assert!(n >= 1);
                prop_assert_eq!(pos, bytes.len());
                prop_assert!(n == 1 || bytes.len() <= max_bytes);
                // Stops only at the limit, a segment boundary or the end.
                if let Some(next) = m.batches.get(first + n) {
                    let seg_bounds: Vec<i64> = l.segments().iter().map(|s| s.base_offset).collect();
                    let boundary = seg_bounds.contains(&next.0);
                    prop_assert!(
                        boundary || bytes.len() + next.2.len() > max_bytes,
                        "read stopped early at {}",
                        offset
                    );
                }
                let h = BatchHeader::new(&m.batches[first].2).expect("hdr");
                prop_assert_eq!(slice.first_offset(), h.base_offset());
            }
            Op::Truncate { at } => {
                let offset = m.pick(at).max(0);
                let res = l.truncate_to(offset).expect("truncate");
                if offset >= m.end {
                    prop_assert_eq!(res, m.end);
                } else if offset <= m.start {
                    m.batches.clear();
                    m.start = offset;
                    m.end = offset;
                    prop_assert_eq!(res, offset);
                } else {
                    let i = m.containing(offset);
                    let new_end = offset.min(m.batches[i].0);
                    m.batches.truncate(i);
                    if new_end < m.start {
                        m.batches.clear();
                        m.end = m.start;
                    } else {
                        m.end = new_end;
                    }
                    prop_assert_eq!(res, m.end);
                }
            }
            Op::DeleteBefore { at } => {
                let offset = m.pick(at);
                let res = l.delete_records_before(offset);
                if offset > m.end {
                    prop_assert!(res.is_err());
                } else {
                    res.expect("delete");
                    m.start = m.start.max(offset);
                    let keep = m.batches.partition_point(|b| b.1 < m.start);
                    // The model keeps batches below start only for read comparisons;
                    // drop those wholly below so memory stays small.
                    m.batches.drain(..keep);
                }
            }
            Op::Roll => l.roll().expect("roll"),
            Op::Flush => {
                prop_assert_eq!(l.flush().expect("flush"), m.end);
            }
            Op::Reopen { clean } => {
                let old = log.take().expect("log");
                if clean {
                    old.close().expect("close");
                }
                drop(old);
                log = Some(Log::open(dir.path(), config()).expect("reopen"));
            }
        }
        let l = log.as_ref().expect("log");
        prop_assert_eq!(l.log_start_offset(), m.start);
        prop_assert_eq!(l.log_end_offset(), m.end);
    }
    // Final full comparison.
    let l = log.as_ref().expect("log");
    let all = common::read_all(l, m.start);
    let expected: Vec<Vec<u8>> = m.batches.iter().map(|b| b.2.clone()).collect();
    prop_assert_eq!(all, expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        // 256 cases keep the suite fast; PROPTEST_CASES=5000 for a deeper local run.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]
    #[test]
    fn log_agrees_with_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}
