//! What the local API answers, as typed structs shared by the agent (which fills them) and the
//! CLI (which reads them): one definition of every field name.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::policy::Direction;

/// `netstack status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The node's name.
    pub node: String,
    /// Its pod CIDR.
    #[serde(rename = "podCIDR")]
    pub pod_cidr: String,
    /// `always` or `policy`.
    pub allow_localhost: String,
    /// Where the datapath is pinned.
    pub bpffs: PathBuf,
    /// Seconds since the agent started.
    pub uptime_seconds: u64,
    /// Live endpoints.
    pub endpoints: usize,
    /// Policies in force.
    pub policies: usize,
    /// Pod identities in use.
    pub identities: usize,
    /// Syncs done.
    pub syncs: u64,
    /// The latest sync.
    pub last_sync: Option<LastSync>,
    /// Files read, with their resources in force.
    pub files: Vec<FileStatus>,
    /// Problems of the latest sync.
    pub errors: Vec<String>,
    /// Fields the files in force carry that the API server would prune.
    pub warnings: Vec<String>,
    /// Conntrack garbage collection.
    pub conntrack_gc: ConntrackGcStatus,
    /// The cluster's kvstore, when the agent has one: health and last sync.
    #[serde(default)]
    pub kvstore: Option<crate::cluster::membership::KvStoreHealth>,
    /// How pod traffic reaches other nodes (`native` or `tunnel`).
    #[serde(default)]
    pub routing: String,
    /// The tunnel, in tunnel mode.
    #[serde(default)]
    pub tunnel: Option<DeviceCounters>,
    /// The Kubernetes API server's watches, when the agent has that source.
    #[serde(default)]
    pub kubernetes: Option<crate::agent::sources::KubernetesStatus>,
    /// Services: frontends and what the socket LB did.
    #[serde(default)]
    pub services: Option<ServicesStatus>,
    /// Flows: the ring and what was lost where.
    #[serde(default)]
    pub flows: Option<FlowsStatus>,
    /// Where the agent's HTTP server (metrics, service map) listens, when it has one.
    #[serde(default)]
    pub http: Option<String>,
    /// Encryption between nodes, when on.
    #[serde(default)]
    pub encryption: Option<crate::encryption::node::EncryptionStatus>,
    /// The north-south load balancer on each external device: ingress is what came from
    /// outside (and SNAT replies), egress the replies of local backends.
    #[serde(default)]
    pub north_south: Vec<DeviceCounters>,
}

/// The flow collector's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowsStatus {
    /// Flows the ring keeps.
    pub capacity: usize,
    /// Flows ever stored.
    pub stored: u64,
    /// Events read from the datapath's ring buffer.
    pub received: u64,
    /// Events that could not be decoded.
    pub undecodable: u64,
    /// Events the datapath could not put into its ring buffer (full).
    pub lost_in_datapath: u64,
    /// Flows overwritten in the ring before a follower (`observe -f`) read them.
    #[serde(default)]
    pub lost_to_followers: u64,
    /// The monitor aggregation (`medium`, `none`).
    #[serde(default)]
    pub aggregation: String,
}

/// The node's services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicesStatus {
    /// Frontends balanced.
    pub frontends: usize,
    /// Sockets translated to a backend.
    pub translated: u64,
    /// Connects and sends refused for want of a backend.
    pub refused: u64,
    /// Peer addresses translated back (recvmsg, getpeername).
    pub reversed: u64,
    /// Host binds to an external frontend's port refused.
    pub binds_refused: u64,
    /// Connected UDP sockets destroyed because their backend went away.
    #[serde(default)]
    pub udp_sockets_destroyed: u64,
    /// Why services are not balanced, when they are not.
    pub error: Option<String>,
}

/// The tunnel's device and what crossed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DeviceCounters {
    /// Up, with its counters: ingress is what came out of the tunnel, egress what went in.
    Counting {
        /// The device.
        device: String,
        /// Packets and bytes by direction and reason.
        verdicts: Vec<VerdictRow>,
    },
    /// Its counters cannot be read.
    Unavailable {
        /// Why.
        error: String,
    },
}

/// What the latest sync did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastSync {
    /// How long it took.
    pub micros: u64,
    /// Policy entries written.
    pub entries_written: usize,
    /// Policy entries removed.
    pub entries_removed: usize,
}

/// One source file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStatus {
    /// Its path.
    pub file: PathBuf,
    /// Resources in force from it.
    pub resources: usize,
}

/// Conntrack garbage collection: its runs, or why it cannot run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConntrackGcStatus {
    /// Running.
    Running {
        /// Runs so far.
        runs: u64,
        /// Connections forgotten so far.
        removed: u64,
    },
    /// Not running: the kernel's jiffies cannot be read.
    Unavailable {
        /// Why.
        error: String,
    },
}

/// One row of `netstack endpoint list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRow {
    /// Endpoint id.
    pub id: u32,
    /// `namespace/name` of the pod.
    pub pod: String,
    /// Its address.
    pub ipv4: Ipv4Addr,
    /// Its security identity.
    pub identity: u32,
    /// The host side of its veth.
    pub interface: String,
    /// Its network namespace.
    pub netns: String,
    /// Its security labels.
    pub labels: String,
    /// Entries in its policy map.
    pub policy_entries: usize,
}

/// One row of `netstack identity list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRow {
    /// The number.
    pub identity: u32,
    /// Its labels.
    pub labels: String,
}

/// One row of `netstack policy get`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRow {
    /// `CiliumNetworkPolicy` or `CiliumClusterwideNetworkPolicy`.
    pub kind: String,
    /// `namespace/name` or `name`.
    pub name: String,
    /// Its rules.
    pub rules: usize,
    /// Nodes enforcing it out of the nodes that have it (`2/3`; this node alone without a
    /// kvstore).
    #[serde(default)]
    pub enforcing: String,
    /// Each node's status, as the cluster's collector aggregated them.
    #[serde(default)]
    pub nodes: std::collections::BTreeMap<String, crate::cluster::policy_status::NodePolicyStatus>,
}

/// One row of `netstack bpf policy get`: a policy map entry as the datapath sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyEntryRow {
    /// Direction.
    pub direction: Direction,
    /// Peer identity (0: any).
    pub identity: u32,
    /// Protocol and ports (`TCP/80`, `any/*`).
    pub l4: String,
    /// `allow` or `deny`.
    pub verdict: String,
    /// L7 proxy port.
    pub proxy_port: u16,
    /// Packets that matched.
    pub packets: u64,
}

/// One row of `netstack bpf ipcache list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpcacheRow {
    /// The address or prefix.
    pub prefix: String,
    /// Its identity.
    pub identity: u32,
    /// The node it sits behind, in tunnel mode.
    pub tunnel_endpoint: Option<Ipv4Addr>,
    /// How pods' packets to it leave: `none`, `wireguard`, `required` (strict mode: dropped).
    #[serde(default)]
    pub encrypt: String,
}

/// One row of an endpoint's verdict counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictRow {
    /// Direction.
    pub direction: Direction,
    /// Cilium's name of the reason (`FORWARDED`, `POLICY_DENIED`).
    pub reason: String,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

impl From<(Direction, crate::datapath::abi::drop_reason, crate::datapath::abi::verdict_count)> for VerdictRow {
    fn from(
        (direction, reason, count): (Direction, crate::datapath::abi::drop_reason, crate::datapath::abi::verdict_count),
    ) -> VerdictRow {
        VerdictRow {
            direction,
            reason: crate::datapath::abi::reason_name(reason),
            packets: count.packets,
            bytes: count.bytes,
        }
    }
}
