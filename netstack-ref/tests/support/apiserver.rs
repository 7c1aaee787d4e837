//! A Kubernetes API server stand-in on loopback that replays recorded exchanges: for each
//! resource path a queue of list responses and watch streams, served in order, each optionally
//! held back until the test releases it, so the test can look at the client between events.
//! Requests that do not match the recording (a list where a watch was recorded, a watch from
//! another resource version) are answered 500 and reported by [`ApiServer::mismatches`].
//! Paths without a recording answer an empty list and a watch that stays open.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// One recorded exchange.
#[derive(Clone, Debug)]
enum Exchange {
    /// A list request and its response (status and body); `repeat` answers every later list
    /// the same (an API server that does not serve a kind, for as long as the client asks).
    List { after: Option<String>, status: u16, body: Value, repeat: bool },
    /// A watch from `resource_version`: its events, then the stream closes or stays open.
    Watch { after: Option<String>, resource_version: String, events: Vec<Value>, close: bool },
}

#[derive(Default)]
struct Shared {
    queues: BTreeMap<String, VecDeque<Exchange>>,
    released: BTreeSet<String>,
    requests: Vec<String>,
    mismatches: Vec<String>,
}

/// The stand-in, stopped on drop.
pub struct ApiServer {
    address: std::net::SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    dir: PathBuf,
}

impl ApiServer {
    /// Serves `recording`: `{ "/api/v1/pods": [ {"list": LIST} | {"watch": {"resourceVersion":
    /// RV, "events": [EVENT…], "then": "close" | "hold"}}, each optionally with "after": STEP ] }`.
    pub fn start(recording: &Value) -> ApiServer {
        ApiServer::start_on(TcpListener::bind("127.0.0.1:0").expect("bind loopback"), recording)
    }

    /// Like [`start`](Self::start), on a listener the caller made (e.g. in a node's namespace).
    pub fn start_on(listener: TcpListener, recording: &Value) -> ApiServer {
        let mut shared = Shared::default();
        for (path, exchanges) in recording.as_object().expect("a recording is an object") {
            let queue = exchanges
                .as_array()
                .expect("a path's exchanges are a list")
                .iter()
                .map(|e| {
                    let after = e["after"].as_str().map(str::to_owned);
                    if let Some(body) = e.get("list") {
                        let status = e["status"].as_u64().map_or(200, |s| s as u16);
                        return Exchange::List { after, status, body: body.clone(), repeat: e["repeat"] == true };
                    }
                    let w = &e["watch"];
                    Exchange::Watch {
                        after,
                        resource_version: w["resourceVersion"].as_str().expect("a watch's resourceVersion").into(),
                        events: w["events"].as_array().cloned().unwrap_or_default(),
                        close: w["then"] == "close",
                    }
                })
                .collect();
            shared.queues.insert(path.clone(), queue);
        }
        let address = listener.local_addr().expect("address");
        let shared = Arc::new(Mutex::new(shared));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
            std::thread::spawn(move || {
                for connection in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(connection) = connection else { continue };
                    let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
                    std::thread::spawn(move || serve(connection, &shared, &stop));
                }
            });
        }
        let dir = std::env::temp_dir().join(format!("fake-apiserver-{}-{}", std::process::id(), address.port()));
        std::fs::create_dir_all(&dir).expect("kubeconfig dir");
        ApiServer { address, shared, stop, dir }
    }

    /// A kubeconfig naming this server (plain HTTP, no credentials).
    pub fn kubeconfig(&self) -> PathBuf {
        let path = self.dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: recorded\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: recorded\n  context:\n    cluster: recorded\n    user: nobody\n\
             current-context: recorded\nusers:\n- name: nobody\n  user: {{}}\n",
            self.address
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// Lets the exchanges recorded `"after": step` be served.
    pub fn release(&self, step: &str) {
        self.shared.lock().unwrap().released.insert(step.to_owned());
    }

    /// Every request so far, as `list PATH` or `watch PATH from RV`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// Requests the recording did not expect.
    pub fn mismatches(&self) -> Vec<String> {
        self.shared.lock().unwrap().mismatches.clone()
    }

    /// Exchanges recorded for `path` not served yet.
    pub fn pending(&self, path: &str) -> usize {
        self.shared.lock().unwrap().queues.get(path).map_or(0, VecDeque::len)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.address);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads one request head: the target, or none when the connection ended.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let target = line.split_whitespace().nth(1)?.to_owned();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 || header == "\r\n" {
            return Some(target);
        }
    }
}

fn query(target: &str, name: &str) -> Option<String> {
    let (_, q) = target.split_once('?')?;
    q.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

fn respond(out: &mut TcpStream, status: &str, body: &Value) -> std::io::Result<()> {
    let body = body.to_string();
    write!(out, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

fn chunk(out: &mut TcpStream, text: &str) -> std::io::Result<()> {
    write!(out, "{:x}\r\n{text}\r\n", text.len())?;
    out.flush()
}

fn serve(connection: TcpStream, shared: &Mutex<Shared>, stop: &AtomicBool) {
    let mut out = connection.try_clone().expect("clone stream");
    let mut reader = BufReader::new(connection);
    while let Some(target) = read_request(&mut reader) {
        let path = target.split('?').next().unwrap_or("").to_owned();
        let watching =
            query(&target, "watch").as_deref() == Some("true") || query(&target, "watch").as_deref() == Some("1");
        let from = query(&target, "resourceVersion").unwrap_or_default();
        let request = if watching { format!("watch {path} from {from}") } else { format!("list {path}") };
        let next = {
            let mut s = shared.lock().unwrap();
            s.requests.push(request.clone());
            let recorded = s.queues.contains_key(&path);
            let queue = s.queues.get_mut(&path);
            match queue {
                Some(q) if matches!(q.front(), Some(Exchange::List { repeat: true, .. })) && !watching => {
                    (recorded, q.front().cloned())
                }
                Some(q) => (recorded, q.pop_front()),
                None => (recorded, None),
            }
        };
        // Held back until released.
        let after = match &next.1 {
            Some(Exchange::List { after, .. } | Exchange::Watch { after, .. }) => after.clone(),
            None => None,
        };
        if let Some(step) = after {
            while !shared.lock().unwrap().released.contains(&step) {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let served = match (next, watching) {
            ((_, Some(Exchange::List { status, body, .. })), false) => {
                let reason = if status == 200 { "OK" } else { "Recorded" };
                respond(&mut out, &format!("{status} {reason}"), &body)
            }
            ((_, Some(Exchange::Watch { resource_version, events, close, .. })), true) if resource_version == from => {
                stream(&mut out, &events, close, stop)
            }
            ((false, None), false) => {
                let kind = path.rsplit('/').next().unwrap_or("");
                respond(
                    &mut out,
                    "200 OK",
                    &serde_json::json!({"kind": format!("{kind}List"), "metadata": {"resourceVersion": "1"}, "items": []}),
                )
            }
            ((false, None), true) | ((true, None), true) => stream(&mut out, &[], false, stop),
            (expected, _) => {
                let what = match expected.1 {
                    Some(Exchange::List { .. }) => "a list".to_owned(),
                    Some(Exchange::Watch { resource_version, .. }) => format!("a watch from {resource_version}"),
                    None => "nothing more".to_owned(),
                };
                shared.lock().unwrap().mismatches.push(format!("{request}: the recording has {what}"));
                respond(&mut out, "500 Internal Server Error", &serde_json::json!({"kind": "Status", "code": 500}))
            }
        };
        if served.is_err() || watching {
            return;
        }
    }
}

/// A watch response: the events as chunks, then the end of the stream or a wait for the stop.
fn stream(out: &mut TcpStream, events: &[Value], close: bool, stop: &AtomicBool) -> std::io::Result<()> {
    write!(out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")?;
    for event in events {
        chunk(out, &format!("{event}\n"))?;
    }
    if !close {
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    write!(out, "0\r\n\r\n")?;
    out.flush()
}

/// Reads a recording from `netstack-ref/tests/kube_recordings/`.
pub fn recording(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kube_recordings").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
