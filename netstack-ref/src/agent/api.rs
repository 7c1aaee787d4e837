//! The agent's local API: one JSON request per connection on a Unix socket in the state
//! directory, one JSON response (`{"ok": …}` or `{"error": "…"}`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use super::api_types::{EndpointRow, IdentityRow, IpcacheRow, PolicyEntryRow, PolicyRow, VerdictRow};
use super::Agent;
use crate::policy::resolve::describe_key;

/// What the CLI asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    /// Agent health and counts.
    Status,
    /// Endpoints with address, identity and labels.
    EndpointList,
    /// Identities and their labels.
    IdentityList,
    /// Policies in force.
    PolicyGet,
    /// One endpoint's policy map as the datapath sees it (by id or `namespace/pod`).
    BpfPolicyGet {
        /// Endpoint id or pod key.
        endpoint: String,
    },
    /// One endpoint's verdict counters.
    EndpointVerdicts {
        /// Endpoint id or pod key.
        endpoint: String,
    },
    /// Re-read the sources now.
    Sync,
    /// Encryption's mode, backend, key and peers.
    EncryptionStatus,
    /// A new encryption key, published; peers switch over without breaking connections.
    EncryptionRotate,
    /// The cluster's nodes, from the kvstore.
    NodeList,
    /// The ipcache as the datapath sees it.
    BpfIpcacheList,
    /// Services: each frontend with its backends.
    ServiceList,
    /// The load balancer's maps as the datapath sees them.
    BpfLbList,
    /// Flows from the ring: the last `number` (or the first, with `first`), or everything
    /// from sequence number `since` on (a follower's next read).
    Flows {
        /// How many.
        #[serde(default)]
        number: Option<usize>,
        /// The oldest instead of the newest.
        #[serde(default)]
        first: bool,
        /// Everything from this sequence number on.
        #[serde(default)]
        since: Option<u64>,
    },
}

/// Flows as the API returns them.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct FlowsReply {
    /// The flows, oldest first.
    pub flows: Vec<crate::observe::flow::Flow>,
    /// The sequence number to read from next (`since`).
    pub next: u64,
    /// Flows the ring overwrote before this read got to them.
    pub lost: u64,
}

/// What went wrong on either side of the local API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The socket could not be bound (agent) or reached (client).
    #[error("{what} {path}: {source}{hint}")]
    Socket {
        /// `bind` or `connect to the agent at`.
        what: &'static str,
        /// The socket.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
        /// A hint for the user (empty when none).
        hint: &'static str,
    },
    /// Reading or writing a request or reply.
    #[error("agent API: {0}")]
    Io(#[from] std::io::Error),
    /// A request or reply that is not the API's JSON.
    #[error("agent API: {0}")]
    Json(#[from] serde_json::Error),
    /// The request named an endpoint the agent does not have.
    #[error("no endpoint {0:?} (give its id or namespace/pod)")]
    NoEndpoint(String),
    /// The endpoint's datapath could not be read.
    #[error(transparent)]
    Datapath(#[from] crate::datapath::DatapathError),
    /// The agent could not answer (its message).
    #[error("{0}")]
    Agent(String),
    /// The cluster's kvstore could not answer.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::kvstore::KvError),
}

fn find<'a>(agent: &'a Agent, endpoint: &str) -> Result<&'a super::LiveEndpoint, ApiError> {
    agent
        .endpoints()
        .iter()
        .find(|(key, live)| key.as_str() == endpoint || live.record.id.to_string() == endpoint)
        .map(|(_, l)| l)
        .ok_or_else(|| ApiError::NoEndpoint(endpoint.to_owned()))
}

/// Answers one request.
pub fn handle(agent: &mut Agent, request: &Request) -> Result<serde_json::Value, ApiError> {
    Ok(match request {
        Request::Status => serde_json::to_value(agent.status())?,
        Request::Sync => {
            agent.sync(true);
            serde_json::to_value(agent.status())?
        }
        Request::EncryptionStatus => match agent.encryption_status() {
            Some(status) => serde_json::to_value(status)?,
            None => return Err(ApiError::Agent(crate::encryption::node::EncryptionError::Off.to_string())),
        },
        Request::EncryptionRotate => {
            let public_key = agent.rotate_encryption_key().map_err(|e| ApiError::Agent(e.to_string()))?;
            serde_json::json!({ "publicKey": public_key })
        }
        Request::EndpointList => serde_json::to_value(endpoint_rows(agent))?,
        Request::NodeList => {
            let nodes = agent.nodes()?;
            serde_json::to_value(nodes)?
        }
        Request::IdentityList => {
            let rows: Vec<IdentityRow> =
                agent.identities().into_iter().map(|(identity, labels)| IdentityRow { identity, labels }).collect();
            serde_json::to_value(rows)?
        }
        Request::PolicyGet => serde_json::to_value(policy_rows(agent))?,
        Request::BpfPolicyGet { endpoint } => {
            let entries = find(agent, endpoint)?.datapath.read_policy()?;
            let rows: Vec<PolicyEntryRow> = entries
                .iter()
                .map(|(k, v, packets)| PolicyEntryRow {
                    direction: k.direction,
                    identity: k.identity,
                    l4: describe_key(k),
                    verdict: if v.deny { "deny" } else { "allow" }.into(),
                    proxy_port: v.proxy_port,
                    packets: *packets,
                })
                .collect();
            serde_json::to_value(rows)?
        }
        Request::BpfIpcacheList => {
            let rows: Vec<IpcacheRow> = agent
                .read_ipcache()?
                .into_iter()
                .map(|(prefix, target)| IpcacheRow {
                    prefix: prefix.to_string(),
                    identity: target.identity,
                    tunnel_endpoint: target.tunnel_endpoint,
                    encrypt: target.encrypt.name().to_owned(),
                })
                .collect();
            serde_json::to_value(rows)?
        }
        Request::ServiceList => serde_json::to_value(crate::services::view::service_rows(agent.services()))?,
        Request::BpfLbList => {
            let lb = agent.services().datapath().map_err(|e| ApiError::Agent(format!("services: {e}")))?;
            serde_json::to_value(crate::services::view::lb_rows(&lb.maps)?)?
        }
        Request::Flows { number, first, since } => {
            let ring = agent.flows().ring();
            let reply = match since {
                Some(from) => {
                    let read = ring.read_from(*from);
                    FlowsReply {
                        flows: read.flows.into_iter().map(|(_, f)| (*f).clone()).collect(),
                        next: read.next,
                        lost: read.lost,
                    }
                }
                None => {
                    let n = number.unwrap_or(ring.capacity());
                    let flows = if *first { ring.first(n) } else { ring.last(n) };
                    FlowsReply { flows: flows.iter().map(|f| (**f).clone()).collect(), next: ring.written(), lost: 0 }
                }
            };
            serde_json::to_value(reply)?
        }
        Request::EndpointVerdicts { endpoint } => {
            let rows = find(agent, endpoint)?.datapath.verdicts()?;
            let rows: Vec<VerdictRow> = rows.into_iter().map(VerdictRow::from).collect();
            serde_json::to_value(rows)?
        }
    })
}

fn endpoint_rows(agent: &Agent) -> Vec<EndpointRow> {
    agent
        .endpoints()
        .values()
        .map(|l| EndpointRow {
            id: l.record.id,
            pod: l.record.pod.clone(),
            ipv4: l.record.ipv4,
            identity: l.identity,
            interface: l.record.host_if.clone(),
            netns: l.record.netns.clone(),
            labels: l.labels.to_string(),
            policy_entries: l.policy.len(),
        })
        .collect()
}

fn policy_rows(agent: &Agent) -> Vec<PolicyRow> {
    agent
        .policies()
        .iter()
        .map(|p| {
            let key = p.key();
            let cluster = agent.policy_status().get(&key);
            let local = agent.policy_enforcement().get(&key);
            PolicyRow {
                kind: if p.namespace.is_some() { "CiliumNetworkPolicy" } else { "CiliumClusterwideNetworkPolicy" }
                    .into(),
                rules: p.rules.len(),
                // Across the cluster when there is one, else this node alone.
                enforcing: match (cluster, local) {
                    (Some(status), _) => status.summary(),
                    (None, Some(status)) => if status.enforcing { "1/1" } else { "0/1" }.to_owned(),
                    (None, None) => "-".to_owned(),
                },
                nodes: cluster.map(|s| s.nodes.clone()).unwrap_or_default(),
                name: key,
            }
        })
        .collect()
}

/// Serves `socket` on a thread until the process ends.
pub fn serve(socket: &Path, agent: Arc<Mutex<Agent>>) -> Result<JoinHandle<()>, ApiError> {
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).map_err(|source| ApiError::Socket {
        what: "bind",
        path: socket.into(),
        source,
        hint: "",
    })?;
    Ok(std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let response = match serde_json::from_str::<Request>(&line) {
                Ok(request) => match handle(&mut agent.lock().expect("not poisoned"), &request) {
                    Ok(v) => serde_json::json!({ "ok": v }),
                    Err(e) => serde_json::json!({ "error": e.to_string() }),
                },
                Err(e) => serde_json::json!({ "error": format!("bad request: {e}") }),
            };
            let mut w = &stream;
            let _ = writeln!(w, "{response}");
        }
    }))
}

/// Sends one request to the agent at `socket`.
pub fn call(socket: &Path, request: &Request) -> Result<serde_json::Value, ApiError> {
    let stream = UnixStream::connect(socket).map_err(|source| ApiError::Socket {
        what: "connect to the agent at",
        path: socket.into(),
        source,
        hint: " (is `netstack agent` running?)",
    })?;
    let mut w = &stream;
    writeln!(w, "{}", serde_json::to_string(request)?)?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let mut reply: serde_json::Value = serde_json::from_str(&line)?;
    if let Some(e) = reply.get("error") {
        return Err(ApiError::Agent(e.as_str().unwrap_or("error").to_string()));
    }
    Ok(reply["ok"].take())
}
