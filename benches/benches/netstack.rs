//! The reference stack's hot paths.
//!
//! - Per-packet cost of the endpoint program (`to_container`, ingress policy) under
//!   BPF_PROG_TEST_RUN, as the kernel times it: a new allowed flow (conntrack miss, tail call to
//!   the policy stage, ipcache and policy lookups, conntrack insert), an established flow
//!   (a flow-cache hit, as every packet of a busy flow but one a quarter second is) and a
//!   denied flow (policy stage, drop), beside an empty sched_cls program.
//!   Target: established ≤ 2× empty.
//! - Policy resolution: 1 000 rules over 1 000 identities into one endpoint's policy map.
//!   Target: under 50 ms.
// criterion_group! generates undocumented items.
#![allow(missing_docs)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use benches::can_use_bpf;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ebpf_core::insn::{Assembler, Reg};
use ebpf_core::program::TestRun;
use ebpf_core::{Program, ProgramSpec, ProgramType};
use netstack_ref::datapath::{Conntrack, EndpointConfig, EndpointDatapath, Ipcache};
use netstack_ref::identity::{pod_security_labels, Labels};
use netstack_ref::manifest::{self, Resource};
use netstack_ref::policy::api::Cidr;
use netstack_ref::policy::{resolve, Policy, Universe};
use netstack_ref::traffic::frame::frame;

const ENDPOINT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const ALLOWED_PEER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const DENIED_PEER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);

fn policies(text: &str) -> Vec<Policy> {
    manifest::parse(Path::new("bench.yaml"), text)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Resource::Policy(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn labels(app: &str) -> Labels {
    pod_security_labels([("app", app)], "shop", [], "default")
}

fn per_packet(c: &mut Criterion) {
    if !can_use_bpf() {
        return;
    }
    // Removed on drop, also when the benchmark panics.
    let pins = ebpf_test_support::PinDir::new("bench_netstack").expect("bpffs mounted");
    let pin_dir = pins.path();
    let datapath = EndpointDatapath::load(&EndpointConfig::detached(1, 256, ENDPOINT), pin_dir).unwrap();
    let ipcache = Ipcache::open(pin_dir).unwrap();
    let host = |a: Ipv4Addr| Cidr::new(IpAddr::V4(a), 32).unwrap();
    ipcache.upsert(&host(ENDPOINT), 256).unwrap();
    ipcache.upsert(&host(ALLOWED_PEER), 257).unwrap();
    ipcache.upsert(&host(DENIED_PEER), 258).unwrap();
    let universe =
        Universe::new(Labels::default(), [(256, labels("web")), (257, labels("client")), (258, labels("other"))], []);
    let policy = policies(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web, namespace: shop}\nspec:\n  \
         endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n    \
         toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n",
    );
    let state = resolve(&policy, &labels("web"), &universe);
    datapath.apply_policy(&Default::default(), &state).unwrap();
    let ct = Conntrack::open(pin_dir).unwrap();

    let program = datapath.loaded().unwrap().progs().to_container();
    let allowed = frame(ALLOWED_PEER.into(), ENDPOINT.into(), 6, 40000, 80);
    let denied = frame(DENIED_PEER.into(), ENDPOINT.into(), 6, 40000, 80);
    let mut asm = Assembler::new();
    asm.mov64_imm(Reg::R0, 0).exit();
    let empty =
        Program::load(&ProgramSpec::from_assembled("bench_empty", ProgramType::SchedCls, asm.finish().unwrap()))
            .unwrap();

    let kernel_time = |program: &Program, data: &[u8], iters: u64| -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let repeat = left.min(1_000_000) as u32;
            let mut run = TestRun::with_data(data);
            run.repeat = repeat;
            total += program.test_run(&run).unwrap().duration * repeat;
            left -= repeat as u64;
        }
        total
    };
    let clear_ct = || {
        ct.clear().unwrap();
    };

    // The flows are what their names say.
    assert_eq!(program.test_run(&TestRun::with_data(&denied)).unwrap().retval, 2, "denied flow is dropped");
    clear_ct();
    assert_eq!(program.test_run(&TestRun::with_data(&allowed)).unwrap().retval, 0, "allowed flow passes");
    assert_eq!(ct.entries().unwrap().len(), 1, "and is tracked");

    let mut group = c.benchmark_group("netstack_per_packet");
    group.bench_function("empty_sched_cls", |b| b.iter_custom(|iters| kernel_time(&empty, &allowed, iters)));
    group.bench_function("established_flow", |b| {
        clear_ct();
        kernel_time(program, &allowed, 1);
        b.iter_custom(|iters| kernel_time(program, &allowed, iters))
    });
    group.bench_function("new_allowed_flow", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                clear_ct();
                total += kernel_time(program, &allowed, 1);
            }
            total
        })
    });
    group.bench_function("denied_flow", |b| b.iter_custom(|iters| kernel_time(program, &denied, iters)));
    group.finish();
    drop(datapath);
}

/// 1 000 identities (pods of 100 apps in 10 namespaces) and 1 000 rules that all select the
/// endpoint, each allowing a few apps on a port or a port range, some clusterwide, some denies.
fn resolution(c: &mut Criterion) {
    let mut identities = Vec::new();
    for i in 0..1000u32 {
        let pod = pod_security_labels(
            [("app", format!("app{}", i % 100).as_str()), ("shard", format!("s{}", i / 100).as_str())],
            &format!("ns{}", i % 10),
            [("team", if i % 2 == 0 { "red" } else { "blue" })],
            "default",
        );
        identities.push((256 + i, pod));
    }
    let endpoint = identities[0].1.clone();
    let mut yaml = String::new();
    for r in 0..1000 {
        let (kind, ns) = if r % 4 == 0 {
            ("CiliumClusterwideNetworkPolicy", String::new())
        } else {
            ("CiliumNetworkPolicy", "  namespace: ns0\n".to_string())
        };
        let section = if r % 10 == 9 { "ingressDeny" } else { "ingress" };
        let ports = if r % 3 == 0 {
            format!("[{{port: \"{}\", endPort: {}, protocol: TCP}}]", 8000 + r, 8000 + r + 37)
        } else {
            format!("[{{port: \"{}\", protocol: TCP}}, {{port: \"{}\", protocol: UDP}}]", 1000 + r, 2000 + r)
        };
        yaml += &format!(
            "---\napiVersion: cilium.io/v2\nkind: {kind}\nmetadata:\n  name: r{r}\n{ns}spec:\n  endpointSelector: {{matchLabels: {{app: app0}}}}\n  {section}:\n  - fromEndpoints:\n    - matchLabels: {{app: app{}}}\n    - matchExpressions: [{{key: shard, operator: In, values: [s{}, s{}]}}]\n    toPorts: [{{ports: {ports}}}]\n",
            (r * 7) % 100,
            r % 10,
            (r + 3) % 10
        );
    }
    let policies = policies(&yaml);
    assert_eq!(policies.len(), 1000);
    let universe = Universe::new(Labels::default(), identities, []);
    let state = resolve(&policies, &endpoint, &universe);
    println!("resolution: 1000 rules over 1000 identities -> {} policy map entries", state.len());
    let mut group = c.benchmark_group("netstack_policy");
    group.sample_size(20);
    group.bench_function("resolve_1000_rules_1000_identities", |b| {
        b.iter(|| black_box(resolve(black_box(&policies), &endpoint, &universe)).len())
    });
    group.finish();
}

criterion_group!(benches, per_packet, resolution);
criterion_main!(benches);
