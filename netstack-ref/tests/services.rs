//! Services at the socket (east-west), with real sockets in the node's pods and the node itself:
//! a ClusterIP reaches both of its selected backends through a named target port, the
//! application sees the service address (getpeername, recvfrom), a service without endpoints
//! refuses at once, ClientIP affinity keeps a client on one backend, a NodePort answers on 127.0.0.1 from the host and no host process can bind
//! it, IPv4-mapped IPv6 sockets are balanced too, and a backend that leaves the selector takes no
//! new connections.

mod support;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ebpf_test_support::{eventually, require_kernel};
use netstack_ref::agent::api::{call, Request};
use netstack_ref::agent::netns;
use netstack_ref::policy::AllowLocalhost;
use support::Node;

const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 80);

fn manifests(web2_app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: client, namespace: t, labels: {{app: client}}}}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {{name: web1, namespace: t, labels: {{app: web}}}}\n\
spec:\n  containers: [{{name: c, ports: [{{name: http, containerPort: 8080}}, {{name: dns, containerPort: 5353, protocol: UDP}}]}}]\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {{name: web2, namespace: t, labels: {{app: {web2_app}}}}}\n\
spec:\n  containers: [{{name: c, ports: [{{name: http, containerPort: 8080}}, {{name: dns, containerPort: 5353, protocol: UDP}}]}}]\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: t}}\nspec:\n  type: NodePort\n  clusterIP: {CLUSTER_IP}\n  \
selector: {{app: web}}\n  ports:\n  - {{name: http, port: 80, targetPort: http, nodePort: 30080}}\n  \
- {{name: dns, port: 53, targetPort: dns, protocol: UDP}}\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {{name: nobody, namespace: t}}\nspec:\n  clusterIP: 10.96.0.81\n  \
selector: {{app: nothing}}\n  ports: [{{port: 80}}]\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {{name: sticky, namespace: t}}\nspec:\n  clusterIP: 10.96.0.82\n  \
selector: {{app: web}}\n  sessionAffinity: ClientIP\n  ports: [{{port: 80, targetPort: 8080}}]\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {{name: brief, namespace: t}}\nspec:\n  clusterIP: 10.96.0.83\n  \
selector: {{app: web}}\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: 1}}}}\n  \
ports: [{{port: 80, targetPort: 8080}}]\n"
    )
}

/// Serves, in `netns`, TCP on 8080 and UDP on 5353, each answering with `name`.
fn serve(netns: &str, name: &'static str) {
    let (ready, up) = mpsc::channel();
    let ns = netns.to_owned();
    std::thread::spawn(move || {
        netns::run_in(&ns, move || {
            let tcp = TcpListener::bind("0.0.0.0:8080").unwrap();
            let udp = UdpSocket::bind("0.0.0.0:5353").unwrap();
            ready.send(()).unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok((_, from)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(name.as_bytes(), from);
                }
            });
            for stream in tcp.incoming().flatten() {
                let mut stream = stream;
                let _ = stream.write_all(name.as_bytes());
            }
        })
        .unwrap();
    });
    up.recv_timeout(Duration::from_secs(5)).unwrap();
}

/// From `netns`: connects to `to`, returns (what the server said, what getpeername said).
fn ask_tcp(netns: &str, to: SocketAddr) -> std::io::Result<(String, SocketAddr)> {
    netns::run_in(netns, move || {
        let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok((answer, stream.peer_addr()?))
    })
    .unwrap()
}

#[test]
fn cluster_ip_node_port_and_no_endpoints_at_the_socket() {
    let Some(_root) = require_kernel() else { return };
    let mut node = Node::new("nsv", AllowLocalhost::Always, &[("scene.yaml", &manifests("web"))]);
    node.start();
    let pods = node.pods(3);
    let (client, web1, web2) = (&pods["t/client"], &pods["t/web1"], &pods["t/web2"]);
    serve(&web1.netns, "web1");
    serve(&web2.netns, "web2");
    let frontend = SocketAddr::from((CLUSTER_IP, 80));

    // Both backends answer through the cluster IP (random choice: 40 tries leave 2^-39 to chance).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (answer, peer) = ask_tcp(&client.netns, frontend).expect("connect through the cluster IP");
        assert_eq!(peer, frontend, "getpeername shows the service, not the backend");
        seen.insert(answer);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["web1", "web2"]);

    // UDP, unconnected: the reply comes from the service address (recvmsg translates back).
    let (answer, from) = netns::run_in(&client.netns, || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        socket.send_to(b"who", (CLUSTER_IP, 53)).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = socket.recv_from(&mut buf).expect("a reply");
        (String::from_utf8_lossy(&buf[..n]).into_owned(), from)
    })
    .unwrap();
    assert!(answer == "web1" || answer == "web2", "{answer}");
    assert_eq!(from, SocketAddr::from((CLUSTER_IP, 53)));

    // An IPv6 socket reaching the IPv4 service through ::ffff:10.96.0.80.
    let mapped: SocketAddr = format!("[::ffff:{CLUSTER_IP}]:80").parse().unwrap();
    let (answer, peer) = ask_tcp(&client.netns, mapped).expect("connect through the mapped address");
    assert!(answer.starts_with("web") && peer == mapped, "{answer} {peer}");

    // ClientIP affinity (for the socket LB: the client's network namespace): every connection of
    // the client lands on one backend; the host, another client, may land elsewhere.
    let sticky = SocketAddr::from(([10, 96, 0, 82], 80));
    let first = ask_tcp(&client.netns, sticky).expect("connect through the sticky service").0;
    for _ in 0..20 {
        assert_eq!(ask_tcp(&client.netns, sticky).unwrap().0, first, "affinity holds");
    }

    // Affinity expires: idle past its timeout (1 s; the datapath counts whole seconds), a client
    // is balanced afresh, so over a few idle spells it lands on both backends; within one it
    // stays put.
    let brief = SocketAddr::from(([10, 96, 0, 83], 80));
    let mut chosen = BTreeSet::new();
    // (16 spells: all on one backend by chance is 1 in 32768.)
    for _ in 0..16 {
        let first = ask_tcp(&client.netns, brief).expect("connect through the brief service").0;
        assert_eq!(ask_tcp(&client.netns, brief).unwrap().0, first, "held within the timeout");
        chosen.insert(first);
        if chosen.len() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2100));
    }
    assert_eq!(chosen.len(), 2, "expired affinity lets the client move: {chosen:?}");

    // No endpoints: refused at once, not a timeout.
    let started = Instant::now();
    let refused = ask_tcp(&client.netns, SocketAddr::from(([10, 96, 0, 81], 80))).expect_err("no backend");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());

    // The node itself: the cluster IP, and the node port on 127.0.0.1.
    let (answer, _) = ask_tcp(node.ns.name(), frontend).expect("the host reaches the cluster IP");
    assert!(answer.starts_with("web"), "{answer}");
    let (answer, peer) = ask_tcp(node.ns.name(), SocketAddr::from((Ipv4Addr::LOCALHOST, 30080))).expect("node port");
    assert!(answer.starts_with("web") && peer.port() == 30080, "{answer} {peer}");

    // No host process takes the node port (no socket is reserved per NodePort): the bind fails;
    // another port binds, and so does a pod, in its own namespace.
    let bind =
        |netns: &str, port: u16| netns::run_in(netns, move || TcpListener::bind(("0.0.0.0", port)).map(drop)).unwrap();
    let refused = bind(node.ns.name(), 30080).expect_err("the node port is the service's");
    assert_eq!(refused.kind(), ErrorKind::PermissionDenied, "{refused}");
    bind(node.ns.name(), 30081).expect("any other port");
    bind(&client.netns, 30080).expect("a pod's own namespace");

    // What status counts.
    let status: netstack_ref::agent::api_types::Status =
        serde_json::from_value(call(&node.config.socket(), &Request::Status).unwrap()).unwrap();
    let services = status.services.expect("services in status");
    assert!(services.error.is_none() && services.frontends >= 4, "{services:?}");
    assert!(services.translated >= 40 && services.refused >= 1 && services.reversed >= 1, "{services:?}");
    assert!(services.binds_refused >= 1, "{services:?}");

    // What the CLI shows.
    let rows = call(&node.config.socket(), &Request::ServiceList).unwrap();
    let web_http = rows.as_array().unwrap().iter().find(|r| r["frontend"] == "10.96.0.80:80/TCP").cloned().unwrap();
    assert_eq!(web_http["backends"].as_array().unwrap().len(), 2, "{web_http}");
    let maps = call(&node.config.socket(), &Request::BpfLbList).unwrap();
    assert!(maps.to_string().contains("127.0.0.1:30080/6"), "{maps}");

    // Connected UDP sockets, one to each backend (the socket LB picks at connect).
    let connected: Vec<(String, UdpSocket)> = netns::run_in(&client.netns, || {
        let mut found: Vec<(String, UdpSocket)> = Vec::new();
        for _ in 0..64 {
            let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
            socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            socket.connect((CLUSTER_IP, 53)).unwrap();
            socket.send(b"who").unwrap();
            let mut buf = [0u8; 16];
            let n = socket.recv(&mut buf).expect("a reply");
            let name = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !found.iter().any(|(f, _)| *f == name) {
                found.push((name, socket));
            }
            if found.len() == 2 {
                break;
            }
        }
        found
    })
    .unwrap();
    assert_eq!(connected.len(), 2, "a connected socket to each backend");

    // web2 leaves the selector: new connections go to web1 only.
    std::fs::write(node.manifests.join("scene.yaml"), manifests("retired")).unwrap();
    let one_backend = eventually(Duration::from_secs(10), || {
        call(&node.config.socket(), &Request::ServiceList).is_ok_and(|rows| {
            rows.as_array()
                .unwrap()
                .iter()
                .any(|r| r["frontend"] == "10.96.0.80:80/TCP" && r["backends"].as_array().unwrap().len() == 1)
        })
    });
    assert!(one_backend);
    for _ in 0..20 {
        let (answer, _) = ask_tcp(&client.netns, frontend).unwrap();
        assert_eq!(answer, "web1");
    }
    // The connected UDP socket to web2 was destroyed: aborted and disconnected, so its
    // application's next send fails and it reconnects; the one to web1 still talks.
    for (name, socket) in &connected {
        let mut buf = [0u8; 16];
        let answered = socket.send(b"who").and_then(|_| socket.recv(&mut buf));
        if name == "web2" {
            let error = answered.expect_err("destroyed");
            assert_eq!(error.raw_os_error(), Some(libc::EDESTADDRREQ), "disconnected: {error}");
            let pending = socket.take_error().unwrap().expect("the abort is reported");
            assert_eq!(pending.raw_os_error(), Some(libc::ECONNABORTED), "{pending}");
        } else {
            assert_eq!(&buf[..answered.expect("still connected")], b"web1");
        }
    }
    let status: netstack_ref::agent::api_types::Status =
        serde_json::from_value(call(&node.config.socket(), &Request::Status).unwrap()).unwrap();
    assert_eq!(status.services.unwrap().udp_sockets_destroyed, 1);

    // A namespace the node does not balance for is left alone (no service there).
    let outsider = ebpf_test_support::net::NetNs::new("nsvout").unwrap();
    let error = netns::run_in(outsider.name(), || {
        TcpStream::connect_timeout(&SocketAddrV4::new(CLUSTER_IP, 80).into(), Duration::from_millis(300)).unwrap_err()
    })
    .unwrap();
    assert_ne!(error.kind(), ErrorKind::ConnectionRefused, "not refused by our LB: {error}");
}

/// The writer against the kernel's maps: a reader doing what the datapath does (master, then one
/// of its slots, then the backend) while the backend list changes never sees a hole or a list
/// mixing two versions; a restarted writer reads the maps back and has nothing to write.
#[test]
fn backend_lists_change_atomically_and_survive_a_restart() {
    use netstack_ref::datapath::sock_lb::{cgroup_root, lb4_key, SockLb};
    use netstack_ref::manifest::service::{ForwardingMode, L4Protocol, TrafficPolicy};
    use netstack_ref::services::catalog::{Backend, Frontend, FrontendKind};
    use netstack_ref::services::lbmap::LbWriter;
    use std::collections::BTreeSet;
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let Some(_root) = require_kernel() else { return };
    let pins = std::path::PathBuf::from(format!("/sys/fs/bpf/{}", ebpf_test_support::unique_name("lbw")));
    std::fs::create_dir_all(&pins).unwrap();
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(pins.clone());
    let lb = SockLb::attach(&pins, &cgroup_root().expect("cgroup v2")).unwrap();
    let frontend = |backends: &[u8]| -> Vec<Frontend> {
        let backends: Vec<Backend> = backends
            .iter()
            .map(|b| Backend { address: IpAddr::from([10, 1, 0, *b]), port: 80, terminating: false, node: None })
            .collect();
        vec![Frontend {
            service: "t/web".into(),
            port_name: String::new(),
            kind: FrontendKind::ClusterIp,
            address: IpAddr::from([10, 96, 7, 7]),
            port: 80,
            protocol: L4Protocol::Tcp,
            backends: backends.clone(),
            local_backends: backends,
            affinity: None,
            external_policy: TrafficPolicy::Cluster,
            internal_policy: TrafficPolicy::Cluster,
            source_ranges: Vec::new(),
            forwarding_mode: ForwardingMode::Default,
        }]
    };
    // Two versions with no backend in common, and of different lengths.
    let versions = [frontend(&[1, 2, 3]), frontend(&[4, 5, 6, 7, 8])];
    let allowed: [BTreeSet<u8>; 2] = [[1, 2, 3].into(), [4, 5, 6, 7, 8].into()];
    let mut writer = LbWriter::default();
    writer.sync(&lb.maps, &versions[0], &[]).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        let maps = netstack_ref::datapath::sock_lb::LbMaps::open(&pins).unwrap();
        std::thread::spawn(move || {
            let master_key = lb4_key {
                address: u32::from(Ipv4Addr::new(10, 96, 7, 7)).to_be(),
                port: 80u16.to_be(),
                protocol: 6,
                ..Default::default()
            };
            let (mut reads, mut problems) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let Some(master) = maps.services.get(&master_key).unwrap() else { continue };
                let mut seen = BTreeSet::new();
                for i in 1..=master.count {
                    let slot = lb4_key { slot: master.base + i, ..master_key };
                    match maps.services.get(&slot).unwrap() {
                        None => problems.push(format!("hole at slot {}", master.base + i)),
                        Some(s) => match maps.backends.get(&s.backend_id).unwrap() {
                            None => problems.push(format!("backend {} gone", s.backend_id)),
                            Some(b) => {
                                seen.insert(Ipv4Addr::from(u32::from_be(b.address)).octets()[3]);
                            }
                        },
                    }
                }
                reads += 1;
                if !seen.is_empty() && !allowed.iter().any(|v| seen.is_subset(v)) {
                    problems.push(format!("a mixed list {seen:?}"));
                }
            }
            (reads, problems)
        })
    };
    for round in 0..2000 {
        writer.sync(&lb.maps, &versions[(round + 1) % 2], &[]).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (reads, problems) = reader.join().unwrap();
    assert!(reads > 100, "the reader ran ({reads} reads)");
    assert!(problems.is_empty(), "{} problems in {reads} reads, first: {:?}", problems.len(), problems.first());

    // A restarted agent's writer: the same ids, nothing to write.
    let rows_before = netstack_ref::services::view::lb_rows(&lb.maps).unwrap();
    let mut adopted = LbWriter::adopt(&lb.maps).unwrap();
    let report = adopted.sync(&lb.maps, &versions[0], &[]).unwrap();
    assert_eq!((report.frontends_written, report.backends_written), (0, 0), "{report:?}");
    assert_eq!(netstack_ref::services::view::lb_rows(&lb.maps).unwrap(), rows_before);
    // Removing the service leaves the maps empty.
    let report = adopted.sync(&lb.maps, &[], &[]).unwrap();
    assert_eq!(report.frontends_removed, 1);
    assert_eq!(lb.maps.services.iter().count(), 0, "no slot left behind");
    assert_eq!(lb.maps.backends.iter().count(), 0, "no backend left behind");
    assert_eq!(lb.maps.revnat.iter().count(), 0);
}
