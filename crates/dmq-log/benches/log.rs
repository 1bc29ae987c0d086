//! Criterion benchmarks for the append and read paths, 1 KiB records.
//!
//! * `append_no_fsync/<batch>`: `append_as_leader` into the page cache (no fsync at all).
//! * `append_fsync_per_batch/<batch>`: `FlushPolicy::EveryAppend` (one fdatasync per batch).
//! * `read_sequential/<batch>`: `read(offset, 1 MiB)` + copy into a reused buffer, from the
//!   page cache.
//!
//! Logs live in the system temp dir (a real file system, like `dd` would write to). The log
//! is reset outside the timed region so disk usage stays bounded. `PREALLOC=<bytes>`
//! overrides `LogConfig::preallocate_bytes` (e.g. `PREALLOC=0` to compare without it).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dmq_log::{FlushPolicy, Log, LogConfig, RecordBatchBuilder};

const RECORD_VALUE_BYTES: usize = 1010; // + ~14 bytes of record framing ≈ 1 KiB per record
const BATCH_SIZES: [usize; 4] = [16 << 10, 64 << 10, 256 << 10, 1 << 20];
const RESET_AFTER_BYTES: u64 = 512 << 20;

fn make_batch(target: usize) -> Vec<u8> {
    let records = (target / 1024).max(1);
    let mut b = RecordBatchBuilder::with_capacity(0, target + 1024);
    let v = vec![0x5au8; RECORD_VALUE_BYTES];
    for i in 0..records {
        b.push(1_700_000_000_000 + i as i64, None, Some(&v), &[]);
    }
    b.build()
}

fn config(flush: FlushPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 30,
        max_batch_bytes: 2 << 20,
        flush,
        retention_ms: None,
        preallocate_bytes: std::env::var("PREALLOC")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64 << 20),
        ..LogConfig::default()
    }
}

fn label(size: usize) -> String {
    if size >= 1 << 20 {
        format!("{}MiB", size >> 20)
    } else {
        format!("{}KiB", size >> 10)
    }
}

fn append(c: &mut Criterion, name: &str, flush: FlushPolicy, sizes: &[usize]) {
    let mut group = c.benchmark_group(name);
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for &size in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        // Never fsync in the no-fsync group: OnRoll with 1 GiB segments and a reset at
        // 512 MiB means no roll ever happens.
        let log = Log::open(dir.path(), config(flush)).expect("open");
        let mut batch = make_batch(size);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label(size)), &size, |b, _| {
            b.iter_custom(|iters| {
                if log.size_bytes() > RESET_AFTER_BYTES {
                    log.truncate_fully_and_start_at(log.log_end_offset())
                        .expect("reset");
                }
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(log.append_as_leader(&mut batch, 1, 0).expect("append"));
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn append_no_fsync(c: &mut Criterion) {
    append(c, "append_no_fsync", FlushPolicy::OnRoll, &BATCH_SIZES);
}

fn append_fsync(c: &mut Criterion) {
    append(
        c,
        "append_fsync_per_batch",
        FlushPolicy::EveryAppend,
        &BATCH_SIZES,
    );
}

fn read_sequential(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_sequential");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    const MAX_BYTES: usize = 1 << 20;
    const LOG_BYTES: usize = 256 << 20;
    for &size in &[16usize << 10, 1 << 20] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path(), config(FlushPolicy::OnRoll)).expect("open");
        let mut batch = make_batch(size);
        let per_read = (MAX_BYTES / batch.len()).max(1) * batch.len();
        for _ in 0..LOG_BYTES / batch.len() {
            log.append_as_leader(&mut batch, 1, 0).expect("append");
        }
        let end = log.log_end_offset();
        let mut buf = Vec::with_capacity(per_read);
        let mut offset = 0;
        group.throughput(Throughput::Bytes(per_read as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label(size)), &size, |b, _| {
            b.iter(|| {
                if offset >= end {
                    offset = 0;
                }
                let slice = log.read(offset, MAX_BYTES).expect("read").expect("some");
                slice.read_into(&mut buf).expect("copy");
                offset = slice.last_offset() + 1;
                black_box(&buf);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append_no_fsync, append_fsync, read_sequential);
criterion_main!(benches);
