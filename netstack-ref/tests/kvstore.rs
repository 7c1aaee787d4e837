//! The cluster kvstore against a real etcd (Debian's etcd-server) on loopback: nodes under
//! leases, identities allocated cluster-wide without races, unused ids collected, the ipcache,
//! and a lost kvstore reported in time.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ebpf_test_support::etcd::EtcdServer;
use ebpf_test_support::{eventually, require_etcd};
use netstack_ref::cluster::kvstore::{IpcacheEntry, KvStore, NodeEntry};
use netstack_ref::identity::{Labels, FIRST_CLUSTER_IDENTITY};

fn connect(etcd: &EtcdServer) -> KvStore {
    KvStore::connect(&[etcd.endpoint()], "netstack/test", Duration::from_secs(5)).unwrap()
}

fn node(name: &str, octet: u8) -> NodeEntry {
    NodeEntry {
        name: name.to_owned(),
        addresses: vec![IpAddr::from([192, 168, 50, octet])],
        pod_cidr: format!("10.0.{octet}.0/24"),
        encryption_key: None,
    }
}

fn labels(app: &str) -> Labels {
    Labels::from_pairs([("k8s:app", app), ("k8s:io.kubernetes.pod.namespace", "default")])
}

#[test]
fn nodes_live_as_long_as_their_lease() {
    let Some(()) = require_etcd() else { return };
    let etcd = EtcdServer::start().unwrap();
    let store = connect(&etcd);
    let lease_a = store.lease(Duration::from_secs(2)).unwrap();
    let lease_b = store.lease(Duration::from_secs(2)).unwrap();
    store.put_node(&node("node-a", 1), &lease_a).unwrap();
    store.put_node(&node("node-b", 2), &lease_b).unwrap();
    // Kept alive past the TTL.
    std::thread::sleep(Duration::from_secs(3));
    let mut names: Vec<String> = store.nodes().unwrap().into_iter().map(|n| n.name).collect();
    names.sort();
    assert_eq!(names, ["node-a", "node-b"]);
    // A clean stop revokes at once; a crash is noticed when the TTL runs out.
    drop(lease_a);
    assert_eq!(store.nodes().unwrap(), vec![node("node-b", 2)]);
    lease_b.abandon();
    assert!(eventually(Duration::from_secs(10), || store.nodes().unwrap().is_empty()), "the dead node's lease expired");
}

#[test]
fn identities_are_agreed_cluster_wide_without_races() {
    let Some(()) = require_etcd() else { return };
    let etcd = EtcdServer::start().unwrap();
    let store = connect(&etcd);
    // Eight "nodes" allocate the same five label sets at once.
    let (results, leases): (Vec<Vec<u32>>, Vec<_>) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|n| {
                let store = store.clone();
                scope.spawn(move || {
                    let lease = store.lease(Duration::from_secs(10)).unwrap();
                    let ids: Vec<u32> = ["a", "b", "c", "d", "e"]
                        .iter()
                        .map(|app| store.allocate_identity(&labels(app), &format!("node-{n}"), &lease).unwrap())
                        .collect();
                    (ids, lease)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).unzip()
    });
    drop(leases);
    for ids in &results {
        assert_eq!(ids, &results[0], "every node got the same ids");
    }
    let mut distinct = results[0].clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 5);
    assert!(distinct.iter().all(|&id| id >= FIRST_CLUSTER_IDENTITY));
    assert_eq!(
        store.identity_labels(results[0][0]).unwrap().unwrap(),
        "k8s:app=a,k8s:io.kubernetes.pod.namespace=default"
    );
}

#[test]
fn unused_identities_are_collected_and_used_ones_kept() {
    let Some(()) = require_etcd() else { return };
    let etcd = EtcdServer::start().unwrap();
    let store = connect(&etcd);
    let lease = store.lease(Duration::from_secs(10)).unwrap();
    let kept = store.allocate_identity(&labels("kept"), "node-a", &lease).unwrap();
    let dropped = store.allocate_identity(&labels("dropped"), "node-a", &lease).unwrap();
    store.release_identity(dropped, "node-a").unwrap();
    assert_eq!(store.collect_identities().unwrap(), vec![dropped]);
    assert!(store.identity_labels(dropped).unwrap().is_none());
    assert!(store.identity_labels(kept).unwrap().is_some());
    // The collected labels get an identity again when asked.
    let again = store.allocate_identity(&labels("dropped"), "node-a", &lease).unwrap();
    assert!(store.identity_labels(again).unwrap().is_some());
    // A node's references go with its lease: then its identities are collected too.
    drop(lease);
    let mut collected = store.collect_identities().unwrap();
    collected.sort_unstable();
    let mut expected = vec![kept, again];
    expected.sort_unstable();
    assert_eq!(collected, expected);
}

#[test]
fn the_ipcache_maps_addresses_to_identities_and_nodes() {
    let Some(()) = require_etcd() else { return };
    let etcd = EtcdServer::start().unwrap();
    let store = connect(&etcd);
    let lease = store.lease(Duration::from_secs(10)).unwrap();
    let entry = IpcacheEntry { identity: 300, node_address: IpAddr::from([192, 168, 50, 1]), pod: Some("t/a".into()) };
    store.put_ipcache(IpAddr::from([10, 0, 1, 5]), entry.clone(), &lease).unwrap();
    assert_eq!(store.ipcache().unwrap(), vec![(IpAddr::from([10, 0, 1, 5]), entry)]);
    drop(lease);
    assert!(store.ipcache().unwrap().is_empty(), "a node's entries go with its lease");
}

#[test]
fn a_lost_kvstore_is_reported_in_time() {
    let Some(()) = require_etcd() else { return };
    let mut etcd = EtcdServer::start().unwrap();
    let store = Arc::new(KvStore::connect(&[etcd.endpoint()], "netstack/test", Duration::from_secs(2)).unwrap());
    etcd.stop();
    let started = std::time::Instant::now();
    let err = store.nodes().unwrap_err().to_string();
    assert!(err.starts_with("kvstore list netstack/test/nodes/"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "gave up within its timeout: {:?}", started.elapsed());
    let err = KvStore::connect(&[etcd.endpoint()], "x", Duration::from_secs(1)).unwrap_err().to_string();
    assert!(err.contains("kvstore"), "{err}");
}

#[test]
fn policy_status_is_aggregated_from_every_nodes_and_follows_their_leases() {
    use netstack_ref::cluster::policy_status::NodePolicyStatus;
    let Some(()) = require_etcd() else { return };
    let etcd = EtcdServer::start().unwrap();
    let store = connect(&etcd);
    let status = |enforcing: bool, endpoints| NodePolicyStatus {
        enforcing,
        endpoints,
        revision: "r1".to_owned(),
        error: (!enforcing).then(|| "endpoint shop/web: map full".to_owned()),
    };
    let (lease_a, lease_b) =
        (store.lease(Duration::from_secs(2)).unwrap(), store.lease(Duration::from_secs(2)).unwrap());
    store.put_node_policy_status("shop/web", "node-a", &status(true, 2), &lease_a).unwrap();
    store.put_node_policy_status("shop/web", "node-b", &status(false, 1), &lease_b).unwrap();
    store.put_node_policy_status("deny-all", "node-a", &status(true, 0), &lease_a).unwrap();
    let aggregated = store.aggregate_policy_statuses().unwrap();
    assert_eq!(store.policy_statuses().unwrap(), aggregated, "what the collector wrote is what others read");
    let web = &aggregated["shop/web"];
    assert_eq!(web.summary(), "1/2");
    assert_eq!(web.nodes["node-b"].error.as_deref(), Some("endpoint shop/web: map full"));
    assert_eq!(aggregated["deny-all"].summary(), "1/1", "a clusterwide policy keyed by name");
    // node-a withdraws deny-all; node-b dies: the next aggregation follows.
    store.delete_node_policy_status("deny-all", "node-a").unwrap();
    lease_b.abandon();
    assert!(eventually(Duration::from_secs(10), || {
        let now = store.aggregate_policy_statuses().unwrap();
        now.len() == 1 && now["shop/web"].summary() == "1/1"
    }));
    assert!(!store.policy_statuses().unwrap().contains_key("deny-all"), "a policy no node has leaves the aggregate");
    drop(lease_a);
}

#[test]
fn manifest_files_in_the_kvstore_are_a_source_like_a_directory() {
    use netstack_ref::agent::sources::{KvstoreSource, ResourceSource};
    use netstack_ref::manifest::Resource;

    let Some(()) = require_etcd() else { return };
    let mut etcd = EtcdServer::start().unwrap();
    let store = KvStore::connect(&[etcd.endpoint()], "netstack", Duration::from_secs(5)).unwrap();
    let mut source = KvstoreSource::new(&etcd.endpoint());
    let refresh = |source: &mut KvstoreSource| {
        // Past the poll interval, so each call lists.
        std::thread::sleep(netstack_ref::agent::sources::kvstore::POLL_INTERVAL);
        source.refresh()
    };
    let policy_ports = |source: &KvstoreSource| -> Vec<String> {
        source
            .resources()
            .into_iter()
            .filter_map(|r| match r {
                Resource::Policy(p) => Some(format!("{}:{:?}", p.key(), p.rules).contains("8080").to_string()),
                _ => None,
            })
            .collect()
    };

    assert!(source.ready().is_err(), "not listed yet");
    assert!(refresh(&mut source), "the first listing is a change, even of nothing");
    assert!(source.ready().is_ok() && source.resources().is_empty());

    let pods = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: t, labels: {app: a}}\nspec: {nodeName: n1}\n";
    let policy = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: t}\n\
                  spec:\n  endpointSelector: {matchLabels: {app: a}}\n  ingress:\n  - toPorts: [{ports: [{port: \"8080\", protocol: TCP}]}]\n";
    store.put_resource_file("pods.yaml", pods).unwrap();
    store.put_resource_file("policy.yaml", policy).unwrap();
    assert!(refresh(&mut source));
    assert_eq!(source.resources().len(), 2);
    assert_eq!(policy_ports(&source), ["true"]);
    assert!(!refresh(&mut source), "nothing changed: nothing decoded again");

    // A bad edit is refused, named by its key and line; the previous version stays in force.
    store.put_resource_file("policy.yaml", &policy.replace("TCP", "TPC")).unwrap();
    assert!(refresh(&mut source));
    let errors = source.errors();
    assert!(
        errors.len() == 1 && errors[0].contains("kvstore:policy.yaml:7: spec.ingress[0].toPorts[0].ports[0].protocol"),
        "{errors:?}"
    );
    assert_eq!(policy_ports(&source), ["true"], "still the last good version");

    // Deleted: its resources go.
    assert!(store.delete_resource_file("policy.yaml").unwrap());
    assert!(!store.delete_resource_file("policy.yaml").unwrap(), "not there any more");
    assert!(refresh(&mut source));
    assert!(policy_ports(&source).is_empty() && source.errors().is_empty());
    assert_eq!(source.files().len(), 1);

    // The kvstore goes away: the last listing stays in force, and the loss is reported.
    etcd.stop();
    assert!(!refresh(&mut source));
    assert_eq!(source.resources().len(), 1, "kept");
    assert!(source.errors().iter().any(|e| e.contains("the last listing stays in force")), "{:?}", source.errors());
}
