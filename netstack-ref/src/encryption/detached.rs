//! The userspace WireGuard device in a process of its own, so that encrypted traffic keeps
//! flowing while its agent is down or restarting — as the kernel's device outlives the agent
//! that configured it. The agent starts `netstack wireguard-device` (its own binary) in the
//! node's namespace, or adopts the one a previous agent started, and drives it over a Unix
//! socket in the node's state directory: one JSON request per line, one JSON reply per line.
//! The private key never crosses the socket: the device reads it from the state directory
//! (at start, and when told the key was rotated). `agent reset` stops it.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::keys::{parse_public, NodeKey};
use super::peer::{PeerConfig, PeerStatus};
use super::userspace::{Counters, UserspaceWireguard};
use crate::policy::api::Cidr;

/// How long a started device has to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the detached device could not be started, reached or told something.
#[derive(Debug, thiserror::Error)]
pub enum DetachedError {
    /// Starting its process.
    #[error("userspace WireGuard device: start `{binary} wireguard-device`: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It did not come up.
    #[error("userspace WireGuard device: did not answer at {socket} within {START_TIMEOUT:?}: {log}")]
    NotUp {
        /// Its socket.
        socket: PathBuf,
        /// The end of its log.
        log: String,
    },
    /// Its socket.
    #[error("userspace WireGuard device at {socket}: {operation}: {source}")]
    Socket {
        /// Its socket.
        socket: PathBuf,
        /// What was asked.
        operation: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It answered with a failure, or with something that is not an answer.
    #[error("userspace WireGuard device at {socket}: {operation}: {reason}")]
    Refused {
        /// Its socket.
        socket: PathBuf,
        /// What was asked.
        operation: &'static str,
        /// Its reason.
        reason: String,
    },
}

/// A peer as it crosses the socket.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct WirePeer {
    name: String,
    public_key: String,
    endpoint: SocketAddr,
    allowed_ips: Vec<String>,
}

impl From<&PeerConfig> for WirePeer {
    fn from(peer: &PeerConfig) -> WirePeer {
        WirePeer {
            name: peer.name.clone(),
            public_key: super::keys::public_base64(&peer.public_key.into()),
            endpoint: peer.endpoint,
            allowed_ips: peer.allowed_ips.iter().map(ToString::to_string).collect(),
        }
    }
}

impl WirePeer {
    fn config(&self) -> Option<PeerConfig> {
        Some(PeerConfig {
            name: self.name.clone(),
            public_key: parse_public(&self.public_key)?.to_bytes(),
            endpoint: self.endpoint,
            allowed_ips: self.allowed_ips.iter().map(|c| Cidr::parse(c)).collect::<Option<_>>()?,
        })
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Request {
    SetPeers(Vec<WirePeer>),
    /// The key in the state directory changed: take it.
    ReloadKey,
    Status,
    Stop,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Reply {
    Done,
    Status(DeviceReport),
    Failed(String),
}

/// What a running device says of itself.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceReport {
    /// Its process.
    pub pid: u32,
    /// Its TUN device.
    pub device: String,
    /// Where it listens.
    pub listen: SocketAddr,
    /// Each peer's handshake and traffic.
    pub peers: Vec<PeerStatus>,
    /// What it dropped, by why.
    pub counters: Counters,
}

/// Where a node's device listens for its agent, and writes its pid and log.
fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("wireguard").join("device.sock")
}

fn pid_path(state_dir: &Path) -> PathBuf {
    state_dir.join("wireguard").join("device.pid")
}

fn log_path(state_dir: &Path) -> PathBuf {
    state_dir.join("wireguard").join("device.log")
}

/// What the device is started with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceOptions {
    /// The node's state directory (its key; the socket, pid and log files).
    pub state_dir: PathBuf,
    /// The TUN device's name.
    pub device: String,
    /// The UDP address WireGuard listens on.
    pub listen: SocketAddr,
    /// The link its datagrams leave by, whatever the routes say.
    pub send_through: Option<String>,
}

impl DeviceOptions {
    /// The arguments of `netstack wireguard-device` that start a device so.
    pub fn arguments(&self) -> Vec<String> {
        let mut args = vec![
            "wireguard-device".to_owned(),
            "--state-dir".to_owned(),
            self.state_dir.display().to_string(),
            "--device".to_owned(),
            self.device.clone(),
            "--listen".to_owned(),
            self.listen.to_string(),
        ];
        if let Some(link) = &self.send_through {
            args.extend(["--send-through".to_owned(), link.clone()]);
        }
        args
    }
}

/// Runs the device until told to stop: the body of `netstack wireguard-device`.
pub fn serve(options: &DeviceOptions) -> Result<(), super::node::EncryptionError> {
    let key = NodeKey::load_or_create(&options.state_dir)?;
    let device = UserspaceWireguard::start(
        &options.device,
        options.listen,
        key.private().clone(),
        options.send_through.as_deref(),
    )?;
    let socket = socket_path(&options.state_dir);
    let io = |operation| {
        let socket = socket.clone();
        move |source| DetachedError::Socket { socket, operation, source }
    };
    // A socket file left by a device that died is in the way.
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(io("listen"))?;
    std::fs::write(pid_path(&options.state_dir), std::process::id().to_string()).map_err(io("write the pid file"))?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if answer(stream, &device, options) {
            break;
        }
    }
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(pid_path(&options.state_dir));
    Ok(())
}

/// Answers one connection's requests; true when told to stop.
fn answer(stream: UnixStream, device: &UserspaceWireguard, options: &DeviceOptions) -> bool {
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else { return false };
    let mut stop = false;
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(Request::SetPeers(peers)) => match peers.iter().map(WirePeer::config).collect::<Option<Vec<_>>>() {
                Some(peers) => {
                    device.set_peers(peers);
                    Reply::Done
                }
                None => Reply::Failed("a peer's key or allowed IPs do not parse".into()),
            },
            Ok(Request::ReloadKey) => match NodeKey::load_or_create(&options.state_dir) {
                Ok(key) => {
                    device.rotate(key.private().clone());
                    Reply::Done
                }
                Err(e) => Reply::Failed(e.to_string()),
            },
            Ok(Request::Status) => Reply::Status(DeviceReport {
                pid: std::process::id(),
                device: options.device.clone(),
                listen: options.listen,
                peers: device.peers(),
                counters: device.counters(),
            }),
            Ok(Request::Stop) => {
                stop = true;
                Reply::Done
            }
            Err(e) => Reply::Failed(format!("not a request: {e}")),
        };
        let mut text = serde_json::to_string(&reply).expect("replies serialise");
        text.push('\n');
        if writer.write_all(text.as_bytes()).is_err() || stop {
            break;
        }
    }
    stop
}

/// The agent's handle on its node's detached device.
#[derive(Debug)]
pub struct DetachedDevice {
    socket: PathBuf,
    device: String,
    pid: u32,
}

impl DetachedDevice {
    /// Adopts the device a previous agent of this node started, if it still answers;
    /// otherwise starts one with `binary` (the `netstack` binary) in the calling thread's
    /// namespace and waits until it answers.
    pub fn adopt_or_start(binary: &Path, options: &DeviceOptions) -> Result<DetachedDevice, DetachedError> {
        let socket = socket_path(&options.state_dir);
        let mut handle = DetachedDevice { socket: socket.clone(), device: options.device.clone(), pid: 0 };
        match handle.status() {
            Ok(report) if report.device == options.device && report.listen == options.listen => {
                handle.pid = report.pid;
                return Ok(handle);
            }
            // Made for another address (the node's changed): replaced.
            Ok(_) => {
                let _ = handle.done("stop", &Request::Stop);
            }
            Err(_) => {}
        }
        // One that no longer answers is stopped before another takes its device and port.
        if let Some(pid) = crate::process::read_pid_file(&pid_path(&options.state_dir)) {
            if crate::process::runs(pid) && is_device_process(pid) {
                crate::process::stop(pid);
            }
        }
        let spawn_failed = |source| DetachedError::Spawn { binary: binary.to_owned(), source };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path(&options.state_dir))
            .map_err(spawn_failed)?;
        let mut child = Command::new(binary)
            .args(options.arguments())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(spawn_failed)?)
            .stderr(log)
            // Its own process group: a Ctrl-C meant for the agent does not reach it.
            .process_group(0)
            .spawn()
            .map_err(spawn_failed)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(report) = handle.status() {
                handle.pid = report.pid;
                break;
            }
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                if !exited {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                let log = std::fs::read_to_string(log_path(&options.state_dir)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let log = tail.into_iter().rev().collect::<Vec<_>>().join(" / ");
                return Err(DetachedError::NotUp { socket, log });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Reaped when it ends while this agent runs; outlives the agent otherwise.
        std::thread::spawn(move || child.wait());
        Ok(handle)
    }

    /// The TUN device's name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The device process's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn ask(&self, operation: &'static str, request: &Request) -> Result<Reply, DetachedError> {
        ask(&self.socket, operation, request)
    }

    fn done(&self, operation: &'static str, request: &Request) -> Result<(), DetachedError> {
        match self.ask(operation, request)? {
            Reply::Done => Ok(()),
            Reply::Failed(reason) => Err(DetachedError::Refused { socket: self.socket.clone(), operation, reason }),
            other => Err(DetachedError::Refused {
                socket: self.socket.clone(),
                operation,
                reason: format!("unexpected reply {other:?}"),
            }),
        }
    }

    /// Replaces the peers (see [`UserspaceWireguard::set_peers`]).
    pub fn set_peers(&self, peers: &[PeerConfig]) -> Result<(), DetachedError> {
        self.done("set its peers", &Request::SetPeers(peers.iter().map(WirePeer::from).collect()))
    }

    /// Has the device take the key now in the state directory (see
    /// [`UserspaceWireguard::rotate`]).
    pub fn reload_key(&self) -> Result<(), DetachedError> {
        self.done("take the new key", &Request::ReloadKey)
    }

    /// What it says of itself: its pid, each peer's handshake and traffic, what it dropped.
    pub fn status(&self) -> Result<DeviceReport, DetachedError> {
        match self.ask("read its status", &Request::Status)? {
            Reply::Status(report) => Ok(report),
            other => Err(DetachedError::Refused {
                socket: self.socket.clone(),
                operation: "read its status",
                reason: format!("unexpected reply {other:?}"),
            }),
        }
    }
}

/// One request on a connection of its own.
fn ask(socket: &Path, operation: &'static str, request: &Request) -> Result<Reply, DetachedError> {
    let io = |source| DetachedError::Socket { socket: socket.to_owned(), operation, source };
    let mut stream = UnixStream::connect(socket).map_err(io)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(io)?;
    let mut text = serde_json::to_string(request).expect("requests serialise");
    text.push('\n');
    stream.write_all(text.as_bytes()).map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(io)?;
    serde_json::from_str(&line).map_err(|e| DetachedError::Refused {
        socket: socket.to_owned(),
        operation,
        reason: format!("not a reply: {e}"),
    })
}

/// A WireGuard device process's `--state-dir`, if `pid` is one this stack started.
fn device_state_dir(pid: u32) -> Option<PathBuf> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    if !args.contains(&&b"wireguard-device"[..]) {
        return None;
    }
    let at = args.iter().position(|a| *a == b"--state-dir")?;
    let dir = std::str::from_utf8(args.get(at + 1)?).ok()?;
    Some(PathBuf::from(dir))
}

fn is_device_process(pid: u32) -> bool {
    device_state_dir(pid).is_some()
}

/// The WireGuard device processes running for state directories under `under`.
pub fn devices_under(under: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| device_state_dir(*pid).is_some_and(|dir| dir.starts_with(under)))
        .collect()
}

/// Stops the node's device (told over its socket, else by its pid or its command line — one
/// still starting has no pid file yet) and removes its files: part of `agent reset`.
pub fn stop(state_dir: &Path) {
    let socket = socket_path(state_dir);
    let _ = ask(&socket, "stop", &Request::Stop);
    let mut pids = devices_under(state_dir);
    pids.extend(crate::process::read_pid_file(&pid_path(state_dir)).filter(|pid| is_device_process(*pid)));
    for pid in pids {
        crate::process::stop(pid);
    }
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(pid_path(state_dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_crosses_the_socket_unchanged() {
        let peer = PeerConfig {
            name: "node2".into(),
            public_key: NodeKey::generate().unwrap().public().to_bytes(),
            endpoint: "192.168.100.12:51871".parse().unwrap(),
            allowed_ips: vec![Cidr::parse("10.200.2.0/24").unwrap()],
        };
        let wire: WirePeer = serde_json::from_str(&serde_json::to_string(&WirePeer::from(&peer)).unwrap()).unwrap();
        assert_eq!(wire.config(), Some(peer));
        let bad = WirePeer { public_key: "not a key".into(), ..wire };
        assert_eq!(bad.config(), None);
    }

    #[test]
    fn a_device_that_never_answers_is_an_error_with_its_log() {
        let state_dir = std::env::temp_dir().join(format!("nsdetached_{}", std::process::id()));
        std::fs::create_dir_all(state_dir.join("wireguard")).unwrap();
        let options = DeviceOptions {
            state_dir: state_dir.clone(),
            device: "nsdetached0".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            send_through: None,
        };
        // A "binary" that prints and exits without a socket.
        let script = state_dir.join("device.sh");
        std::fs::write(&script, "#!/bin/sh\necho no TUN device here\nexit 1\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let error = DetachedDevice::adopt_or_start(&script, &options).unwrap_err();
        std::fs::remove_dir_all(&state_dir).unwrap();
        assert!(matches!(&error, DetachedError::NotUp { log, .. } if log == "no TUN device here"), "{error}");
    }

    #[test]
    fn the_arguments_name_what_the_device_needs() {
        let options = DeviceOptions {
            state_dir: "/run/n1".into(),
            device: "netstack_wg0".into(),
            listen: "192.168.100.11:51871".parse().unwrap(),
            send_through: Some("underlay0".into()),
        };
        assert_eq!(
            options.arguments().join(" "),
            "wireguard-device --state-dir /run/n1 --device netstack_wg0 --listen 192.168.100.11:51871 \
             --send-through underlay0"
        );
    }
}
