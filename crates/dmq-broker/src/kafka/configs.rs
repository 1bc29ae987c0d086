//! Topic and broker configs over the Kafka protocol: DescribeConfigs (with sources and
//! synonyms), AlterConfigs and IncrementalAlterConfigs. Every value is checked against the one
//! config table (`dmq_types::topic_config`, `dmq_types::broker_config`) by the controller,
//! which commits the change; brokers apply it when their metadata shows it, without a restart.
//! A BROKER resource named `""` is the cluster-wide default (Kafka's `--entity-default`), one
//! named by a broker id is that broker.

use std::collections::BTreeMap;
use std::time::Duration;

use dmq_auth::{Operation, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

use super::handlers::{s, Ctx};
use crate::node::BrokerShared;
use dmq_types::broker_config::{
    broker_config, BrokerConfigDef, BrokerConfigs, ConfigSource, UpdateMode, BROKER_CONFIGS,
};
use dmq_types::group_config::{check_group_config, GROUP_CONFIGS};
use dmq_types::topic_config::{topic_config, ConfigType, TOPIC_CONFIGS};
use dmq_types::BrokerId;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Group configs (KIP-932's share-group settings; librdkafka maps its GROUP to 32 here).
const RESOURCE_GROUP: i8 = 32;
/// Kafka's ConfigSource GROUP_CONFIG.
const SOURCE_GROUP_CONFIG: i8 = 8;

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
    let dynamic = &image.broker_configs;
    let mut results = Vec::new();
    for res in r.resources {
        let name = res.resource_name.to_string();
        let wanted = |k: &str| {
            // Null (or empty, as Kafka's ConfigHelper reads it) means every key.
            res.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.is_empty() || keys.iter().any(|x| x.as_str() == k))
        };
        // One config: its value in force is the head of `chain` (most specific source first,
        // Kafka's synonyms).
        let entry = |k: &str,
                     chain: &[(String, String, ConfigSource)],
                     read_only: bool,
                     kind: ConfigType,
                     doc: &str| {
            let (value, source) = chain
                .first()
                .map_or((None, ConfigSource::Default), |c| (Some(c.1.clone()), c.2));
            let mut e = DescribeConfigsResourceResult::default()
                .with_name(s(k))
                .with_value(value.map(s))
                .with_read_only(read_only);
            e = e.with_config_source(source.kafka_code());
            if r.include_synonyms {
                e = e.with_synonyms(
                    chain
                        .iter()
                        .map(|(n, v, src)| {
                            DescribeConfigsSynonym::default()
                                .with_name(s(n.as_str()))
                                .with_value(Some(s(v.as_str())))
                                .with_source(src.kafka_code())
                        })
                        .collect(),
                );
            }
            if version >= 3 {
                e = e.with_config_type(kind.kafka_code());
                if r.include_documentation {
                    e = e.with_documentation(Some(s(doc)));
                }
            }
            e
        };
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        if let Some((code, msg)) =
            config_denied(ctx, res.resource_type, &name, Operation::DescribeConfigs)
        {
            ctx.had_error = true;
            results.push(result.with_error_code(code).with_error_message(msg.map(s)));
            continue;
        }
        let mut refuse = |result: DescribeConfigsResult, e: ResponseError, msg: String| {
            ctx.had_error = true;
            result
                .with_error_code(e.code())
                .with_error_message(Some(s(msg)))
        };
        match res.resource_type {
            RESOURCE_TOPIC => match image.topics.get(&name) {
                Some(t) => {
                    let me = Some(shared.config.broker_id);
                    let configs = TOPIC_CONFIGS
                        .iter()
                        .filter(|d| wanted(d.name))
                        .map(|d| {
                            let chain = dynamic.topic_value_chain(&t.config, me, d.name, d.default);
                            entry(d.name, &chain, false, d.kind, d.doc)
                        })
                        .collect();
                    result = result.with_configs(configs);
                }
                None => {
                    result = refuse(
                        result,
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic {name:?} does not exist"),
                    );
                }
            },
            RESOURCE_BROKER if name.is_empty() => {
                // Kafka's `--entity-default`: the cluster-wide dynamic configs that are set.
                let configs = BROKER_CONFIGS
                    .iter()
                    .filter(|d| wanted(d.def.name))
                    .filter_map(|d| {
                        let v = dynamic.cluster.get(d.def.name)?;
                        let chain = [(
                            d.def.name.to_string(),
                            v.clone(),
                            ConfigSource::DynamicDefaultBroker,
                        )];
                        Some(entry(d.def.name, &chain, false, d.def.kind, d.def.doc))
                    })
                    .collect();
                result = result.with_configs(configs);
            }
            RESOURCE_BROKER => match broker_resource(&name) {
                Ok(id) => {
                    let configs = BROKER_CONFIGS
                        .iter()
                        .filter(|d| wanted(d.def.name))
                        .map(|d| {
                            let chain = broker_value_chain(shared, dynamic, id, d);
                            let read_only = d.mode == UpdateMode::ReadOnly;
                            entry(d.def.name, &chain, read_only, d.def.kind, d.def.doc)
                        })
                        .collect();
                    result = result.with_configs(configs);
                }
                Err((e, msg)) => result = refuse(result, e, msg),
            },
            RESOURCE_GROUP => {
                let set = image.group_configs.get(&name);
                let configs = GROUP_CONFIGS
                    .iter()
                    .filter(|d| wanted(d.name))
                    .map(|d| {
                        let value = set.and_then(|c| c.get(d.name));
                        let mut e = DescribeConfigsResourceResult::default()
                            .with_name(s(d.name))
                            .with_value(Some(s(value.map_or(d.default, |v| v.as_str()))))
                            .with_read_only(false)
                            .with_config_source(if value.is_some() {
                                SOURCE_GROUP_CONFIG
                            } else {
                                ConfigSource::Default.kafka_code()
                            });
                        if version >= 3 {
                            e = e.with_config_type(ConfigType::String.kafka_code());
                            if r.include_documentation {
                                e = e.with_documentation(Some(s(d.doc)));
                            }
                        }
                        e
                    })
                    .collect();
                result = result.with_configs(configs);
            }
            other => {
                result = refuse(
                    result,
                    ResponseError::InvalidRequest,
                    format!("resource type {other} is not supported"),
                );
            }
        }
        results.push(result);
    }
    DescribeConfigsResponse::default().with_results(results)
}

/// The broker id a BROKER resource names.
fn broker_resource(name: &str) -> Result<BrokerId, (ResponseError, String)> {
    name.parse::<BrokerId>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| {
            (
                ResponseError::InvalidRequest,
                format!("broker resource name {name:?} is not a broker id"),
            )
        })
}

/// Every value broker config `d` has on broker `id`, most specific first: the broker's dynamic
/// value, the cluster's, then the static (services.json) or built-in default.
fn broker_value_chain(
    shared: &BrokerShared,
    dynamic: &BrokerConfigs,
    id: BrokerId,
    d: &BrokerConfigDef,
) -> Vec<(String, String, ConfigSource)> {
    let name = d.def.name;
    let stat = |v: String| vec![(name.to_string(), v, ConfigSource::StaticBroker)];
    let defaults = &shared.config.topic_defaults;
    match name {
        "broker.id" => return stat(id.to_string()),
        "num.partitions" => return stat(defaults.num_partitions.to_string()),
        "default.replication.factor" => {
            return stat(defaults.default_replication_factor.to_string())
        }
        "auto.create.topics.enable" => return stat("true".into()),
        "log.dirs" if id == shared.config.broker_id => {
            return stat(shared.config.data_dir.display().to_string())
        }
        _ => {}
    }
    let mut chain = Vec::new();
    if let Some(v) = dynamic.of_broker(id).and_then(|c| c.get(name)) {
        chain.push((name.to_string(), v.clone(), ConfigSource::DynamicBroker));
    }
    if let Some(v) = dynamic.cluster.get(name) {
        chain.push((
            name.to_string(),
            v.clone(),
            ConfigSource::DynamicDefaultBroker,
        ));
    }
    if !d.def.default.is_empty() {
        chain.push((
            name.to_string(),
            d.def.default.to_string(),
            ConfigSource::Default,
        ));
    }
    chain
}

/// One resource's outcome: `(error code, message)`; `(0, None)` on success.
type Outcome = (i16, Option<String>);

/// Kafka's authorization of config APIs: `op` (DESCRIBE_CONFIGS or ALTER_CONFIGS) on the topic,
/// or on the cluster for broker configs; the refusal to answer with, if any.
fn config_denied(ctx: &Ctx<'_>, resource_type: i8, name: &str, op: Operation) -> Option<Outcome> {
    let (allowed, code) = if resource_type == RESOURCE_TOPIC {
        (
            ctx.allowed(op, ResourceType::Topic, name),
            ResponseError::TopicAuthorizationFailed,
        )
    } else if resource_type == RESOURCE_GROUP {
        (
            ctx.allowed(op, ResourceType::Group, name),
            ResponseError::GroupAuthorizationFailed,
        )
    } else {
        (
            ctx.allowed_on_cluster(op),
            ResponseError::ClusterAuthorizationFailed,
        )
    };
    (!allowed).then(|| fail(code, format!("{} on the resource is needed", op.name())))
}

fn fail(e: ResponseError, message: impl Into<String>) -> Outcome {
    (e.code(), Some(message.into()))
}

/// Kafka's AlterConfigs (the legacy API): the topic's configs become exactly the given ones.
pub async fn alter_configs(ctx: &mut Ctx<'_>, r: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for res in r.resources {
        let denied = config_denied(
            ctx,
            res.resource_type,
            res.resource_name.as_str(),
            Operation::AlterConfigs,
        );
        let outcome = match res.resource_type {
            _ if denied.is_some() => denied.unwrap_or_default(),
            RESOURCE_TOPIC | RESOURCE_BROKER => {
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
                    None if res.resource_type == RESOURCE_BROKER => {
                        // The legacy API replaces the entity's whole dynamic config.
                        match broker_entity(res.resource_name.as_str()) {
                            Ok(broker) => {
                                let current = current_broker_config(ctx, broker);
                                let delete: Vec<&String> =
                                    current.keys().filter(|k| !set.contains_key(*k)).collect();
                                let body = json!({"set": set, "delete": delete,
                                                  "validateOnly": r.validate_only});
                                alter_broker(ctx, broker, body).await
                            }
                            Err(e) => e,
                        }
                    }
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
        let denied = config_denied(
            ctx,
            res.resource_type,
            res.resource_name.as_str(),
            Operation::AlterConfigs,
        );
        let outcome = match res.resource_type {
            _ if denied.is_some() => denied.unwrap_or_default(),
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
                    Some(current) => {
                        match incremental_ops(&current, &res.configs, topic_list_default) {
                            Ok((set, delete)) => {
                                let body = json!({"set": set, "delete": delete,
                                                  "validateOnly": r.validate_only});
                                alter_topic(ctx, &name, body).await
                            }
                            Err(e) => e,
                        }
                    }
                }
            }
            RESOURCE_BROKER => match broker_entity(res.resource_name.as_str()) {
                Ok(broker) => {
                    let current = current_broker_config(ctx, broker);
                    match incremental_ops(&current, &res.configs, broker_list_default) {
                        Ok((set, delete)) => {
                            let body = json!({"set": set, "delete": delete,
                                              "validateOnly": r.validate_only});
                            alter_broker(ctx, broker, body).await
                        }
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            },
            RESOURCE_GROUP => {
                let group = res.resource_name.to_string();
                let current = ctx
                    .shared
                    .image()
                    .group_configs
                    .get(&group)
                    .cloned()
                    .unwrap_or_default();
                match incremental_ops(&current, &res.configs, group_list_default) {
                    Err(e) => e,
                    Ok((set, delete)) => match set
                        .iter()
                        .find_map(|(k, v)| check_group_config(k, v).and_then(Result::err))
                    {
                        Some(problem) => fail(ResponseError::InvalidConfig, problem),
                        None if group.is_empty() => {
                            fail(ResponseError::InvalidRequest, "a group needs a name")
                        }
                        None if r.validate_only => (0, None),
                        None => {
                            alter_group(ctx, &group, json!({"set": set, "delete": delete})).await
                        }
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

/// The kind and default of a topic config (`None`: no such config).
fn topic_list_default(key: &str) -> Option<(ConfigType, &'static str)> {
    topic_config(key).map(|d| (d.kind, d.default))
}

/// The kind and default of a group config (`None`: no such config).
fn group_list_default(key: &str) -> Option<(ConfigType, &'static str)> {
    GROUP_CONFIGS
        .iter()
        .find(|d| d.name == key)
        .map(|d| (ConfigType::String, d.default))
}

/// Sends a group config change to the controller and waits until this broker's metadata
/// shows it.
async fn alter_group(ctx: &Ctx<'_>, group: &str, body: Value) -> Outcome {
    let reply = ctx
        .shared
        .meta
        .alter_group_config(group, body.clone())
        .await;
    answered(ctx, &body, reply, |reply, img| {
        let want: BTreeMap<String, String> =
            serde_json::from_value(reply["config"].clone()).unwrap_or_default();
        img.group_configs.get(group).cloned().unwrap_or_default() == want
    })
    .await
}

/// The kind and default of a broker config (`None`: no such config).
fn broker_list_default(key: &str) -> Option<(ConfigType, &'static str)> {
    broker_config(key).map(|d| (d.def.kind, d.def.default))
}

/// The `(set, delete)` an IncrementalAlterConfigs resource asks for, against the entity's
/// `current` configs (APPEND and SUBTRACT edit list values, as Kafka does).
fn incremental_ops(
    current: &BTreeMap<String, String>,
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
    lookup: fn(&str) -> Option<(ConfigType, &'static str)>,
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
        let Some((kind, default)) = lookup(&key) else {
            return Err(fail(
                ResponseError::InvalidConfig,
                format!("unknown config {key:?}"),
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
                if kind != ConfigType::List {
                    return Err(fail(
                        ResponseError::InvalidConfig,
                        format!("{key} is not a list config; APPEND and SUBTRACT need one"),
                    ));
                }
                let now = current
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| default.to_string());
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

/// The answer for a resource that is neither a topic nor a broker.
fn not_a_topic(resource_type: i8) -> Outcome {
    fail(
        ResponseError::InvalidRequest,
        format!("resource type {resource_type} is not supported"),
    )
}

/// The entity a BROKER resource name stands for: `""` is the cluster-wide default (`None`).
fn broker_entity(name: &str) -> Result<Option<BrokerId>, Outcome> {
    if name.is_empty() {
        return Ok(None);
    }
    broker_resource(name)
        .map(Some)
        .map_err(|(e, msg)| fail(e, msg))
}

/// The dynamic configs the metadata shows for a broker entity.
fn current_broker_config(ctx: &Ctx<'_>, broker: Option<BrokerId>) -> BTreeMap<String, String> {
    let image = ctx.shared.image();
    match broker {
        Some(id) => image
            .broker_configs
            .of_broker(id)
            .cloned()
            .unwrap_or_default(),
        None => image.broker_configs.cluster.clone(),
    }
}

/// Sends a dynamic broker config change to the controller and, unless validating, waits
/// until this broker's metadata shows the result.
async fn alter_broker(ctx: &Ctx<'_>, broker: Option<BrokerId>, body: Value) -> Outcome {
    let shared = ctx.shared;
    let reply = shared.meta.alter_broker_config(broker, body.clone()).await;
    answered(ctx, &body, reply, |reply, img| {
        serde_json::from_value::<BrokerConfigs>(reply.clone())
            .is_ok_and(|want| img.broker_configs == want)
    })
    .await
}

/// Sends a topic config change to the controller and, unless validating, waits until this
/// broker's metadata shows the result.
async fn alter_topic(ctx: &Ctx<'_>, name: &str, body: Value) -> Outcome {
    let shared = ctx.shared;
    let reply = shared.meta.alter_topic_config(name, body.clone()).await;
    answered(ctx, &body, reply, |reply, img| {
        img.topics.get(name).is_some_and(|t| {
            serde_json::to_value(&t.config).ok().as_ref() == Some(&reply["config"])
        })
    })
    .await
}

/// The outcome of a config change the controller answered: its refusal as the Kafka error,
/// or — unless the request only validated — success once this broker's metadata shows the
/// change (`applied(answer body, image)`), waiting at most [`APPLIED_WAIT`].
async fn answered(
    ctx: &Ctx<'_>,
    request: &Value,
    reply: crate::error::Result<crate::meta_client::ApiReply>,
    applied: impl Fn(&Value, &crate::meta_client::ClusterImage) -> bool,
) -> Outcome {
    let reply = match reply {
        Ok(r) => r,
        Err(e) => return fail(ResponseError::RequestTimedOut, e.to_string()),
    };
    if !reply.status.is_success() {
        let msg = reply.message();
        let code = super::handlers::metadata_error(reply.status.as_u16(), reply.error_code());
        return fail(code, msg);
    }
    if !request["validateOnly"].as_bool().unwrap_or(false) {
        ctx.shared
            .wait_for_metadata(APPLIED_WAIT, |img| applied(&reply.body, img))
            .await;
    }
    (0, None)
}
