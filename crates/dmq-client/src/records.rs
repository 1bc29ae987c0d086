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

/// Decodes the whole batches in `data` (a fetch answer may end in a partial batch, which is
/// ignored), keeping records at or after `from`. CRCs are checked (Kafka's `check.crcs`).
pub(crate) fn decode_fetched(
    topic: &str,
    partition: i32,
    data: &Bytes,
    from: i64,
) -> Result<Decoded> {
    let mut out = Decoded::default();
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
        if header.is_control() || header.last_offset() < from {
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
            let d = decode_fetched("t", 0, &data, 12).expect("decode");
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
        let d = decode_fetched("t", 0, &Bytes::from(data.clone()), 0).expect("decode");
        assert_eq!(d.records.len(), 2);
        assert_eq!(d.next_offset, Some(2));
        data[whole - 3] ^= 0xff;
        assert!(decode_fetched("t", 0, &Bytes::from(data), 0).is_err());
    }
}
