//! Topic configs over the Kafka protocol: DescribeConfigs, AlterConfigs and
//! IncrementalAlterConfigs. Every value is checked against the one config table
//! (`dmq_types::topic_config`) by the controller, which commits the change; brokers apply it
//! when their metadata shows it, without a restart.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

use super::handlers::{s, Ctx};
use dmq_types::topic_config::{topic_config, ConfigType, TOPIC_CONFIGS};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// IncrementalAlterConfigs operations (KIP-339).
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// How long an alter waits for this broker's metadata to show the change, so that a
/// DescribeConfigs right after it (on this broker) sees it.
const APPLIED_WAIT: Duration = Duration::from_secs(5);

pub fn describe_configs(ctx: &mut Ctx<'_>, r: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let shared = ctx.shared;
    let image = shared.image();
    let version = ctx.version;
    let mut results = Vec::new();
    for res in r.resources {
        let name = res.resource_name.to_string();
        let wanted = |k: &str| {
            // Null (or empty, as Kafka's ConfigHelper reads it) means every key.
            res.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.is_empty() || keys.iter().any(|x| x.as_str() == k))
        };
        let entry = |k: &str, v: String, source: i8, kind: Option<ConfigType>, doc: &str| {
            let mut e = DescribeConfigsResourceResult::default()
                .with_name(s(k))
                .with_value(Some(s(v)))
                .with_config_source(source)
                .with_read_only(source == SOURCE_STATIC_BROKER);
            if version >= 3 {
                e = e.with_config_type(kind.map_or(0, ConfigType::kafka_code));
                if r.include_documentation {
                    e = e.with_documentation(Some(s(doc)));
                }
            }
            e
        };
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        match res.resource_type {
            RESOURCE_TOPIC => match image.topics.get(&name) {
                Some(t) => {
                    let configs = TOPIC_CONFIGS
                        .iter()
                        .filter(|d| wanted(d.name))
                        .map(|d| match t.config.get(d.name) {
                            Some(v) => {
                                entry(d.name, v.clone(), SOURCE_DYNAMIC_TOPIC, Some(d.kind), d.doc)
                            }
                            None => entry(
                                d.name,
                                d.default.to_string(),
                                SOURCE_DEFAULT,
                                Some(d.kind),
                                d.doc,
                            ),
                        })
                        .collect();
                    result = result.with_configs(configs);
                }
                None => {
                    ctx.had_error = true;
                    result = result
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(Some(s(format!("topic {name:?} does not exist"))));
                }
            },
            RESOURCE_BROKER => {
                let d = &shared.config.topic_defaults;
                let all = [
                    (
                        "broker.id",
                        shared.config.broker_id.to_string(),
                        ConfigType::Int,
                    ),
                    (
                        "num.partitions",
                        d.num_partitions.to_string(),
                        ConfigType::Int,
                    ),
                    (
                        "default.replication.factor",
                        d.default_replication_factor.to_string(),
                        ConfigType::Int,
                    ),
                    (
                        "message.max.bytes",
                        dmq_types::MESSAGE_BYTES_MAX_DEFAULT.to_string(),
                        ConfigType::Int,
                    ),
                    (
                        "auto.create.topics.enable",
                        "true".to_string(),
                        ConfigType::Boolean,
                    ),
                ];
                result = result.with_configs(
                    all.iter()
                        .filter(|(k, _, _)| wanted(k))
                        .map(|(k, v, kind)| {
                            entry(k, v.clone(), SOURCE_STATIC_BROKER, Some(*kind), "")
                        })
                        .collect(),
                );
            }
            other => {
                ctx.had_error = true;
                result = result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(s(format!("resource type {other} is not supported"))));
            }
        }
        results.push(result);
    }
    DescribeConfigsResponse::default().with_results(results)
}

/// One resource's outcome: `(error code, message)`; `(0, None)` on success.
type Outcome = (i16, Option<String>);

fn fail(e: ResponseError, message: impl Into<String>) -> Outcome {
    (e.code(), Some(message.into()))
}

/// Kafka's AlterConfigs (the legacy API): the topic's configs become exactly the given ones.
pub async fn alter_configs(ctx: &mut Ctx<'_>, r: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for res in r.resources {
        let outcome = match res.resource_type {
            RESOURCE_TOPIC => {
                let mut set = BTreeMap::new();
                let mut bad = None;
                for c in &res.configs {
                    match &c.value {
                        Some(v) => {
                            set.insert(c.name.to_string(), v.to_string());
                        }
                        None => {
                            bad = Some(fail(
                                ResponseError::InvalidConfig,
                                format!("null value for {}", c.name.as_str()),
                            ))
                        }
                    }
                }
                match bad {
                    Some(b) => b,
                    None => {
                        let body = json!({"set": set, "replace": true,
                                          "validateOnly": r.validate_only});
                        alter_topic(ctx, res.resource_name.as_str(), body).await
                    }
                }
            }
            other => not_a_topic(other),
        };
        if outcome.0 != 0 {
            ctx.had_error = true;
        }
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone())
                .with_error_code(outcome.0)
                .with_error_message(outcome.1.map(StrBytes::from_string)),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// Kafka's IncrementalAlterConfigs (KIP-339): SET, DELETE, and APPEND/SUBTRACT on list configs.
pub async fn incremental_alter_configs(
    ctx: &mut Ctx<'_>,
    r: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for res in r.resources {
        let outcome = match res.resource_type {
            RESOURCE_TOPIC => {
                let name = res.resource_name.to_string();
                // A topic created a moment ago may not be in this broker's metadata yet.
                ctx.shared
                    .wait_for_metadata(APPLIED_WAIT, |img| img.topics.contains_key(&name))
                    .await;
                let current = ctx
                    .shared
                    .image()
                    .topics
                    .get(&name)
                    .map(|t| t.config.clone());
                match current {
                    None => fail(
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic {name:?} does not exist"),
                    ),
                    Some(current) => match incremental_ops(&current, &res.configs) {
                        Ok((set, delete)) => {
                            let body = json!({"set": set, "delete": delete,
                                              "validateOnly": r.validate_only});
                            alter_topic(ctx, &name, body).await
                        }
                        Err(e) => e,
                    },
                }
            }
            other => not_a_topic(other),
        };
        if outcome.0 != 0 {
            ctx.had_error = true;
        }
        responses.push(
            IncrementalResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone())
                .with_error_code(outcome.0)
                .with_error_message(outcome.1.map(StrBytes::from_string)),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// The `(set, delete)` an IncrementalAlterConfigs resource asks for, against the topic's
/// `current` configs (APPEND and SUBTRACT edit list values, as Kafka does).
fn incremental_ops(
    current: &BTreeMap<String, String>,
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<(BTreeMap<String, String>, Vec<String>), Outcome> {
    let mut set = BTreeMap::new();
    let mut delete = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for c in configs {
        let key = c.name.to_string();
        if !seen.insert(key.clone()) {
            return Err(fail(
                ResponseError::InvalidRequest,
                format!("config {key} appears twice in one resource"),
            ));
        }
        let Some(def) = topic_config(&key) else {
            return Err(fail(
                ResponseError::InvalidConfig,
                format!("unknown topic config {key:?}"),
            ));
        };
        let value = c.value.as_ref().map(|v| v.to_string());
        match c.config_operation {
            OP_SET => match value {
                Some(v) => {
                    set.insert(key, v);
                }
                None => {
                    return Err(fail(
                        ResponseError::InvalidConfig,
                        format!("SET of {key} without a value"),
                    ))
                }
            },
            OP_DELETE => delete.push(key),
            OP_APPEND | OP_SUBTRACT => {
                if def.kind != ConfigType::List {
                    return Err(fail(
                        ResponseError::InvalidConfig,
                        format!("{key} is not a list config; APPEND and SUBTRACT need one"),
                    ));
                }
                let now = current
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| def.default.to_string());
                let mut items: Vec<String> = now
                    .split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect();
                for v in value.as_deref().unwrap_or("").split(',').map(str::trim) {
                    if v.is_empty() {
                        continue;
                    }
                    if c.config_operation == OP_APPEND {
                        if !items.iter().any(|x| x == v) {
                            items.push(v.to_string());
                        }
                    } else {
                        items.retain(|x| x != v);
                    }
                }
                set.insert(key, items.join(","));
            }
            other => {
                return Err(fail(
                    ResponseError::InvalidRequest,
                    format!("unknown config operation {other} for {key}"),
                ))
            }
        }
    }
    Ok((set, delete))
}

/// The answer for a resource that is not a topic: brokers' dynamic configs are not supported
/// (their settings come from services.json); other types are unknown here.
fn not_a_topic(resource_type: i8) -> Outcome {
    if resource_type == RESOURCE_BROKER {
        return fail(
            ResponseError::InvalidRequest,
            "dynamic broker configs are not supported yet; broker settings come from services.json",
        );
    }
    fail(
        ResponseError::InvalidRequest,
        format!("resource type {resource_type} is not supported"),
    )
}

/// Sends a topic config change to the controller and, unless validating, waits until this
/// broker's metadata shows the result.
async fn alter_topic(ctx: &Ctx<'_>, name: &str, body: Value) -> Outcome {
    let shared = ctx.shared;
    let validate_only = body["validateOnly"].as_bool().unwrap_or(false);
    let reply = match shared.meta.alter_topic_config(name, body).await {
        Ok(r) => r,
        Err(e) => return fail(ResponseError::RequestTimedOut, e.to_string()),
    };
    if !reply.status.is_success() {
        let msg = reply.message();
        let code = super::handlers::metadata_error(reply.status.as_u16(), reply.error_code());
        return fail(code, msg);
    }
    if !validate_only {
        let want = reply.body["config"].clone();
        let name = name.to_string();
        shared
            .wait_for_metadata(APPLIED_WAIT, |img| {
                img.topics
                    .get(&name)
                    .is_some_and(|t| serde_json::to_value(&t.config).ok().as_ref() == Some(&want))
            })
            .await;
    }
    (0, None)
}
