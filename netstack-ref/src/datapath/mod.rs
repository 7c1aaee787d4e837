//! The endpoint datapath (`bpf-programs/netstack/endpoint.c`): loaded once per pod from one
//! compiled object, its constants rewritten (endpoint id, identity, addresses, host ifindex and
//! MAC), attached with TCX to the host side of the pod's veth, and pinned so the agent can
//! restart without the pod noticing.
//!
//! Pins: the ipcache, conntrack and ct_epoch maps are shared by every endpoint and pinned by
//! name in the node's bpffs directory; each endpoint's policy map, counters, prog array and
//! links are pinned in `endpoints/<id>/` beneath it.

pub mod abi;
pub mod events;
pub mod node_config;
pub mod nodeport;
pub mod overlay;
pub mod pinned;
pub mod sock_lb;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use ebpf_core::insn::{helpers::helper_id, AluOp, Assembler, Reg};
use ebpf_core::link::{Link, Tcx, TcxAttach};
use ebpf_core::program::TestRun;
use ebpf_core::{LoadOptions, Map, Program, ProgramSpec, ProgramType};
use ebpf_maps::{Array, LpmTrie, LruHashMap, PerCpuArray, UpdateFlags};

use crate::file_error::FileError;
use crate::policy::api::Cidr;
use crate::policy::{Direction, PolicyKey, PolicyMapState, PolicyValue};
use abi::skeleton::{Endpoint, OpenEndpoint};
use abi::{
    ct_closing, ct_entry, ct_key, decode_policy, drop_reason, encode_policy, ipcache_cidr, ipcache_key,
    ipcache_key_data, ipcache_value, policy_entry, policy_key_data, verdict_count, verdict_slot,
};

/// The endpoint object, built by `bpf-programs/build.sh` (embedded by its skeleton).
pub const ENDPOINT_OBJECT: &[u8] = abi::skeleton::OBJECT;

/// Datapath errors: which operation on which object, and the library's error beneath.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// A kernel operation failed.
    #[error("{what}: {source}")]
    Kernel {
        /// What was being done.
        what: String,
        /// The library's error.
        #[source]
        source: Box<ebpf_core::Error>,
    },
    /// A map operation failed.
    #[error("{what}: {source}")]
    Map {
        /// What was being done.
        what: String,
        /// The map crate's error.
        #[source]
        source: Box<ebpf_maps::MapError>,
    },
    /// The object does not match what the agent expects.
    #[error("endpoint object: {0}")]
    Object(Box<ebpf_core::object::ObjectError>),
    /// The kernel's jiffies cannot be read.
    #[error("jiffies clock: {0}")]
    Clock(#[source] ebpf_core::insn::AsmError),
    /// The kernel's configuration does not say `CONFIG_HZ`, so jiffies cannot become seconds.
    #[error("jiffies clock: the kernel's configuration has no CONFIG_HZ")]
    NoConfigHz,
    /// A Maglev table cannot be built.
    #[error("maglev table for {backends} backends: {source}")]
    Maglev {
        /// How many backends it was for.
        backends: usize,
        /// Why.
        #[source]
        source: crate::services::maglev::MaglevError,
    },
    /// A pin directory could not be made or cleared.
    #[error(transparent)]
    File(#[from] FileError),
}

type Result<T> = std::result::Result<T, DatapathError>;

impl From<ebpf_core::object::ObjectError> for DatapathError {
    fn from(e: ebpf_core::object::ObjectError) -> DatapathError {
        DatapathError::Object(Box::new(e))
    }
}

fn kernel(what: impl Into<String>) -> impl FnOnce(ebpf_core::Error) -> DatapathError {
    let what = what.into();
    move |source| DatapathError::Kernel { what, source: Box::new(source) }
}

fn map_err(what: impl Into<String>) -> impl FnOnce(ebpf_maps::MapError) -> DatapathError {
    let what = what.into();
    move |source| DatapathError::Map { what, source: Box::new(source) }
}

/// What the object is templated with for one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointConfig {
    /// The endpoint id (conntrack entries are keyed by it).
    pub id: u32,
    /// The endpoint's security identity.
    pub identity: u32,
    /// Its IPv4 address (the only source address it may send from).
    pub ipv4: Ipv4Addr,
    /// Its IPv6 address, if any.
    pub ipv6: Option<Ipv6Addr>,
    /// The host-side veth's ifindex.
    pub host_ifindex: u32,
    /// The host-side veth's MAC (the datapath answers ARP with it).
    pub host_mac: [u8; 6],
    /// The node's VXLAN device, to which the endpoint sends its pod's packets for other nodes'
    /// pods (tunnel routing); 0 without a tunnel.
    pub tunnel_ifindex: u32,
}

impl EndpointConfig {
    /// A config for an endpoint run only under `BPF_PROG_TEST_RUN` (tests, benchmarks,
    /// diagnostics): no interface stands behind it, so ifindex 1 and a fixed MAC fill in.
    pub fn detached(id: u32, identity: u32, ipv4: Ipv4Addr) -> EndpointConfig {
        EndpointConfig {
            id,
            identity,
            ipv4,
            ipv6: None,
            host_ifindex: 1,
            host_mac: [2, 0, 0, 0, 0, 1],
            tunnel_ifindex: 0,
        }
    }
}

/// The endpoint object, opened (parsed and checked against its skeleton) once per process:
/// every endpoint clones it and writes its constants (a parse costs more than the program load
/// it precedes; see benches/README.md).
fn endpoint_object() -> Result<OpenEndpoint> {
    static OPENED: OnceLock<OpenEndpoint> = OnceLock::new();
    if let Some(open) = OPENED.get() {
        return Ok(open.clone());
    }
    let open = OpenEndpoint::open()?;
    Ok(OPENED.get_or_init(|| open).clone())
}

/// The endpoint object with `config`'s constants written in.
pub fn endpoint_spec(config: &EndpointConfig) -> Result<OpenEndpoint> {
    let mut open = endpoint_object()?;
    open.set_endpoint_id(config.id)?;
    open.set_endpoint_identity(config.identity)?;
    open.set_endpoint_ipv4(u32::from_ne_bytes(config.ipv4.octets()))?;
    open.set_endpoint_ipv6(config.ipv6.map_or([0; 16], |a| a.octets()))?;
    open.set_host_ifindex(config.host_ifindex)?;
    open.set_host_mac(config.host_mac)?;
    open.set_tunnel_ifindex(config.tunnel_ifindex)?;
    Ok(open)
}

/// One endpoint's live datapath: its programs (when loaded by this process), policy map,
/// counters and links.
#[derive(Debug)]
pub struct EndpointDatapath {
    id: u32,
    loaded: Option<Endpoint>,
    policy: LpmTrie<policy_key_data, policy_entry>,
    verdicts: PerCpuArray<verdict_count>,
    links: Vec<Link>,
    pin_dir: Option<PathBuf>,
}

const POLICY_PIN: &str = "policy";
const VERDICTS_PIN: &str = "verdicts";
const STAGES_PIN: &str = "stages";
const INGRESS_LINK_PIN: &str = "link_from_container";
const EGRESS_LINK_PIN: &str = "link_to_container";

impl EndpointDatapath {
    /// Loads the object for `config`; shared maps are reused from (or pinned into) `shared_pins`.
    pub fn load(config: &EndpointConfig, shared_pins: &Path) -> Result<EndpointDatapath> {
        let loaded = endpoint_spec(config)?
            .load(&LoadOptions::default().pin_dir(shared_pins))
            .map_err(kernel(format!("load endpoint {} datapath", config.id)))?;
        let policy = loaded.maps().policy().map_err(map_err("policy map"))?;
        let verdicts = loaded.maps().verdicts().map_err(map_err("verdicts map"))?;
        Ok(EndpointDatapath { id: config.id, loaded: Some(loaded), policy, verdicts, links: Vec::new(), pin_dir: None })
    }

    /// Picks up an endpoint a previous agent left pinned in `dir` (its links keep the programs
    /// running); `None` when anything is missing there.
    pub fn adopt(id: u32, dir: &Path) -> Option<EndpointDatapath> {
        let policy = LpmTrie::try_from(Map::from_pin(dir.join(POLICY_PIN)).ok()?).ok()?;
        let verdicts = PerCpuArray::try_from(Map::from_pin(dir.join(VERDICTS_PIN)).ok()?).ok()?;
        Map::from_pin(dir.join(STAGES_PIN)).ok()?;
        let links =
            vec![Link::from_pin(dir.join(INGRESS_LINK_PIN)).ok()?, Link::from_pin(dir.join(EGRESS_LINK_PIN)).ok()?];
        Some(EndpointDatapath { id, loaded: None, policy, verdicts, links, pin_dir: Some(dir.to_path_buf()) })
    }

    /// The endpoint id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The loaded object (its typed maps and programs), when this process loaded it; `None`
    /// for an adopted endpoint.
    pub fn loaded(&self) -> Option<&Endpoint> {
        self.loaded.as_ref()
    }

    /// Attaches `from_container` to TCX ingress and `to_container` to TCX egress of `ifindex`
    /// (the host-side veth, in the calling thread's namespace).
    pub fn attach(&mut self, ifindex: u32) -> Result<()> {
        let progs = self.loaded.as_ref().expect("attach follows load").progs();
        let ingress = Tcx::attach(progs.from_container(), ifindex, TcxAttach::ingress())
            .map_err(kernel(format!("attach endpoint {}", self.id)))?;
        let egress = Tcx::attach(progs.to_container(), ifindex, TcxAttach::egress())
            .map_err(kernel(format!("attach endpoint {}", self.id)))?;
        self.links = vec![ingress.into_link(), egress.into_link()];
        Ok(())
    }

    /// Pins the policy map, counters, prog array and links into `dir`, so they outlive this
    /// process.
    pub fn pin(&mut self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(FileError::at("create", dir))?;
        let maps = self.loaded.as_ref().expect("pin follows load").maps();
        let pin = |map: &Map, name: &str| map.pin(dir.join(name)).map_err(kernel(format!("pin {name}")));
        pin(self.policy.map(), POLICY_PIN)?;
        pin(self.verdicts.map(), VERDICTS_PIN)?;
        pin(maps.stages_map(), STAGES_PIN)?;
        for (link, name) in self.links.iter().zip([INGRESS_LINK_PIN, EGRESS_LINK_PIN]) {
            link.pin(dir.join(name)).map_err(kernel(format!("pin {name}")))?;
        }
        self.pin_dir = Some(dir.to_path_buf());
        Ok(())
    }

    /// Detaches the links and removes the pins: the endpoint's datapath is gone once this
    /// value drops.
    pub fn remove(mut self) -> Result<()> {
        for link in self.links.drain(..) {
            link.detach().map_err(kernel("detach endpoint link"))?;
        }
        if let Some(dir) = self.pin_dir.take() {
            std::fs::remove_dir_all(&dir).map_err(FileError::at("remove", &dir))?;
        }
        Ok(())
    }

    /// Brings the policy map from `old` to `new`, touching only entries that differ. Additions
    /// and changes go first, removals last, so a flow allowed before and after never meets a
    /// missing entry. Returns (written, removed).
    pub fn apply_policy(&self, old: &PolicyMapState, new: &PolicyMapState) -> Result<(usize, usize)> {
        let mut written = 0;
        for (key, value) in new {
            if old.get(key) != Some(value) {
                let (data, len, entry) = encode_policy(key, value);
                self.policy.insert(&data, len, &entry, UpdateFlags::ANY).map_err(map_err(format!(
                    "endpoint {}: policy entry {}",
                    self.id,
                    crate::policy::resolve::describe_key(key)
                )))?;
                written += 1;
            }
        }
        let mut removed = 0;
        for key in old.keys().filter(|k| !new.contains_key(k)) {
            let (data, len, _) = encode_policy(key, &PolicyValue::default());
            self.policy.remove(&data, len).map_err(map_err(format!("endpoint {}: remove policy entry", self.id)))?;
            removed += 1;
        }
        Ok((written, removed))
    }

    /// The policy map as the datapath sees it, with packet counts.
    pub fn read_policy(&self) -> Result<Vec<(PolicyKey, PolicyValue, u64)>> {
        let mut out: Vec<_> = self
            .policy
            .entries()
            .map_err(map_err(format!("endpoint {}: read policy", self.id)))?
            .iter()
            .map(|(data, len, entry)| decode_policy(data, *len, entry))
            .collect();
        out.sort_by_key(|(k, _, _)| *k);
        Ok(out)
    }

    /// Packets and bytes per (direction, reason), summed over CPUs; zero rows left out.
    pub fn verdicts(&self) -> Result<Vec<(Direction, drop_reason, verdict_count)>> {
        sum_verdicts(&self.verdicts, &format!("endpoint {}", self.id))
    }
}

/// The rows of a `verdicts` map (lib/counters.h): packets and bytes per (direction, reason),
/// summed over CPUs; zero rows left out. `owner` names the map's object in errors.
pub(crate) fn sum_verdicts(
    verdicts: &PerCpuArray<verdict_count>,
    owner: &str,
) -> Result<Vec<(Direction, drop_reason, verdict_count)>> {
    let mut out = Vec::new();
    for direction in Direction::BOTH {
        for &(_, reason) in drop_reason::ALL {
            let values =
                verdicts.get(&verdict_slot(direction, reason)).map_err(map_err(format!("{owner}: read verdicts")))?;
            let mut sum = verdict_count::default();
            for v in values.iter().flat_map(|v| v.iter()) {
                sum.packets += v.packets;
                sum.bytes += v.bytes;
            }
            if sum.packets > 0 {
                out.push((direction, reason, sum));
            }
        }
    }
    Ok(out)
}

/// The map `spec` describes, pinned by its name in `shared_pins`: the one pinned there, else
/// made and pinned now (the agent needs some of the node's maps before any program exists).
fn pinned_or_created(shared_pins: &Path, spec: &ebpf_core::MapSpec) -> Result<Map> {
    let path = shared_pins.join(&spec.name);
    match Map::from_pin(&path) {
        Ok(map) => Ok(map),
        Err(_) => {
            let map = Map::create(spec).map_err(kernel(format!("create {}", spec.name)))?;
            map.pin(&path).map_err(kernel(format!("pin {}", spec.name)))?;
            Ok(map)
        }
    }
}

/// The node's ipcache: which identity an address has.
#[derive(Debug)]
pub struct Ipcache {
    trie: LpmTrie<ipcache_key_data, ipcache_value>,
}

impl Ipcache {
    /// The ipcache pinned in `shared_pins` (where [`EndpointDatapath::load`] pins it), created
    /// by loading the endpoint object's maps when no endpoint has yet.
    pub fn open(shared_pins: &Path) -> Result<Ipcache> {
        let open = endpoint_object()?;
        let map = pinned_or_created(shared_pins, open.maps().ipcache())?;
        Ok(Ipcache { trie: LpmTrie::try_from(map).map_err(map_err("ipcache"))? })
    }

    /// Maps `cidr` to `identity`, reached without the tunnel.
    pub fn upsert(&self, cidr: &Cidr, identity: u32) -> Result<()> {
        self.set(cidr, IpcacheTarget { identity, tunnel_endpoint: None, encrypt: Encrypt::None })
    }

    /// Maps `cidr` to `target`.
    pub fn set(&self, cidr: &Cidr, target: IpcacheTarget) -> Result<()> {
        let (key, len) = ipcache_key(cidr);
        let value = ipcache_value {
            identity: target.identity,
            tunnel_endpoint: target.tunnel_endpoint.map_or(0, |a| u32::from_ne_bytes(a.octets())),
            encrypt_key: target.encrypt.kind(),
            ..ipcache_value::default()
        };
        self.trie.insert(&key, len, &value, UpdateFlags::ANY).map_err(map_err(format!("ipcache update {cidr}")))
    }

    /// Forgets `cidr`; `false` when it was not there.
    pub fn remove(&self, cidr: &Cidr) -> Result<bool> {
        let (key, len) = ipcache_key(cidr);
        self.trie.remove(&key, len).map_err(map_err(format!("ipcache remove {cidr}")))
    }

    /// How many prefixes it can hold.
    pub fn capacity(&self) -> f64 {
        f64::from(self.trie.map().max_entries())
    }

    /// Every prefix and what it maps to.
    pub fn entries(&self) -> Result<Vec<(Cidr, IpcacheTarget)>> {
        let raw = self.trie.entries().map_err(map_err("ipcache read"))?;
        Ok(raw
            .iter()
            .filter_map(|(k, len, v)| {
                let tunnel_endpoint = (v.tunnel_endpoint != 0).then(|| Ipv4Addr::from(v.tunnel_endpoint.to_ne_bytes()));
                let encrypt = Encrypt::from_kind(v.encrypt_key);
                Some((ipcache_cidr(k, *len)?, IpcacheTarget { identity: v.identity, tunnel_endpoint, encrypt }))
            })
            .collect())
    }
}

/// What the ipcache says of an address: its identity and, in tunnel mode, the underlay address
/// of the node it sits behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IpcacheTarget {
    /// The security identity.
    pub identity: u32,
    /// The node to send it to through the tunnel; `None` when reached without.
    pub tunnel_endpoint: Option<Ipv4Addr>,
    /// How a pod's packet to it must leave.
    pub encrypt: Encrypt,
}

/// How a pod's packet to an address must leave (`enum encrypt_kind`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Encrypt {
    /// As it is (this node's addresses, the world, and everything when the node does not
    /// encrypt).
    #[default]
    None,
    /// Through the WireGuard device (a pod of a node whose key is known).
    WireGuard,
    /// Not at all: strict mode, and the pod's node has no key yet.
    Required,
}

impl Encrypt {
    /// Its name: `none`, `wireguard`, `required`.
    pub fn name(self) -> &'static str {
        match self {
            Encrypt::None => "none",
            Encrypt::WireGuard => "wireguard",
            Encrypt::Required => "required",
        }
    }

    fn kind(self) -> u8 {
        let kind = match self {
            Encrypt::None => abi::types::encrypt_kind::ENCRYPT_NONE,
            Encrypt::WireGuard => abi::types::encrypt_kind::ENCRYPT_WIREGUARD,
            Encrypt::Required => abi::types::encrypt_kind::ENCRYPT_REQUIRED,
        };
        kind.0 as u8
    }

    fn from_kind(kind: u8) -> Encrypt {
        match u32::from(kind) {
            k if k == abi::types::encrypt_kind::ENCRYPT_WIREGUARD.0 => Encrypt::WireGuard,
            k if k == abi::types::encrypt_kind::ENCRYPT_REQUIRED.0 => Encrypt::Required,
            _ => Encrypt::None,
        }
    }
}

/// The node's conntrack table, shared by every endpoint, and the epoch that tells the
/// endpoints' per-CPU flow caches when entries were deleted.
#[derive(Debug)]
pub struct Conntrack {
    table: LruHashMap<ct_key, ct_entry>,
    epoch: Array<u32>,
}

impl Conntrack {
    /// The table pinned in `shared_pins` (by the first endpoint loaded there).
    pub fn open(shared_pins: &Path) -> Result<Conntrack> {
        let open = |name: &str| Map::from_pin(shared_pins.join(name)).map_err(kernel(format!("open {name}")));
        let object = endpoint_object()?;
        let maps = object.maps();
        let table = LruHashMap::try_from(open(&maps.conntrack().name)?).map_err(map_err("conntrack"))?;
        let epoch = Array::try_from(open(&maps.ct_epoch().name)?).map_err(map_err("ct_epoch"))?;
        Ok(Conntrack { table, epoch })
    }

    /// Every tracked connection. Packet counts lag the packets by up to a quarter second
    /// (established IPv4 flows are counted in the flow caches and added when confirmed).
    pub fn entries(&self) -> Result<Vec<(ct_key, ct_entry)>> {
        self.table.iter().collect::<std::result::Result<_, _>>().map_err(map_err("conntrack read"))
    }

    /// How many connections the table can hold.
    pub fn capacity(&self) -> f64 {
        f64::from(self.table.map().max_entries())
    }

    /// Forgets the connections `forget` picks; their next packet is a new flow, decided by
    /// policy again.
    pub fn remove_where(&self, mut forget: impl FnMut(&ct_key, &ct_entry) -> bool) -> Result<GcPass> {
        let mut pass = GcPass::default();
        for (key, entry) in self.entries()? {
            if forget(&key, &entry) && self.table.remove(&key).map_err(map_err("conntrack remove"))? {
                pass.removed += 1;
            } else {
                pass.kept += 1;
            }
        }
        if pass.removed > 0 {
            self.bump_epoch()?;
        }
        Ok(pass)
    }

    /// Forgets every connection; returns how many there were.
    pub fn clear(&self) -> Result<usize> {
        Ok(self.remove_where(|_, _| true)?.removed)
    }

    /// Forgets the connections idle longer than `lifetimes` allow at jiffies `now` (read with
    /// [`JiffiesClock`]).
    pub fn collect_garbage(&self, now: u64, hz: u64, lifetimes: &CtLifetimes) -> Result<GcPass> {
        self.remove_where(|key, entry| {
            let idle = now.saturating_sub(entry.last_seen);
            idle > lifetimes.of(key, entry).as_secs().saturating_mul(hz)
        })
    }

    /// Flow caches drop whatever they confirmed before this call, so a deleted connection
    /// cannot outlive its entry.
    fn bump_epoch(&self) -> Result<()> {
        let epoch = self.epoch.get(0).map_err(map_err("ct_epoch read"))?;
        self.epoch.set(0, &epoch.wrapping_add(1)).map_err(map_err("ct_epoch update"))
    }
}

/// What a pass over the conntrack table did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcPass {
    /// Connections forgotten.
    pub removed: usize,
    /// Connections left.
    pub kept: usize,
}

/// The policy map's capacity (each endpoint has one).
pub fn policy_map_capacity() -> f64 {
    endpoint_object().map_or(f64::NAN, |object| f64::from(object.maps().policy().max_entries))
}

/// How long a connection may stay idle before conntrack garbage collection forgets it. The
/// defaults are Cilium's (`--conntrack-gc` lifetimes `ct-tcp`, `ct-tcp-syn`, `ct-tcp-fin`,
/// `ct-any`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtLifetimes {
    /// An established TCP connection (a reply has been seen): 6 hours.
    pub tcp_established: Duration,
    /// A TCP connection that has seen no reply yet: 60 seconds.
    pub tcp_syn: Duration,
    /// A TCP connection that saw a FIN or RST: 10 seconds.
    pub tcp_fin: Duration,
    /// UDP, SCTP, ICMP and the rest: 60 seconds.
    pub any: Duration,
}

impl Default for CtLifetimes {
    fn default() -> CtLifetimes {
        CtLifetimes {
            tcp_established: Duration::from_secs(6 * 3600),
            tcp_syn: Duration::from_secs(60),
            tcp_fin: Duration::from_secs(10),
            any: Duration::from_secs(60),
        }
    }
}

impl CtLifetimes {
    /// The lifetime of the connection `key`/`entry` is in.
    pub fn of(&self, key: &ct_key, entry: &ct_entry) -> Duration {
        match key.protocol {
            6 if ct_closing(entry) => self.tcp_fin,
            6 if entry.reply_packets == 0 => self.tcp_syn,
            6 => self.tcp_established,
            _ => self.any,
        }
    }
}

/// The kernel's jiffies, the clock conntrack entries' `last_seen` is kept in. User space has no
/// exact view of it, so two two-instruction programs return `bpf_jiffies64()`'s halves under
/// `BPF_PROG_TEST_RUN` (whose return value is 32 bits).
#[derive(Debug)]
pub struct JiffiesClock {
    low: Program,
    high: Program,
    hz: u64,
}

impl JiffiesClock {
    /// Loads the two programs and reads `CONFIG_HZ`.
    pub fn new() -> Result<JiffiesClock> {
        let half = |name: &str, shift: i32| -> Result<Program> {
            let mut asm = Assembler::new();
            asm.call(helper_id("bpf_jiffies64").expect("a known helper"));
            if shift > 0 {
                asm.alu64_imm(AluOp::Rsh, Reg::R0, shift);
            }
            asm.exit();
            let insns = asm.finish().map_err(DatapathError::Clock)?;
            Program::load(&ProgramSpec::from_assembled(name, ProgramType::SchedCls, insns))
                .map_err(kernel(format!("load {name}")))
        };
        let hz = ebpf_core::object::kernel_config("CONFIG_HZ")?
            .and_then(|v| v.parse().ok())
            .ok_or(DatapathError::NoConfigHz)?;
        Ok(JiffiesClock { low: half("jiffies_low", 0)?, high: half("jiffies_high", 32)?, hz })
    }

    /// Ticks per second (`CONFIG_HZ`).
    pub fn hz(&self) -> u64 {
        self.hz
    }

    /// The current jiffies.
    pub fn now(&self) -> Result<u64> {
        let run = |p: &Program| -> Result<u64> {
            Ok(u64::from(p.test_run(&TestRun::with_data(&[0u8; 64])).map_err(kernel("read jiffies"))?.retval))
        };
        loop {
            let (high, low, again) = (run(&self.high)?, run(&self.low)?, run(&self.high)?);
            // The low half wrapped between the reads: read again.
            if high == again {
                return Ok(high << 32 | low);
            }
        }
    }
}
