//! What each HTTP API call needs from the authorizer (SPEC §11: ACLs are enforced on the HTTP
//! APIs too): one table from method and path to an operation on a resource, decided before the
//! handler runs, for the principal the bearer token names.
//!
//! The rules mirror the Kafka API doing the same thing: reading a topic's records needs READ on
//! it, deleting it DELETE, creating topics CREATE on the cluster, describing a group DESCRIBE on
//! the group, changing ACLs or SCRAM users ALTER on the cluster. Calls only the cluster's own
//! processes make — Raft RPCs, broker registration and heartbeats, ISR changes, offset and
//! transaction commands the coordinators send, metadata pushes, the security image with SCRAM
//! keys — need CLUSTER_ACTION, as Kafka's inter-broker APIs do. Where the resource is named only
//! in the body, the rule names the cluster.
//!
//! ```text
//!   GET  /api/v1/metadata/topics/orders          → DESCRIBE  TOPIC orders
//!   POST /api/v1/storage/topics/orders/partitions/0 → WRITE  TOPIC orders
//!   POST /api/v1/raft/append-entries             → CLUSTER_ACTION CLUSTER
//! ```

use crate::acl::CLUSTER_NAME;
use crate::{Operation, ResourceType};

/// What a call needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAccess {
    /// Open to anyone, token or not (`/health`, the console's static files).
    Open,
    /// `operation` on the named resource.
    Require {
        operation: Operation,
        resource_type: ResourceType,
        name: String,
    },
}

fn on_cluster(operation: Operation) -> HttpAccess {
    HttpAccess::Require {
        operation,
        resource_type: ResourceType::Cluster,
        name: CLUSTER_NAME.to_string(),
    }
}

fn on(operation: Operation, resource_type: ResourceType, name: &str) -> HttpAccess {
    HttpAccess::Require {
        operation,
        resource_type,
        name: name.to_string(),
    }
}

/// Percent-decodes a path segment (topic and group names may be escaped by clients).
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The access `method` on `path` (with its `query`, without `?`) needs, on a metadata node or
/// a broker. A path no rule names needs DESCRIBE on the cluster (it answers 404 anyway).
pub fn http_access(method: &str, path: &str, query: &str) -> HttpAccess {
    use Operation::*;
    use ResourceType::{Group, Topic, TransactionalId};
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let get = method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD");
    let post = method.eq_ignore_ascii_case("POST");
    let delete = method.eq_ignore_ascii_case("DELETE");
    let patch = method.eq_ignore_ascii_case("PATCH");
    match segs.as_slice() {
        ["health"] | ["health", "ready"] => HttpAccess::Open,
        ["ui"] | [] if get => HttpAccess::Open,
        ["ui", file] if get && *file != "api" => HttpAccess::Open,
        ["metrics"] => on_cluster(Describe),

        // The metadata API (SPEC §3) and what the processes call on it.
        ["api", "v1", "metadata", "cluster"] => {
            let security = query
                .split('&')
                .any(|kv| kv.eq_ignore_ascii_case("security=true"));
            // The security image carries SCRAM keys: for brokers only.
            on_cluster(if security { ClusterAction } else { Describe })
        }
        ["api", "v1", "metadata", "controller"] => on_cluster(Describe),
        ["api", "v1", "metadata", "topics"] if post => on_cluster(Create),
        ["api", "v1", "metadata", "topics"] => on_cluster(Describe),
        ["api", "v1", "metadata", "topics", name] if delete => on(Delete, Topic, &decode(name)),
        ["api", "v1", "metadata", "topics", name] => on(Describe, Topic, &decode(name)),
        ["api", "v1", "metadata", "topics", name, "partitions"] => on(Alter, Topic, &decode(name)),
        ["api", "v1", "metadata", "topics", name, "config"] if patch => {
            on(AlterConfigs, Topic, &decode(name))
        }
        ["api", "v1", "metadata", "brokers"] if post => on_cluster(ClusterAction),
        ["api", "v1", "metadata", "brokers", _, "shutdown"] => on_cluster(ClusterAction),
        ["api", "v1", "metadata", "brokers", _] if delete => on_cluster(Alter),
        ["api", "v1", "metadata", "brokers"] | ["api", "v1", "metadata", "brokers", _] => {
            on_cluster(Describe)
        }
        ["api", "v1", "metadata", "broker-configs", ..] if get => on_cluster(DescribeConfigs),
        ["api", "v1", "metadata", "broker-configs", ..] => on_cluster(AlterConfigs),
        ["api", "v1", "metadata", "heartbeat", _]
        | ["api", "v1", "metadata", "producer-ids"]
        | ["api", "v1", "metadata", "partitions", "alter"]
        | ["api", "v1", "metadata", "offsets"] => on_cluster(ClusterAction),
        ["api", "v1", "metadata", "partitions", "elect"] => on_cluster(Alter),
        ["api", "v1", "metadata", "groups"] => on_cluster(Describe),
        ["api", "v1", "metadata", "groups", g] if delete => on(Delete, Group, &decode(g)),
        ["api", "v1", "metadata", "groups", g]
        | ["api", "v1", "metadata", "groups", g, "offsets"] => on(Describe, Group, &decode(g)),
        ["api", "v1", "metadata", "groups", g, "offsets", "delete"] => {
            on(Delete, Group, &decode(g))
        }
        ["api", "v1", "metadata", "transactions"] if post => on_cluster(ClusterAction),
        ["api", "v1", "metadata", "transactions"] => on_cluster(Describe),
        ["api", "v1", "metadata", "transactions", id] => on(Describe, TransactionalId, &decode(id)),
        ["api", "v1", "metadata", "share-states"] => on_cluster(ClusterAction),
        ["api", "v1", "metadata", "share-groups"] => on_cluster(Describe),
        ["api", "v1", "metadata", "share-groups", g] if delete => on(Delete, Group, &decode(g)),
        ["api", "v1", "metadata", "share-groups", g] => on(Describe, Group, &decode(g)),
        ["api", "v1", "metadata", "share-groups", g, "offsets", "delete"] => {
            on(Delete, Group, &decode(g))
        }
        ["api", "v1", "metadata", "group-configs", g] if get => {
            on(DescribeConfigs, Group, &decode(g))
        }
        ["api", "v1", "metadata", "group-configs", g] => on(AlterConfigs, Group, &decode(g)),
        ["api", "v1", "metadata", "acls"] if get => on_cluster(Describe),
        ["api", "v1", "metadata", "acls"] | ["api", "v1", "metadata", "acls", "delete"] => {
            on_cluster(Alter)
        }
        ["api", "v1", "metadata", "scram-users"] => on_cluster(Describe),
        ["api", "v1", "metadata", "scram-credentials"] => on_cluster(Alter),

        // Raft between the metadata nodes.
        ["api", "v1", "raft", "status"] => on_cluster(Describe),
        ["api", "v1", "raft", ..] => on_cluster(ClusterAction),

        // The console's own API: the same rules as the calls it makes.
        ["ui", "api", "overview"] | ["ui", "api", "metrics"] | ["ui", "api", "groups"] => {
            on_cluster(Describe)
        }
        ["ui", "api", "topics"] => on_cluster(Create),
        ["ui", "api", "topics", name] if delete => on(Delete, Topic, &decode(name)),
        ["ui", "api", "topics", name] => on(Describe, Topic, &decode(name)),
        ["ui", "api", "topics", name, "partitions"] => on(Alter, Topic, &decode(name)),
        ["ui", "api", "topics", name, "config"] => on(AlterConfigs, Topic, &decode(name)),
        ["ui", "api", "topics", name, "partitions", _, "records"] => on(Read, Topic, &decode(name)),
        ["ui", "api", "groups", g] => on(Describe, Group, &decode(g)),
        ["ui", "api", "groups", g, "reset-offsets"] => on(Read, Group, &decode(g)),

        // The storage API (SPEC §4).
        ["api", "v1", "storage", "topics", t, "partitions", _] if post => {
            on(Write, Topic, &decode(t))
        }
        ["api", "v1", "storage", "topics", t, "partitions", _] => on(Read, Topic, &decode(t)),
        ["api", "v1", "storage", "metadata", "update"] => on_cluster(ClusterAction),
        ["api", "v1", "storage", "replication", "status"] | ["api", "v1", "storage", "groups"] => {
            on_cluster(Describe)
        }
        ["api", "v1", "storage", "groups", g] | ["api", "v1", "storage", "share-groups", g] => {
            on(Describe, Group, &decode(g))
        }
        _ => on_cluster(Describe),
    }
}

/// Decides one HTTP call of `principal` with `authorize` (the caller's ACL index): `Ok`, or the
/// `(error name, message)` of a 403. Super users are allowed without a lookup, so Raft
/// heartbeats from the cluster's own principal cost nothing.
pub fn decide_http(
    super_users: &[String],
    principal: &str,
    method: &str,
    path: &str,
    query: &str,
    authorize: impl FnOnce(Operation, ResourceType, &str) -> crate::Decision,
) -> Result<(), (String, String)> {
    let HttpAccess::Require {
        operation,
        resource_type,
        name,
    } = http_access(method, path, query)
    else {
        return Ok(());
    };
    if super_users.iter().any(|u| u == principal) {
        return Ok(());
    }
    match authorize(operation, resource_type, &name) {
        crate::Decision::Allowed => Ok(()),
        _ => Err((
            resource_type.authorization_error_name().to_string(),
            format!(
                "{principal} may not {} {} {name:?} ({method} {path})",
                operation.name(),
                resource_type.name()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operation::*;

    #[test]
    fn each_call_needs_what_the_matching_kafka_api_needs() {
        let cluster = |op| on_cluster(op);
        let topic = |op, n: &str| on(op, ResourceType::Topic, n);
        let group = |op, n: &str| on(op, ResourceType::Group, n);
        let table: Vec<(&str, &str, &str, HttpAccess)> = vec![
            ("GET", "/health", "", HttpAccess::Open),
            ("GET", "/health/ready", "", HttpAccess::Open),
            ("GET", "/ui/", "", HttpAccess::Open),
            ("GET", "/ui/app.js", "", HttpAccess::Open),
            ("GET", "/metrics", "", cluster(Describe)),
            ("GET", "/api/v1/metadata/cluster", "", cluster(Describe)),
            (
                "GET",
                "/api/v1/metadata/cluster",
                "consistent=true&security=true",
                cluster(ClusterAction),
            ),
            ("GET", "/api/v1/metadata/topics", "", cluster(Describe)),
            ("POST", "/api/v1/metadata/topics", "", cluster(Create)),
            (
                "GET",
                "/api/v1/metadata/topics/orders",
                "",
                topic(Describe, "orders"),
            ),
            (
                "DELETE",
                "/api/v1/metadata/topics/orders",
                "",
                topic(Delete, "orders"),
            ),
            (
                "DELETE",
                "/api/v1/metadata/topics/a%2Fb",
                "",
                topic(Delete, "a/b"),
            ),
            (
                "POST",
                "/api/v1/metadata/topics/orders/partitions",
                "",
                topic(Alter, "orders"),
            ),
            (
                "PATCH",
                "/api/v1/metadata/topics/orders/config",
                "",
                topic(AlterConfigs, "orders"),
            ),
            (
                "POST",
                "/api/v1/metadata/brokers",
                "",
                cluster(ClusterAction),
            ),
            ("GET", "/api/v1/metadata/brokers/101", "", cluster(Describe)),
            ("DELETE", "/api/v1/metadata/brokers/101", "", cluster(Alter)),
            (
                "POST",
                "/api/v1/metadata/brokers/101/shutdown",
                "",
                cluster(ClusterAction),
            ),
            (
                "POST",
                "/api/v1/metadata/heartbeat/101",
                "",
                cluster(ClusterAction),
            ),
            (
                "POST",
                "/api/v1/metadata/producer-ids",
                "",
                cluster(ClusterAction),
            ),
            (
                "POST",
                "/api/v1/metadata/partitions/alter",
                "",
                cluster(ClusterAction),
            ),
            (
                "POST",
                "/api/v1/metadata/partitions/elect",
                "",
                cluster(Alter),
            ),
            (
                "POST",
                "/api/v1/metadata/offsets",
                "",
                cluster(ClusterAction),
            ),
            (
                "GET",
                "/api/v1/metadata/broker-configs",
                "",
                cluster(DescribeConfigs),
            ),
            (
                "PATCH",
                "/api/v1/metadata/broker-configs/101",
                "",
                cluster(AlterConfigs),
            ),
            ("GET", "/api/v1/metadata/groups", "", cluster(Describe)),
            (
                "GET",
                "/api/v1/metadata/groups/g1",
                "",
                group(Describe, "g1"),
            ),
            (
                "DELETE",
                "/api/v1/metadata/groups/g1",
                "",
                group(Delete, "g1"),
            ),
            (
                "GET",
                "/api/v1/metadata/groups/g1/offsets",
                "",
                group(Describe, "g1"),
            ),
            (
                "POST",
                "/api/v1/metadata/groups/g1/offsets/delete",
                "",
                group(Delete, "g1"),
            ),
            (
                "POST",
                "/api/v1/metadata/transactions",
                "",
                cluster(ClusterAction),
            ),
            (
                "GET",
                "/api/v1/metadata/transactions/tx",
                "",
                on(Describe, ResourceType::TransactionalId, "tx"),
            ),
            ("GET", "/api/v1/metadata/acls", "", cluster(Describe)),
            ("POST", "/api/v1/metadata/acls", "", cluster(Alter)),
            ("POST", "/api/v1/metadata/acls/delete", "", cluster(Alter)),
            ("GET", "/api/v1/metadata/scram-users", "", cluster(Describe)),
            (
                "POST",
                "/api/v1/metadata/scram-credentials",
                "",
                cluster(Alter),
            ),
            ("GET", "/api/v1/raft/status", "", cluster(Describe)),
            (
                "POST",
                "/api/v1/raft/request-vote",
                "",
                cluster(ClusterAction),
            ),
            (
                "POST",
                "/api/v1/raft/append-entries",
                "",
                cluster(ClusterAction),
            ),
            (
                "POST",
                "/api/v1/raft/install-snapshot",
                "",
                cluster(ClusterAction),
            ),
            ("GET", "/api/v1/raft/read-index", "", cluster(ClusterAction)),
            ("GET", "/ui/api/overview", "", cluster(Describe)),
            ("POST", "/ui/api/topics", "", cluster(Create)),
            (
                "DELETE",
                "/ui/api/topics/orders",
                "",
                topic(Delete, "orders"),
            ),
            (
                "GET",
                "/ui/api/topics/orders/partitions/0/records",
                "",
                topic(Read, "orders"),
            ),
            (
                "POST",
                "/ui/api/groups/g1/reset-offsets",
                "",
                group(Read, "g1"),
            ),
            (
                "POST",
                "/api/v1/storage/topics/orders/partitions/0",
                "",
                topic(Write, "orders"),
            ),
            (
                "GET",
                "/api/v1/storage/topics/orders/partitions/0",
                "",
                topic(Read, "orders"),
            ),
            (
                "POST",
                "/api/v1/storage/metadata/update",
                "",
                cluster(ClusterAction),
            ),
            (
                "GET",
                "/api/v1/storage/groups/g1",
                "",
                group(Describe, "g1"),
            ),
            (
                "GET",
                "/api/v1/storage/share-groups/q1",
                "",
                group(Describe, "q1"),
            ),
            (
                "POST",
                "/api/v1/metadata/share-states",
                "",
                cluster(ClusterAction),
            ),
            (
                "DELETE",
                "/api/v1/metadata/share-groups/q1",
                "",
                group(Delete, "q1"),
            ),
            (
                "GET",
                "/api/v1/metadata/share-groups/q1",
                "",
                group(Describe, "q1"),
            ),
            (
                "PATCH",
                "/api/v1/metadata/group-configs/q1",
                "",
                group(AlterConfigs, "q1"),
            ),
            (
                "GET",
                "/api/v1/metadata/group-configs/q1",
                "",
                group(DescribeConfigs, "q1"),
            ),
            ("GET", "/api/v1/nothing/here", "", cluster(Describe)),
        ];
        for (method, path, query, want) in table {
            assert_eq!(
                http_access(method, path, query),
                want,
                "{method} {path}?{query}"
            );
        }
    }

    #[test]
    fn percent_decoding_leaves_bad_escapes_alone() {
        assert_eq!(decode("a%2Fb%20c"), "a/b c");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%4"), "%4");
    }
}
