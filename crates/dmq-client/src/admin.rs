//! The admin client: topics, cluster description and offsets, over the Kafka protocol.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::{topic_name, BrokerInfo, ClientConfig, Cluster, PartitionInfo};
use crate::consumer::{list_offsets, TopicPartition};
use crate::error::{ClientError, Result};

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i16) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor,
            configs: Vec::new(),
        }
    }
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }
}

/// A topic with its partitions and the configs set on it.
#[derive(Debug, Clone)]
pub struct TopicDescription {
    pub name: String,
    pub id: uuid::Uuid,
    pub partitions: Vec<PartitionInfo>,
    /// Configs set explicitly on the topic (not broker defaults).
    pub configs: BTreeMap<String, String>,
}

impl TopicDescription {
    pub fn replication_factor(&self) -> usize {
        self.partitions.first().map_or(0, |p| p.replicas.len())
    }
}

/// Brokers and controller as the brokers advertise them.
#[derive(Debug, Clone)]
pub struct ClusterDescription {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
}

/// The admin client.
pub struct Admin {
    cluster: Arc<Cluster>,
}

impl Admin {
    pub async fn new(config: ClientConfig) -> Result<Admin> {
        Ok(Admin {
            cluster: Cluster::connect(config).await?,
        })
    }

    pub fn with_cluster(cluster: Arc<Cluster>) -> Admin {
        Admin { cluster }
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Creates a topic and waits until every partition has a leader.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<()> {
        let timeout = self.cluster.config().request_timeout;
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(&topic.name))
                .with_num_partitions(topic.partitions)
                .with_replication_factor(topic.replication_factor)
                .with_configs(
                    topic
                        .configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(k.clone()))
                                .with_value(Some(StrBytes::from_string(v.clone())))
                        })
                        .collect(),
                )]);
        let conn = self.cluster.controller().await?;
        let (resp, _) = conn.send(&req, timeout).await?;
        topic_results(
            resp.topics
                .iter()
                .map(|t| (t.error_code, t.error_message.as_ref())),
            &format!("creating topic {:?}", topic.name),
        )?;
        self.wait_for(&topic.name, |p| {
            p.is_some_and(|ps| {
                ps.len() == topic.partitions as usize && ps.iter().all(|p| p.leader >= 0)
            })
        })
        .await
    }

    /// Grows a topic to `total` partitions (Kafka's CreatePartitions; partitions are never
    /// removed) and waits until every partition has a leader. Keyed records map to partitions
    /// by the partition count, so growing a topic moves keys, as in Kafka.
    pub async fn create_partitions(&self, name: &str, total: i32) -> Result<()> {
        let timeout = self.cluster.config().request_timeout;
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(name))
                .with_count(total)
                // Null, not empty: the controller places the new partitions.
                .with_assignments(None)]);
        let conn = self.cluster.controller().await?;
        let (resp, _) = conn.send(&req, timeout).await?;
        topic_results(
            resp.results
                .iter()
                .map(|t| (t.error_code, t.error_message.as_ref())),
            &format!("adding partitions to {name:?}"),
        )?;
        self.wait_for(name, |p| {
            p.is_some_and(|ps| ps.len() == total as usize && ps.iter().all(|p| p.leader >= 0))
        })
        .await
    }

    /// Sets (`Some`) or reverts to its default (`None`) each of a topic's `configs` (Kafka's
    /// IncrementalAlterConfigs); a bad key or value fails with INVALID_CONFIG and changes
    /// nothing.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        configs: &[(String, Option<String>)],
    ) -> Result<()> {
        self.alter_configs(
            2,
            name,
            configs,
            &format!("altering the configs of {name:?}"),
        )
        .await
    }

    /// Sets (`Some`) or reverts (`None`) a group's configs (IncrementalAlterConfigs on the
    /// GROUP resource, type 32): `share.auto.offset.reset`, `share.record.lock.duration.ms`,
    /// `share.delivery.count.limit`, `share.redelivery.backoff.ms`, `share.dlq.topic`, …
    pub async fn alter_group_configs(
        &self,
        group: &str,
        configs: &[(String, Option<String>)],
    ) -> Result<()> {
        self.alter_configs(
            32,
            group,
            configs,
            &format!("altering the configs of group {group:?}"),
        )
        .await
    }

    /// Sets (`Some`) or deletes (`None`) dynamic broker configs of one broker, or of the whole
    /// cluster (`broker: None`, kafka-configs' `--entity-default`); they take effect without a
    /// restart.
    pub async fn alter_broker_configs(
        &self,
        broker: Option<i32>,
        configs: &[(String, Option<String>)],
    ) -> Result<()> {
        let name = broker.map_or(String::new(), |b| b.to_string());
        let what = match broker {
            Some(b) => format!("altering the configs of broker {b}"),
            None => "altering the cluster-wide broker configs".to_string(),
        };
        self.alter_configs(4, &name, configs, &what).await
    }

    /// The dynamic broker configs in force for one broker (set on it or cluster-wide), or
    /// those set cluster-wide (`broker: None`): `name → (value, source)` with Kafka's source
    /// names (`DYNAMIC_BROKER_CONFIG`, `DYNAMIC_DEFAULT_BROKER_CONFIG`).
    pub async fn describe_broker_configs(
        &self,
        broker: Option<i32>,
    ) -> Result<BTreeMap<String, (String, String)>> {
        let name = broker.map_or(String::new(), |b| b.to_string());
        let what = format!("describing the configs of broker {name:?}");
        let mut configs = BTreeMap::new();
        for (key, value, source) in self.describe_configs(4, &name, &what).await? {
            let source = match source {
                2 => "DYNAMIC_BROKER_CONFIG",
                3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
                _ => continue,
            };
            configs.insert(key, (value, source.to_string()));
        }
        Ok(configs)
    }

    /// DescribeConfigs of one resource (2 = topic, 4 = broker): every config with a value, as
    /// `(name, value, Kafka's config source code)`.
    async fn describe_configs(
        &self,
        resource_type: i8,
        name: &str,
        what: &str,
    ) -> Result<Vec<(String, String, i8)>> {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configuration_keys(None),
        ]);
        let conn = self.cluster.any_broker().await?;
        let (resp, _) = conn.send(&req, Duration::ZERO).await?;
        let mut out = Vec::new();
        for r in resp.results {
            if r.error_code != 0 {
                return Err(ClientError::kafka(r.error_code, what.to_string()));
            }
            for c in r.configs {
                if let Some(v) = c.value {
                    out.push((c.name.to_string(), v.to_string(), c.config_source));
                }
            }
        }
        Ok(out)
    }

    /// IncrementalAlterConfigs of one resource (2 = topic, 4 = broker, 32 = group): SET or
    /// DELETE.
    async fn alter_configs(
        &self,
        resource_type: i8,
        name: &str,
        configs: &[(String, Option<String>)],
        what: &str,
    ) -> Result<()> {
        use kafka_protocol::messages::incremental_alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        let req = kafka_protocol::messages::IncrementalAlterConfigsRequest::default()
            .with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            AlterableConfig::default()
                                .with_name(StrBytes::from_string(k.clone()))
                                // 0 = SET, 1 = DELETE (KIP-339).
                                .with_config_operation(if v.is_some() { 0 } else { 1 })
                                .with_value(v.clone().map(StrBytes::from_string))
                        })
                        .collect(),
                )]);
        let conn = self.cluster.any_broker().await?;
        let (resp, _) = conn.send(&req, Duration::ZERO).await?;
        topic_results(
            resp.responses
                .iter()
                .map(|r| (r.error_code, r.error_message.as_ref())),
            what,
        )
    }

    /// Deletes every record below `offsets[tp]` (-1 = the high watermark) of each partition
    /// (Kafka's DeleteRecords, sent to each partition's leader); returns each partition's new
    /// log start (low watermark).
    pub async fn delete_records(
        &self,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        use kafka_protocol::messages::delete_records_request::{
            DeleteRecordsPartition, DeleteRecordsTopic,
        };
        let mut topics: Vec<String> = offsets.keys().map(|tp| tp.topic.clone()).collect();
        topics.dedup();
        let meta = self.cluster.refresh(Some(&topics), false).await?;
        let mut by_leader: BTreeMap<i32, Vec<(&TopicPartition, i64)>> = BTreeMap::new();
        for (tp, offset) in offsets {
            let leader = meta
                .leader(&tp.topic, tp.partition)
                .ok_or_else(|| ClientError::kafka(5, format!("{tp} has no leader")))?;
            by_leader.entry(leader).or_default().push((tp, *offset));
        }
        let timeout = self.cluster.config().request_timeout;
        let mut out = BTreeMap::new();
        for (leader, wanted) in by_leader {
            let req_topics: Vec<DeleteRecordsTopic> =
                crate::consumer::by_topic(wanted.iter().map(|(tp, offset)| {
                    let p = DeleteRecordsPartition::default()
                        .with_partition_index(tp.partition)
                        .with_offset(*offset);
                    (tp.topic.as_str(), p)
                }))
                .into_iter()
                .map(|(t, ps)| {
                    DeleteRecordsTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(ps)
                })
                .collect();
            let req = kafka_protocol::messages::DeleteRecordsRequest::default()
                .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32)
                .with_topics(req_topics);
            let conn = self.cluster.broker(leader).await?;
            let (resp, _) = conn.send(&req, timeout).await?;
            for t in resp.topics {
                for p in t.partitions {
                    let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                    if p.error_code != 0 {
                        return Err(ClientError::kafka(
                            p.error_code,
                            format!("deleting records of {tp}"),
                        ));
                    }
                    out.insert(tp, p.low_watermark);
                }
            }
        }
        Ok(out)
    }

    /// Deletes a topic and waits until the brokers no longer list it.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let timeout = self.cluster.config().request_timeout;
        let conn = self.cluster.controller().await?;
        let version = conn.version(ApiKey::DeleteTopics)?;
        let topic = topic_name(name);
        let req = DeleteTopicsRequest::default()
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32);
        // v6 names topics in `topics` (by name or id), earlier versions in `topic_names`.
        let req = if version >= 6 {
            req.with_topics(vec![DeleteTopicState::default().with_name(Some(topic))])
        } else {
            req.with_topic_names(vec![topic])
        };
        let resp = conn.send_at(&req, version, timeout).await?;
        topic_results(
            resp.responses
                .iter()
                .map(|t| (t.error_code, t.error_message.as_ref())),
            &format!("deleting topic {name:?}"),
        )?;
        self.wait_for(name, |p| p.is_none()).await
    }

    async fn wait_for(
        &self,
        name: &str,
        done: impl Fn(Option<&[PartitionInfo]>) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + self.cluster.config().request_timeout;
        loop {
            let meta = self
                .cluster
                .refresh(Some(&[name.to_string()]), false)
                .await?;
            if done(meta.topic(name).map(|t| t.partitions.as_slice())) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout(format!(
                    "topic {name:?} did not reach the expected state in the metadata"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every topic's name, sorted.
    pub async fn list_topics(&self) -> Result<Vec<String>> {
        let meta = self.cluster.refresh(None, false).await?;
        let mut names: Vec<String> = meta
            .topics
            .values()
            .filter(|t| !t.internal)
            .map(|t| t.name.clone())
            .collect();
        names.sort();
        Ok(names)
    }

    /// A topic's partitions and explicitly set configs.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let meta = self
            .cluster
            .refresh(Some(&[name.to_string()]), false)
            .await?;
        let info = meta
            .topic(name)
            .cloned()
            .ok_or_else(|| ClientError::kafka(3, format!("describing topic {name:?}")))?;
        let what = format!("describing configs of {name:?}");
        let configs = self
            .describe_configs(2, name, &what)
            .await?
            .into_iter()
            // 1 = DYNAMIC_TOPIC_CONFIG: set on this topic.
            .filter(|c| c.2 == 1)
            .map(|(k, v, _)| (k, v))
            .collect();
        Ok(TopicDescription {
            name: info.name.clone(),
            id: info.id,
            partitions: info.partitions.clone(),
            configs,
        })
    }

    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let meta = self.cluster.refresh(Some(&[]), false).await?;
        Ok(ClusterDescription {
            cluster_id: meta.cluster_id.clone(),
            controller_id: meta.controller_id,
            brokers: meta.brokers.values().cloned().collect(),
        })
    }

    /// Earliest (`timestamp = -2`), latest (`-1`) or by-time offsets of `partitions`.
    pub async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let mut topics: Vec<String> = partitions.iter().map(|tp| tp.topic.clone()).collect();
        topics.sort();
        topics.dedup();
        let meta = self.cluster.refresh(Some(&topics), false).await?;
        let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        for tp in partitions {
            let leader = meta
                .leader(&tp.topic, tp.partition)
                .ok_or_else(|| ClientError::kafka(5, format!("{tp} has no leader")))?;
            by_leader
                .entry(leader)
                .or_default()
                .push((tp.clone(), timestamp));
        }
        let mut out = BTreeMap::new();
        for (leader, wanted) in by_leader {
            out.extend(
                list_offsets(
                    &self.cluster,
                    leader,
                    &wanted,
                    crate::consumer::IsolationLevel::ReadUncommitted,
                )
                .await?,
            );
        }
        Ok(out)
    }
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: String,
}

/// A member of a described group.
#[derive(Debug, Clone)]
pub struct GroupMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    pub assignment: Vec<TopicPartition>,
}

/// A group: state, members with their partitions, and committed offsets.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub protocol: String,
    pub coordinator: i32,
    pub members: Vec<GroupMember>,
    pub committed: BTreeMap<TopicPartition, i64>,
}

impl Admin {
    /// Every group of every broker (each coordinates its own), sorted by id.
    pub async fn list_groups(&self) -> Result<Vec<ListedGroup>> {
        let meta = self.cluster.refresh(Some(&[]), false).await?;
        let mut out = Vec::new();
        for id in meta.brokers.keys() {
            let conn = self.cluster.broker(*id).await?;
            let (resp, _) = conn
                .send(
                    &kafka_protocol::messages::ListGroupsRequest::default(),
                    Duration::ZERO,
                )
                .await?;
            if resp.error_code != 0 {
                return Err(ClientError::kafka(
                    resp.error_code,
                    format!("listing the groups of broker {id}"),
                ));
            }
            out.extend(resp.groups.into_iter().map(|g| ListedGroup {
                group_id: g.group_id.0.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            }));
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(out)
    }

    /// A group's state, members and committed offsets (from its coordinator).
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let coordinator = crate::group::find_coordinator(&self.cluster, group).await?;
        let conn = self.cluster.broker(coordinator).await?;
        let req = kafka_protocol::messages::DescribeGroupsRequest::default().with_groups(vec![
            kafka_protocol::messages::GroupId(StrBytes::from_string(group.to_string())),
        ]);
        let (resp, _) = conn.send(&req, Duration::ZERO).await?;
        let g = resp
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol(format!("no description of {group:?}")))?;
        if g.error_code != 0 {
            return Err(ClientError::kafka(
                g.error_code,
                format!("describing group {group:?}"),
            ));
        }
        let members = g
            .members
            .into_iter()
            .map(|m| GroupMember {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.map(|i| i.to_string()),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment: crate::group::decode_assignment(m.member_assignment)
                    .unwrap_or_default(),
            })
            .collect();
        let committed =
            crate::group::fetch_committed(&self.cluster, coordinator, group, None).await?;
        Ok(GroupDescription {
            group_id: group.to_string(),
            state: g.group_state.to_string(),
            protocol: g.protocol_data.to_string(),
            coordinator,
            members,
            committed,
        })
    }

    /// Overwrites a group's committed offsets. The group must have no active members (Kafka
    /// refuses commits from outside an active group).
    pub async fn alter_group_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<()> {
        let coordinator = crate::group::find_coordinator(&self.cluster, group).await?;
        crate::group::commit_offsets(&self.cluster, coordinator, group, -1, "", None, offsets).await
    }
}

/// The per-topic answers of a topic admin request (`what` names it in errors): the first
/// error, with the broker's message, or a protocol error when the broker named no topic.
fn topic_results<'a>(
    results: impl Iterator<Item = (i16, Option<&'a StrBytes>)>,
    what: &str,
) -> Result<()> {
    let mut answered = false;
    for (code, message) in results {
        answered = true;
        if code != 0 {
            return Err(ClientError::kafka(
                code,
                match message {
                    Some(m) => format!("{what}: {m}"),
                    None => what.to_string(),
                },
            ));
        }
    }
    if !answered {
        return Err(ClientError::Protocol(format!(
            "{what}: the broker answered for no topic"
        )));
    }
    Ok(())
}
