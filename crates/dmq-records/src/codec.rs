//! Kafka's batch compression codecs (the low three bits of a batch's attributes): gzip,
//! snappy, lz4 and zstd, through `kafka-protocol`'s implementations. The one place dmq
//! compresses and decompresses records sections — the producer, the broker's key check and
//! the log cleaner all come here.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

use crate::batch::BATCH_HEADER_BYTES;
use crate::{BatchDefect, BatchHeader};

/// Codec ids as Kafka numbers them.
pub const NONE: u8 = 0;
pub const GZIP: u8 = 1;
pub const SNAPPY: u8 = 2;
pub const LZ4: u8 = 3;
pub const ZSTD: u8 = 4;

/// Decompresses a records section written with `codec`.
pub fn decompress(codec: u8, section: &[u8]) -> Result<Vec<u8>, BatchDefect> {
    if codec == NONE {
        return Ok(section.to_vec());
    }
    let mut body = Bytes::copy_from_slice(section);
    let take = |b: &mut Bytes| Ok(b.copy_to_bytes(b.remaining()));
    let res = match codec {
        GZIP => Gzip::decompress(&mut body, take),
        SNAPPY => Snappy::decompress(&mut body, take),
        LZ4 => Lz4::decompress(&mut body, take),
        ZSTD => Zstd::decompress(&mut body, take),
        other => return Err(BatchDefect::UnknownCodec { codec: other }),
    };
    res.map(|b| b.to_vec())
        .map_err(|_| BatchDefect::Undecompressable { codec })
}

/// Compresses a records section with `codec`.
pub fn compress(codec: u8, section: &[u8]) -> Result<Vec<u8>, BatchDefect> {
    if codec == NONE {
        return Ok(section.to_vec());
    }
    let mut out = BytesMut::with_capacity(section.len() / 2 + 64);
    let fill = |tmp: &mut BytesMut| {
        tmp.put_slice(section);
        Ok(())
    };
    let res = match codec {
        GZIP => Gzip::compress(&mut out, fill),
        SNAPPY => Snappy::compress(&mut out, fill),
        LZ4 => Lz4::compress(&mut out, fill),
        ZSTD => Zstd::compress(&mut out, fill),
        other => return Err(BatchDefect::UnknownCodec { codec: other }),
    };
    res.map_err(|_| BatchDefect::Uncompressable { codec })?;
    Ok(out.to_vec())
}

/// The records section of one whole batch, decompressed when the batch is compressed.
pub fn plain_section(batch: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, BatchDefect> {
    let h = BatchHeader::new(batch)?;
    let size = h.total_size().min(batch.len());
    let body = &batch[BATCH_HEADER_BYTES.min(size)..size];
    match h.compression() {
        NONE => Ok(std::borrow::Cow::Borrowed(body)),
        codec => decompress(codec, body).map(std::borrow::Cow::Owned),
    }
}

/// Compresses the records section of an uncompressed `batch` with `codec`: a new batch with
/// the header fields kept and its length, attributes and CRC fixed.
pub fn compress_batch(batch: &[u8], codec: u8) -> Result<Vec<u8>, BatchDefect> {
    let h = BatchHeader::new(batch)?;
    if codec == NONE || batch.len() <= BATCH_HEADER_BYTES {
        return Ok(batch.to_vec());
    }
    let packed = compress(codec, &batch[BATCH_HEADER_BYTES..])?;
    Ok(crate::with_records_section(
        batch,
        &[&packed],
        h.record_count(),
        codec,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordBatchBuilder;

    #[test]
    fn every_codec_round_trips_a_batch() {
        let mut b = RecordBatchBuilder::new(10);
        for i in 0..50 {
            b.push(
                i,
                Some(format!("k{i}").as_bytes()),
                Some(b"some value"),
                &[],
            );
        }
        let plain = b.build();
        for codec in [GZIP, SNAPPY, LZ4, ZSTD] {
            let packed = compress_batch(&plain, codec).expect("compress");
            let h = crate::validate_batch(&packed, true).expect("valid compressed batch");
            assert_eq!(h.compression(), codec);
            assert_eq!(h.record_count(), 50);
            assert_eq!(
                plain_section(&packed).expect("decompress").as_ref(),
                &plain[BATCH_HEADER_BYTES..],
                "codec {codec}"
            );
        }
        assert_eq!(
            decompress(7, b"x"),
            Err(BatchDefect::UnknownCodec { codec: 7 })
        );
        assert_eq!(
            decompress(GZIP, b"not gzip"),
            Err(BatchDefect::Undecompressable { codec: GZIP })
        );
    }
}
