//! Records as the application sees them, compression, and decoding of fetched batches.

use bytes::Bytes;
use dmq_records::batch::BATCH_HEADER_BYTES;
use dmq_records::{BatchHeader, Batches};

use crate::error::{ClientError, Result};

/// The codecs of Kafka's `compression.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// Kafka's codec id (the low three bits of a batch's attributes).
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            other => {
                return Err(ClientError::Config(format!(
                    "compression {other:?} is not one of none, gzip, snappy, lz4, zstd"
                )))
            }
        })
    }
}

/// Compresses the records section of an uncompressed `batch` with `codec`, returning a new
/// batch (header fields kept, length, attributes and CRC fixed).
pub(crate) fn compress_batch(batch: Vec<u8>, codec: Compression) -> Result<Vec<u8>> {
    if codec == Compression::None {
        return Ok(batch);
    }
    dmq_records::codec::compress_batch(&batch, codec.id())
        .map_err(|e| ClientError::Protocol(format!("{codec:?} compression failed: {e}")))
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch (create time, or log-append time for such topics).
    pub timestamp: i64,
    pub key: Option<Bytes>,
    /// `None` is a tombstone.
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// What one partition's fetched bytes decoded to.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub records: Vec<ConsumerRecord>,
    /// The offset to fetch next (after the last whole batch seen, control batches included).
    pub next_offset: Option<i64>,
    /// Bytes of whole batches seen.
    pub bytes: usize,
}

/// The `read_committed` filter over one partition's fetched batches, as Kafka's Java
/// `CompletedFetch`: the fetch answer lists the aborted transactions overlapping the fetched
/// range as `(producer id, first offset)`. Walking the batches in offset order, a producer
/// becomes aborted once a batch reaches its aborted transaction's first offset; its
/// transactional batches are then dropped until its abort marker (a control batch), which
/// ends that transaction. A producer's later transactions are not in the list unless they
/// aborted too, so their records are kept.
#[derive(Debug, Default)]
pub(crate) struct AbortedFilter {
    /// `(first offset, producer id)`, sorted: consumed from the front.
    pending: std::collections::VecDeque<(i64, i64)>,
    aborted: std::collections::HashSet<i64>,
}

impl AbortedFilter {
    pub(crate) fn new(aborted_transactions: &[(i64, i64)]) -> Self {
        let mut pending: Vec<(i64, i64)> = aborted_transactions
            .iter()
            .map(|&(producer_id, first_offset)| (first_offset, producer_id))
            .collect();
        pending.sort_unstable();
        AbortedFilter {
            pending: pending.into(),
            aborted: Default::default(),
        }
    }

    /// Whether the batch (next in offset order) belongs to an aborted transaction; updates
    /// the set of aborted producers with it. Control batches are never kept by the caller.
    pub(crate) fn skip(&mut self, header: &BatchHeader<'_>, batch: &[u8]) -> bool {
        let producer_id = header.producer_id();
        if producer_id < 0 {
            return false;
        }
        while let Some(&(first_offset, pid)) = self.pending.front() {
            if first_offset > header.last_offset() {
                break;
            }
            self.aborted.insert(pid);
            self.pending.pop_front();
        }
        if header.is_control() {
            if dmq_records::control_type(batch) == Some(dmq_records::ControlType::Abort) {
                self.aborted.remove(&producer_id);
            }
            return true;
        }
        header.is_transactional() && self.aborted.contains(&producer_id)
    }
}

/// Decodes the whole batches in `data` (a fetch answer may end in a partial batch, which is
/// ignored), keeping records at or after `from`. CRCs are checked (Kafka's `check.crcs`).
/// Control batches (transaction markers) are never returned; with `aborted` (`read_committed`:
/// the fetch answer's aborted transactions as `(producer id, first offset)`), neither are the
/// records of aborted transactions.
pub(crate) fn decode_fetched(
    topic: &str,
    partition: i32,
    data: &Bytes,
    from: i64,
    aborted: Option<&[(i64, i64)]>,
) -> Result<Decoded> {
    let mut out = Decoded::default();
    let mut filter = aborted.map(AbortedFilter::new);
    for item in Batches::new(data, true) {
        let (_, batch) = match item {
            Ok(b) => b,
            // A fetch answer may end in a partial batch: the next fetch starts there.
            Err((_, dmq_records::BatchDefect::Truncated { .. })) => break,
            Err((at, defect)) => {
                return Err(ClientError::Protocol(format!(
                    "{topic}-{partition}: corrupt batch at byte {at} of a fetch: {defect}"
                )))
            }
        };
        let header = BatchHeader::new(batch).map_err(|e| ClientError::Protocol(e.to_string()))?;
        out.bytes += batch.len();
        out.next_offset = Some(header.last_offset() + 1);
        // Every batch goes through the filter, those before `from` too: they may open or
        // close an aborted transaction that later batches belong to.
        let aborted = filter.as_mut().is_some_and(|f| f.skip(&header, batch));
        if aborted || header.is_control() || header.last_offset() < from {
            continue;
        }
        let source: Bytes = if header.compression() == 0 {
            data.slice_ref(&batch[BATCH_HEADER_BYTES..])
        } else {
            let section = &batch[BATCH_HEADER_BYTES..];
            dmq_records::codec::decompress(header.compression(), section)
                .map(Bytes::from)
                .map_err(|e| ClientError::Protocol(format!("{topic}-{partition}: {e}")))?
        };
        for r in dmq_records::records_in(header, &source) {
            let r = r.map_err(|e| {
                ClientError::Protocol(format!("{topic}-{partition}: {e} in a fetched batch"))
            })?;
            if r.offset < from {
                continue;
            }
            let slice = |s: &[u8]| source.slice_ref(s);
            out.records.push(ConsumerRecord {
                topic: topic.to_string(),
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.map(slice),
                value: r.value.map(slice),
                headers: r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            String::from_utf8_lossy(h.key).into_owned(),
                            h.value.map(slice),
                        )
                    })
                    .collect(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmq_records::RecordBatchBuilder;

    fn batch(base: i64, n: usize) -> Vec<u8> {
        let mut b = RecordBatchBuilder::new(base);
        for i in 0..n {
            let v = format!("value-{i}-").repeat(20);
            b.push(
                1000 + i as i64,
                Some(b"k"),
                Some(v.as_bytes()),
                &[(b"h", None)],
            );
        }
        b.build()
    }

    #[test]
    fn every_codec_roundtrips_and_skips_before_from() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut data = compress_batch(batch(10, 5), codec).expect("compress");
            if codec != Compression::None {
                assert!(data.len() < batch(10, 5).len(), "{codec:?} did not shrink");
            }
            dmq_records::validate_batch(&data, true).expect("valid after compression");
            data.extend_from_slice(&compress_batch(batch(15, 3), codec).expect("compress"));
            let data = Bytes::from(data);
            let d = decode_fetched("t", 0, &data, 12, None).expect("decode");
            let offsets: Vec<i64> = d.records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, vec![12, 13, 14, 15, 16, 17], "{codec:?}");
            assert_eq!(d.next_offset, Some(18));
            assert_eq!(d.records[0].key.as_deref(), Some(&b"k"[..]));
            assert_eq!(d.records[0].timestamp, 1002);
            assert_eq!(d.records[0].headers, vec![("h".to_string(), None)]);
        }
    }

    #[test]
    fn a_partial_last_batch_is_ignored_but_corruption_is_an_error() {
        let mut data = batch(0, 2);
        let whole = data.len();
        data.extend_from_slice(&batch(2, 2)[..40]);
        let d = decode_fetched("t", 0, &Bytes::from(data.clone()), 0, None).expect("decode");
        assert_eq!(d.records.len(), 2);
        assert_eq!(d.next_offset, Some(2));
        data[whole - 3] ^= 0xff;
        assert!(decode_fetched("t", 0, &Bytes::from(data), 0, None).is_err());
    }

    /// A transactional batch of producer `pid` at `base` with `n` records valued `v<offset>`.
    fn txn_batch(pid: i64, base: i64, n: usize) -> Vec<u8> {
        let mut b = RecordBatchBuilder::new(base)
            .producer(pid, 0, base as i32)
            .transactional(true);
        for i in 0..n {
            let v = format!("v{}", base + i as i64);
            b.push(1000, None, Some(v.as_bytes()), &[]);
        }
        b.build()
    }

    /// A commit or abort marker of `pid` at `offset`.
    fn marker(pid: i64, offset: i64, commit: bool) -> Vec<u8> {
        let mut m = dmq_records::control_batch(pid, 0, commit, 0, 1000);
        dmq_records::BatchHeaderMut::new(&mut m)
            .expect("header")
            .set_base_offset(offset); // outside the CRC
        m
    }

    fn values(d: &Decoded) -> Vec<String> {
        d.records
            .iter()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
            .collect()
    }

    /// Producer 1 commits [0,1] then aborts [5,6]; producer 2 aborts [2,3] interleaved and
    /// then commits [8]; a plain (non-transactional) producer 3 writes at 10 — Kafka's
    /// interleavings, with the markers at 4 (p1 commit), 7 (p2 abort), 9 (p1 abort), 11 (p2
    /// commit).
    fn log() -> Bytes {
        let mut data = Vec::new();
        data.extend(txn_batch(1, 0, 2));
        data.extend(txn_batch(2, 2, 2));
        data.extend(marker(1, 4, true));
        data.extend(txn_batch(1, 5, 2));
        data.extend(marker(2, 7, false));
        data.extend(txn_batch(2, 8, 1));
        data.extend(marker(1, 9, false));
        let mut plain = RecordBatchBuilder::new(10).producer(3, 0, 0);
        plain.push(1000, None, Some(b"v10"), &[]);
        data.extend(plain.build());
        data.extend(marker(2, 11, true));
        Bytes::from(data)
    }

    #[test]
    fn read_committed_drops_aborted_transactions_and_every_marker() {
        let data = log();
        // read_uncommitted: everything but the markers.
        let d = decode_fetched("t", 0, &data, 0, None).expect("decode");
        assert_eq!(
            values(&d),
            ["v0", "v1", "v2", "v3", "v5", "v6", "v8", "v10"]
        );
        assert_eq!(d.next_offset, Some(12));
        // read_committed: p2's transaction from 2 and p1's from 5 aborted.
        let aborted = [(2, 2), (1, 5)];
        let d = decode_fetched("t", 0, &data, 0, Some(&aborted)).expect("decode");
        assert_eq!(values(&d), ["v0", "v1", "v8", "v10"]);
        assert_eq!(d.next_offset, Some(12));
        // From the middle: the batches before `from` still open the aborted transactions.
        let d = decode_fetched("t", 0, &data, 6, Some(&aborted)).expect("decode");
        assert_eq!(values(&d), ["v8", "v10"]);
        // Without the list (a broker that had none to report), nothing is dropped.
        let d = decode_fetched("t", 0, &data, 0, Some(&[])).expect("decode");
        assert_eq!(values(&d).len(), 8);
    }

    #[test]
    fn an_abort_marker_ends_only_that_producers_aborted_transaction() {
        // p1 aborts [0], then commits [2]: the second transaction is not in the list.
        let mut data = Vec::new();
        data.extend(txn_batch(1, 0, 1));
        data.extend(marker(1, 1, false));
        data.extend(txn_batch(1, 2, 1));
        data.extend(marker(1, 3, true));
        let d = decode_fetched("t", 0, &Bytes::from(data), 0, Some(&[(1, 0)])).expect("decode");
        assert_eq!(values(&d), ["v2"]);
    }
}
