//! An agent whose pods, namespaces and policies come from a Kubernetes API server (the recorded
//! stand-in, listening in the node's own namespace as a real API server would be reachable from
//! a node): it runs only the pods scheduled to its node, enforces the listed policy with real
//! traffic, follows watch events (a policy deleted, a pod deleted), and keeps its datapath
//! while the API server has not listed everything yet.

mod support;

use std::net::TcpListener;
use std::time::Duration;

use ebpf_test_support::{eventually, require_kernel};
use netstack_ref::agent::api::{call, Request};
use netstack_ref::agent::netns;
use netstack_ref::policy::AllowLocalhost;
use netstack_ref::traffic::probe::{self, Probe};
use serde_json::{json, Value};
use support::apiserver::ApiServer;
use support::Node;

fn pod(name: &str, node: &str, rv: u32) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": rv.to_string(), "uid": format!("u-{name}"),
                     "labels": {"app": name}},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1"}]},
        "status": {"phase": "Running"}
    })
}

fn scene(node: &str) -> Value {
    let policy = json!({
        "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "backend-from-frontend", "namespace": "shop", "resourceVersion": "31"},
        "spec": {"endpointSelector": {"matchLabels": {"app": "backend"}},
                 "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "frontend"}}],
                              "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}]}]}
    });
    let deleted_policy = {
        let mut p = policy.clone();
        p["metadata"]["resourceVersion"] = "40".into();
        p
    };
    let mut deleted_pod = pod("frontend", node, 50);
    deleted_pod["apiVersion"] = "v1".into();
    deleted_pod["kind"] = "Pod".into();
    json!({
        "/api/v1/namespaces": [
            {"list": {"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": "10"},
                      "items": [{"metadata": {"name": "shop", "resourceVersion": "5", "labels": {"team": "shop"}}}]}}
        ],
        "/api/v1/pods": [
            // Held until the test has seen the agent wait for it.
            {"after": "pods", "list": {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "20"},
                "items": [pod("frontend", node, 11), pod("backend", node, 12), pod("elsewhere", "another-node", 13)]}},
            {"after": "delete-pod", "watch": {"resourceVersion": "20", "events": [{"type": "DELETED", "object": deleted_pod}],
                "then": "hold"}}
        ],
        "/apis/cilium.io/v2/ciliumnetworkpolicies": [
            {"list": {"kind": "CiliumNetworkPolicyList", "apiVersion": "cilium.io/v2",
                      "metadata": {"resourceVersion": "32"}, "items": [policy]}},
            {"after": "delete-policy", "watch": {"resourceVersion": "32",
                "events": [{"type": "DELETED", "object": deleted_policy}], "then": "hold"}}
        ]
    })
}

#[test]
fn an_agent_runs_its_pods_and_policies_from_the_kubernetes_api() {
    let Some(_root) = require_kernel() else { return };
    let mut node = Node::new("nsk", AllowLocalhost::Always, &[]);
    let listener = netns::run_in(node.ns.name(), || {
        let mut rtnl = netstack_ref::agent::rtnl::Rtnl::open().expect("rtnetlink");
        let (lo, _) = rtnl.link("lo").expect("lo");
        rtnl.set_up(lo).expect("lo up");
        TcpListener::bind("127.0.0.1:0").expect("bind in the node")
    })
    .expect("enter the node");
    let server = ApiServer::start_on(listener, &scene(node.ns.name()));
    let kubeconfig = server.kubeconfig();
    node.start_with(&["--kubeconfig".as_ref(), kubeconfig.as_os_str()]);
    let socket = node.config.socket();

    // Before pods are listed the agent waits, and says so.
    let waiting = eventually(Duration::from_secs(20), || {
        call(&socket, &Request::Status).is_ok_and(|s| s["errors"].to_string().contains("waiting for the API server"))
    });
    assert!(waiting, "{:?}", call(&socket, &Request::Status));
    assert_eq!(call(&socket, &Request::EndpointList).unwrap(), json!([]));

    server.release("pods");
    let pods = node.pods(2);
    assert_eq!(pods.keys().collect::<Vec<_>>(), ["shop/backend", "shop/frontend"], "only this node's pods");
    let (frontend, backend) = (&pods["shop/frontend"], &pods["shop/backend"]);
    let passes = |from: &support::PodAt, to: &support::PodAt, p: Probe| {
        probe::run(&from.netns, &to.netns, to.ip, p, Duration::from_millis(600)).passed()
    };
    node.wait_policies(1);
    assert!(passes(frontend, backend, Probe::Tcp(8080)), "the policy allows frontend on 8080");
    assert!(!passes(frontend, backend, Probe::Tcp(9090)), "and nothing else");
    assert!(passes(backend, frontend, Probe::Tcp(8080)), "frontend has no policy: default allow");

    let status = call(&socket, &Request::Status).unwrap();
    let kinds = status["kubernetes"]["kinds"].as_array().cloned().unwrap_or_default();
    assert_eq!(kinds.len(), 6, "{status}");
    assert!(kinds.iter().all(|k| k["listed"] == true), "{kinds:?}");

    // The policy is deleted through the watch: default allow again.
    server.release("delete-policy");
    node.wait_policies(0);
    assert!(passes(frontend, backend, Probe::Tcp(9090)), "default allow once the policy is gone");

    // The pod is deleted through the watch: its endpoint goes.
    server.release("delete-pod");
    let gone = eventually(Duration::from_secs(20), || {
        call(&socket, &Request::EndpointList).is_ok_and(|l| l.as_array().is_some_and(|a| a.len() == 1))
    });
    assert!(gone, "{:?}", call(&socket, &Request::EndpointList));
    assert!(server.mismatches().is_empty(), "{:?}", server.mismatches());
}
