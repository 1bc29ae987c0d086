//! Compacted topics take only keyed records (Kafka's INVALID_RECORD otherwise): compaction
//! keeps the last record per key, and a record without one could never be cleaned.

use dmq_log::batch::{self, Batches};
use dmq_log::BatchHeader;
use kafka_protocol::error::ResponseError;

use crate::error::{BrokerError, Result};

/// Fails with INVALID_RECORD when a data record in `records` (whole batches, compressed or
/// not) has no key; control batches are skipped.
pub fn require_keys(records: &[u8]) -> Result<()> {
    for item in Batches::new(records, false) {
        let (_, bytes) =
            item.map_err(|(at, reason)| invalid(format!("bad batch at byte {at}: {reason}")))?;
        let h =
            BatchHeader::new(bytes).map_err(|reason| invalid(format!("bad batch: {reason}")))?;
        if h.is_control() {
            continue;
        }
        let section = dmq_log::codec::plain_section(bytes)
            .map_err(|reason| invalid(format!("bad batch: {reason}")))?;
        for r in batch::records_in(h, &section) {
            let r = r.map_err(|reason| invalid(format!("bad record: {reason}")))?;
            if r.key.is_none() {
                return Err(invalid(format!(
                    "offset delta {} has no key; a compacted topic (cleanup.policy=compact) \
                     takes only keyed records",
                    r.offset - h.base_offset()
                )));
            }
        }
    }
    Ok(())
}

fn invalid(message: String) -> BrokerError {
    BrokerError::kafka(ResponseError::InvalidRecord, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyless_records_are_found_in_plain_batches() {
        let mut keyed = dmq_log::RecordBatchBuilder::new(0);
        keyed.push(0, Some(b"k"), Some(b"v"), &[]);
        keyed.push(0, Some(b"k2"), None, &[]);
        assert!(require_keys(&keyed.build()).is_ok());
        let mut mixed = dmq_log::RecordBatchBuilder::new(0);
        mixed.push(0, Some(b"k"), Some(b"v"), &[]);
        mixed.push(0, None, Some(b"v"), &[]);
        let err = require_keys(&mixed.build()).expect_err("keyless");
        assert!(matches!(err, BrokerError::Kafka { .. }), "{err:?}");
        assert!(err.to_string().contains("no key"), "{err}");
    }
}
