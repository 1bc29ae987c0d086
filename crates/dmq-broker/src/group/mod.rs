//! Consumer groups on the broker: which broker coordinates a group, the membership protocol
//! (`coordinator`), and offset commits batched into the metadata quorum (`offsets`).

pub mod coordinator;
pub mod offsets;

use dmq_types::model::BrokerStatus;
use dmq_types::BrokerId;

use crate::meta_client::ClusterImage;

/// Java's `String.hashCode` (Kafka hashes the group id with it).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The broker that coordinates `group`: picked deterministically from the group id among the
/// ONLINE brokers (sorted by id), so every broker with the same metadata agrees, and a group
/// moves only when the set of live brokers changes.
pub fn coordinator_for(image: &ClusterImage, group: &str) -> Option<BrokerId> {
    let online: Vec<BrokerId> = image
        .brokers
        .values()
        .filter(|b| b.status == BrokerStatus::Online)
        .map(|b| b.broker_id)
        .collect();
    if online.is_empty() {
        return None;
    }
    let h = java_string_hash(group);
    // Kafka's Utils.abs: maps i32::MIN to 0 instead of overflowing.
    let h = if h == i32::MIN { 0 } else { h.abs() };
    Some(online[h as usize % online.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_known_values() {
        // "".hashCode() == 0, "a" == 97, "hello" == 99162322, "polygenelubricants" == MIN_VALUE.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    }
}
