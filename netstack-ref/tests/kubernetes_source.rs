//! The Kubernetes source against recorded API server exchanges (no API server can run here):
//! list, then watch with bookmarks, resume after a stream ends, relist after 410 Gone; objects
//! added, updated and deleted; a policy update that does not decode keeps the previous one; a
//! kind the server does not serve counts as empty. Served over real HTTP on loopback through
//! the same kubeconfig path a real cluster takes.

mod support;

use std::time::Duration;

use ebpf_test_support::eventually;
use netstack_ref::agent::sources::{KubernetesConfig, KubernetesSource, ResourceSource};
use netstack_ref::manifest::Resource;
use support::apiserver::{recording, ApiServer};

const WAIT: Duration = Duration::from_secs(15);

fn start(server: &ApiServer) -> KubernetesSource {
    let config = KubernetesConfig { kubeconfig: Some(server.kubeconfig()), context: None };
    KubernetesSource::start(&config).expect("start the source")
}

/// `namespace/name (node) labels` of every pod in force.
fn pods(source: &KubernetesSource) -> Vec<String> {
    let mut out: Vec<String> = source
        .resources()
        .into_iter()
        .filter_map(|r| match r {
            Resource::Pod(p) => {
                let labels: Vec<String> = p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                Some(format!("{}/{} ({}) {}", p.namespace, p.name, p.node_name.unwrap_or_default(), labels.join(",")))
            }
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn wait_for_pods(source: &KubernetesSource, server: &ApiServer, wanted: &[&str]) {
    let ok = eventually(WAIT, || pods(source) == wanted);
    assert!(ok, "pods {:?}, wanted {wanted:?}; requests {:#?}", pods(source), server.requests());
}

#[test]
fn pods_follow_list_watch_bookmarks_and_a_relist_after_gone() {
    let server = ApiServer::start(&recording("pods_list_watch_gone_relist.json"));
    let mut source = start(&server);

    // Nothing is acted on before the first list: an empty picture would remove every endpoint.
    std::thread::sleep(Duration::from_millis(300));
    let waiting = source.ready().expect_err("not listed yet");
    assert!(waiting.waiting.contains("Pod") && waiting.from.contains("127.0.0.1"), "{waiting}");

    server.release("list");
    // The list: a pending pod (no node yet) and a host-network pod are not endpoints.
    wait_for_pods(&source, &server, &["shop/backend (node2) app=backend", "shop/frontend (node1) app=frontend"]);
    assert!(eventually(WAIT, || source.ready().is_ok()), "{:?}", source.ready());
    assert!(source.refresh(), "the list is a change");
    assert!(!source.refresh(), "and nothing since");

    // Added, modified (labels), a pod finishing; then a bookmark, then the stream ends.
    server.release("events");
    wait_for_pods(
        &source,
        &server,
        &["shop/backend (node2) app=backend", "shop/db (node3) app=db", "shop/frontend (node1) app=frontend,tier=web"],
    );
    assert!(source.refresh());

    // The next watch resumes from the bookmark's version (the recording insists on 105), a
    // delete arrives, then 410 Gone: the watcher relists.
    server.release("delete");
    wait_for_pods(&source, &server, &["shop/db (node3) app=db", "shop/frontend (node1) app=frontend,tier=web"]);
    // While the relist is held back, the last picture stays in force.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pods(&source).len(), 2);
    server.release("relist");
    // The relist replaces the kind at once: db, deleted while the watch was away, goes.
    wait_for_pods(&source, &server, &["shop/cache (node2) app=cache", "shop/frontend (node1) app=frontend,tier=web"]);
    assert!(eventually(WAIT, || server.pending("/api/v1/pods") == 0), "the final watch from 230 was asked for");

    let requests: Vec<String> = server.requests().into_iter().filter(|r| r.contains("/api/v1/pods")).collect();
    assert_eq!(
        requests,
        [
            "list /api/v1/pods",
            "watch /api/v1/pods from 100",
            "watch /api/v1/pods from 105",
            "list /api/v1/pods",
            "watch /api/v1/pods from 230"
        ]
    );
    assert!(server.mismatches().is_empty(), "{:?}", server.mismatches());
    let status = source.status();
    let pod_watch = status.kinds.iter().find(|k| k.kind == "Pod").expect("pods watched");
    assert_eq!((pod_watch.lists, pod_watch.objects, pod_watch.in_force), (2, 4, 2), "{pod_watch:?}");
    assert!(status.server.contains("127.0.0.1"), "{}", status.server);
}

#[test]
fn policies_namespaces_and_services_and_a_kind_not_served() {
    let server = ApiServer::start(&recording("namespaces_policies_services.json"));
    let source = start(&server);
    assert!(eventually(WAIT, || source.ready().is_ok()), "{:?}", source.ready());

    let policy_peers = |source: &KubernetesSource| -> Option<String> {
        source.resources().into_iter().find_map(|r| match r {
            Resource::Policy(p) if p.key() == "shop/db" => Some(format!("{:?}", p.rules)),
            _ => None,
        })
    };
    let first = policy_peers(&source).expect("the policy from the list");
    assert!(first.contains("backend") && first.contains("5432"), "{first}");

    // An update that does not decode keeps the previous policy in force, named in errors.
    server.release("typo");
    assert!(eventually(WAIT, || !source.errors().is_empty()), "the bad update is reported");
    let errors = source.errors();
    assert!(
        errors[0].contains("kubernetes:CiliumNetworkPolicy shop/db") && errors[0].contains("fromEndpoint"),
        "{errors:?}"
    );
    assert_eq!(policy_peers(&source).as_deref(), Some(first.as_str()), "still the last good one");
    server.release("fix");
    assert!(eventually(WAIT, || policy_peers(&source).is_some_and(|p| p.contains("frontend"))));
    assert!(source.errors().is_empty(), "{:?}", source.errors());

    // Namespace labels follow the watch.
    let team = |source: &KubernetesSource| {
        source.resources().into_iter().find_map(|r| match r {
            Resource::Namespace(n) if n.name == "shop" => {
                n.labels.iter().find(|(k, _)| k == "team").map(|(_, v)| v.clone())
            }
            _ => None,
        })
    };
    assert_eq!(team(&source).as_deref(), Some("shop"));
    server.release("namespace");
    assert!(eventually(WAIT, || team(&source).as_deref() == Some("retail")));

    // Services come through too.
    let services: Vec<String> = source
        .resources()
        .into_iter()
        .filter_map(|r| match r {
            Resource::Service(s) => Some(format!("{} {:?}", s.key(), s.cluster_ip)),
            _ => None,
        })
        .collect();
    assert_eq!(services, ["shop/web Address(10.96.0.10)"]);

    // Cilium's cluster-wide policies are not served by this server: none, and ready anyway.
    let status = source.status();
    let ccnp = status.kinds.iter().find(|k| k.kind == "CiliumClusterwideNetworkPolicy").expect("watched");
    assert!(ccnp.absent && ccnp.listed, "{ccnp:?}");
    assert!(ccnp.last_error.as_deref().is_some_and(|e| e.contains("404") || e.contains("NotFound")), "{ccnp:?}");
    assert!(server.mismatches().is_empty(), "{:?}", server.mismatches());
}

#[test]
fn a_kubeconfig_that_does_not_read_is_a_clear_error() {
    let config = KubernetesConfig { kubeconfig: Some("/nonexistent/kubeconfig".into()), context: None };
    let error = KubernetesSource::start(&config).expect_err("no such file").to_string();
    assert!(error.contains("/nonexistent/kubeconfig"), "{error}");
}
