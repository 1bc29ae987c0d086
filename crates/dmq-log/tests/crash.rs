//! Crash test: write a small multi-segment log once, then for thousands of seeded random
//! trials copy it, damage it (cut or corrupt a .log, corrupt/cut/delete an index, append
//! garbage), reopen, and check that recovery kept every complete batch before the damage,
//! nothing after it, and that appending continues at the right offset.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{read_all, tempdir};
use dmq_log::batch::{BatchHeader, Batches};
use dmq_log::{Log, LogConfig, RecordBatchBuilder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Unclean trials per run (`CRASH_TRIALS` overrides, e.g. for a deeper local run).
fn trials() -> usize {
    std::env::var("CRASH_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2000)
}
/// Extra seed mixed into the RNGs (`CRASH_SEED`), to explore other damage points.
fn seed() -> u64 {
    std::env::var("CRASH_SEED")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}
const BATCHES: usize = 50;
/// The template's batch `i` has leader epoch `i / 10`; appending with the last epoch again
/// usually needs no epoch-checkpoint write (fewer fsyncs per trial on a real disk).
const LAST_EPOCH: i32 = (BATCHES as i32 - 1) / 10;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 3000,
        index_interval_bytes: 300,
        ..LogConfig::default()
    }
}

/// Where each template batch lives.
#[derive(Clone)]
struct Placed {
    bytes: Vec<u8>,
    file: String,
    position: usize,
    last_offset: i64,
}

fn build_template(dir: &Path, clean: bool) -> Vec<Placed> {
    let log = Log::open(dir, config()).expect("open");
    let mut rng = StdRng::seed_from_u64(7);
    for i in 0..BATCHES {
        let mut b = RecordBatchBuilder::new(0);
        for r in 0..rng.random_range(1..8) {
            let v: Vec<u8> = (0..rng.random_range(0..120))
                .map(|_| rng.random())
                .collect();
            b.push(
                1000 + i as i64,
                Some(format!("k{r}").as_bytes()),
                Some(&v),
                &[],
            );
        }
        log.append_as_leader(&mut b.build(), (i / 10) as i32, 0)
            .expect("append");
    }
    if clean {
        log.close().expect("close");
    }
    drop(log);
    // Locate every batch in the files.
    let mut placed = Vec::new();
    for f in log_files(dir) {
        let bytes = fs::read(&f).expect("read");
        for b in Batches::new(&bytes, true) {
            // The active segment of an unclean template ends in preallocated zeros.
            let (pos, b) = match b {
                Ok(x) => x,
                Err((at, _)) => {
                    assert!(
                        bytes[at..].iter().all(|&x| x == 0),
                        "template batch invalid"
                    );
                    break;
                }
            };
            placed.push(Placed {
                bytes: b.to_vec(),
                file: f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .expect("name")
                    .to_string(),
                position: pos,
                last_offset: BatchHeader::new(b).expect("hdr").last_offset(),
            });
        }
    }
    assert_eq!(placed.len(), BATCHES);
    placed
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

fn copy_dir(from: &Path, to: &Path) {
    for e in fs::read_dir(from).expect("dir") {
        let e = e.expect("entry");
        fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

/// What a damage does to the expected surviving prefix.
enum Damage {
    /// .log bytes from (file, position) on are gone or bad: batches touching them are lost.
    LogFrom { file: String, position: usize },
    /// Only an index was hit: every batch survives.
    IndexOnly,
}

fn damage(dir: &Path, placed: &[Placed], rng: &mut StdRng, clean: bool) -> Damage {
    let logs = log_files(dir);
    let kind = rng.random_range(0..6);
    if std::env::var("CRASH_DEBUG").is_ok() {
        eprintln!("kind {kind}");
    }
    // With a clean-shutdown marker only the active (last) segment is rescanned, so .log
    // damage is applied there; index damage anywhere must be detected or harmless.
    let pick_log = |rng: &mut StdRng| -> PathBuf {
        if clean {
            logs.last().expect("a log").clone()
        } else {
            logs[rng.random_range(0..logs.len())].clone()
        }
    };
    let name = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_string()
    };
    match kind {
        // Cut a .log at a random point.
        0 | 1 => {
            let f = pick_log(rng);
            let len = fs::metadata(&f).expect("meta").len() as usize;
            let at = rng.random_range(0..=len);
            fs::OpenOptions::new()
                .write(true)
                .open(&f)
                .expect("open")
                .set_len(at as u64)
                .expect("cut");
            if at == len {
                return Damage::IndexOnly;
            }
            Damage::LogFrom {
                file: name(&f),
                position: at,
            }
        }
        // Flip a byte in a .log (not in baseOffset/partitionLeaderEpoch, which Kafka leaves
        // outside the CRC on purpose).
        2 | 3 => {
            let f = pick_log(rng);
            let mut bytes = fs::read(&f).expect("read");
            if bytes.is_empty() {
                return Damage::IndexOnly;
            }
            let data_end = placed
                .iter()
                .filter(|p| p.file == name(&f))
                .map(|p| p.position + p.bytes.len())
                .max()
                .unwrap_or(0);
            let at = loop {
                let at = rng.random_range(0..bytes.len());
                if at >= data_end {
                    break at; // in the preallocated zero tail
                }
                let batch_start = placed
                    .iter()
                    .filter(|p| p.file == name(&f) && p.position <= at)
                    .map(|p| p.position)
                    .max()
                    .expect("batch");
                let rel = at - batch_start;
                if !(rel < 8 || (12..16).contains(&rel)) {
                    break at;
                }
            };
            bytes[at] ^= 1 << rng.random_range(0..8);
            fs::write(&f, &bytes).expect("write");
            // The batch containing `at` must go.
            let start = placed
                .iter()
                .filter(|p| p.file == name(&f) && p.position <= at && at < data_end)
                .map(|p| p.position)
                .max();
            Damage::LogFrom {
                file: name(&f),
                position: start.unwrap_or(at),
            }
        }
        // Damage an index or time index: cut, garbage, or delete.
        4 => {
            let ext = if rng.random_bool(0.5) {
                "index"
            } else {
                "timeindex"
            };
            let f = logs[rng.random_range(0..logs.len())].with_extension(ext);
            let mut bytes = fs::read(&f).unwrap_or_default();
            match rng.random_range(0..3) {
                0 => {
                    let _ = fs::remove_file(&f);
                }
                1 if !bytes.is_empty() => {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = rng.random();
                    fs::write(&f, &bytes).expect("write");
                }
                _ => {
                    let cut = rng.random_range(0..=bytes.len());
                    bytes.truncate(cut);
                    bytes.extend((0..rng.random_range(0..20)).map(|_| rng.random::<u8>()));
                    fs::write(&f, &bytes).expect("write");
                }
            }
            Damage::IndexOnly
        }
        // Torn append: garbage (or a partial batch) after the last batch.
        _ => {
            let f = logs.last().expect("log").clone();
            let len = fs::metadata(&f).expect("meta").len() as usize;
            let mut tail: Vec<u8> = if rng.random_bool(0.5) {
                let src = &placed[rng.random_range(0..placed.len())].bytes;
                src[..rng.random_range(1..src.len())].to_vec()
            } else {
                (0..rng.random_range(1..200))
                    .map(|_| rng.random())
                    .collect()
            };
            let mut bytes = fs::read(&f).expect("read");
            bytes.append(&mut tail);
            fs::write(&f, &bytes).expect("write");
            Damage::LogFrom {
                file: name(&f),
                position: len,
            }
        }
    }
}

fn run_trials(clean: bool, seed: u64, trials: usize) {
    let template = tempdir();
    let placed = build_template(template.path(), clean);
    let mut rng = StdRng::seed_from_u64(seed);
    for trial in 0..trials {
        let dir = tempdir();
        copy_dir(template.path(), dir.path());
        let d = damage(dir.path(), &placed, &mut rng, clean);
        let expected: Vec<&Placed> = match &d {
            Damage::IndexOnly => placed.iter().collect(),
            Damage::LogFrom { file, position } => placed
                .iter()
                .filter(|p| {
                    p.file < *file || (p.file == *file && p.position + p.bytes.len() <= *position)
                })
                .collect(),
        };
        let log = Log::open(dir.path(), config())
            .unwrap_or_else(|e| panic!("trial {trial}: open failed: {e}"));
        let got = read_all(&log, 0);
        let want: Vec<Vec<u8>> = expected.iter().map(|p| p.bytes.clone()).collect();
        assert_eq!(got.len(), want.len(), "trial {trial}: batch count");
        assert!(got == want, "trial {trial}: bytes differ");
        let next = expected.last().map(|p| p.last_offset + 1).unwrap_or(0);
        assert_eq!(log.log_end_offset(), next, "trial {trial}: log end");
        // Every offset is findable (exercises possibly-damaged indexes).
        for p in &expected {
            let s = log.read(p.last_offset, 1).expect("read").expect("some");
            assert_eq!(s.last_offset(), p.last_offset, "trial {trial}");
        }
        // Appending continues at the right offset and is readable after a reopen.
        let mut b = RecordBatchBuilder::new(0);
        b.push(0, None, Some(b"after"), &[]);
        let mut b = b.build();
        let info = log.append_as_leader(&mut b, LAST_EPOCH, 0).expect("append");
        assert_eq!(info.base_offset, next, "trial {trial}: append offset");
        assert!(log.end_offset_for_epoch(LAST_EPOCH) == (LAST_EPOCH, next + 1));
        drop(log);
        let log = Log::open(dir.path(), config()).expect("reopen");
        let mut want = want;
        want.push(b);
        assert!(
            read_all(&log, 0) == want,
            "trial {trial}: after append + reopen"
        );
    }
}

#[test]
fn recovery_after_unclean_shutdown_keeps_exactly_the_complete_prefix() {
    run_trials(false, 0xC0FFEE ^ seed(), trials());
}

#[test]
fn recovery_after_clean_shutdown_survives_index_damage_and_torn_tail() {
    run_trials(true, 0xBADC0DE ^ seed(), trials() / 4);
}
