//! What an object from the Kubernetes API server means to the agent. Each object is cut down to
//! the fields the agent reads (a pod's spec is mostly containers it does not run) and decoded by
//! the same strict decoder as the manifest files, so a policy means the same wherever it comes
//! from and a bad one is refused with the same words.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::{refuse_unenforced, SourceError};
use crate::manifest::error::ManifestError;
use crate::manifest::{self, Resource};

/// A kind the Kubernetes source watches, and where the API server serves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchedKind {
    /// `kind`.
    pub kind: &'static str,
    /// API group (empty for the core group).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// The resource's plural (its URL path segment).
    pub plural: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

impl WatchedKind {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Every kind watched.
pub const WATCHED: [WatchedKind; 6] = [
    WatchedKind { kind: "Namespace", group: "", version: "v1", plural: "namespaces", namespaced: false },
    WatchedKind { kind: "Pod", group: "", version: "v1", plural: "pods", namespaced: true },
    WatchedKind { kind: "Service", group: "", version: "v1", plural: "services", namespaced: true },
    WatchedKind {
        kind: "EndpointSlice",
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        namespaced: true,
    },
    WatchedKind {
        kind: "CiliumNetworkPolicy",
        group: "cilium.io",
        version: "v2",
        plural: "ciliumnetworkpolicies",
        namespaced: true,
    },
    WatchedKind {
        kind: "CiliumClusterwideNetworkPolicy",
        group: "cilium.io",
        version: "v2",
        plural: "ciliumclusterwidenetworkpolicies",
        namespaced: false,
    },
];

/// What one object means to the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Projection {
    /// A resource to apply, with the fields ignored (as warnings).
    Applied(Box<Resource>, Vec<String>),
    /// Nothing for any agent to run, and why (e.g. a pod not scheduled yet).
    Skipped(&'static str),
}

/// `namespace/name`, or `name` for cluster-scoped objects: the object's key within its kind.
pub fn object_key(object: &Value) -> String {
    let meta = &object["metadata"];
    let name = meta["name"].as_str().unwrap_or("");
    match meta["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_owned(),
    }
}

/// How errors name an object: `kubernetes:Kind key`.
pub fn object_path(kind: &WatchedKind, object: &Value) -> PathBuf {
    PathBuf::from(format!("kubernetes:{} {}", kind.kind, object_key(object)))
}

/// What `object` (of `kind`, as the API server sends it) means to the agent.
pub fn project(kind: &WatchedKind, object: &Value) -> Result<Projection, SourceError> {
    let path = object_path(kind, object);
    let document = match kind.kind {
        "Pod" => match pod_document(object) {
            Ok(document) => document,
            Err(why) => return Ok(Projection::Skipped(why)),
        },
        "Namespace" => json!({ "metadata": metadata(object, false) }),
        "Service" => {
            let mut document = json!({ "metadata": metadata(object, true), "spec": object["spec"] });
            if let Some(lb) = object["status"].get("loadBalancer") {
                document["status"] = json!({ "loadBalancer": lb });
            }
            document
        }
        "EndpointSlice" => json!({
            "metadata": metadata(object, true),
            "addressType": object["addressType"],
            "ports": object["ports"],
            "endpoints": object["endpoints"],
        }),
        _ => policy_document(object, kind.namespaced),
    };
    let mut document = match document {
        Value::Object(map) => map,
        _ => unreachable_shape(&path)?,
    };
    document.insert("apiVersion".into(), Value::from(kind.api_version()));
    document.insert("kind".into(), Value::from(kind.kind));
    // Pretty, so a line number in an error points at one field.
    let text = serde_json::to_string_pretty(&Value::Object(document)).unwrap_or_default();
    let parsed = manifest::parse_file(&path, &text, false)?;
    refuse_unenforced(&path, &parsed)?;
    let warnings = parsed.warnings.iter().map(ToString::to_string).collect();
    match <[Resource; 1]>::try_from(parsed.resources) {
        Ok([resource]) => Ok(Projection::Applied(Box::new(resource), warnings)),
        Err(_) => unreachable_shape(&path),
    }
}

/// A JSON object always decodes into exactly one document; said as an error, not a panic.
fn unreachable_shape<T>(path: &Path) -> Result<T, SourceError> {
    Err(SourceError::Manifest(ManifestError {
        what: "object",
        file: path.to_path_buf(),
        line: 0,
        field: String::new(),
        message: "not one JSON object".into(),
    }))
}

/// The metadata the decoder reads: name, namespace (for namespaced kinds), labels, annotations.
/// The rest (uid, managedFields, ownerReferences, …) is the API server's bookkeeping.
fn metadata(object: &Value, namespaced: bool) -> Value {
    let meta = &object["metadata"];
    let mut out = Map::new();
    let mut keep = vec!["name", "labels", "annotations"];
    if namespaced {
        keep.push("namespace");
    }
    for field in keep {
        if let Some(v) = meta.get(field).filter(|v| !v.is_null()) {
            out.insert(field.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// A pod as the decoder reads it, or why no agent runs it: host-network pods are the node's
/// own processes, finished pods have no network, unscheduled pods have no node yet.
fn pod_document(object: &Value) -> Result<Value, &'static str> {
    let spec = &object["spec"];
    if spec["hostNetwork"].as_bool() == Some(true) {
        return Err("host network: the node's own network namespace");
    }
    if matches!(object["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
        return Err("finished");
    }
    let Some(node) = spec["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return Err("not scheduled to a node yet");
    };
    let mut pod_spec = Map::new();
    pod_spec.insert("nodeName".into(), Value::from(node));
    // `serviceAccount` is the field's deprecated older name, still filled by the API server.
    if let Some(account) = spec["serviceAccountName"].as_str().or(spec["serviceAccount"].as_str()) {
        pod_spec.insert("serviceAccountName".into(), Value::from(account));
    }
    // Only the named ports: what a service's named targetPort resolves through.
    let containers: Vec<Value> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let ports: Vec<Value> = c["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p.get("name").is_some())
                .map(|p| json!({"name": p["name"], "containerPort": p["containerPort"], "protocol": p.get("protocol").unwrap_or(&json!("TCP"))}))
                .collect();
            json!({ "ports": ports })
        })
        .collect();
    pod_spec.insert("containers".into(), Value::from(containers));
    Ok(json!({ "metadata": metadata(object, true), "spec": pod_spec }))
}

/// A policy as given, less what the API server and controllers add (status, bookkeeping).
fn policy_document(object: &Value, namespaced: bool) -> Value {
    let mut document = match object {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    document.remove("status");
    document.insert("metadata".into(), metadata(object, namespaced));
    Value::Object(document)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str) -> WatchedKind {
        *WATCHED.iter().find(|k| k.kind == name).expect("watched")
    }

    #[test]
    fn a_pod_from_the_api_server_keeps_what_the_agent_reads() {
        let pod = json!({
            "metadata": {
                "name": "frontend", "namespace": "shop", "uid": "0c1d", "resourceVersion": "812",
                "labels": {"app": "frontend"},
                "managedFields": [{"manager": "kubectl"}],
                "ownerReferences": [{"kind": "ReplicaSet", "name": "frontend-5d9"}]
            },
            "spec": {
                "nodeName": "node2", "serviceAccount": "web", "serviceAccountName": "web",
                "containers": [{"name": "nginx", "image": "nginx:1.27"}]
            },
            "status": {"phase": "Running", "podIP": "10.0.0.9"}
        });
        let Projection::Applied(resource, warnings) = project(&kind("Pod"), &pod).unwrap() else { panic!("a pod") };
        let Resource::Pod(p) = *resource else { panic!("a pod") };
        assert_eq!((p.namespace.as_str(), p.name.as_str()), ("shop", "frontend"));
        assert_eq!(p.labels, [("app".to_owned(), "frontend".to_owned())]);
        assert_eq!((p.service_account.as_str(), p.node_name.as_deref()), ("web", Some("node2")));
        assert!(warnings.is_empty(), "bookkeeping is not a warning: {warnings:?}");
    }

    #[test]
    fn pods_no_agent_runs_are_skipped_with_why() {
        let pending = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {}});
        let host = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"nodeName": "n", "hostNetwork": true}});
        let done = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"nodeName": "n"},
            "status": {"phase": "Succeeded"}});
        for pod in [pending, host, done] {
            assert!(matches!(project(&kind("Pod"), &pod), Ok(Projection::Skipped(_))), "{pod}");
        }
    }

    #[test]
    fn a_policy_decodes_as_from_a_file_and_a_bad_one_is_named() {
        let cnp = json!({
            "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": {"name": "db", "namespace": "shop", "generation": 3, "uid": "u"},
            "spec": {"endpointSelector": {"matchLabels": {"app": "db"}},
                     "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "backend"}}]}]},
            "status": {"nodes": {"node1": {"enforcing": true}}}
        });
        let Projection::Applied(resource, _) = project(&kind("CiliumNetworkPolicy"), &cnp).unwrap() else {
            panic!("a policy")
        };
        let Resource::Policy(p) = *resource else { panic!("a policy") };
        assert_eq!(p.key(), "shop/db");
        let mut bad = cnp.clone();
        bad["spec"]["ingress"][0]["fromEndpoint"] = json!([]);
        let error = project(&kind("CiliumNetworkPolicy"), &bad).unwrap_err().to_string();
        assert!(error.contains("kubernetes:CiliumNetworkPolicy shop/db") && error.contains("fromEndpoint"), "{error}");
    }

    #[test]
    fn services_and_slices_decode_with_the_api_servers_bookkeeping_dropped() {
        let svc = json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u", "resourceVersion": "9"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
                     "ports": [{"port": 80, "targetPort": "http", "nodePort": 31080, "protocol": "TCP"}],
                     "selector": {"app": "web"}},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7", "ipMode": "VIP"}]}, "conditions": []}
        });
        let Projection::Applied(resource, _) = project(&kind("Service"), &svc).unwrap() else { panic!("a service") };
        let Resource::Service(s) = *resource else { panic!("a service") };
        assert_eq!(object_key(&svc), "shop/web");
        assert_eq!((s.ports[0].node_port, s.load_balancer_ingress.len()), (Some(31080), 1));
        let slice = json!({
            "metadata": {"name": "web-abc12", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"},
                         "ownerReferences": [{"kind": "Service", "name": "web"}]},
            "addressType": "IPv4",
            "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.0.1.5"], "conditions": {"ready": true, "serving": true, "terminating": false},
                           "nodeName": "node1", "targetRef": {"kind": "Pod", "name": "web-1"}}]
        });
        let Projection::Applied(resource, _) = project(&kind("EndpointSlice"), &slice).unwrap() else {
            panic!("a slice")
        };
        let Resource::EndpointSlice(e) = *resource else { panic!("a slice") };
        assert_eq!((e.service.as_str(), e.endpoints.len(), e.ports[0].port), ("web", 1, 8080));
    }

    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,8}".prop_map(Value::from),
            Just(Value::from("node1")),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let key = prop_oneof![
                Just("metadata".to_owned()),
                Just("spec".to_owned()),
                Just("name".to_owned()),
                Just("namespace".to_owned()),
                Just("labels".to_owned()),
                Just("nodeName".to_owned()),
                Just("endpointSelector".to_owned()),
                Just("ingress".to_owned()),
                "[a-z]{1,6}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(key, inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn any_object_of_any_kind_is_decoded_or_refused_without_panic(object in any_json()) {
            let _ = object_key(&object);
            for kind in &WATCHED {
                let _ = project(kind, &object);
            }
        }
    }
}
