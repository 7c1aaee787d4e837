//! The agent's flow pipeline, per event on one core: a datapath event's bytes decoded into a
//! Hubble flow (enriched from a node's worth of state: 1 000 pods with their identities and
//! labels, 1 000 CIDR prefixes, 100 services), counted into the Hubble metrics and stored in
//! the flow ring — what the flow collector thread does for each event it reads.
//! Target: ≥ 1 M events/s (≤ 1 µs per event).
#![allow(missing_docs)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use netstack_ref::datapath::abi::{event_kind, flow_event, trace_point};
use netstack_ref::observe::decode::{Enrichment, PodInfo};
use netstack_ref::observe::metrics::Metrics;
use netstack_ref::observe::ring::{FlowRing, DEFAULT_CAPACITY};
use netstack_ref::policy::api::Cidr;
use netstack_ref::traffic::frame::frame;

fn pod_address(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + i + 2)
}

fn enrichment() -> Enrichment {
    let pods = (0..1000u32)
        .map(|i| {
            let info = PodInfo {
                endpoint_id: (i < 100).then_some(i + 1),
                namespace: format!("ns{}", i % 10),
                name: format!("app{}-{i}", i % 50),
                identity: 256 + i % 200,
            };
            (IpAddr::V4(pod_address(i)), info)
        })
        .collect();
    let labels = (0..200u32)
        .map(|i| {
            let labels = vec![
                format!("k8s:app=app{}", i % 50),
                format!("k8s:io.kubernetes.pod.namespace=ns{}", i % 10),
                "k8s:io.cilium.k8s.policy.serviceaccount=default".to_owned(),
                format!("k8s:io.cilium.k8s.namespace.labels.team=t{}", i % 5),
            ];
            (256 + i, labels.into())
        })
        .collect();
    let ipcache = (0..1000u32)
        .map(|i| (Cidr::new(IpAddr::V4(Ipv4Addr::from(0x2000_0000 + (i << 8))), 24).unwrap(), 16_777_216 + i))
        .collect();
    let services = (0..100u32)
        .map(|i| {
            let vip = IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i));
            ((vip, 80, 6), (format!("ns{}", i % 10), format!("svc{i}")))
        })
        .collect();
    Enrichment {
        node_name: "node1".into(),
        boot_to_wall: 1_764_907_200_000_000_000,
        pods,
        labels,
        ipcache,
        services,
        ..Default::default()
    }
}

/// An event as the datapath writes it: kind, subtype and a TCP SYN between two pods.
fn event(kind: u32, subtype: u32, flags: u8, from: u32, to: u32) -> Vec<u8> {
    let packet = frame(pod_address(from).into(), pod_address(to).into(), 6, 40_000, 8080);
    let mut ev = flow_event {
        ktime: 5_000_000_000,
        kind: kind as u8,
        subtype: subtype as u8,
        flags,
        r#match: 2,
        endpoint_id: 7,
        ifindex: 12,
        orig_len: packet.len() as u32,
        cap_len: packet.len().min(128) as u32,
        ..Default::default()
    };
    ev.data[..packet.len().min(128)].copy_from_slice(&packet[..packet.len().min(128)]);
    bytemuck::bytes_of(&ev).to_vec()
}

fn pipeline(c: &mut Criterion) {
    let enrichment = enrichment();
    let metrics = Metrics::new();
    let ring = Arc::new(FlowRing::new(DEFAULT_CAPACITY).unwrap());
    // The mix a busy node produces at medium aggregation: verdicts, traces, some drops.
    let events: Vec<Vec<u8>> = (0..64u32)
        .map(|i| match i % 4 {
            0 => event(event_kind::EVENT_POLICY_VERDICT.0, 0, 0, i, i + 100),
            1 => event(event_kind::EVENT_TRACE.0, trace_point::TRACE_TO_ENDPOINT.0, 0, i, i + 100),
            2 => event(event_kind::EVENT_TRACE.0, trace_point::TRACE_FROM_ENDPOINT.0, 1, i + 100, i),
            _ => event(event_kind::EVENT_DROP.0, 133, 0, i + 500, i),
        })
        .collect();
    let mut group = c.benchmark_group("flows");
    group.throughput(Throughput::Elements(1));
    let mut next = 0;
    group.bench_function("decode_count_store_one_event", |b| {
        b.iter(|| {
            let bytes = &events[next % events.len()];
            next += 1;
            let flow = enrichment.decode(black_box(bytes)).unwrap();
            metrics.flows.observe(&flow);
            ring.push(flow)
        })
    });
    group.bench_function("decode_only", |b| {
        b.iter(|| {
            let bytes = &events[next % events.len()];
            next += 1;
            enrichment.decode(black_box(bytes)).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
