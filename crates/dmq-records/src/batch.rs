//! Kafka RecordBatch v2 — the unit the log stores, verbatim.
//!
//! Byte layout (all integers big-endian; `varint`/`varlong` are zigzag LEB128 as in Kafka):
//!
//! ```text
//! offset  size  field
//!      0     8  baseOffset            i64   set by the leader on append (outside the CRC)
//!      8     4  batchLength           i32   bytes that follow this field (= total - 12)
//!     12     4  partitionLeaderEpoch  i32   set by the leader on append (outside the CRC)
//!     16     1  magic                 i8    always 2
//!     17     4  crc                   u32   CRC-32C (Castagnoli) of bytes [21, end)
//!     21     2  attributes            i16   bits 0-2 compression, 3 timestampType
//!                                           (1 = LogAppendTime), 4 transactional, 5 control
//!     23     4  lastOffsetDelta       i32
//!     27     8  baseTimestamp         i64
//!     35     8  maxTimestamp          i64
//!     43     8  producerId            i64
//!     51     2  producerEpoch         i16
//!     53     4  baseSequence          i32
//!     57     4  recordCount           i32
//!     61     …  records
//!
//! record:
//!   length          varint   bytes that follow
//!   attributes      i8       unused (0)
//!   timestampDelta  varlong  relative to baseTimestamp
//!   offsetDelta     varint   relative to baseOffset
//!   keyLength       varint   -1 = null key
//!   key             bytes
//!   valueLength     varint   -1 = null value (a tombstone)
//!   value           bytes
//!   headerCount     varint
//!   header*:        keyLength varint, key bytes, valueLength varint (-1 = null), value bytes
//! ```
//!
//! Because the CRC starts at `attributes`, the leader can stamp `baseOffset` and
//! `partitionLeaderEpoch` without re-checksumming — the whole reason the append path never
//! touches individual records. (The one exception is a LogAppendTime topic, where Kafka also
//! overwrites `maxTimestamp`, which is inside the CRC; see [`BatchHeaderMut::stamp_log_append_time`].)

use crate::BatchDefect;

/// Size of the fixed RecordBatch v2 header, in bytes.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before `batchLength`'s coverage starts (baseOffset + batchLength).
pub const BATCH_LOG_OVERHEAD_BYTES: usize = 12;
/// The only supported magic.
pub const MAGIC_V2: i8 = 2;
/// Where the CRC-covered region starts.
pub const CRC_START: usize = 21;

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Kafka's "no producer" / "no sequence" sentinel values.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;
pub const NO_SEQUENCE: i32 = -1;
/// Kafka's "no partition leader epoch".
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

#[inline]
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
#[inline]
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
#[inline]
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// Total size (header included) declared by the first 12 bytes of a batch, or a defect.
///
/// Only needs [`BATCH_LOG_OVERHEAD_BYTES`] bytes, which lets scanners size their reads.
pub fn declared_size(prefix: &[u8]) -> Result<usize, BatchDefect> {
    if prefix.len() < BATCH_LOG_OVERHEAD_BYTES {
        return Err(BatchDefect::Truncated {
            needed: BATCH_LOG_OVERHEAD_BYTES,
            available: prefix.len(),
        });
    }
    let batch_length = be_i32(prefix, BATCH_LENGTH_AT);
    if batch_length < (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i32 {
        return Err(BatchDefect::BadLength { batch_length });
    }
    Ok(batch_length as usize + BATCH_LOG_OVERHEAD_BYTES)
}

/// Zero-copy, read-only view of a RecordBatch v2 header.
///
/// Construction only checks that 61 bytes are present; use [`BatchHeader::validate_header`]
/// and [`validate_batch`] (which also checks the CRC) before trusting the contents.
#[derive(Clone, Copy)]
pub struct BatchHeader<'a> {
    buf: &'a [u8],
}

impl<'a> BatchHeader<'a> {
    /// View the header at the start of `buf` (which may hold the whole batch or just 61 bytes).
    pub fn new(buf: &'a [u8]) -> Result<Self, BatchDefect> {
        if buf.len() < BATCH_HEADER_BYTES {
            return Err(BatchDefect::Truncated {
                needed: BATCH_HEADER_BYTES,
                available: buf.len(),
            });
        }
        Ok(BatchHeader { buf })
    }

    pub fn base_offset(&self) -> i64 {
        be_i64(self.buf, BASE_OFFSET_AT)
    }
    pub fn batch_length(&self) -> i32 {
        be_i32(self.buf, BATCH_LENGTH_AT)
    }
    /// Total bytes of the batch including baseOffset and batchLength (may be garbage until validated).
    pub fn total_size(&self) -> usize {
        (self.batch_length().max(0) as usize).saturating_add(BATCH_LOG_OVERHEAD_BYTES)
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        be_i32(self.buf, LEADER_EPOCH_AT)
    }
    pub fn magic(&self) -> i8 {
        self.buf[MAGIC_AT] as i8
    }
    pub fn crc(&self) -> u32 {
        be_i32(self.buf, CRC_AT) as u32
    }
    pub fn attributes(&self) -> i16 {
        be_i16(self.buf, ATTRIBUTES_AT)
    }
    /// Compression codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes() & COMPRESSION_MASK) as u8
    }
    /// True when the topic uses LogAppendTime (the broker owns `maxTimestamp`).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & TIMESTAMP_TYPE_BIT != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_BIT != 0
    }
    pub fn last_offset_delta(&self) -> i32 {
        be_i32(self.buf, LAST_OFFSET_DELTA_AT)
    }
    /// `baseOffset + lastOffsetDelta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .saturating_add(self.last_offset_delta() as i64)
    }
    pub fn base_timestamp(&self) -> i64 {
        be_i64(self.buf, BASE_TIMESTAMP_AT)
    }
    pub fn max_timestamp(&self) -> i64 {
        be_i64(self.buf, MAX_TIMESTAMP_AT)
    }
    pub fn producer_id(&self) -> i64 {
        be_i64(self.buf, PRODUCER_ID_AT)
    }
    pub fn producer_epoch(&self) -> i16 {
        be_i16(self.buf, PRODUCER_EPOCH_AT)
    }
    pub fn base_sequence(&self) -> i32 {
        be_i32(self.buf, BASE_SEQUENCE_AT)
    }
    pub fn record_count(&self) -> i32 {
        be_i32(self.buf, RECORD_COUNT_AT)
    }

    /// Structural checks that need only the 61 header bytes: length, magic, count vs delta.
    ///
    /// `strict_count` demands `recordCount == lastOffsetDelta + 1` (fresh producer batches);
    /// otherwise `recordCount <= lastOffsetDelta + 1` (compacted batches keep their offset span
    /// but lose records).
    pub fn validate_header(&self, strict_count: bool) -> Result<(), BatchDefect> {
        declared_size(self.buf)?;
        if self.magic() != MAGIC_V2 {
            return Err(BatchDefect::BadMagic {
                magic: self.magic(),
            });
        }
        let record_count = self.record_count();
        let last_offset_delta = self.last_offset_delta();
        let span = last_offset_delta as i64 + 1;
        let bad = last_offset_delta < 0
            || record_count < 0
            || (record_count as i64) > span
            || (strict_count && (record_count as i64) != span);
        if bad {
            return Err(BatchDefect::RecordCountMismatch {
                record_count,
                last_offset_delta,
            });
        }
        Ok(())
    }
}

/// Compute the CRC-32C of a whole batch's covered region.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START.min(batch.len())..])
}

/// Full validation of one batch occupying exactly `batch` (header checks + CRC).
pub fn validate_batch(batch: &[u8], strict_count: bool) -> Result<BatchHeader<'_>, BatchDefect> {
    let header = BatchHeader::new(batch)?;
    let size = declared_size(batch)?;
    if size != batch.len() {
        return Err(BatchDefect::Truncated {
            needed: size,
            available: batch.len(),
        });
    }
    header.validate_header(strict_count)?;
    let computed = compute_crc(batch);
    if computed != header.crc() {
        return Err(BatchDefect::CrcMismatch {
            stored: header.crc(),
            computed,
        });
    }
    Ok(header)
}

/// Mutable header access: the only fields the leader is allowed to stamp.
pub struct BatchHeaderMut<'a> {
    buf: &'a mut [u8],
}

impl<'a> BatchHeaderMut<'a> {
    pub fn new(buf: &'a mut [u8]) -> Result<Self, BatchDefect> {
        if buf.len() < BATCH_HEADER_BYTES {
            return Err(BatchDefect::Truncated {
                needed: BATCH_HEADER_BYTES,
                available: buf.len(),
            });
        }
        Ok(BatchHeaderMut { buf })
    }
    /// Outside the CRC: no re-checksum needed.
    pub fn set_base_offset(&mut self, base_offset: i64) {
        self.buf[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
    }
    /// Outside the CRC: no re-checksum needed.
    pub fn set_partition_leader_epoch(&mut self, epoch: i32) {
        self.buf[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
    }
    /// LogAppendTime topics: the broker overwrites `maxTimestamp`, which *is* covered by the
    /// CRC, so the checksum is recomputed (one extra pass; only for such topics).
    pub fn stamp_log_append_time(&mut self, now_ms: i64) {
        self.buf[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
        let crc = compute_crc(self.buf);
        self.buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }
    pub fn as_header(&self) -> BatchHeader<'_> {
        BatchHeader { buf: self.buf }
    }
}

/// Iterate over consecutive whole batches in a buffer (e.g. the bytes of a [`crate::ReadSlice`]).
///
/// Yields `Err` once and stops at the first batch that is truncated or malformed; CRCs are
/// verified when `verify_crc` is set.
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    verify_crc: bool,
    failed: bool,
}

impl<'a> Batches<'a> {
    pub fn new(buf: &'a [u8], verify_crc: bool) -> Self {
        Batches {
            buf,
            pos: 0,
            verify_crc,
            failed: false,
        }
    }
}

impl<'a> Iterator for Batches<'a> {
    /// `(byte position in the buffer, the batch's bytes)`.
    type Item = Result<(usize, &'a [u8]), (usize, BatchDefect)>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let res = declared_size(rest).and_then(|size| {
            if size > rest.len() {
                return Err(BatchDefect::Truncated {
                    needed: size,
                    available: rest.len(),
                });
            }
            let batch = &rest[..size];
            if self.verify_crc {
                validate_batch(batch, false)?;
            } else {
                BatchHeader::new(batch)?.validate_header(false)?;
            }
            Ok(batch)
        });
        match res {
            Ok(batch) => {
                let at = self.pos;
                self.pos += batch.len();
                Some(Ok((at, batch)))
            }
            Err(defect) => {
                self.failed = true;
                Some(Err((self.pos, defect)))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Varints (Kafka's ByteUtils: zigzag, then unsigned LEB128).
// ---------------------------------------------------------------------------------------------

/// Encode a zigzag varint (i32) onto `out`.
pub fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_uvarint(out, ((v << 1) ^ (v >> 31)) as u32 as u64);
}
/// Encode a zigzag varlong (i64) onto `out`.
pub fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}
fn put_uvarint(out: &mut Vec<u8>, mut u: u64) {
    while u >= 0x80 {
        out.push((u as u8) | 0x80);
        u >>= 7;
    }
    out.push(u as u8);
}
/// Bytes a zigzag varint (i32) takes.
pub fn varint_size(v: i32) -> usize {
    uvarint_size(((v << 1) ^ (v >> 31)) as u32 as u64)
}
/// Bytes a zigzag varlong (i64) takes.
pub fn varlong_size(v: i64) -> usize {
    uvarint_size(((v << 1) ^ (v >> 63)) as u64)
}
fn uvarint_size(mut u: u64) -> usize {
    let mut n = 1;
    while u >= 0x80 {
        u >>= 7;
        n += 1;
    }
    n
}

/// A cursor over record bytes; every read is bounds-checked and returns `None` on bad input.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn uvarint(&mut self, max_bytes: usize) -> Option<u64> {
        let mut result = 0u64;
        for i in 0..max_bytes {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            result |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Some(result);
            }
        }
        None
    }
    fn varint(&mut self) -> Option<i32> {
        let u = self.uvarint(5)?;
        if u > u32::MAX as u64 {
            return None;
        }
        let u = u as u32;
        Some(((u >> 1) as i32) ^ -((u & 1) as i32))
    }
    fn varlong(&mut self) -> Option<i64> {
        let u = self.uvarint(10)?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    /// A varint length followed by that many bytes; -1 means null.
    fn nullable_bytes(&mut self) -> Option<Option<&'a [u8]>> {
        let len = self.varint()?;
        if len < -1 {
            return None;
        }
        if len == -1 {
            return Some(None);
        }
        Some(Some(self.bytes(len as usize)?))
    }
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// One record header (Kafka header keys are strings; kept as bytes so decoding never fails on UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// A decoded record of an uncompressed batch, borrowing from the batch bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Absolute offset (`baseOffset + offsetDelta`).
    pub offset: i64,
    /// Absolute timestamp (`baseTimestamp + timestampDelta`, or the batch's `maxTimestamp`
    /// for LogAppendTime batches, as Kafka consumers see it).
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    /// `None` is a tombstone.
    pub value: Option<&'a [u8]>,
    pub headers: Vec<RecordHeader<'a>>,
    /// The record's full encoding, length prefix included (the compactor copies it verbatim).
    pub raw: &'a [u8],
    /// The record's offset delta as encoded.
    pub offset_delta: i32,
}

/// Iterator over the records of one **uncompressed** batch.
///
/// Compressed batches are refused with [`BatchDefect::Compressed`]: this crate never needs to
/// decompress (the compactor keeps compressed batches whole, see `cleaner.rs`).
pub struct RecordIter<'a> {
    cursor: Cursor<'a>,
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
    remaining: i32,
    index: usize,
    failed: bool,
}

/// Iterate the records of an uncompressed batch (`batch` = exactly one whole batch).
///
/// The header is validated structurally; the CRC is not re-checked here (the log checked it
/// on the way in, and [`validate_batch`] is available to callers that got bytes elsewhere).
pub fn records(batch: &[u8]) -> Result<RecordIter<'_>, BatchDefect> {
    let header = BatchHeader::new(batch)?;
    let size = declared_size(batch)?;
    if size > batch.len() {
        return Err(BatchDefect::Truncated {
            needed: size,
            available: batch.len(),
        });
    }
    header.validate_header(false)?;
    if header.compression() != 0 {
        return Err(BatchDefect::Compressed {
            codec: header.compression(),
        });
    }
    Ok(records_in(header, &batch[BATCH_HEADER_BYTES..size]))
}

/// Iterate the records section `body` of the batch whose header is `header` — for a
/// compressed batch, `body` is the decompressed section (the client decompresses; this crate
/// does not link any codec).
pub fn records_in<'a>(header: BatchHeader<'_>, body: &'a [u8]) -> RecordIter<'a> {
    RecordIter {
        cursor: Cursor { buf: body, pos: 0 },
        base_offset: header.base_offset(),
        base_timestamp: header.base_timestamp(),
        log_append_time: header.is_log_append_time().then(|| header.max_timestamp()),
        remaining: header.record_count(),
        index: 0,
        failed: false,
    }
}

impl<'a> RecordIter<'a> {
    fn decode_one(&mut self) -> Option<Record<'a>> {
        let start = self.cursor.pos;
        let len = self.cursor.varint()?;
        if len < 0 {
            return None;
        }
        let body = self.cursor.bytes(len as usize)?;
        let raw = &self.cursor.buf[start..self.cursor.pos];
        let mut c = Cursor { buf: body, pos: 0 };
        let _attributes = c.u8()?;
        let ts_delta = c.varlong()?;
        let offset_delta = c.varint()?;
        let key = c.nullable_bytes()?;
        let value = c.nullable_bytes()?;
        let header_count = c.varint()?;
        if header_count < 0 {
            return None;
        }
        let mut headers = Vec::new();
        for _ in 0..header_count {
            let hk_len = c.varint()?;
            if hk_len < 0 {
                return None;
            }
            let key = c.bytes(hk_len as usize)?;
            let value = c.nullable_bytes()?;
            headers.push(RecordHeader { key, value });
        }
        if c.pos != body.len() {
            return None;
        }
        let timestamp = self
            .log_append_time
            .unwrap_or(self.base_timestamp.wrapping_add(ts_delta));
        Some(Record {
            offset: self.base_offset.wrapping_add(offset_delta as i64),
            timestamp,
            key,
            value,
            headers,
            raw,
            offset_delta,
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, BatchDefect>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.remaining <= 0 {
            return None;
        }
        self.remaining -= 1;
        let index = self.index;
        self.index += 1;
        match self.decode_one() {
            Some(r) => Some(Ok(r)),
            None => {
                self.failed = true;
                Some(Err(BatchDefect::MalformedRecord { index }))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------------------------

/// Builds an uncompressed RecordBatch v2 (compression attribute 0).
///
/// Records get consecutive offset deltas; the first record's timestamp is the base timestamp.
/// Used by tests, benchmarks, the HTTP produce path and the Raft log (one record per entry).
pub struct RecordBatchBuilder {
    buf: Vec<u8>,
    base_offset: i64,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    count: i32,
    attributes: i16,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

impl RecordBatchBuilder {
    /// Start a batch whose first record will have offset `base_offset` (the leader overwrites
    /// it on `append_as_leader`; `append_replicated` keeps it).
    pub fn new(base_offset: i64) -> Self {
        let mut buf = Vec::with_capacity(1024);
        buf.resize(BATCH_HEADER_BYTES, 0);
        RecordBatchBuilder {
            buf,
            base_offset,
            base_timestamp: None,
            max_timestamp: -1,
            count: 0,
            attributes: 0,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
        }
    }
    /// Pre-size the buffer (bytes).
    pub fn with_capacity(base_offset: i64, bytes: usize) -> Self {
        let mut b = Self::new(base_offset);
        b.buf.reserve(bytes);
        b
    }
    /// Idempotent-producer fields.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }
    /// Mark the batch as part of a transaction (attribute bit 0x10): `read_committed`
    /// consumers hold it back until the producer's commit or abort marker decides it.
    pub fn transactional(mut self, yes: bool) -> Self {
        if yes {
            self.attributes |= TRANSACTIONAL_BIT;
        } else {
            self.attributes &= !TRANSACTIONAL_BIT;
        }
        self
    }
    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }
    /// Mark the batch as LogAppendTime (the broker stamps `maxTimestamp`).
    pub fn log_append_time(mut self, yes: bool) -> Self {
        if yes {
            self.attributes |= TIMESTAMP_TYPE_BIT;
        } else {
            self.attributes &= !TIMESTAMP_TYPE_BIT;
        }
        self
    }
    /// Number of records so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Encoded size so far, header included.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Append one record.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> &mut Self {
        let base_ts = *self.base_timestamp.get_or_insert(timestamp);
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let ts_delta = timestamp.wrapping_sub(base_ts);
        let offset_delta = self.count;
        let nullable_size = |b: Option<&[u8]>| match b {
            None => varint_size(-1),
            Some(b) => varint_size(b.len() as i32) + b.len(),
        };
        let mut body = 1 + varlong_size(ts_delta) + varint_size(offset_delta);
        body += nullable_size(key) + nullable_size(value) + varint_size(headers.len() as i32);
        for (hk, hv) in headers {
            body += varint_size(hk.len() as i32) + hk.len() + nullable_size(*hv);
        }
        let out = &mut self.buf;
        out.reserve(body + 5);
        put_varint(out, body as i32);
        out.push(0);
        put_varlong(out, ts_delta);
        put_varint(out, offset_delta);
        let put_nullable = |out: &mut Vec<u8>, b: Option<&[u8]>| match b {
            None => put_varint(out, -1),
            Some(b) => {
                put_varint(out, b.len() as i32);
                out.extend_from_slice(b);
            }
        };
        put_nullable(out, key);
        put_nullable(out, value);
        put_varint(out, headers.len() as i32);
        for (hk, hv) in headers {
            put_varint(out, hk.len() as i32);
            out.extend_from_slice(hk);
            put_nullable(out, *hv);
        }
        self.count += 1;
        self
    }

    /// Finish: fill in the header and the CRC. A batch with no records is valid but unusual.
    pub fn build(mut self) -> Vec<u8> {
        let len = self.buf.len();
        let b = &mut self.buf;
        b[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&self.base_offset.to_be_bytes());
        b[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4]
            .copy_from_slice(&((len - BATCH_LOG_OVERHEAD_BYTES) as i32).to_be_bytes());
        b[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4]
            .copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        b[MAGIC_AT] = MAGIC_V2 as u8;
        b[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&self.attributes.to_be_bytes());
        let last_delta = (self.count - 1).max(0);
        b[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
            .copy_from_slice(&last_delta.to_be_bytes());
        let base_ts = self.base_timestamp.unwrap_or(-1);
        b[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&base_ts.to_be_bytes());
        b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8]
            .copy_from_slice(&self.max_timestamp.to_be_bytes());
        b[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&self.producer_id.to_be_bytes());
        b[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2]
            .copy_from_slice(&self.producer_epoch.to_be_bytes());
        b[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4]
            .copy_from_slice(&self.base_sequence.to_be_bytes());
        b[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&self.count.to_be_bytes());
        let crc = compute_crc(b);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        self.buf
    }
}

// ---------------------------------------------------------------------------------------------
// Control batches (KIP-98 transaction markers)
// ---------------------------------------------------------------------------------------------

/// What a transaction marker says about the producer's open transaction at a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlType {
    /// The transaction's records are to be skipped by `read_committed` consumers.
    Abort,
    /// The transaction's records become visible to `read_committed` consumers.
    Commit,
}

/// The one record of a transaction marker, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlRecord {
    pub kind: ControlType,
    /// The epoch of the transaction coordinator that wrote the marker; a partition refuses a
    /// marker from an older coordinator (a deposed one still retrying).
    pub coordinator_epoch: i32,
}

/// Control record key: `[version: i16 = 0][type: i16]`, Kafka's `ControlRecordType`.
const CONTROL_KEY_VERSION: i16 = 0;
const CONTROL_TYPE_ABORT: i16 = 0;
const CONTROL_TYPE_COMMIT: i16 = 1;
/// Marker value: `[version: i16 = 0][coordinator_epoch: i32]`, Kafka's `EndTransactionMarker`.
const MARKER_VALUE_VERSION: i16 = 0;

/// A transaction marker as Kafka writes it (`MemoryRecords.withEndTransactionMarker`): an
/// uncompressed RecordBatch v2 with the transactional and control attribute bits, the
/// producer's id and epoch, base sequence -1, and one record
///
/// ```text
/// key   = [version: i16 = 0][type: i16 = 0 abort | 1 commit]
/// value = [version: i16 = 0][coordinator_epoch: i32]
/// ```
///
/// Base offset 0: the leader assigns the real one on append. Java and librdkafka consumers
/// recognise markers by the control bit and parse exactly this key.
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> Vec<u8> {
    let kind = if commit {
        CONTROL_TYPE_COMMIT
    } else {
        CONTROL_TYPE_ABORT
    };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&MARKER_VALUE_VERSION.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let mut b = RecordBatchBuilder::new(0).producer(producer_id, producer_epoch, NO_SEQUENCE);
    b.attributes |= TRANSACTIONAL_BIT | CONTROL_BIT;
    b.push(timestamp_ms, Some(&key), Some(&value), &[]);
    b.build()
}

/// The marker type of a control batch (the key of its first record); `None` when `batch` is
/// not a control batch or its key is not a version-0 abort/commit key.
pub fn control_type(batch: &[u8]) -> Option<ControlType> {
    control_record(batch).map(|c| c.kind)
}

/// The decoded marker of a control batch; `None` when `batch` is not a control batch, is
/// compressed, or does not hold a well-formed abort/commit record. A marker whose value does
/// not decode still has a type; its coordinator epoch is then -1 (Kafka reads the type from
/// the key alone too).
pub fn control_record(batch: &[u8]) -> Option<ControlRecord> {
    let h = BatchHeader::new(batch).ok()?;
    if !h.is_control() {
        return None;
    }
    let first = records(batch).ok()?.next()?.ok()?;
    let key = first.key?;
    if key.len() < 4 || be_i16(key, 0) < CONTROL_KEY_VERSION {
        return None;
    }
    let kind = match be_i16(key, 2) {
        CONTROL_TYPE_ABORT => ControlType::Abort,
        CONTROL_TYPE_COMMIT => ControlType::Commit,
        _ => return None,
    };
    let coordinator_epoch = match first.value {
        Some(v) if v.len() >= 6 => be_i32(v, 2),
        _ => -1,
    };
    Some(ControlRecord {
        kind,
        coordinator_epoch,
    })
}

/// Re-encode `original` keeping only `kept` records (their raw encodings, in order).
///
/// Keeps baseOffset, lastOffsetDelta, timestamps, producer fields and attributes — exactly
/// what Kafka's cleaner preserves so that offsets and producer state survive compaction —
/// and fixes batchLength, recordCount and the CRC.
pub fn rebuild_with_records(original: &[u8], kept: &[&[u8]]) -> Vec<u8> {
    let compression = BatchHeader::new(original).map_or(0, |h| h.compression());
    with_records_section(original, kept, kept.len() as i32, compression)
}

/// Re-encode `original`'s header around a new records section made of `parts`, holding
/// `record_count` records and compressed with `compression` (Kafka's codec id, 0 = none);
/// fixes batchLength, recordCount, the compression bits and the CRC. The producer uses it to
/// wrap a compressed records section.
pub fn with_records_section(
    original: &[u8],
    parts: &[&[u8]],
    record_count: i32,
    compression: u8,
) -> Vec<u8> {
    let body: usize = parts.iter().map(|r| r.len()).sum();
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + body);
    out.extend_from_slice(&original[..BATCH_HEADER_BYTES]);
    for r in parts {
        out.extend_from_slice(r);
    }
    let len = out.len();
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4]
        .copy_from_slice(&((len - BATCH_LOG_OVERHEAD_BYTES) as i32).to_be_bytes());
    out[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&record_count.to_be_bytes());
    let attributes =
        (be_i16(&out, ATTRIBUTES_AT) & !COMPRESSION_MASK) | (compression as i16 & COMPRESSION_MASK);
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = compute_crc(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut b = RecordBatchBuilder::new(100).producer(7, 1, 3);
        b.push(1000, Some(b"k1"), Some(b"v1"), &[]);
        b.push(990, None, Some(b""), &[(b"h", Some(b"x")), (b"n", None)]);
        b.push(1005, Some(b"k1"), None, &[]);
        b.build()
    }

    #[test]
    fn header_fields_roundtrip() {
        let batch = sample();
        let h = validate_batch(&batch, true).expect("valid");
        assert_eq!(h.base_offset(), 100);
        assert_eq!(h.last_offset(), 102);
        assert_eq!(h.record_count(), 3);
        assert_eq!(h.base_timestamp(), 1000);
        assert_eq!(h.max_timestamp(), 1005);
        assert_eq!(h.producer_id(), 7);
        assert_eq!(h.producer_epoch(), 1);
        assert_eq!(h.base_sequence(), 3);
        assert_eq!(h.magic(), 2);
        assert_eq!(h.total_size(), batch.len());
    }

    #[test]
    fn records_roundtrip() {
        let batch = sample();
        let recs: Vec<_> = records(&batch)
            .expect("iter")
            .collect::<Result<_, _>>()
            .expect("recs");
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].offset, 100);
        assert_eq!(recs[0].key, Some(&b"k1"[..]));
        assert_eq!(recs[0].value, Some(&b"v1"[..]));
        assert_eq!(recs[1].timestamp, 990);
        assert_eq!(recs[1].key, None);
        assert_eq!(recs[1].value, Some(&b""[..]));
        assert_eq!(
            recs[1].headers,
            vec![
                RecordHeader {
                    key: b"h",
                    value: Some(b"x")
                },
                RecordHeader {
                    key: b"n",
                    value: None
                }
            ]
        );
        assert_eq!(recs[2].value, None);
        assert_eq!(recs[2].offset, 102);
    }

    #[test]
    fn setters_do_not_break_crc() {
        let mut batch = sample();
        let mut h = BatchHeaderMut::new(&mut batch).expect("len");
        h.set_base_offset(5000);
        h.set_partition_leader_epoch(9);
        let h = validate_batch(&batch, true).expect("still valid");
        assert_eq!(h.base_offset(), 5000);
        assert_eq!(h.partition_leader_epoch(), 9);
    }

    #[test]
    fn log_append_time_restamps_crc() {
        let mut batch = sample();
        BatchHeaderMut::new(&mut batch)
            .expect("len")
            .stamp_log_append_time(42);
        let h = validate_batch(&batch, true).expect("valid");
        assert_eq!(h.max_timestamp(), 42);
    }

    #[test]
    fn every_corruption_is_detected() {
        let batch = sample();
        for i in 0..batch.len() {
            if (0..8).contains(&i) || (12..16).contains(&i) {
                continue; // baseOffset and leader epoch are outside the CRC by design
            }
            let mut bad = batch.clone();
            bad[i] ^= 0x40;
            assert!(
                validate_batch(&bad, false).is_err(),
                "flip at {i} not detected"
            );
        }
        for cut in 0..batch.len() {
            assert!(validate_batch(&batch[..cut], false).is_err());
        }
    }

    #[test]
    fn strict_count_check() {
        let batch = sample();
        let kept = rebuild_with_records(&batch, &[]);
        assert!(validate_batch(&kept, false).is_ok());
        assert_eq!(
            validate_batch(&kept, true).err(),
            Some(BatchDefect::RecordCountMismatch {
                record_count: 0,
                last_offset_delta: 2
            })
        );
    }

    #[test]
    fn varint_matches_kafka_vectors() {
        // Values from Kafka's ByteUtilsTest.
        let cases: &[(i32, &[u8])] = &[
            (0, &[0]),
            (-1, &[1]),
            (1, &[2]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 1]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for (v, enc) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, *v);
            assert_eq!(&out[..], *enc, "{v}");
            assert_eq!(varint_size(*v), enc.len());
            let mut c = Cursor { buf: &out, pos: 0 };
            assert_eq!(c.varint(), Some(*v));
        }
        for v in [0i64, -1, 1, i64::MAX, i64::MIN, 1 << 40] {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            assert_eq!(varlong_size(v), out.len());
            let mut c = Cursor { buf: &out, pos: 0 };
            assert_eq!(c.varlong(), Some(v));
        }
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        let batch = sample();
        for i in BATCH_HEADER_BYTES..batch.len() {
            for x in [0xffu8, 0x80, 0x01] {
                let mut bad = batch.clone();
                bad[i] ^= x;
                if let Ok(it) = records(&bad) {
                    for r in it {
                        let _ = r;
                    }
                }
            }
        }
    }

    /// KIP-98 markers: the byte layout Java's `EndTransactionMarker` and librdkafka parse.
    #[test]
    fn control_batches_round_trip_in_kafkas_format() {
        for (commit, kind) in [(true, ControlType::Commit), (false, ControlType::Abort)] {
            let batch = control_batch(42, 3, commit, 7, 1_000);
            let h = validate_batch(&batch, true).expect("a valid batch");
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                h.attributes(),
                0x30,
                "transactional | control, uncompressed"
            );
            assert_eq!((h.producer_id(), h.producer_epoch()), (42, 3));
            assert_eq!(h.base_sequence(), NO_SEQUENCE);
            assert_eq!((h.base_offset(), h.record_count()), (0, 1));
            assert_eq!(control_type(&batch), Some(kind));
            assert_eq!(
                control_record(&batch),
                Some(ControlRecord {
                    kind,
                    coordinator_epoch: 7
                })
            );
            let recs: Vec<_> = records(&batch)
                .expect("records")
                .collect::<Result<_, _>>()
                .expect("decode");
            let key: &[u8] = if commit { &[0, 0, 0, 1] } else { &[0, 0, 0, 0] };
            assert_eq!(recs[0].key, Some(key));
            assert_eq!(recs[0].value, Some(&[0u8, 0, 0, 0, 0, 7][..]));
        }
        // Data batches and unknown marker types are not markers.
        assert_eq!(control_type(&sample()), None);
        let mut b = RecordBatchBuilder::new(0).producer(1, 0, NO_SEQUENCE);
        b.attributes |= TRANSACTIONAL_BIT | CONTROL_BIT;
        b.push(0, Some(&[0, 0, 0, 5]), Some(&[0, 0, 0, 0, 0, 0]), &[]);
        assert_eq!(control_type(&b.build()), None);
    }

    #[test]
    fn batches_iterator_stops_at_torn_tail() {
        let mut buf = sample();
        buf.extend_from_slice(&sample());
        let whole = buf.len();
        buf.extend_from_slice(&sample()[..30]);
        let items: Vec<_> = Batches::new(&buf, true).collect();
        assert_eq!(items.len(), 3);
        assert!(items[2].is_err());
        assert_eq!(items[2].as_ref().err().map(|e| e.0), Some(whole));
    }
}
