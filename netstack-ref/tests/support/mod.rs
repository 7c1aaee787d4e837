//! A node with a real agent process for traffic tests, and a "world" outside it: RAII guards
//! that remove everything they made, also when a test fails.

#![allow(dead_code)] // each test crate uses its own part

pub mod apiserver;
pub mod browser;
pub mod capture;
pub mod cluster;
pub mod stream;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use ebpf_test_support::net::NetNs;
use ebpf_test_support::unique_name;
use netstack_ref::agent::api::{call, Request};
use netstack_ref::agent::netns::{self, PlumbingError};
use netstack_ref::agent::rtnl::Rtnl;
use netstack_ref::agent::{reset, AgentConfig};
use netstack_ref::demo::{spawn_agent, wait_for_endpoints};
use netstack_ref::policy::AllowLocalhost;

const EXE: &str = env!("CARGO_BIN_EXE_netstack");

/// A pod as the agent placed it.
#[derive(Clone, Debug)]
pub struct PodAt {
    /// Its network namespace.
    pub netns: String,
    /// Its address.
    pub ip: Ipv4Addr,
}

/// The node (a namespace), its agent and everything they made.
pub struct Node {
    pub ns: NetNs,
    pub config: AgentConfig,
    pub manifests: PathBuf,
    agent: Option<Child>,
}

impl Node {
    /// A node whose manifests directory holds `files` (name, text); the agent is not started.
    pub fn new(prefix: &str, allow_localhost: AllowLocalhost, files: &[(&str, &str)]) -> Node {
        let ns = NetNs::new(prefix).expect("node namespace");
        let state_dir = std::env::temp_dir().join(unique_name(prefix));
        let manifests = state_dir.join("manifests");
        std::fs::create_dir_all(&manifests).expect("manifests directory");
        for (name, text) in files {
            std::fs::write(manifests.join(name), text).expect("write manifest");
        }
        let mut config = AgentConfig::new(&state_dir, Some(manifests.clone()));
        config.node_name = ns.name().to_string();
        config.pod_netns_prefix = ns.name().to_string();
        config.allow_localhost = allow_localhost;
        Node { ns, config, manifests, agent: None }
    }

    /// Starts the agent.
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Starts the agent with more arguments.
    pub fn start_with(&mut self, extra_args: &[&std::ffi::OsStr]) {
        let agent = spawn_agent(Path::new(EXE), &self.config, self.ns.name(), &self.manifests, extra_args);
        self.agent = Some(agent.unwrap());
    }

    /// Kills the agent (SIGKILL: a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.agent.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Stops the agent as `cluster down` and service managers do (SIGTERM); how it exited and
    /// how long that took.
    pub fn terminate(&mut self) -> Option<(std::process::ExitStatus, Duration)> {
        let mut child = self.agent.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let asked = Instant::now();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        while asked.elapsed() < Duration::from_secs(10) {
            if let Some(status) = child.try_wait().unwrap() {
                return Some((status, asked.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        None
    }

    /// Waits for `count` endpoints and returns them by `namespace/name`.
    pub fn pods(&self, count: usize) -> BTreeMap<String, PodAt> {
        let list = wait_for_endpoints(&self.config.socket(), count, Duration::from_secs(60)).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let at = PodAt {
                    netns: e["netns"].as_str().unwrap().to_string(),
                    ip: e["ipv4"].as_str().unwrap().parse().unwrap(),
                };
                (e["pod"].as_str().unwrap().to_string(), at)
            })
            .collect()
    }

    /// Asks the agent to re-read its sources now; returns its status.
    pub fn sync(&self) -> serde_json::Value {
        call(&self.config.socket(), &Request::Sync).expect("agent answers")
    }

    /// Waits until the agent has `policies` policies in force (a sync after a file change).
    pub fn wait_policies(&self, policies: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if call(&self.config.socket(), &Request::Status).is_ok_and(|s| s["policies"] == policies) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("agent did not reach {policies} policies: {:?}", call(&self.config.socket(), &Request::Status));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        let _ = reset(&self.config);
        let _ = std::fs::remove_dir_all(&self.config.state_dir);
    }
}

/// Addresses outside the cluster: a namespace joined to the node by a veth, holding
/// [`World::ADDRESSES`] behind the node's [`World::GATEWAY`]. Removed (with its veth) on drop.
pub struct World {
    pub ns: NetNs,
}

impl World {
    /// The node's side of the link.
    pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    /// The world's addresses (TEST-NET-1); the first is its source for connections it opens.
    pub const ADDRESSES: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 20)];

    /// Joins a new world namespace to `node`, routing `pod_cidr` back through the node.
    pub fn attach(node: &Node) -> World {
        let ns = NetNs::new("wld").expect("world namespace");
        let outside = unique_name("wld");
        let world_ns = netns::open(ns.name()).unwrap();
        let gateway = World::GATEWAY;
        netns::run_in(node.ns.name(), move || -> Result<(), PlumbingError> {
            let mut rtnl = Rtnl::open()?;
            rtnl.add_veth(&outside, "eth0", &world_ns)?;
            let (index, _) = rtnl.link(&outside)?;
            rtnl.add_address(index, gateway, 24)?;
            rtnl.set_up(index)
        })
        .unwrap()
        .unwrap();
        let pod_cidr = node.config.pod_cidr;
        netns::run_in(ns.name(), move || -> Result<(), PlumbingError> {
            let mut rtnl = Rtnl::open()?;
            let (eth0, _) = rtnl.link("eth0")?;
            for a in World::ADDRESSES {
                rtnl.add_address(eth0, a, 24)?;
            }
            let (lo, _) = rtnl.link("lo")?;
            rtnl.set_up(lo)?;
            rtnl.set_up(eth0)?;
            let std::net::IpAddr::V4(pods) = pod_cidr.addr else { unreachable!("an IPv4 pod CIDR") };
            rtnl.add_route(pods, pod_cidr.len, eth0, Some(gateway), false)
        })
        .unwrap()
        .unwrap();
        World { ns }
    }
}

/// `GET path` from the HTTP server at `address` (`127.0.0.1:port`): the status code and body.
pub fn http_get(address: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("the HTTP server accepts");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { unchunk(body) } else { body.to_owned() };
    (status, body)
}

/// A chunked body, joined.
fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
