//! `dmq user create|delete|list` and `dmq acl create|list|delete` (SPEC §11), against the
//! metadata quorum's security API, as `kafka-configs --alter --add-config SCRAM-…` and
//! `kafka-acls` do over the Kafka protocol.
//!
//! `dmq user create` salts and hashes the password here (a fresh random salt, PBKDF2 with the
//! given iterations) and sends only the SCRAM credential: the password never leaves this
//! process.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use dmq_auth::{
    AclBinding, AclBindingFilter, Operation, Password, PatternType, Permission, ResourceType,
    ScramCredential, ScramMechanism,
};
use serde_json::{json, Value};

use crate::cli::{metadata_get, ClientArgs, OutputFormat};
use crate::table::Table;

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create or update a SCRAM user (the password is salted and hashed here).
    Create {
        name: String,
        /// The password; prefer --password-file or DMQ_USER_PASSWORD over the command line.
        #[arg(long, env = "DMQ_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// A file holding the password.
        #[arg(long, conflicts_with = "password")]
        password_file: Option<std::path::PathBuf>,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        /// PBKDF2 iterations (Kafka accepts 4096..=16384).
        #[arg(long, default_value_t = 8192)]
        iterations: u32,
    },
    /// Delete a user's SCRAM credential (every mechanism unless one is named).
    Delete {
        name: String,
        #[arg(long)]
        mechanism: Option<String>,
    },
    /// Every SCRAM user with its mechanisms and iterations.
    List,
}

/// Which resource an ACL command is about (exactly one).
#[derive(Args, Debug, Clone, Default)]
pub struct ResourceArgs {
    #[arg(long)]
    topic: Option<String>,
    #[arg(long)]
    group: Option<String>,
    #[arg(long)]
    transactional_id: Option<String>,
    /// The cluster resource.
    #[arg(long)]
    cluster: bool,
    /// Match names by prefix (PREFIXED) instead of exactly (LITERAL).
    #[arg(long)]
    prefixed: bool,
}

impl ResourceArgs {
    fn resource(&self) -> anyhow::Result<Option<(ResourceType, String)>> {
        let mut chosen = Vec::new();
        if let Some(t) = &self.topic {
            chosen.push((ResourceType::Topic, t.clone()));
        }
        if let Some(g) = &self.group {
            chosen.push((ResourceType::Group, g.clone()));
        }
        if let Some(t) = &self.transactional_id {
            chosen.push((ResourceType::TransactionalId, t.clone()));
        }
        if self.cluster {
            chosen.push((
                ResourceType::Cluster,
                dmq_auth::acl::CLUSTER_NAME.to_string(),
            ));
        }
        match chosen.len() {
            0 => Ok(None),
            1 => Ok(chosen.pop()),
            _ => bail!("name one resource: --topic, --group, --transactional-id or --cluster"),
        }
    }

    fn pattern(&self) -> PatternType {
        if self.prefixed {
            PatternType::Prefixed
        } else {
            PatternType::Literal
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum AclCommand {
    /// Allow (or with --deny, deny) operations on a resource to a principal.
    Create {
        /// `User:alice`, or `User:*` for everyone.
        #[arg(long)]
        principal: String,
        /// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS,
        /// IDEMPOTENT_WRITE, CLUSTER_ACTION or ALL; repeat for several.
        #[arg(long = "operation", required = true)]
        operations: Vec<String>,
        #[arg(long, default_value = "*")]
        host: String,
        #[arg(long)]
        deny: bool,
        #[command(flatten)]
        resource: ResourceArgs,
    },
    /// The ACLs, optionally only a principal's or a resource's.
    List {
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        resource: ResourceArgs,
    },
    /// Remove the ACLs that match (every operation and permission unless named).
    Delete {
        #[arg(long)]
        principal: Option<String>,
        #[arg(long = "operation")]
        operations: Vec<String>,
        #[arg(long)]
        host: Option<String>,
        #[command(flatten)]
        resource: ResourceArgs,
    },
}

fn http(args: &ClientArgs) -> anyhow::Result<reqwest::Client> {
    crate::cli::http_client(args, Duration::from_secs(10))
}

/// POSTs `body` to the controller (following `X-Controller-Leader`); the answer's JSON.
async fn post_leader(args: &ClientArgs, path: &str, body: &Value) -> anyhow::Result<Value> {
    let http = http(args)?;
    let mut urls: Vec<String> = args
        .metadata
        .split(',')
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let mut last = anyhow!("no metadata node given");
    for _ in 0..20 {
        let Some(url) = urls.first().cloned() else {
            break;
        };
        match http.post(format!("{url}{path}")).json(body).send().await {
            Ok(resp) => {
                let status = resp.status();
                let leader = resp
                    .headers()
                    .get("X-Controller-Leader")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let v: Value = resp.json().await.unwrap_or(Value::Null);
                if status.is_success() {
                    return Ok(v);
                }
                if status.as_u16() == 503 {
                    if let Some(l) = leader {
                        urls.insert(0, l);
                        continue;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    urls.rotate_left(1);
                    last = anyhow!("{url}{path}: no controller yet");
                    continue;
                }
                bail!(
                    "{}: {}",
                    v["error"].as_str().unwrap_or(status.as_str()),
                    v["message"].as_str().unwrap_or("")
                );
            }
            Err(e) => {
                last = anyhow!("{url}{path}: {e}");
                urls.rotate_left(1);
            }
        }
    }
    Err(last)
}

fn print(args: &ClientArgs, v: &Value, table: impl FnOnce() -> Table) {
    match args.output {
        OutputFormat::Json => println!("{v}"),
        OutputFormat::Table => print!("{}", table().render()),
    }
}

pub async fn user(cmd: UserCommand, args: ClientArgs) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Create {
            name,
            password,
            password_file,
            mechanism,
            iterations,
        } => {
            let password = match (password, password_file) {
                (Some(p), _) => p,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
                (None, None) => bail!("give --password, --password-file or DMQ_USER_PASSWORD"),
            };
            let mech = ScramMechanism::from_name(&mechanism).map_err(|e| anyhow!("{e}"))?;
            let credential = ScramCredential::generate(mech, &Password::new(password), iterations)
                .map_err(|e| anyhow!("{e}"))?;
            let body = json!({"upsertions": [{"user": name, "mechanism": mech, "credential": credential}]});
            let v = post_leader(&args, "/api/v1/metadata/scram-credentials", &body).await?;
            check_user_results(&v)?;
            print(
                &args,
                &json!({"user": name, "mechanism": mech.name(), "iterations": iterations}),
                || {
                    let mut t = Table::new(["USER", "MECHANISM", "ITERATIONS"]);
                    t.row([
                        name.clone(),
                        mech.name().to_string(),
                        iterations.to_string(),
                    ]);
                    t
                },
            );
        }
        UserCommand::Delete { name, mechanism } => {
            let mechs: Vec<ScramMechanism> = match mechanism {
                Some(m) => vec![ScramMechanism::from_name(&m).map_err(|e| anyhow!("{e}"))?],
                None => {
                    let users = list_users(&args).await?;
                    let found = users
                        .iter()
                        .find(|u| u["user"] == name.as_str())
                        .ok_or_else(|| anyhow!("user {name:?} has no SCRAM credential"))?;
                    found["mechanisms"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|m| m["mechanism"].as_str())
                        .filter_map(|m| ScramMechanism::from_name(m).ok())
                        .collect()
                }
            };
            let deletions: Vec<Value> = mechs
                .iter()
                .map(|m| json!({"user": name, "mechanism": m}))
                .collect();
            let v = post_leader(
                &args,
                "/api/v1/metadata/scram-credentials",
                &json!({"deletions": deletions}),
            )
            .await?;
            check_user_results(&v)?;
            print(
                &args,
                &json!({"user": name, "deleted": mechs.iter().map(|m| m.name()).collect::<Vec<_>>()}),
                || {
                    let mut t = Table::new(["USER", "DELETED"]);
                    t.row([
                        name.clone(),
                        mechs.iter().map(|m| m.name()).collect::<Vec<_>>().join(","),
                    ]);
                    t
                },
            );
        }
        UserCommand::List => {
            let users = list_users(&args).await?;
            print(&args, &json!(users), || {
                let mut t = Table::new(["USER", "MECHANISM", "ITERATIONS"]);
                for u in &users {
                    for m in u["mechanisms"].as_array().into_iter().flatten() {
                        t.row([
                            u["user"].as_str().unwrap_or("").to_string(),
                            m["mechanism"].as_str().unwrap_or("").to_string(),
                            m["iterations"].to_string(),
                        ]);
                    }
                }
                t
            });
        }
    }
    Ok(())
}

fn check_user_results(v: &Value) -> anyhow::Result<()> {
    for r in v["results"].as_array().into_iter().flatten() {
        if r["errorCode"].as_i64().unwrap_or(0) != 0 {
            bail!(
                "{}: error {} {}",
                r["user"].as_str().unwrap_or(""),
                r["errorCode"],
                r["message"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

async fn list_users(args: &ClientArgs) -> anyhow::Result<Vec<Value>> {
    let urls: Vec<String> = args.metadata.split(',').map(str::to_string).collect();
    let v = metadata_get(
        &http(args)?,
        &urls,
        "/api/v1/metadata/scram-users?consistent=true",
    )
    .await?;
    Ok(v["users"].as_array().cloned().unwrap_or_default())
}

fn operations(names: &[String]) -> anyhow::Result<Vec<Operation>> {
    names
        .iter()
        .map(|n| Operation::parse(n).map_err(|e| anyhow!("{e}")))
        .collect()
}

fn acl_table(acls: &[AclBinding]) -> Table {
    let mut t = Table::new([
        "PRINCIPAL",
        "HOST",
        "PERMISSION",
        "OPERATION",
        "RESOURCE",
        "NAME",
        "PATTERN",
    ]);
    for a in acls {
        t.row([
            a.principal.clone(),
            a.host.clone(),
            a.permission.name().to_string(),
            a.operation.name().to_string(),
            a.resource_type.name().to_string(),
            a.resource_name.clone(),
            a.pattern_type.name().to_string(),
        ]);
    }
    t
}

pub async fn acl(cmd: AclCommand, args: ClientArgs) -> anyhow::Result<()> {
    match cmd {
        AclCommand::Create {
            principal,
            operations: ops,
            host,
            deny,
            resource,
        } => {
            let (resource_type, resource_name) = resource.resource()?.ok_or_else(|| {
                anyhow!("name the resource: --topic, --group, --transactional-id or --cluster")
            })?;
            let bindings: Vec<AclBinding> = operations(&ops)?
                .into_iter()
                .map(|operation| AclBinding {
                    principal: principal.clone(),
                    host: host.clone(),
                    resource_type,
                    resource_name: resource_name.clone(),
                    pattern_type: resource.pattern(),
                    operation,
                    permission: if deny {
                        Permission::Deny
                    } else {
                        Permission::Allow
                    },
                })
                .collect();
            for b in &bindings {
                b.validate().map_err(|e| anyhow!("{e}"))?;
            }
            let v = post_leader(
                &args,
                "/api/v1/metadata/acls",
                &json!({"bindings": bindings}),
            )
            .await?;
            for r in v["results"].as_array().into_iter().flatten() {
                if let Some(e) = r["error"].as_str() {
                    bail!("{e}");
                }
            }
            print(&args, &json!(bindings), || acl_table(&bindings));
        }
        AclCommand::List {
            principal,
            resource,
        } => {
            let urls: Vec<String> = args.metadata.split(',').map(str::to_string).collect();
            let v = metadata_get(
                &http(&args)?,
                &urls,
                "/api/v1/metadata/acls?consistent=true",
            )
            .await?;
            let all: Vec<AclBinding> =
                serde_json::from_value(v["acls"].clone()).context("the quorum's ACL list")?;
            let filter = AclBindingFilter {
                principal,
                ..selector(&resource)?
            };
            let acls: Vec<AclBinding> = all.into_iter().filter(|a| filter.matches(a)).collect();
            print(&args, &json!(acls), || acl_table(&acls));
        }
        AclCommand::Delete {
            principal,
            operations: ops,
            host,
            resource,
        } => {
            let base = AclBindingFilter {
                principal,
                host,
                ..selector(&resource)?
            };
            let filters: Vec<AclBindingFilter> = if ops.is_empty() {
                vec![base]
            } else {
                operations(&ops)?
                    .into_iter()
                    .map(|operation| AclBindingFilter {
                        operation,
                        ..base.clone()
                    })
                    .collect()
            };
            let v = post_leader(
                &args,
                "/api/v1/metadata/acls/delete",
                &json!({"filters": filters}),
            )
            .await?;
            let mut deleted: Vec<AclBinding> = Vec::new();
            for r in v["results"].as_array().into_iter().flatten() {
                deleted.extend(
                    serde_json::from_value::<Vec<AclBinding>>(r["deleted"].clone())
                        .unwrap_or_default(),
                );
            }
            print(&args, &json!(deleted), || acl_table(&deleted));
        }
    }
    Ok(())
}

/// The filter of a resource selection: the named resource exactly (LITERAL or PREFIXED as
/// given), or any resource.
fn selector(resource: &ResourceArgs) -> anyhow::Result<AclBindingFilter> {
    let mut f = AclBindingFilter::any();
    if let Some((rt, name)) = resource.resource()? {
        f.resource_type = rt;
        f.resource_name = Some(name);
        f.pattern_type = resource.pattern();
    }
    Ok(f)
}
