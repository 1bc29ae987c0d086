//! The deployment files of `deploy/` checked with real tools, and a cluster run across network
//! namespaces (`scripts/multihost.sh`):
//!
//! - systemd units: `systemd-analyze verify` in a scratch root (every warning fails),
//!   `systemd-analyze security --offline` under an exposure threshold, the settings an operator
//!   relies on (user, restart, stop signal and timeout, hardening), and each unit's `ExecStart`
//!   started for real in a private network namespace until `/health` names the right id;
//! - Kubernetes manifests: the official OpenAPI schemas, strict (kubernetes-validate, offline),
//!   the wiring between objects (headless services, selectors, probes, PDBs, ports), the
//!   ConfigMap's services.json against the StatefulSets' DNS names and ordinals, and a pod's
//!   container args started for real under its pod's host name;
//! - the Dockerfile: hadolint (a real Dockerfile parser and linter) with no finding at all, and
//!   the runtime stage (non-root user, health check, ports, volume, entrypoint);
//! - the multi-host script: shellcheck, then run with this build's `dmq`.
//!
//! The linters (kubernetes-validate, hadolint, shellcheck) come from the test venv (`DMQ_VENV`, default `target/interop-venv`) that
//! `scripts/install-test-deps.sh` fills; the namespaces need root, `ip`, `unshare` and `curl`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dmq_types::ServicesConfig;
use serde_json::Value;

const DMQ: &str = env!("CARGO_BIN_EXE_dmq");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// A tool of the test venv, which `scripts/install-test-deps.sh` installs.
fn venv_tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("DMQ_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/interop-venv"));
    let tool = venv.join("bin").join(name);
    assert!(
        tool.exists(),
        "{} is missing: run ./scripts/test.sh (or scripts/install-test-deps.sh)",
        tool.display()
    );
    tool
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Starts `dmq ARGS` (with `env`) in a fresh network and UTS namespace whose host name is
/// `hostname` — a machine or pod of its own, so the fixed ports never collide — and returns the
/// JSON body of its `GET http://127.0.0.1:{port}/health` once it answers (20 s at most).
fn start_as_host(hostname: &str, port: u16, args: &[String], env: &[(&str, &str)]) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = r#"
        set -u
        ip link set lo up
        hostname "$1"
        port=$2; log=$3; shift 3
        "$@" >"$log" 2>&1 &
        pid=$!
        end=$(($(date +%s) + 20))
        while [ "$(date +%s)" -lt "$end" ]; do
            if body=$(curl -fsS -m 1 "http://127.0.0.1:$port/health" 2>/dev/null); then
                echo "$body"; kill -KILL "$pid"; wait "$pid" 2>/dev/null; exit 0
            fi
            if ! kill -0 "$pid" 2>/dev/null; then
                echo "dmq exited before answering /health:" >&2; cat "$log" >&2; exit 1
            fi
            sleep 0.1
        done
        echo "no /health answer on port $port within 20 s:" >&2; cat "$log" >&2
        kill -KILL "$pid"; exit 1
    "#;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--net", "--uts", "--fork", "sh", "-c", script, "sh", hostname,
    ])
    .arg(port.to_string())
    .arg(dir.path().join("dmq.log"))
    .args(args)
    .envs(env.iter().copied());
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "dmq {args:?} as host {hostname}: {}",
        text(&out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("/health of {args:?} is not JSON ({e}): {}", text(&out)))
}

// --- systemd -----------------------------------------------------------------------------------

/// `(section, key, value)` of every setting of a unit file.
fn unit_settings(path: &Path) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in read(path).lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        } else {
            panic!("{}: not a setting: {line}", path.display());
        }
    }
    out
}

fn setting<'a>(settings: &'a [(String, String, String)], key: &str) -> Vec<&'a str> {
    settings
        .iter()
        .filter(|(_, k, _)| k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

/// "60s", "1min 30s", "45" (seconds) → seconds.
fn systemd_seconds(v: &str) -> u64 {
    let mut total = 0;
    for part in v.split_whitespace() {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        let n: u64 = digits.parse().unwrap_or_else(|_| panic!("time {v:?}"));
        total += match &part[digits.len()..] {
            "" | "s" | "sec" => n,
            "min" | "m" => n * 60,
            other => panic!("unexpected time unit {other:?} in {v:?}"),
        };
    }
    total
}

#[test]
fn systemd_units_verify_and_start() {
    let units = repo().join("deploy/systemd");
    let root = tempfile::tempdir().expect("temp dir");
    let r = root.path();
    // A root with the host's own system units (for sysinit.target & co), ours, and this build's
    // dmq where the units expect it.
    let system = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("sysinit.target").exists())
        .expect("systemd's own units (sysinit.target) are installed");
    std::fs::create_dir_all(r.join("usr/lib/systemd")).expect("mkdir");
    let out = run(Command::new("cp")
        .arg("-r")
        .arg(system)
        .arg(r.join("usr/lib/systemd/system")));
    assert!(out.status.success(), "copy system units: {}", text(&out));
    std::fs::create_dir_all(r.join("etc/systemd/system")).expect("mkdir");
    std::fs::create_dir_all(r.join("usr/local/bin")).expect("mkdir");
    let bin = r.join("usr/local/bin/dmq");
    if std::fs::hard_link(DMQ, &bin).is_err() {
        std::fs::copy(DMQ, &bin).expect("copy dmq into the scratch root");
    }
    for unit in ["dmq-metadata@.service", "dmq-broker@.service"] {
        std::fs::copy(units.join(unit), r.join("etc/systemd/system").join(unit)).expect("copy");
    }

    let instances = ["dmq-metadata@2.service", "dmq-broker@102.service"];
    let out = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", r.display()))
        .arg("--man=no")
        .args(instances));
    // verify exits 0 on many problems ("Unknown key", "Failed to parse ..., ignoring") and only
    // says so: any output is a failure.
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify {instances:?}: {}",
        text(&out)
    );
    for instance in instances {
        let out = run(Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager", "--threshold=20"])
            .arg(format!("--root={}", r.display()))
            .arg(instance));
        let report = text(&out);
        let overall = report
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or("no overall exposure line");
        assert!(
            out.status.success(),
            "{instance} is exposed above 2.0 (systemd-analyze security): {overall}\n{report}"
        );
        eprintln!("{overall}");
    }

    let config = repo().join("config/services.json");
    let example = ServicesConfig::load(&config).expect("config/services.json");
    let data = tempfile::tempdir().expect("temp dir");
    for (unit, instance, role, min_stop) in [
        ("dmq-metadata@.service", "2", "metadata", 10),
        // Controlled shutdown may take 15 s (CONTROLLED_SHUTDOWN_TIMEOUT in main.rs).
        ("dmq-broker@.service", "102", "broker", 45),
    ] {
        let path = units.join(unit);
        let s = unit_settings(&path);
        let one = |key: &str| -> String {
            let v = setting(&s, key);
            assert_eq!(v.len(), 1, "{unit}: want exactly one {key}=, got {v:?}");
            v[0].to_string()
        };
        assert_eq!(one("User"), "dmq", "{unit}: a dedicated non-root user");
        assert_eq!(one("Restart"), "on-failure", "{unit}");
        assert_eq!(one("KillSignal"), "SIGTERM", "{unit}");
        assert!(
            systemd_seconds(&one("TimeoutStopSec")) >= min_stop,
            "{unit}: TimeoutStopSec below {min_stop} s"
        );
        assert!(
            one("LimitNOFILE").parse::<u64>().expect("LimitNOFILE") >= 65_536,
            "{unit}"
        );
        assert_eq!(one("NoNewPrivileges"), "yes", "{unit}");
        assert_eq!(one("ProtectSystem"), "strict", "{unit}");
        assert_eq!(one("ReadWritePaths"), "/var/lib/dmq", "{unit}");
        assert_eq!(one("WantedBy"), "multi-user.target", "{unit}");

        // ExecStart, as systemd would run it for this instance (paths moved to scratch ones).
        let exec = one("ExecStart");
        assert!(
            !exec.contains(['"', '\'']),
            "{unit}: keep ExecStart unquoted"
        );
        let args: Vec<String> = exec
            .replace("%i", instance)
            .replace("$DMQ_OPTS", "")
            .replace("/etc/dmq/services.json", &config.display().to_string())
            .replace("/var/lib/dmq", &data.path().display().to_string())
            .split_whitespace()
            .map(String::from)
            .collect();
        assert_eq!(args[0], "/usr/local/bin/dmq", "{unit}");
        assert!(
            exec.contains(&format!("--data-dir /var/lib/dmq/{role}-%i")),
            "{unit}: data under /var/lib/dmq"
        );
        let mut argv = vec![DMQ.to_string()];
        argv.extend(args[1..].iter().cloned());
        let id: i64 = instance.parse().expect("numeric instance");
        let (port, field) = if role == "metadata" {
            let node = example.metadata_node(id as u64).expect("listed node");
            (node.port, "nodeId")
        } else {
            let broker = example.storage_node(id as i32).expect("listed broker");
            (broker.port, "brokerId")
        };
        let health = start_as_host("dmq-host", port, &argv, &[("RUST_LOG", "info")]);
        assert_eq!(health[field], id, "{unit} ExecStart: /health {health}");
    }
}

// --- Kubernetes --------------------------------------------------------------------------------

fn manifests() -> Vec<PathBuf> {
    let dir = repo().join("deploy/k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "manifests in {}", dir.display());
    files
}

/// Every object of the manifests, by kind and name.
fn k8s_objects(files: &[PathBuf]) -> BTreeMap<(String, String), Value> {
    let out = run(Command::new(venv_tool("python"))
        .arg("-c")
        .arg(
            "import json, sys, yaml\n\
         docs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]\n\
         json.dump(docs, sys.stdout)",
        )
        .args(files));
    assert!(out.status.success(), "YAML: {}", text(&out));
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON from PyYAML");
    let mut objects = BTreeMap::new();
    for d in docs {
        let key = (
            d["kind"].as_str().expect("kind").to_string(),
            d["metadata"]["name"].as_str().expect("name").to_string(),
        );
        assert_eq!(
            d["metadata"]["namespace"].as_str().unwrap_or("dmq"),
            "dmq",
            "{key:?}: every object in the namespace dmq"
        );
        assert!(objects.insert(key.clone(), d).is_none(), "{key:?} twice");
    }
    objects
}

fn selects(selector: &Value, labels: &Value) -> bool {
    let sel = selector.as_object().expect("selector labels");
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The value of `--name=value` (or `--name value`) in a container's args.
fn flag(args: &[String], name: &str) -> Option<String> {
    let long = format!("--{name}");
    let prefix = format!("{long}=");
    args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix(&prefix)
            .map(String::from)
            .or_else(|| (a == &long).then(|| args.get(i + 1).cloned()).flatten())
    })
}

#[test]
fn kubernetes_manifests_validate_and_pods_start() {
    let files = manifests();
    // The official schemas of an older and the newest bundled Kubernetes, strict (unknown
    // fields are errors), offline.
    for version in ["1.28.0", "1.37.0"] {
        let out = run(Command::new(venv_tool("kubernetes-validate"))
            .args(["--strict", "--quiet", "-k", version])
            .args(&files));
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "kubernetes-validate -k {version}: {}",
            text(&out)
        );
    }

    let objects = k8s_objects(&files);
    let of_kind = |kind: &str| -> Vec<&Value> {
        objects
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|(_, v)| v)
            .collect()
    };
    let cm = &objects[&("ConfigMap".to_string(), "dmq-services".to_string())];
    let services_json = cm["data"]["services.json"]
        .as_str()
        .expect("services.json in the ConfigMap");
    let config = ServicesConfig::parse(services_json, "the dmq-services ConfigMap")
        .unwrap_or_else(|e| panic!("{e}"));

    let mut seen_roles = BTreeSet::new();
    let data = tempfile::tempdir().expect("temp dir");
    let config_dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(config_dir.path().join("services.json"), services_json).expect("write");
    for sts in of_kind("StatefulSet") {
        let name = sts["metadata"]["name"].as_str().expect("name");
        let ns = sts["metadata"]["namespace"].as_str().expect("namespace");
        let spec = &sts["spec"];
        let replicas = spec["replicas"].as_u64().expect("replicas");
        let pod = &spec["template"];
        let labels = &pod["metadata"]["labels"];
        assert!(selects(&spec["selector"]["matchLabels"], labels), "{name}");

        // The governing Service: headless, publishing pods before they are ready.
        let svc_name = spec["serviceName"].as_str().expect("serviceName");
        let svc = &objects[&("Service".to_string(), svc_name.to_string())];
        assert_eq!(svc["spec"]["clusterIP"], "None", "{svc_name} is headless");
        assert_eq!(svc["spec"]["publishNotReadyAddresses"], true, "{svc_name}");
        assert!(selects(&svc["spec"]["selector"], labels), "{svc_name}");
        assert_eq!(spec["podManagementPolicy"], "Parallel", "{name}");

        // A PodDisruptionBudget letting one pod go at a time.
        let pdbs: Vec<&Value> = of_kind("PodDisruptionBudget")
            .into_iter()
            .filter(|p| selects(&p["spec"]["selector"]["matchLabels"], labels))
            .collect();
        assert_eq!(pdbs.len(), 1, "{name}: one PodDisruptionBudget");
        assert_eq!(pdbs[0]["spec"]["maxUnavailable"], 1, "{name}");

        let podspec = &pod["spec"];
        assert_eq!(podspec["securityContext"]["runAsNonRoot"], true, "{name}");
        let containers = podspec["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "{name}");
        let c = &containers[0];
        assert!(
            c.get("command").is_none(),
            "{name}: the image's ENTRYPOINT (dmq) runs the args"
        );
        let args: Vec<String> = c["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("string arg").to_string())
            .collect();
        let ports: BTreeMap<&str, u64> = c["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().expect("port name"),
                    p["containerPort"].as_u64().expect("containerPort"),
                )
            })
            .collect();
        for (probe, path) in [
            ("readinessProbe", "/health/ready"),
            ("livenessProbe", "/health"),
        ] {
            let get = &c[probe]["httpGet"];
            assert_eq!(get["path"], path, "{name} {probe}");
            let port = get["port"].as_str().expect("named probe port");
            assert!(ports.contains_key(port), "{name} {probe}: port {port}");
        }
        assert!(
            c["resources"]["requests"]["cpu"].is_string()
                && c["resources"]["requests"]["memory"].is_string(),
            "{name}: resource requests"
        );
        // The data volume is a per-pod claim mounted where --data-dir points.
        let claims: Vec<&str> = spec["volumeClaimTemplates"]
            .as_array()
            .expect("volumeClaimTemplates")
            .iter()
            .map(|t| t["metadata"]["name"].as_str().expect("claim name"))
            .collect();
        let data_mount = c["volumeMounts"]
            .as_array()
            .expect("volumeMounts")
            .iter()
            .find(|m| claims.contains(&m["name"].as_str().unwrap_or_default()))
            .expect("a claim mounted")["mountPath"]
            .as_str()
            .expect("mountPath")
            .to_string();
        let data_dir = flag(&args, "data-dir").expect("--data-dir");
        assert!(
            data_dir.starts_with(&format!("{data_mount}/")),
            "{name}: --data-dir {data_dir} is below the claim's mount {data_mount} (not its root, \
             where a file system may keep lost+found)"
        );
        assert_eq!(
            flag(&args, "config").as_deref(),
            Some("/etc/dmq/services.json"),
            "{name}"
        );
        let base: u64 = flag(&args, "id-from-hostname")
            .expect("--id-from-hostname")
            .parse()
            .expect("numeric base");
        assert_eq!(flag(&args, "bind").as_deref(), Some("0.0.0.0"), "{name}");
        let grace = podspec["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds");

        // services.json names pod <sts>-<ordinal> at its stable DNS name, with the id that
        // --id-from-hostname gives it, on the container's ports.
        let dns = |ordinal: u64| format!("{name}-{ordinal}.{svc_name}.{ns}.svc.cluster.local");
        let role = args[0].as_str();
        seen_roles.insert(role.to_string());
        let (health_port, field) = match role {
            "metadata" => {
                let nodes = &config.services.metadata_services;
                assert_eq!(nodes.len() as u64, replicas, "{name}: one entry per pod");
                for n in nodes {
                    let host = dns(n.id - base);
                    assert_eq!(n.host, host, "metadata node {}", n.id);
                    assert_eq!(n.base_url(), format!("http://{host}:{}", n.port));
                    assert_eq!(Some(&u64::from(n.port)), ports.get("http"), "node {}", n.id);
                }
                (ports["http"], "nodeId")
            }
            "broker" => {
                let brokers = &config.services.storage_services;
                assert_eq!(brokers.len() as u64, replicas, "{name}: one entry per pod");
                for b in brokers {
                    let ordinal = u64::try_from(b.id).expect("id") - base;
                    let host = dns(ordinal);
                    assert_eq!(b.host, host, "broker {}", b.id);
                    assert_eq!(b.base_url(), format!("http://{host}:{}", b.port));
                    assert_eq!(Some(&u64::from(b.port)), ports.get("http"), "{}", b.id);
                    assert_eq!(
                        Some(&u64::from(b.kafka_port())),
                        ports.get("kafka"),
                        "{}",
                        b.id
                    );
                }
                // Brokers beyond the file (kubectl scale) join with explicit flags.
                assert_eq!(
                    flag(&args, "host").as_deref(),
                    Some(
                        format!("$(POD_NAME).{svc_name}.$(POD_NAMESPACE).svc.cluster.local")
                            .as_str()
                    ),
                    "{name}"
                );
                assert_eq!(
                    flag(&args, "http-port"),
                    Some(ports["http"].to_string()),
                    "{name}"
                );
                assert_eq!(
                    flag(&args, "kafka-port"),
                    Some(ports["kafka"].to_string()),
                    "{name}"
                );
                assert!(grace >= 45, "{name}: time for a controlled shutdown (15 s)");
                (ports["http"], "brokerId")
            }
            other => panic!("{name}: unexpected role {other}"),
        };

        // The last pod, started as Kubernetes would: ENTRYPOINT + args with $(VAR)s expanded,
        // under the pod's host name, with the ConfigMap at its mount path.
        let ordinal = replicas - 1;
        let pod_name = format!("{name}-{ordinal}");
        let argv: Vec<String> = std::iter::once(DMQ.to_string())
            .chain(args.iter().map(|a| {
                a.replace("$(POD_NAME)", &pod_name)
                    .replace("$(POD_NAMESPACE)", ns)
                    .replace(
                        "/etc/dmq/services.json",
                        &config_dir
                            .path()
                            .join("services.json")
                            .display()
                            .to_string(),
                    )
                    .replace(&data_mount, &data.path().display().to_string())
            }))
            .collect();
        let port = u16::try_from(health_port).expect("port");
        let health = start_as_host(&pod_name, port, &argv, &[("RUST_LOG", "info")]);
        assert_eq!(
            health[field],
            base + ordinal,
            "pod {pod_name}: /health {health}"
        );
    }
    assert_eq!(
        seen_roles,
        BTreeSet::from(["broker".to_string(), "metadata".to_string()]),
        "a StatefulSet for each role"
    );
}

// --- Docker ------------------------------------------------------------------------------------

/// `(INSTRUCTION, arguments)` of a Dockerfile, continuation lines joined, comments dropped.
fn dockerfile(path: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in read(path).lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let full = std::mem::take(&mut pending);
        let (op, rest) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
        out.push((op.to_ascii_uppercase(), rest.trim().to_string()));
    }
    out
}

#[test]
fn dockerfile_lints_clean_and_runs_dmq_as_non_root() {
    let path = repo().join("deploy/Dockerfile");
    // hadolint parses the Dockerfile with a real grammar and lints it (shell in RUN with
    // ShellCheck): any finding, even "info", fails.
    let out = run(Command::new(venv_tool("hadolint"))
        .args(["--no-color", "--failure-threshold", "info"])
        .arg(&path));
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "hadolint {}: {}",
        path.display(),
        text(&out)
    );

    let all = dockerfile(&path);
    let froms: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| op == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(froms.len() >= 2, "multi-stage: a build and a runtime stage");
    assert!(
        all[froms[0]].1.to_lowercase().contains(" as build"),
        "first stage named build"
    );
    let runtime = &all[*froms.last().expect("a stage")..];
    let get = |op: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    assert!(
        !runtime[0].1.contains("rust:"),
        "the runtime stage is slim, not the Rust image"
    );
    assert!(
        get("COPY").iter().any(|c| c.starts_with("--from=build ")),
        "the runtime stage takes the binary from the build stage"
    );
    let user = get("USER");
    let user = user.last().expect("USER in the runtime stage");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("USER {user}: a numeric uid (runAsNonRoot can check it)"));
    assert_ne!(uid, 0, "not root");
    let health = get("HEALTHCHECK");
    assert!(
        health.len() == 1 && health[0].contains("/health/ready"),
        "HEALTHCHECK on /health/ready: {health:?}"
    );
    assert!(
        get("VOLUME").iter().any(|v| v.contains("/var/lib/dmq")),
        "data volume"
    );
    assert_eq!(get("ENTRYPOINT"), vec![r#"["/usr/local/bin/dmq"]"#]);
    // Every port of the example topology is exposed.
    let mut exposed = BTreeSet::new();
    for spec in get("EXPOSE").iter().flat_map(|e| e.split_whitespace()) {
        let spec = spec.trim_end_matches("/tcp");
        let (a, b) = spec.split_once('-').unwrap_or((spec, spec));
        let (a, b): (u16, u16) = (a.parse().expect("port"), b.parse().expect("port"));
        exposed.extend(a..=b);
    }
    let example = ServicesConfig::load(&repo().join("config/services.json")).expect("config");
    for m in &example.services.metadata_services {
        assert!(exposed.contains(&m.port), "EXPOSE {}", m.port);
    }
    for b in &example.services.storage_services {
        assert!(exposed.contains(&b.port), "EXPOSE {}", b.port);
        assert!(
            exposed.contains(&b.kafka_port()),
            "EXPOSE {}",
            b.kafka_port()
        );
    }
    // Files the Dockerfile copies from the context exist, and .dockerignore keeps the context
    // small without leaving out what the build needs.
    for (op, args) in &all {
        if op == "COPY" && !args.starts_with("--from") {
            let parts: Vec<&str> = args.split_whitespace().collect();
            for src in &parts[..parts.len() - 1] {
                assert!(
                    repo().join(src).exists(),
                    "COPY {src}: not in the repository"
                );
            }
        }
    }
    let ignore = read(&repo().join(".dockerignore"));
    let ignored: BTreeSet<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for must in ["target", ".git"] {
        assert!(ignored.contains(must), ".dockerignore leaves out {must}");
    }
    for needed in ["Cargo.toml", "Cargo.lock", "crates", "config"] {
        assert!(
            !ignored.iter().any(|l| l.trim_start_matches("/") == needed),
            ".dockerignore must keep {needed}"
        );
    }
}

// --- several hosts -----------------------------------------------------------------------------

#[test]
fn multihost_script_passes_shellcheck() {
    let script = repo().join("scripts/multihost.sh");
    // Every finding, down to style, fails.
    let out = run(Command::new(venv_tool("shellcheck"))
        .args(["--severity=style", "--shell=bash"])
        .arg(&script));
    assert!(
        out.status.success(),
        "shellcheck {}: {}",
        script.display(),
        text(&out)
    );
}

#[test]
fn cluster_across_network_namespaces() {
    let script = repo().join("scripts/multihost.sh");
    let started = Instant::now();
    // The script bounds each of its waits; `timeout` bounds the whole (its EXIT trap cleans up).
    let out = run(Command::new("timeout")
        .args(["--kill-after=10", "150", "bash"])
        .arg(&script)
        .arg(DMQ));
    let took = started.elapsed();
    let report = text(&out);
    eprintln!("{report}");
    assert!(
        out.status.success(),
        "{} failed after {took:?}",
        script.display()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.starts_with("multihost: PASS")),
        "no PASS line"
    );
    // Nothing left behind: the run's namespaces (and so their links), processes and files.
    let run_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("multihost: run id "))
        .expect("run id line")
        .trim()
        .to_string();
    let work = stdout
        .lines()
        .find_map(|l| l.strip_prefix("multihost: work dir "))
        .expect("work dir line")
        .trim()
        .to_string();
    let netns = run(Command::new("ip").args(["netns", "list"]));
    let left: Vec<String> = String::from_utf8_lossy(&netns.stdout)
        .lines()
        .filter(|l| l.contains(&format!("dmqmh{run_id}")))
        .map(String::from)
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(!Path::new(&work).exists(), "{work} left behind");
    let mut procs = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmdline).contains(&work) {
                procs.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    assert!(
        procs.is_empty(),
        "processes of the run left behind: {procs:?}"
    );
    assert!(took < Duration::from_secs(90), "took {took:?}");
}

// --- the id flags ------------------------------------------------------------------------------

#[test]
fn id_flags_are_required_exclusive_and_need_a_numbered_hostname() {
    let out = run(Command::new(DMQ).arg("metadata"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--node-id"),
        "no id: {}",
        text(&out)
    );
    let out =
        run(Command::new(DMQ).args(["broker", "--broker-id", "101", "--id-from-hostname", "101"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cannot be used with"),
        "both ids: {}",
        text(&out)
    );
    let out = run(Command::new("unshare").args(["--uts", "sh", "-c"]).arg(
        "hostname dmq-broker && exec \"$0\" broker --id-from-hostname 101 --http-port 1 --kafka-port 1",
    ).arg(DMQ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(2) && err.contains("does not end in a number"),
        "host name without a number: {}",
        text(&out)
    );
}
