//! `healthCheckNodePort`: for a LoadBalancer service with `externalTrafficPolicy: Local`, the
//! node answers HTTP on that port with how many of the service's endpoints run here — 200 when
//! some do, 503 when none — so an external balancer sends traffic only to nodes that can serve
//! it, as kube-proxy's health check server does. The body is kube-proxy's:
//! `{"service":{"namespace":…,"name":…},"localEndpoints":N,"serviceProxyHealthy":true}`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::catalog::{allocate_node_ports, Frontend, HEALTH_CHECK_KEY};
use crate::manifest::service::{Service, ServiceType, TrafficPolicy};

/// One service's health check as the node should serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// The service's namespace.
    pub namespace: String,
    /// The service's name.
    pub name: String,
    /// Its `healthCheckNodePort` (given or allocated).
    pub port: u16,
    /// Its ready endpoints on this node.
    pub local_endpoints: usize,
}

/// The health checks `services` want, their local endpoints counted from `frontends` (this
/// node's catalog): LoadBalancer services with `externalTrafficPolicy: Local`.
pub fn wanted(services: &[Service], frontends: &[Frontend]) -> Vec<HealthCheck> {
    let ports = allocate_node_ports(services);
    services
        .iter()
        .filter(|s| s.service_type == ServiceType::LoadBalancer && s.external_traffic_policy == TrafficPolicy::Local)
        .filter_map(|s| {
            let port = *ports.get(&(s.key(), HEALTH_CHECK_KEY.to_owned()))?;
            let key = s.key();
            let mut local: Vec<_> = frontends
                .iter()
                .filter(|f| f.service == key)
                .flat_map(|f| f.local_backends.iter().filter(|b| !b.terminating).map(|b| b.address))
                .collect();
            local.sort();
            local.dedup();
            Some(HealthCheck {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                port,
                local_endpoints: local.len(),
            })
        })
        .collect()
}

/// A listener serving one health check until dropped.
#[derive(Debug)]
struct Served {
    check: HealthCheck,
    local_endpoints: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag and closes the port.
        let _ = TcpStream::connect_timeout(
            &SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.check.port).into(),
            Duration::from_millis(200),
        );
    }
}

/// The node's health check servers.
#[derive(Debug, Default)]
pub struct HealthServers {
    served: BTreeMap<u16, Served>,
}

/// The response to any request on a health check port.
fn response(namespace: &str, name: &str, local_endpoints: usize) -> String {
    let body = serde_json::json!({
        "service": { "namespace": namespace, "name": name },
        "localEndpoints": local_endpoints,
        "serviceProxyHealthy": true,
    })
    .to_string();
    let status = if local_endpoints > 0 { "200 OK" } else { "503 Service Unavailable" };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn answer(mut stream: TcpStream, check: &HealthCheck, local_endpoints: usize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    // The request itself does not matter (any path, any method); read its head and answer.
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(response(&check.namespace, &check.name, local_endpoints).as_bytes());
}

impl HealthServers {
    /// Serves exactly `wanted`: new ports opened, gone ones closed, counts updated in place.
    /// Ports that cannot be opened come back as messages.
    pub fn sync(&mut self, wanted: &[HealthCheck]) -> Vec<String> {
        let mut errors = Vec::new();
        let ports: Vec<u16> = wanted.iter().map(|c| c.port).collect();
        self.served.retain(|port, _| ports.contains(port));
        for check in wanted {
            if let Some(served) = self.served.get_mut(&check.port) {
                if served.check.namespace == check.namespace && served.check.name == check.name {
                    served.local_endpoints.store(check.local_endpoints, Ordering::SeqCst);
                    served.check.local_endpoints = check.local_endpoints;
                    continue;
                }
                self.served.remove(&check.port);
            }
            match self.open(check) {
                Ok(served) => {
                    self.served.insert(check.port, served);
                }
                Err(e) => errors
                    .push(format!("health check of {}/{} on port {}: {e}", check.namespace, check.name, check.port)),
            }
        }
        errors
    }

    fn open(&self, check: &HealthCheck) -> std::io::Result<Served> {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, check.port))?;
        let local_endpoints = Arc::new(AtomicUsize::new(check.local_endpoints));
        let stop = Arc::new(AtomicBool::new(false));
        let served =
            Served { check: check.clone(), local_endpoints: Arc::clone(&local_endpoints), stop: Arc::clone(&stop) };
        let check = check.clone();
        std::thread::Builder::new().name(format!("health-{}", check.port)).spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    answer(stream, &check, local_endpoints.load(Ordering::SeqCst));
                }
            }
        })?;
        Ok(served)
    }

    /// The health checks served now.
    pub fn served(&self) -> impl Iterator<Item = &HealthCheck> {
        self.served.values().map(|s| &s.check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_kube_proxys_with_200_only_when_endpoints_are_local() {
        let ok = response("shop", "web", 2);
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        let body: serde_json::Value = serde_json::from_str(ok.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["service"]["namespace"], "shop");
        assert_eq!(body["service"]["name"], "web");
        assert_eq!(body["localEndpoints"], 2);
        assert!(response("shop", "web", 0).starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
    }
}
