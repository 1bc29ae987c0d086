//! TimeIndex (`.timeindex`): sparse map from timestamp to offset, for ListOffsets by time
//! and time-based retention.
//!
//! File layout: a flat array of fixed-width big-endian entries, no header (length must be a
//! multiple of 12):
//!
//! ```text
//! offset  size  field
//!      0     8  timestamp       i64   max timestamp seen in the segment up to this batch
//!      8     4  relativeOffset  u32   base offset of that batch − segment baseOffset
//! ```
//!
//! An entry `(T, O)` promises: every record in batches at or before relative offset `O` has a
//! timestamp ≤ `T`. Entries are added (at index-interval granularity) only when the segment's
//! max timestamp grows, so both columns are strictly increasing; when a segment is sealed or
//! the log is closed a final entry records the segment's exact max timestamp, which lets a
//! clean open learn it without scanning. Validation on open: width, strictly increasing
//! columns, offsets below the next segment's base; otherwise the file is rebuilt.

use crate::index::IndexEntry;

/// `.timeindex` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const WIDTH: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(t),
            relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

/// Validate time-index entries; `max_relative` bounds the offsets (exclusive).
pub(crate) fn validate_time_entries(
    entries: &[TimeEntry],
    max_relative: u64,
) -> Result<(), String> {
    let mut prev: Option<TimeEntry> = None;
    for (i, e) in entries.iter().enumerate() {
        if e.relative_offset as u64 >= max_relative {
            return Err(format!(
                "entry {i}: offset {} past segment end",
                e.relative_offset
            ));
        }
        if let Some(p) = prev {
            if e.timestamp <= p.timestamp || e.relative_offset < p.relative_offset {
                return Err(format!("entry {i}: not increasing"));
            }
        }
        prev = Some(*e);
    }
    Ok(())
}

/// Largest entry with timestamp strictly below `ts`: scanning may start at its offset.
pub(crate) fn lookup_before(entries: &[TimeEntry], ts: i64) -> Option<TimeEntry> {
    let n = entries.partition_point(|e| e.timestamp < ts);
    n.checked_sub(1).map(|i| entries[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_validate() {
        let t = |ts, r| TimeEntry {
            timestamp: ts,
            relative_offset: r,
        };
        let es = [t(10, 0), t(20, 5), t(30, 9)];
        assert!(validate_time_entries(&es, 10).is_ok());
        assert!(validate_time_entries(&es, 9).is_err());
        assert!(validate_time_entries(&[t(10, 0), t(10, 1)], 10).is_err());
        assert_eq!(lookup_before(&es, 10), None);
        assert_eq!(lookup_before(&es, 25), Some(t(20, 5)));
        assert_eq!(lookup_before(&es, 99), Some(t(30, 9)));
        let mut buf = Vec::new();
        t(-5, 7).encode(&mut buf);
        assert_eq!(TimeEntry::decode(&buf), t(-5, 7));
    }
}
