//! What `netstack service list` and `netstack bpf lb list` show: the catalog's frontends, and
//! the load balancer's maps read back.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::node::NodeServices;
use crate::datapath::sock_lb::{lb_flags, lb_scope, LbMaps};
use crate::datapath::DatapathError;

/// One frontend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRow {
    /// `namespace/name`.
    pub service: String,
    /// ClusterIP, NodePort, ExternalIP or LoadBalancer.
    #[serde(rename = "type")]
    pub kind: String,
    /// `address:port/protocol` (node ports: `*:port/protocol`).
    pub frontend: String,
    /// `address:port (state)` of each backend.
    pub backends: Vec<String>,
}

/// The node's frontends and their backends.
pub fn service_rows(services: &NodeServices) -> Vec<ServiceRow> {
    services
        .frontends()
        .iter()
        .map(|f| {
            let address = if f.address.is_unspecified() { "*".to_owned() } else { f.address.to_string() };
            ServiceRow {
                service: f.service.clone(),
                kind: f.kind.name().to_owned(),
                frontend: format!("{address}:{}/{}", f.port, f.protocol.name()),
                backends: f
                    .backends
                    .iter()
                    .map(|b| {
                        format!("{}:{} ({})", b.address, b.port, if b.terminating { "terminating" } else { "active" })
                    })
                    .collect(),
            }
        })
        .collect()
}

/// One frontend as the maps hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LbRow {
    /// `address:port/protocol-number`.
    pub frontend: String,
    /// `external` or `internal`.
    pub scope: String,
    /// Its reverse-NAT id.
    pub rev_nat_id: u16,
    /// Its flags by name.
    pub flags: Vec<String>,
    /// Its backends in slot order: `id address:port state`.
    pub backends: Vec<String>,
    /// Its Maglev table's id in `lb4_maglev` (external frontends; 0: none).
    #[serde(default)]
    pub maglev: u32,
}

/// The maps' frontends with their slots resolved.
pub fn lb_rows(maps: &LbMaps) -> Result<Vec<LbRow>, DatapathError> {
    let failed =
        |what: &'static str| move |source| DatapathError::Map { what: what.to_owned(), source: Box::new(source) };
    let mut backends = BTreeMap::new();
    for entry in maps.backends.iter() {
        let (id, b) = entry.map_err(failed("read lb4_backends"))?;
        let state = if b.state == 0 { "active" } else { "terminating" };
        backends
            .insert(id, format!("{id} {}:{} {state}", Ipv4Addr::from(u32::from_be(b.address)), u16::from_be(b.port)));
    }
    let mut slots = BTreeMap::new();
    let mut masters = Vec::new();
    for entry in maps.services.iter() {
        let (k, v) = entry.map_err(failed("read lb4_services"))?;
        let frontend = (u32::from_be(k.address), u16::from_be(k.port), k.protocol, k.scope);
        if k.slot == 0 {
            masters.push((frontend, v));
        } else {
            slots.insert((frontend, k.slot), v.backend_id);
        }
    }
    masters.sort_by_key(|(f, _)| *f);
    Ok(masters
        .into_iter()
        .map(|(f, m)| LbRow {
            frontend: format!("{}:{}/{}", Ipv4Addr::from(f.0), f.1, f.2),
            scope: if u32::from(f.3) == lb_scope::LB_SCOPE_INTERNAL.0 { "internal" } else { "external" }.to_owned(),
            rev_nat_id: m.rev_nat_id,
            flags: lb_flags::ALL
                .iter()
                .filter(|(_, flag)| u32::from(m.flags) & flag.0 != 0)
                .map(|(name, _)| name.trim_start_matches("LB_FLAG_").to_lowercase())
                .collect(),
            backends: (1..=m.count)
                .map(|i| {
                    let id = slots.get(&(f, m.base + i)).copied().unwrap_or(0);
                    backends.get(&id).cloned().unwrap_or_else(|| format!("{id} (missing)"))
                })
                .collect(),
            maglev: m.backend_id,
        })
        .collect())
}
