//! Topic-name rules, as Kafka's `Topic.validate`.

use crate::{TypesError, TOPIC_NAME_LENGTH_MAX};

/// Checks a topic name against `[a-zA-Z0-9._-]{1,249}`, excluding `.` and `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TypesError> {
    let invalid = |reason: &str| TypesError::InvalidTopicName {
        name: name.chars().take(TOPIC_NAME_LENGTH_MAX + 1).collect(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("topic name is empty"));
    }
    if name.len() > TOPIC_NAME_LENGTH_MAX {
        return Err(invalid(&format!(
            "topic name is {} characters long; the limit is {TOPIC_NAME_LENGTH_MAX}",
            name.len()
        )));
    }
    if name == "." || name == ".." {
        return Err(invalid("topic name cannot be '.' or '..'"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(&format!(
            "character {bad:?} is not allowed; use only ASCII letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_legal_names() {
        for name in ["a", "orders", "Orders.v2", "my_topic-1", &"x".repeat(249)] {
            assert!(validate_topic_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn rejects_illegal_names() {
        for name in ["", ".", "..", "a b", "a/b", "ü", "topic!", &"x".repeat(250)] {
            assert!(validate_topic_name(name).is_err(), "{name:?}");
        }
    }
}
