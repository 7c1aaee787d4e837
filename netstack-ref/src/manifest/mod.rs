//! Kubernetes-shaped YAML in: `Namespace`, `Pod`, `Service`, `EndpointSlice`, `Endpoints`,
//! `CiliumNetworkPolicy`, `CiliumClusterwideNetworkPolicy`, several per file. Decoding is strict and every error names
//! the file, line and field.

pub mod error;
pub mod policy;
pub mod service;
pub mod yaml;

use std::path::Path;

use crate::policy::api::Policy;
use error::{Located, ManifestError};
use policy::decode_policy;
use service::{decode_endpoint_slice, decode_endpoints, decode_service, EndpointSlice, Endpoints, L4Protocol, Service};
use yaml::{Fields, Node};

/// A namespace and its labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: Vec<(String, String)>,
}

/// A pod: what the agent makes an endpoint of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (default `default`).
    pub namespace: String,
    /// `metadata.labels`.
    pub labels: Vec<(String, String)>,
    /// `spec.serviceAccountName` (default `default`).
    pub service_account: String,
    /// `spec.nodeName`: the node it is scheduled to; none runs it on every node that reads it.
    pub node_name: Option<String>,
    /// Its containers' named ports (`spec.containers[].ports[]` with a `name`): how a service's
    /// named `targetPort` finds a number on this pod.
    pub named_ports: Vec<(String, L4Protocol, u16)>,
}

/// One decoded document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// `kind: Namespace`.
    Namespace(Namespace),
    /// `kind: Pod`.
    Pod(Pod),
    /// `kind: CiliumNetworkPolicy` or `CiliumClusterwideNetworkPolicy`.
    Policy(Policy),
    /// `kind: Service`.
    Service(Service),
    /// `kind: EndpointSlice`.
    EndpointSlice(EndpointSlice),
    /// `kind: Endpoints` (legacy), as mirrored slices.
    Endpoints(Endpoints),
}

impl Resource {
    /// `Kind namespace/name`, how the CLI and the agent name a resource.
    pub fn key(&self) -> String {
        match self {
            Resource::Namespace(n) => format!("Namespace {}", n.name),
            Resource::Pod(p) => format!("Pod {}/{}", p.namespace, p.name),
            Resource::Policy(p) if p.namespace.is_some() => format!("CiliumNetworkPolicy {}", p.key()),
            Resource::Policy(p) => format!("CiliumClusterwideNetworkPolicy {}", p.key()),
            Resource::Service(s) => format!("Service {}", s.key()),
            Resource::EndpointSlice(s) => format!("EndpointSlice {}/{}", s.namespace, s.name),
            Resource::Endpoints(e) => format!("Endpoints {}/{}", e.namespace, e.name),
        }
    }
}

/// What a file decodes into, and the fields the Kubernetes API server would prune from it (a
/// top-level `description`, an unknown `metadata` key): accepted with a warning each, unless
/// strict. Unknown fields inside a policy's rules are always errors: a typo there must never
/// widen or narrow a policy silently.
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    /// The resources.
    pub resources: Vec<Resource>,
    /// Pruned fields, each at its file, line and field.
    pub warnings: Vec<ManifestError>,
}

/// Decodes every document of `text`, read from `file` (named in errors), pruning what the API
/// server would prune. All or nothing: the first bad document fails the file.
pub fn parse(file: &Path, text: &str) -> Result<Vec<Resource>, ManifestError> {
    parse_file(file, text, false).map(|p| p.resources)
}

/// Like [`parse`], with the pruned fields as warnings, or (`strict`) as errors.
pub fn parse_file(file: &Path, text: &str, strict: bool) -> Result<Parsed, ManifestError> {
    let docs = yaml::documents(text).map_err(|e| e.in_file("manifest", file))?;
    let mut out = Parsed::default();
    for doc in &docs {
        let root = Node::root(doc);
        let mut fields = root.fields().map_err(|e| e.in_file("manifest", file))?;
        let kind = fields.get("kind").map(|k| k.str().map(str::to_string));
        let what = match &kind {
            Some(Ok(k)) if k.starts_with("Cilium") => "policy",
            _ => "manifest",
        };
        let kind =
            kind.ok_or_else(|| fields.error("kind", "missing")).and_then(|k| k).map_err(|e| e.in_file(what, file))?;
        let mut pruned = Vec::new();
        out.resources.push(decode(&kind, &mut fields, &mut pruned).map_err(|e| e.in_file(what, file))?);
        if let (true, Some(first)) = (strict, pruned.first()) {
            let message = format!("{}; refused with --strict", first.message.trim_end_matches("; ignored"));
            return Err(Located { message, ..first.clone() }.in_file(what, file));
        }
        out.warnings.extend(pruned.into_iter().map(|w| w.in_file(what, file)));
    }
    Ok(out)
}

/// Reads and decodes a file (see [`parse_file`]).
pub fn read(file: &Path, strict: bool) -> Result<Parsed, ManifestError> {
    let text = std::fs::read_to_string(file).map_err(|e| ManifestError {
        what: "manifest",
        file: file.to_path_buf(),
        line: 0,
        field: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    parse_file(file, &text, strict)
}

fn decode(kind: &str, doc: &mut Fields<'_, '_>, pruned: &mut Vec<Located>) -> Result<Resource, Located> {
    let api_version = doc.get("apiVersion").ok_or_else(|| doc.error("apiVersion", "missing"))?;
    let expected = match kind {
        "Namespace" | "Pod" | "Service" | "Endpoints" => "v1",
        "EndpointSlice" => "discovery.k8s.io/v1",
        "CiliumNetworkPolicy" | "CiliumClusterwideNetworkPolicy" => "cilium.io/v2",
        other => {
            return Err(doc.error(
                "kind",
                format!(
                    "{other:?} is not one of Namespace, Pod, Service, EndpointSlice, Endpoints, CiliumNetworkPolicy, \
                     CiliumClusterwideNetworkPolicy"
                ),
            ))
        }
    };
    if api_version.str()? != expected {
        return Err(api_version.error(format!("{kind} is apiVersion {expected}, not {:?}", api_version.str()?)));
    }
    let meta = doc.get("metadata").ok_or_else(|| doc.error("metadata", "missing"))?;
    let mut m = meta.fields()?;
    let name_node = m.get("name").ok_or_else(|| m.error("name", "missing"))?;
    let name = dns_label(&name_node)?;
    let namespace = match m.get("namespace") {
        Some(ns) => Some(dns_label(&ns)?),
        None => None,
    };
    let labels = match m.get("labels") {
        Some(l) => l.string_map()?,
        None => Vec::new(),
    };
    let annotations = match m.get("annotations") {
        Some(a) => a.string_map()?,
        None => Vec::new(),
    };
    for ignored in ["uid", "resourceVersion", "generation", "creationTimestamp"] {
        m.get(ignored);
    }
    pruned.extend(m.leftovers());
    let namespaced = || namespace.clone().unwrap_or_else(|| "default".into());
    match kind {
        "Service" => {
            let service = decode_service(name, namespaced(), &annotations, &m, doc, pruned)?;
            pruned.extend(doc.leftovers());
            return Ok(Resource::Service(service));
        }
        "EndpointSlice" => {
            let slice = decode_endpoint_slice(name, namespaced(), &labels, &m, doc)?;
            pruned.extend(doc.leftovers());
            return Ok(Resource::EndpointSlice(slice));
        }
        "Endpoints" => {
            let endpoints = decode_endpoints(name, namespaced(), doc)?;
            pruned.extend(doc.leftovers());
            return Ok(Resource::Endpoints(endpoints));
        }
        _ => {}
    }
    // Status is written by controllers, never read.
    doc.get("status");
    let resource = match kind {
        "Namespace" => {
            if namespace.is_some() {
                return Err(meta.error("a Namespace has no namespace"));
            }
            doc.get("spec");
            Resource::Namespace(Namespace { name, labels })
        }
        "Pod" => {
            // A pod's spec is large; the agent reads the service account and lets the rest be.
            let mut service_account = "default".to_string();
            let mut node_name = None;
            let mut named_ports = Vec::new();
            if let Some(spec) = doc.get("spec") {
                let mut s = spec.fields()?;
                if let Some(sa) = s.get("serviceAccountName") {
                    service_account = sa.str()?.to_string();
                }
                if let Some(node) = s.get("nodeName") {
                    node_name = Some(node.str()?.to_string());
                }
                for container in s.get("containers").map(|c| c.list()).transpose()?.unwrap_or_default() {
                    let mut c = container.fields()?;
                    for port in c.get("ports").map(|p| p.list()).transpose()?.unwrap_or_default() {
                        let mut p = port.fields()?;
                        let number = p.get("containerPort").ok_or_else(|| p.error("containerPort", "missing"))?;
                        let number = number.int(1, 65535)? as u16;
                        let protocol = match p.get("protocol") {
                            None => L4Protocol::Tcp,
                            Some(n) => match n.str()? {
                                "TCP" => L4Protocol::Tcp,
                                "UDP" => L4Protocol::Udp,
                                "SCTP" => L4Protocol::Sctp,
                                other => return Err(n.error(format!("{other:?} is not one of TCP, UDP, SCTP"))),
                            },
                        };
                        if let Some(name) = p.get("name") {
                            named_ports.push((name.str()?.to_owned(), protocol, number));
                        }
                    }
                }
            }
            Resource::Pod(Pod {
                name,
                namespace: namespace.unwrap_or_else(|| "default".into()),
                labels,
                service_account,
                node_name,
                named_ports,
            })
        }
        "CiliumClusterwideNetworkPolicy" => {
            if namespace.is_some() {
                return Err(meta.error("a CiliumClusterwideNetworkPolicy has no namespace"));
            }
            Resource::Policy(decode_policy(name, None, doc)?)
        }
        _ => Resource::Policy(decode_policy(name, Some(namespace.unwrap_or_else(|| "default".into())), doc)?),
    };
    pruned.extend(doc.leftovers());
    Ok(resource)
}

fn dns_label(node: &Node<'_, '_>) -> Result<String, Located> {
    let text = node.str()?;
    let ok = (1..=253).contains(&text.len())
        && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        return Err(node.error(format!("{text:?} is not a valid name (lower-case letters, digits, '-', '.')")));
    }
    Ok(text.to_string())
}
