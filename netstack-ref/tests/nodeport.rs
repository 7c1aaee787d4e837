//! North-south services with real traffic from outside the cluster, in both routing modes: the
//! client namespace on the underlay reaches NodePorts on every node, a LoadBalancer IP and an
//! ExternalIP, balanced per packet at each node's external device:
//! - SNAT (the backend sees the entry node) through every node, a local backend keeping the
//!   client's address; DSR (the backend sees the client and answers it itself, the node port as
//!   source); 8 MiB bulk transfers through SNAT, DSR and a local backend arrive intact;
//! - Maglev: the same client port gets the same backend through any node; hairpin: a backend
//!   reaches its own service through its node and through another;
//! - externalTrafficPolicy: Local (only a node with a backend answers; health check 200/503
//!   with kube-proxy's body), loadBalancerSourceRanges (its own drop reason), ClientIP affinity;
//! - a backend that starts terminating takes no new flows while its established ones finish,
//!   and serves again when nothing ready is left.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

mod support;

use ebpf_test_support::{eventually, require_etcd, require_kernel, unique_name};
use netstack_ref::agent::netns;
use support::cluster::*;

const LB_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 200);
const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 201);
const RANGED_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 202);
const CHECKED_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 203);
const HEALTH_PORT: u16 = 32100;

fn manifests() -> String {
    let service = |name: &str, extra_meta: &str, spec: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: web\n{extra_meta}spec:\n  \
             selector: {{app: echo}}\n{spec}"
        )
    };
    [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n---\napiVersion: v1\nkind: Pod\n\
         metadata: {name: echo, namespace: web, labels: {app: echo}}\nspec:\n  nodeName: node2\n  \
         containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]\n---\napiVersion: v1\nkind: Pod\n\
         metadata: {name: echo2, namespace: web, labels: {app: echo}}\nspec:\n  nodeName: node3\n  \
         containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]\n"
            .to_owned(),
        service("bulk", "", "  type: NodePort\n  ports: [{port: 9000, nodePort: 30008}]\n"),
        service(
            "bulk-dsr",
            "  annotations: {service.cilium.io/forwarding-mode: dsr}\n",
            "  type: NodePort\n  ports: [{port: 9000, nodePort: 30009}]\n",
        ),
        service(
            "sticky",
            "",
            "  type: NodePort\n  sessionAffinity: ClientIP\n  ports: [{port: 80, targetPort: http, nodePort: 30007}]\n",
        ),
        service("snat", "", "  type: NodePort\n  ports: [{port: 80, targetPort: http, nodePort: 30001}]\n"),
        service(
            "dsr",
            "  annotations: {service.cilium.io/forwarding-mode: dsr}\n",
            "  type: NodePort\n  ports: [{port: 80, targetPort: http, nodePort: 30002}]\n",
        ),
        service(
            "local",
            "",
            "  type: NodePort\n  externalTrafficPolicy: Local\n  ports: [{port: 80, targetPort: http, nodePort: 30003}]\n",
        ),
        service(
            "balanced",
            "",
            &format!(
                "  type: LoadBalancer\n  ports: [{{port: 80, targetPort: http, nodePort: 30004}}]\n\
                 status:\n  loadBalancer:\n    ingress: [{{ip: {LB_IP}}}]\n"
            ),
        ),
        service("external", "", &format!("  externalIPs: [{EXTERNAL_IP}]\n  ports: [{{port: 80, targetPort: http}}]\n")),
        service(
            "ranged",
            "",
            &format!(
                "  type: LoadBalancer\n  loadBalancerSourceRanges: [10.0.0.0/8]\n  \
                 ports: [{{port: 80, targetPort: http, nodePort: 30005}}]\n\
                 status:\n  loadBalancer:\n    ingress: [{{ip: {RANGED_IP}}}]\n"
            ),
        ),
        service(
            "checked",
            "",
            &format!(
                "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: {HEALTH_PORT}\n  \
                 ports: [{{port: 80, targetPort: http, nodePort: 30006}}]\n\
                 status:\n  loadBalancer:\n    ingress: [{{ip: {CHECKED_IP}}}]\n"
            ),
        ),
    ]
    .concat()
}

/// Serves TCP 8080 in `netns`: each connection is told `name` and the address it came from.
fn serve_echo(netns: &str, name: &'static str) {
    let (ready, up) = mpsc::channel();
    let ns = netns.to_owned();
    std::thread::spawn(move || {
        netns::run_in(&ns, move || {
            let tcp = TcpListener::bind("0.0.0.0:8080").unwrap();
            ready.send(()).unwrap();
            for stream in tcp.incoming().flatten() {
                let mut stream = stream;
                let peer = stream.peer_addr().map(|p| p.ip().to_string()).unwrap_or_default();
                let _ = stream.write_all(format!("{name} {peer}").as_bytes());
            }
        })
        .unwrap();
    });
    up.recv_timeout(Duration::from_secs(5)).unwrap();
}

/// Serves TCP 9000 in `netns`: reads each connection to its end and answers with the number of
/// bytes and their sum (so a corrupted or lost segment shows), after `name` and a space.
fn serve_sink(netns: &str, name: &'static str) {
    let (ready, up) = mpsc::channel();
    let ns = netns.to_owned();
    std::thread::spawn(move || {
        netns::run_in(&ns, move || {
            let tcp = TcpListener::bind("0.0.0.0:9000").unwrap();
            ready.send(()).unwrap();
            for stream in tcp.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let (mut total, mut sum, mut buf) = (0u64, 0u64, vec![0u8; 65536]);
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        total += n as u64;
                        sum = buf[..n].iter().fold(sum, |s, b| s.wrapping_mul(31).wrapping_add(u64::from(*b)));
                    }
                    let _ = stream.write_all(format!("{name} {total} {sum}").as_bytes());
                });
            }
        })
        .unwrap();
    });
    up.recv_timeout(Duration::from_secs(5)).unwrap();
}

/// From `netns`: sends `bytes` bytes to `to` and reads the sink's answer.
fn send_bulk(netns: &str, to: SocketAddrV4, bytes: usize) -> std::io::Result<String> {
    netns::run_in(netns, move || {
        let mut stream = TcpStream::connect_timeout(&to.into(), Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_write_timeout(Some(Duration::from_secs(20)))?;
        // Small sends go out at once, one segment each (none merged into an offloaded batch).
        stream.set_nodelay(true)?;
        let data: Vec<u8> = (0..bytes).map(|i| (i * 7 % 251) as u8).collect();
        stream.write_all(&data)?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        // Without the backend's name.
        Ok(answer.split_once(' ').map_or(answer.clone(), |(_, rest)| rest.to_owned()))
    })
    .unwrap()
}

/// What the sink answers for `bytes` bytes of [`send_bulk`].
fn bulk_answer(bytes: usize) -> String {
    let sum = (0..bytes).fold(0u64, |s, i| s.wrapping_mul(31).wrapping_add((i * 7 % 251) as u64));
    format!("{bytes} {sum}")
}

/// What a connection to an echo backend learnt.
#[derive(Debug)]
struct Answer {
    /// The backend that answered.
    backend: String,
    /// The address it saw the connection come from.
    seen: Ipv4Addr,
    /// The peer the client's socket was connected to.
    peer: SocketAddr,
}

/// From `netns`: connects to `to` (from source port `from_port`, or any); what it learnt.
fn ask_from(netns: &str, to: SocketAddrV4, from_port: Option<u16>) -> std::io::Result<Answer> {
    use nix::sys::socket::{bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
    netns::run_in(netns, move || {
        let mut stream = match from_port {
            None => TcpStream::connect_timeout(&to.into(), Duration::from_secs(2))?,
            Some(port) => {
                let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
                setsockopt(&fd, sockopt::ReuseAddr, &true)?;
                bind(
                    std::os::fd::AsRawFd::as_raw_fd(&fd),
                    &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)),
                )?;
                let stream = TcpStream::from(fd);
                stream.set_write_timeout(Some(Duration::from_secs(2)))?;
                connect(std::os::fd::AsRawFd::as_raw_fd(&stream), &SockaddrIn::from(to))?;
                stream
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let bad = || std::io::Error::other(format!("answer {answer:?}"));
        let (backend, seen) = answer.split_once(' ').ok_or_else(bad)?;
        Ok(Answer { backend: backend.to_owned(), seen: seen.parse().map_err(|_| bad())?, peer: stream.peer_addr()? })
    })
    .unwrap()
}

/// From `netns`: connects to `to`; (the address the backend saw us come from, the peer we saw).
fn seen_from(netns: &str, to: SocketAddrV4) -> std::io::Result<(Ipv4Addr, SocketAddr)> {
    ask_from(netns, to, None).map(|a| (a.seen, a.peer))
}

/// From `netns`: GET / on `at`; (status code, body as JSON).
fn health_check(netns: &str, at: SocketAddrV4) -> Option<(u16, serde_json::Value)> {
    netns::run_in(netns, move || {
        let mut stream = TcpStream::connect_timeout(&at.into(), Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n").ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        let code = answer.split(' ').nth(1)?.parse().ok()?;
        Some((code, serde_json::from_str(answer.split("\r\n\r\n").nth(1)?).ok()?))
    })
    .unwrap()
}

#[test]
fn node_ports_load_balancers_and_external_ips_from_outside_natively_routed() {
    from_outside("native");
}

#[test]
fn node_ports_load_balancers_and_external_ips_from_outside_through_the_tunnel() {
    from_outside("tunnel");
}

fn from_outside(routing: &str) {
    let Some(_root) = require_kernel() else { return };
    let Some(()) = require_etcd() else { return };
    let name = unique_name("np").replace('_', "");
    let state_dir = std::env::temp_dir().join(unique_name("nodeport"));
    let _cluster = Cluster { name: name.clone(), state_dir: state_dir.clone() };
    let manifests = manifests_dir("np-manifests", "web.yaml", &manifests());
    let record = cluster_up(
        &name,
        state_dir.to_str().unwrap(),
        &["--routing", routing, "--manifests", manifests.0.to_str().unwrap()],
    );
    let (node1, node2, node3) = (&record.nodes[0], &record.nodes[1], &record.nodes[2]);
    let log = |node: &netstack_ref::cluster::topology::NodeRecord| {
        std::fs::read_to_string(node.state_dir.join("agent.log")).unwrap_or_default()
    };
    assert!(eventually(Duration::from_secs(30), || endpoint(&node2.state_dir, "web/echo").is_some()), "{}", log(node2));
    assert!(eventually(Duration::from_secs(30), || endpoint(&node3.state_dir, "web/echo2").is_some()));
    let echo = endpoint(&node2.state_dir, "web/echo").unwrap();
    serve_echo(echo["netns"].as_str().unwrap(), "echo");
    let echo2 = endpoint(&node3.state_dir, "web/echo2").unwrap();
    serve_echo(echo2["netns"].as_str().unwrap(), "echo2");
    serve_sink(echo["netns"].as_str().unwrap(), "echo");
    serve_sink(echo2["netns"].as_str().unwrap(), "echo2");
    // Every node knows both backends (the remote one through the kvstore).
    let backends_known = |node: &netstack_ref::cluster::topology::NodeRecord| {
        let out = netstack(&["service", "list", "--state-dir", node.state_dir.to_str().unwrap(), "-o", "json"]);
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        rows.as_array().into_iter().flatten().any(|r| {
            r["service"] == "web/snat"
                && r["type"] == "NodePort"
                && r["backends"].as_array().is_some_and(|b| b.len() == 2)
        })
    };
    for node in &record.nodes {
        assert!(eventually(Duration::from_secs(30), || backends_known(node)), "{}", log(node));
    }
    let client = record.client_netns.as_str();
    let client_ip = record.client_address;
    // The client reaches the LoadBalancer and external IPs through node1 (as a router or an
    // external balancer would send them).
    netns::run_in(client, {
        let via = node1.underlay;
        move || {
            let mut rtnl = netstack_ref::agent::rtnl::Rtnl::open().unwrap();
            let (index, _) = rtnl.link("underlay0").unwrap();
            for ip in [LB_IP, EXTERNAL_IP, RANGED_IP] {
                rtnl.add_route(ip, 32, index, Some(via), false).unwrap();
            }
        }
    })
    .unwrap();
    let at = |ip: Ipv4Addr, port: u16| SocketAddrV4::new(ip, port);

    // SNAT through node1 (the backend is node2's): the backend sees node1, the client sees
    // the node port it asked for.
    assert!(
        eventually(Duration::from_secs(30), || seen_from(client, at(node1.underlay, 30001)).is_ok()),
        "{:?}\n{}",
        seen_from(client, at(node1.underlay, 30001)),
        log(node1)
    );
    let (seen, peer) = seen_from(client, at(node1.underlay, 30001)).unwrap();
    assert_eq!((seen, peer), (node1.underlay, SocketAddr::V4(at(node1.underlay, 30001))));
    // As flows: the connection's start traced where it arrived, as it arrived (to the node
    // port, the service named), and, through the tunnel, where it came out.
    let traces = |node: &netstack_ref::cluster::topology::NodeRecord, point: &str| -> Vec<serde_json::Value> {
        let state = node.state_dir.to_str().unwrap();
        let out = netstack(&["observe", "--state-dir", state, "-t", "trace", "--last", "4095", "-o", "json"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|r| r["flow"].clone())
            .filter(|f| f["trace_observation_point"] == point)
            .collect()
    };
    let from_network = traces(node1, "FROM_NETWORK");
    assert!(
        from_network.iter().any(|f| f["IP"]["source"] == client_ip.to_string()
            && f["IP"]["destination"] == node1.underlay.to_string()
            && f["l4"]["TCP"]["destination_port"] == 30001
            && f["destination_service"]["name"] == "snat"),
        "{from_network:?}"
    );
    if routing == "tunnel" {
        // Whichever backend Maglev picked (echo on node2, echo2 on node3).
        let mut from_overlay = traces(node2, "FROM_OVERLAY");
        from_overlay.extend(traces(node3, "FROM_OVERLAY"));
        assert!(
            from_overlay.iter().any(|f| f["IP"]["source"] == node1.underlay.to_string()
                && ["echo", "echo2"].iter().any(|pod| f["destination"]["pod_name"] == *pod)),
            "{from_overlay:?}"
        );
    }
    // Every node answers on its node port; a backend on the entry node sees the client, one
    // elsewhere the entry node.
    for (node, local) in [(node2, "echo"), (node3, "echo2")] {
        for _ in 0..4 {
            let a = ask_from(client, at(node.underlay, 30001), None).unwrap();
            let expected = if a.backend == local { client_ip } else { node.underlay };
            assert_eq!((a.seen, a.peer), (expected, SocketAddr::V4(at(node.underlay, 30001))), "{a:?}");
        }
    }

    // Hairpin: a backend reaching its own service through its node's port (socket LB) and
    // through another node's (north-south, SNAT back to the pod's node); sometimes itself.
    let echo_netns = echo["netns"].as_str().unwrap();
    let mut hairpin_backends = std::collections::BTreeSet::new();
    for port in 42000..42016 {
        for node in [node2, node1] {
            let a = ask_from(echo_netns, at(node.underlay, 30001), Some(port)).unwrap();
            hairpin_backends.insert(a.backend);
        }
    }
    assert!(hairpin_backends.contains("echo"), "the pod reached itself: {hairpin_backends:?}");

    // Maglev: the same client address and port get the same backend whichever node they
    // enter, and different ports spread over both backends.
    let mut backends = std::collections::BTreeSet::new();
    for port in 41000..41012 {
        let via1 = ask_from(client, at(node1.underlay, 30001), Some(port)).unwrap();
        let via3 = ask_from(client, at(node3.underlay, 30001), Some(port)).unwrap();
        assert_eq!(via1.backend, via3.backend, "source port {port}");
        backends.insert(via1.backend);
    }
    assert_eq!(backends.len(), 2, "{backends:?}");

    // Bulk transfers (large, segmentation-offloaded segments, checksums left to the end) arrive
    // whole through SNAT, DSR and a local backend.
    const BULK: usize = 8 << 20;
    // First one full-sized segment alone (1448 bytes, the path's MSS): with DSR's 8-byte option
    // it would no longer fit the pod's 1500-byte link, so the backend's node takes it out.
    for (node, port) in [(node1, 30008), (node1, 30009)] {
        assert_eq!(send_bulk(client, at(node.underlay, port), 1448).unwrap(), bulk_answer(1448), "{port}");
    }
    for (node, port) in [(node1, 30008), (node1, 30009), (node2, 30008), (node3, 30009)] {
        assert_eq!(
            send_bulk(client, at(node.underlay, port), BULK).unwrap(),
            bulk_answer(BULK),
            "{port} via {}",
            node.name
        );
    }

    // A backend that starts terminating takes no new flows but keeps its established ones;
    // when nothing ready is left, the terminating one serves (kube-proxy's rule).
    let slice = |echo2_conditions: &str, echo_conditions: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: drain, namespace: web}}\nspec:\n  type: NodePort\n  \
             ports: [{{port: 9000, nodePort: 30010}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata:\n  name: drain-1\n  namespace: web\n  labels: {{kubernetes.io/service-name: drain}}\n\
             addressType: IPv4\nports: [{{port: 9000}}]\nendpoints:\n\
             - addresses: [{}]\n  conditions: {echo_conditions}\n  nodeName: node2\n\
             - addresses: [{}]\n  conditions: {echo2_conditions}\n  nodeName: node3\n",
            echo["ipv4"].as_str().unwrap(),
            echo2["ipv4"].as_str().unwrap()
        )
    };
    let drain_backends = |wanted: &[&str]| {
        let out = netstack(&["service", "list", "--state-dir", node1.state_dir.to_str().unwrap(), "-o", "json"]);
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        rows.as_array().into_iter().flatten().any(|r| {
            r["service"] == "web/drain"
                && r["type"] == "NodePort"
                && r["backends"].as_array().is_some_and(|b| {
                    b.len() == wanted.len()
                        && wanted.iter().all(|w| b.iter().any(|x| x.as_str().unwrap_or("").contains(w)))
                })
        })
    };
    let ready = "{ready: true}";
    std::fs::write(manifests.0.join("drain.yaml"), slice(ready, ready)).unwrap();
    assert!(eventually(Duration::from_secs(20), || drain_backends(&["active", "active"])));
    // Established flows (sixteen source ports: Maglev puts some on each backend).
    let drain_via_node1 = at(node1.underlay, 30010);
    let open: Vec<TcpStream> = (0..16)
        .map(|_| {
            netns::run_in(client, move || {
                let mut stream = TcpStream::connect_timeout(&drain_via_node1.into(), Duration::from_secs(2))?;
                stream.write_all(&[1u8; 1000])?;
                Ok::<_, std::io::Error>(stream)
            })
            .unwrap()
            .unwrap()
        })
        .collect();
    let terminating = "{ready: false, serving: true, terminating: true}";
    std::fs::write(manifests.0.join("drain.yaml"), slice(terminating, ready)).unwrap();
    let echo_ip = echo["ipv4"].as_str().unwrap().to_owned();
    assert!(eventually(Duration::from_secs(20), || drain_backends(&[echo_ip.as_str()])));
    let via = |node: &netstack_ref::cluster::topology::NodeRecord| {
        netns::run_in(client, {
            let to = at(node.underlay, 30010);
            move || {
                let mut stream = TcpStream::connect_timeout(&to.into(), Duration::from_secs(2))?;
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                stream.shutdown(std::net::Shutdown::Write)?;
                let mut answer = String::new();
                stream.read_to_string(&mut answer)?;
                Ok::<_, std::io::Error>(answer)
            }
        })
        .unwrap()
    };
    for _ in 0..8 {
        assert!(via(node1).unwrap().starts_with("echo 0 "), "new flows avoid the terminating backend");
    }
    let mut finished_on = std::collections::BTreeSet::new();
    for mut stream in open {
        stream.write_all(&[1u8; 1000]).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (backend, rest) = answer.split_once(' ').unwrap();
        assert!(rest.starts_with("2000 "), "every byte of the established flow arrived: {answer}");
        finished_on.insert(backend.to_owned());
    }
    assert_eq!(finished_on.len(), 2, "established flows on both backends finished: {finished_on:?}");
    let not_ready = "{ready: false}";
    std::fs::write(manifests.0.join("drain.yaml"), slice(terminating, not_ready)).unwrap();
    let echo2_ip = echo2["ipv4"].as_str().unwrap().to_owned();
    assert!(eventually(Duration::from_secs(20), || drain_backends(&[echo2_ip.as_str()])));
    assert!(via(node1).unwrap().starts_with("echo2 0 "), "nothing ready: the terminating backend serves");

    // ClientIP affinity: every connection of the client lands on one backend.
    let first = ask_from(client, at(node1.underlay, 30007), None).unwrap().backend;
    for _ in 0..8 {
        assert_eq!(ask_from(client, at(node1.underlay, 30007), None).unwrap().backend, first);
    }

    // DSR through node1: the backend sees the client, and its answer (from node2, the node
    // port as its source) is what the client's socket accepts.
    let replies = || {
        north_south_count(&node2.state_dir, "egress", "FORWARDED")
            + north_south_count(&node3.state_dir, "egress", "FORWARDED")
    };
    let replies_before = replies();
    for _ in 0..4 {
        let (seen, peer) = seen_from(client, at(node1.underlay, 30002)).unwrap();
        assert_eq!((seen, peer), (client_ip, SocketAddr::V4(at(node1.underlay, 30002))));
    }
    assert!(replies() > replies_before, "the replies left the backends' nodes translated");

    // externalTrafficPolicy: Local: node2 has the backend and keeps the client's address;
    // node1 has none and drops.
    let (seen, _) = seen_from(client, at(node2.underlay, 30003)).unwrap();
    assert_eq!(seen, client_ip);
    let no_service = north_south_count(&node1.state_dir, "ingress", "NO_SERVICE");
    assert!(seen_from(client, at(node1.underlay, 30003)).is_err(), "node1 has no local backend");
    assert!(north_south_count(&node1.state_dir, "ingress", "NO_SERVICE") > no_service);

    // The LoadBalancer's IP and its node port; the external IP.
    let (seen, peer) = seen_from(client, at(LB_IP, 80)).unwrap();
    assert_eq!((seen, peer), (node1.underlay, SocketAddr::V4(at(LB_IP, 80))));
    assert_eq!(seen_from(client, at(node1.underlay, 30004)).unwrap().0, node1.underlay);
    let (seen, peer) = seen_from(client, at(EXTERNAL_IP, 80)).unwrap();
    assert_eq!((seen, peer), (node1.underlay, SocketAddr::V4(at(EXTERNAL_IP, 80))));

    // loadBalancerSourceRanges: the client is not in 10.0.0.0/8.
    let not_in_range = north_south_count(&node1.state_dir, "ingress", "NOT_IN_SRC_RANGE");
    assert!(seen_from(client, at(RANGED_IP, 80)).is_err(), "outside the source ranges");
    assert!(north_south_count(&node1.state_dir, "ingress", "NOT_IN_SRC_RANGE") > not_in_range);

    // healthCheckNodePort: 200 with one local endpoint on node2, 503 with none on node1.
    let status = |node: &netstack_ref::cluster::topology::NodeRecord| {
        String::from_utf8_lossy(&netstack(&["status", "--state-dir", node.state_dir.to_str().unwrap()]).stdout)
            .into_owned()
    };
    let answered =
        eventually(Duration::from_secs(10), || health_check(client, at(node2.underlay, HEALTH_PORT)).is_some());
    assert!(answered, "{}", status(node2));
    let (code, body) = health_check(client, at(node2.underlay, HEALTH_PORT)).unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["service"], serde_json::json!({"namespace": "web", "name": "checked"}));
    assert_eq!(body["localEndpoints"], 1);
    let (code, body) = health_check(client, at(node1.underlay, HEALTH_PORT)).expect("node1 answers");
    assert_eq!((code, &body["localEndpoints"]), (503, &serde_json::json!(0)), "{body}");
}

#[test]
fn idle_north_south_flows_are_forgotten_with_their_nat_and_replies() {
    use netstack_ref::datapath::nodeport::skeleton::OpenNodeport;
    use netstack_ref::datapath::nodeport::*;
    use netstack_ref::datapath::sock_lb::skeleton::OpenSockLb;
    let Some(_root) = require_kernel() else { return };
    let pins = ebpf_test_support::PinDir::new("ns_gc").expect("bpffs mounted");
    let options = ebpf_core::LoadOptions::default().pin_dir(pins.path());
    let _sock_lb = OpenSockLb::open().unwrap().load(&options).unwrap();
    let _nodeport = OpenNodeport::open().unwrap().load(&options).unwrap();
    let tables = NorthSouthTables::open(pins.path()).expect("pinned by the load");
    let now = boot_seconds();
    let flow = |client_port: u16| lb4_ct_key {
        client: u32::from_ne_bytes([192, 168, 100, 2]),
        frontend: u32::from_ne_bytes([192, 168, 100, 11]),
        client_port: client_port.to_be(),
        frontend_port: 30001u16.to_be(),
        protocol: 6,
        ..Default::default()
    };
    let snat_of = |key: &lb4_ct_key, nat_port: u16| {
        let entry = lb4_ct_entry {
            backend: u32::from_ne_bytes([10, 200, 2, 2]),
            backend_port: 8080u16.to_be(),
            nat_port: nat_port.to_be(),
            mode: lb_ct_mode::LB_CT_SNAT.0 as u8,
            ..Default::default()
        };
        let nat = lb4_snat_key {
            backend: entry.backend,
            backend_port: entry.backend_port,
            nat_port: entry.nat_port,
            protocol: 6,
            ..Default::default()
        };
        let back = lb4_snat_entry {
            client: key.client,
            frontend: key.frontend,
            client_port: key.client_port,
            frontend_port: key.frontend_port,
            last_seen: now,
            ..Default::default()
        };
        (entry, nat, back)
    };
    let any = ebpf_maps::UpdateFlags::ANY;
    // A live flow, one idle past TCP's six hours, one closing for longer than ten seconds.
    let (live, idle, closed) = (flow(40001), flow(40002), flow(40003));
    for (key, nat_port, last_seen, closing) in [
        (&live, 61001, now, 0),
        (&idle, 61002, now.saturating_sub(21_601), 0),
        (&closed, 61003, now.saturating_sub(11), 1),
    ] {
        let (mut entry, nat, back) = snat_of(key, nat_port);
        entry.last_seen = last_seen;
        entry.closing = closing;
        tables.conntrack.insert(key, &entry, any).unwrap();
        tables.snat.insert(&nat, &back, any).unwrap();
    }
    let reply = |client_port: u16| lb4_reply_key {
        backend: u32::from_ne_bytes([10, 200, 1, 5]),
        client: u32::from_ne_bytes([192, 168, 100, 2]),
        backend_port: 8080u16.to_be(),
        client_port: client_port.to_be(),
        protocol: 17,
        ..Default::default()
    };
    let fresh = lb4_reply_entry { last_seen: now, ..Default::default() };
    let stale = lb4_reply_entry { last_seen: now.saturating_sub(61), ..Default::default() };
    tables.replies.insert(&reply(1), &fresh, any).unwrap();
    tables.replies.insert(&reply(2), &stale, any).unwrap();

    // Two flows, their two SNAT entries and the stale reply.
    assert_eq!(tables.collect_garbage(now).unwrap(), 5);
    assert!(tables.conntrack.get(&live).unwrap().is_some());
    assert!(tables.conntrack.get(&idle).unwrap().is_none() && tables.conntrack.get(&closed).unwrap().is_none());
    let (_, live_nat, _) = snat_of(&live, 61001);
    assert!(tables.snat.get(&live_nat).unwrap().is_some());
    assert_eq!(tables.snat.iter().count(), 1);
    assert!(tables.replies.get(&reply(1)).unwrap().is_some() && tables.replies.get(&reply(2)).unwrap().is_none());
    assert_eq!(tables.collect_garbage(now).unwrap(), 0, "nothing left to collect");
}
