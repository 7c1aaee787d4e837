//! Conformance with Cilium's policy semantics, with real traffic: one node running the agent,
//! pods in two namespaces, the node itself and a world outside the cluster. Each case is a set
//! of CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy documents and the connections that
//! must pass or be dropped while they are in force; every expectation is taken from Cilium's
//! documentation or code (named in the case), not from this project's.
//!
//! Cases run one after another on the same node: the policies are written into the agent's
//! manifests directory, the agent syncs, the probes run (each a new flow: conntrack is cleared
//! before every case), and the policies are removed again.

mod support;

use std::time::Duration;

use ebpf_test_support::require_kernel;
use netstack_ref::datapath::Conntrack;
use netstack_ref::policy::AllowLocalhost;
use netstack_ref::traffic::probe::{self, Outcome, Probe};
use support::{Node, PodAt, World};

const NAMESPACES: &str = "\
apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: red}}\n---\n\
apiVersion: v1\nkind: Namespace\nmetadata: {name: ops, labels: {team: blue}}\n";

const PODS: [(&str, &str, &str); 6] = [
    ("shop", "frontend", "{app: frontend, role: frontend, env: prod}"),
    ("shop", "backend", "{app: backend, role: backend, env: prod}"),
    ("shop", "db", "{app: db, env: dev}"),
    ("shop", "legacy", "{app: legacy, role: frontend, env: dev}"),
    ("ops", "monitor", "{app: monitor, env: prod}"),
    ("ops", "tool", "{app: tool, role: frontend}"),
];

// Where the expectations come from (paths in github.com/cilium/cilium).
const LANGUAGE: &str = "Documentation/security/policy/language.rst";
const INTRO: &str = "Documentation/security/policy/intro.rst (Policy Enforcement Modes: default)";
const K8S: &str = "Documentation/security/policy/kubernetes.rst (Namespaces)";
const UTILS: &str = "pkg/k8s/apis/cilium.io/utils/utils.go";
const DENY_TABLE: &str = "Documentation/security/policy/language.rst (Deny Policies, the table)";
const ICMP_GO: &str = "pkg/policy/api/icmp.go";
const RULE_GO: &str = "pkg/policy/api/rule.go (EnableDefaultDeny)";

/// One connection and whether it must get through.
struct Expect {
    from: &'static str,
    to: &'static str,
    probe: Probe,
    allowed: bool,
}

fn allow(from: &'static str, to: &'static str, probe: Probe) -> Expect {
    Expect { from, to, probe, allowed: true }
}

fn deny(from: &'static str, to: &'static str, probe: Probe) -> Expect {
    Expect { from, to, probe, allowed: false }
}

struct Case {
    name: &'static str,
    source: String,
    policies: Vec<String>,
    probes: Vec<Expect>,
    /// Connections checked after the policies are deleted again.
    after_delete: Vec<Expect>,
    /// The policies must be refused, with an error naming this file:line: field (and the
    /// probes then see no policy at all: nothing is half-applied).
    refused: Option<&'static str>,
}

fn case(name: &'static str, source: impl Into<String>, policies: Vec<String>, probes: Vec<Expect>) -> Case {
    Case { name, source: source.into(), policies, probes, after_delete: Vec::new(), refused: None }
}

fn refused(name: &'static str, source: &str, policy: String, error: &'static str) -> Case {
    let probes = vec![allow("shop/frontend", "shop/backend", Tcp(80)), allow("shop/frontend", "shop/backend", Icmp)];
    Case { refused: Some(error), ..case(name, source, vec![policy], probes) }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn cnp(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n{}",
        indent(spec)
    )
}

fn ccnp(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: {name}\nspec:\n{}",
        indent(spec)
    )
}

use Probe::{Icmp, IcmpId, Tcp, Udp};

fn cases() -> Vec<Case> {
    let backend_from_frontend_80 = "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- fromEndpoints: [{matchLabels: {role: frontend}}]\n  toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n";
    // The deny table's allow policies: L4 80/TCP, L4 81/TCP, L3 from the client.
    let table_allows = || {
        vec![
            cnp("shop", "l4-80", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n"),
            cnp("shop", "l4-81", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- toPorts: [{ports: [{port: \"81\", protocol: TCP}]}]\n"),
            cnp("shop", "l3-client", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- fromEndpoints: [{matchLabels: {app: frontend}}]\n"),
        ]
    };
    let deny_l4_80 = cnp("shop", "deny-l4-80", "endpointSelector: {matchLabels: {app: backend}}\ningressDeny:\n- toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n");
    let deny_l3_client = cnp("shop", "deny-l3-client", "endpointSelector: {matchLabels: {app: backend}}\ningressDeny:\n- fromEndpoints: [{matchLabels: {app: frontend}}]\n");
    let table_probes = |p81: bool, p80: bool, ping: bool| {
        let e = |probe, allowed| Expect { from: "shop/frontend", to: "shop/backend", probe, allowed };
        vec![e(Tcp(81), p81), e(Tcp(80), p80), e(Icmp, ping)]
    };

    let mut out = vec![
        // Default allow and default deny.
        case("no policy: everything passes", INTRO, vec![], vec![
            allow("shop/frontend", "shop/backend", Tcp(80)),
            allow("shop/frontend", "shop/backend", Udp(53)),
            allow("shop/frontend", "ops/monitor", Icmp),
            allow("world", "shop/frontend", Tcp(80)),
            allow("shop/frontend", "world", Tcp(443)),
        ]),
        case("an ingress section puts ingress, and only ingress, into default deny",
            format!("{LANGUAGE} (Ingress/Egress Default Deny)"),
            vec![cnp("shop", "dd", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- {}\n")],
            vec![
                deny("shop/frontend", "shop/backend", Tcp(80)),
                deny("shop/frontend", "shop/backend", Icmp),
                allow("shop/backend", "shop/frontend", Tcp(80)),
            ]),
        case("an egress section puts egress, and only egress, into default deny",
            format!("{LANGUAGE} (Ingress/Egress Default Deny, egress-default-deny.yaml)"),
            vec![cnp("shop", "dd", "endpointSelector: {matchLabels: {role: frontend}}\negress:\n- {}\n")],
            vec![
                deny("shop/frontend", "shop/backend", Tcp(80)),
                deny("shop/frontend", "world", Tcp(80)),
                allow("shop/backend", "shop/frontend", Tcp(80)),
            ]),
        case("a rule with only egress leaves ingress default-allow", INTRO,
            vec![cnp("shop", "eg", "endpointSelector: {matchLabels: {app: backend}}\negress:\n- toEndpoints: [{matchLabels: {app: db}}]\n")],
            vec![
                allow("shop/frontend", "shop/backend", Tcp(80)),
                allow("shop/backend", "shop/db", Tcp(5432)),
                deny("shop/backend", "shop/frontend", Tcp(80)),
            ]),
        case("simple ingress allow", format!("{LANGUAGE} (Simple Ingress Allow)"),
            vec![cnp("shop", "l3", "endpointSelector: {matchLabels: {role: backend}}\ningress:\n- fromEndpoints: [{matchLabels: {role: frontend}}]\n")],
            vec![
                allow("shop/frontend", "shop/backend", Tcp(80)),
                allow("shop/legacy", "shop/backend", Udp(53)),
                deny("shop/db", "shop/backend", Tcp(80)),
            ]),
        case("simple egress allow", format!("{LANGUAGE} (Simple Egress Allow)"),
            vec![cnp("shop", "l3-egress", "endpointSelector: {matchLabels: {app: frontend}}\negress:\n- toEndpoints: [{matchLabels: {role: backend}}]\n")],
            vec![
                allow("shop/frontend", "shop/backend", Tcp(80)),
                deny("shop/frontend", "shop/db", Tcp(80)),
            ]),
        case("replies of an allowed connection pass a default-deny ingress",
            format!("{LANGUAGE} (IP/CIDR based: replies are automatically allowed); {INTRO}"),
            vec![cnp("shop", "dd", "endpointSelector: {matchLabels: {app: frontend}}\ningress:\n- {}\n")],
            vec![
                allow("shop/frontend", "shop/backend", Tcp(80)),
                allow("shop/frontend", "shop/backend", Udp(53)),
                allow("shop/frontend", "shop/backend", Icmp),
                deny("shop/backend", "shop/frontend", Tcp(80)),
            ]),
        // Empty selectors and namespaces.
        case("CNP: fromEndpoints {} means every pod of the policy's namespace",
            format!("{LANGUAGE} (Ingress Allow All Endpoints); {UTILS} getEndpointSelector"),
            vec![cnp("shop", "all", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- fromEndpoints: [{}]\n")],
            vec![
                allow("shop/frontend", "shop/backend", Tcp(80)),
                allow("shop/db", "shop/backend", Tcp(80)),
                deny("ops/monitor", "shop/backend", Tcp(80)),
                deny("world", "shop/backend", Tcp(80)),
            ]),
        case("CNP: toEndpoints {} means every pod of the policy's namespace",
            format!("{LANGUAGE} (Egress Allow All Endpoints: \"all other endpoints in the same namespace\")"),
            vec![cnp("shop", "all", "endpointSelector: {matchLabels: {role: frontend}}\negress:\n- toEndpoints: [{}]\n")],
            vec![
                allow("shop/frontend", "shop/backend", Tcp(80)),
                deny("shop/frontend", "ops/monitor", Tcp(80)),
                deny("shop/frontend", "world", Tcp(80)),
            ]),
        case("CCNP: fromEndpoints {} means every pod of every namespace, and only pods",
            format!("{UTILS} getEndpointSelector (a clusterwide peer must have a namespace label)"),
            vec![ccnp("all", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- fromEndpoints: [{}]\n")],
            vec![
                allow("ops/monitor", "shop/backend", Tcp(80)),
                allow("shop/frontend", "shop/backend", Tcp(80)),
                deny("world", "shop/backend", Tcp(80)),
            ]),
        case("CNP: an endpointSelector naming another namespace still selects only the policy's own",
            format!("{K8S}: \"The endpointSelector always applies to pods in the namespace associated with the CiliumNetworkPolicy\"; {UTILS} ParseToCiliumRule"),
            vec![cnp("shop", "lockdown", "endpointSelector: {matchLabels: {k8s:io.kubernetes.pod.namespace: ops}}\ningress:\n- {}\n")],
            vec![
                allow("ops/tool", "ops/monitor", Tcp(80)),
                allow("shop/frontend", "ops/tool", Tcp(80)),
                deny("shop/frontend", "shop/backend", Tcp(80)),
                deny("ops/monitor", "shop/db", Tcp(80)),
            ]),
        case("CCNP: an endpointSelector naming a namespace selects that namespace",
            format!("{UTILS} ParseToCiliumRule (no namespace is added for a clusterwide policy)"),
            vec![ccnp("ops-lockdown", "endpointSelector: {matchLabels: {k8s:io.kubernetes.pod.namespace: ops}}\ningress:\n- {}\n")],
            vec![
                deny("ops/tool", "ops/monitor", Tcp(80)),
                deny("shop/frontend", "ops/tool", Tcp(80)),
                allow("shop/frontend", "shop/backend", Tcp(80)),
            ]),
        case("CNP: a peer without a namespace does not reach into another namespace",
            format!("{K8S}; {UTILS} getEndpointSelector"),
            vec![cnp("shop", "mon", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- fromEndpoints: [{matchLabels: {app: monitor}}]\n")],
            vec![deny("ops/monitor", "shop/backend", Tcp(9090))]),
        case("CNP: a peer naming another namespace reaches it",
            format!("{K8S} (allow traffic from another namespace with k8s:io.kubernetes.pod.namespace)"),
            vec![cnp("shop", "mon", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: ops, app: monitor}}]\n")],
            vec![
                allow("ops/monitor", "shop/backend", Tcp(9090)),
                deny("ops/tool", "shop/backend", Tcp(9090)),
                deny("shop/frontend", "shop/backend", Tcp(9090)),
            ]),
        case("CNP: a peer naming a namespace label selects across namespaces",
            format!("{UTILS} getEndpointSelector (io.cilium.k8s.namespace.labels.* counts as naming the namespace)"),
            vec![cnp("shop", "team", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- fromEndpoints: [{matchLabels: {io.cilium.k8s.namespace.labels.team: blue}}]\n")],
            vec![
                allow("ops/monitor", "shop/backend", Tcp(80)),
                allow("ops/tool", "shop/backend", Tcp(80)),
                deny("shop/frontend", "shop/backend", Tcp(80)),
            ]),
        case("CCNP: a peer without a namespace matches pods of every namespace",
            format!("{UTILS} getEndpointSelector"),
            vec![ccnp("mon", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- fromEndpoints: [{matchLabels: {app: monitor}}]\n")],
            vec![
                allow("ops/monitor", "shop/backend", Tcp(9090)),
                deny("shop/frontend", "shop/backend", Tcp(9090)),
            ]),
        // matchExpressions.
        case("matchExpressions In", format!("{LANGUAGE} (Endpoints based: EndpointSelector is a Kubernetes label selector)"),
            vec![cnp("shop", "in", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- fromEndpoints:\n  - matchExpressions: [{key: app, operator: In, values: [frontend, db]}]\n")],
            vec![
                allow("shop/frontend", "shop/backend", Tcp(80)),
                allow("shop/db", "shop/backend", Tcp(80)),
                deny("shop/legacy", "shop/backend", Tcp(80)),
            ]),
        case("matchExpressions NotIn (a pod without the key matches)", LANGUAGE,
            vec![cnp("shop", "notin", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- fromEndpoints:\n  - matchExpressions: [{key: env, operator: NotIn, values: [dev]}]\n")],
            vec![
                allow("shop/frontend", "shop/backend", Tcp(80)),
                deny("shop/db", "shop/backend", Tcp(80)),
            ]),
        case("matchExpressions Exists", LANGUAGE,
            vec![cnp("shop", "exists", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- fromEndpoints:\n  - matchExpressions: [{key: role, operator: Exists}]\n")],
            vec![
                allow("shop/legacy", "shop/backend", Tcp(80)),
                deny("shop/db", "shop/backend", Tcp(80)),
            ]),
        case("matchExpressions DoesNotExist", LANGUAGE,
            vec![cnp("shop", "absent", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- fromEndpoints:\n  - matchExpressions: [{key: role, operator: DoesNotExist}]\n")],
            vec![
                allow("shop/db", "shop/backend", Tcp(80)),
                deny("shop/frontend", "shop/backend", Tcp(80)),
            ]),
        // Allow union and deny precedence.
        case("allow rules of several policies are a union",
            format!("{LANGUAGE} (Ingress: allowed if at least one ingress rule selects it)"),
            vec![
                cnp("shop", "web", backend_from_frontend_80),
                ccnp("mon", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- fromEndpoints: [{matchLabels: {app: monitor}}]\n  toPorts: [{ports: [{port: \"9090\", protocol: TCP}]}]\n"),
            ],
            vec![
                allow("shop/frontend", "shop/backend", Tcp(80)),
                allow("ops/monitor", "shop/backend", Tcp(9090)),
                deny("shop/frontend", "shop/backend", Tcp(9090)),
                deny("ops/monitor", "shop/backend", Tcp(80)),
            ]),
        case("deny table, column 1: allows only", DENY_TABLE, table_allows(), table_probes(true, true, true)),
        case("deny table, column 2: allows and an L4 deny on 80", DENY_TABLE,
            [table_allows(), vec![deny_l4_80.clone()]].concat(), table_probes(true, false, true)),
        case("deny table, column 3: allows and an L3 deny of the client", DENY_TABLE,
            [table_allows(), vec![deny_l3_client.clone()]].concat(), table_probes(false, false, false)),
        case("deny table, column 4: allows, L4 and L3 denies", DENY_TABLE,
            [table_allows(), vec![deny_l4_80.clone(), deny_l3_client.clone()]].concat(), table_probes(false, false, false)),
        case("deny table, column 5: a deny alone puts the pod into default deny", DENY_TABLE,
            vec![deny_l4_80.clone()], table_probes(false, false, false)),
        case("a clusterwide deny wins over a namespaced allow",
            format!("{LANGUAGE} (Deny Policies: \"regardless of whether they are a Cilium Network Policy, a Clusterwide ...\")"),
            vec![
                cnp("shop", "web", backend_from_frontend_80),
                ccnp("no-frontends", "endpointSelector: {matchLabels: {app: backend}}\ningressDeny:\n- fromEndpoints: [{matchLabels: {app: frontend}}]\n"),
            ],
            vec![deny("shop/frontend", "shop/backend", Tcp(80))]),
        case("deny ingress from world, allow everything else (from_world_deny.yaml)",
            format!("{LANGUAGE} (Deny Policies, examples/policies/l3/entities/from_world_deny.yaml)"),
            vec![ccnp("external-lockdown", "endpointSelector: {}\ningressDeny:\n- fromEntities: [world]\ningress:\n- fromEntities: [all]\n")],
            vec![
                deny("world", "shop/frontend", Tcp(80)),
                allow("ops/monitor", "shop/frontend", Tcp(80)),
                allow("shop/backend", "shop/frontend", Icmp),
            ]),
        case("enableDefaultDeny: {ingress: false} adds allows without default deny", RULE_GO,
            vec![cnp("shop", "soft", "endpointSelector: {matchLabels: {app: backend}}\nenableDefaultDeny: {ingress: false}\ningress:\n- fromEndpoints: [{matchLabels: {role: frontend}}]\n")],
            vec![
                allow("shop/frontend", "shop/backend", Tcp(80)),
                allow("shop/db", "shop/backend", Tcp(80)),
            ]),
        case("enableDefaultDeny: {ingress: false} with a deny: only the deny drops", RULE_GO,
            vec![cnp("shop", "soft-deny", "endpointSelector: {matchLabels: {app: backend}}\nenableDefaultDeny: {ingress: false}\ningressDeny:\n- fromEndpoints: [{matchLabels: {app: db}}]\n")],
            vec![
                deny("shop/db", "shop/backend", Tcp(80)),
                allow("shop/frontend", "shop/backend", Tcp(80)),
                allow("ops/monitor", "shop/backend", Icmp),
            ]),
        // Layer 4.
        case("an L4-only rule allows any peer on its port, and blocks ICMP",
            format!("{LANGUAGE} (Limit ingress/egress ports: \"If any layer 4 policy is specified, then ICMP will be blocked\")"),
            vec![cnp("shop", "l4", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n")],
            vec![
                allow("shop/frontend", "shop/backend", Tcp(80)),
                allow("ops/monitor", "shop/backend", Tcp(80)),
                allow("world", "shop/backend", Tcp(80)),
                deny("shop/frontend", "shop/backend", Tcp(81)),
                deny("shop/frontend", "shop/backend", Icmp),
            ]),
        case("labels-dependent L4 rule", format!("{LANGUAGE} (Labels-dependent Layer 4 rule)"),
            vec![cnp("shop", "l3-l4", backend_from_frontend_80)],
            vec![
                allow("shop/frontend", "shop/backend", Tcp(80)),
                deny("shop/frontend", "shop/backend", Tcp(81)),
                deny("shop/db", "shop/backend", Tcp(80)),
            ]),
        case("egress L4 rule", format!("{LANGUAGE} (Example (L4): only TCP/80 to any destination)"),
            vec![cnp("shop", "l4", "endpointSelector: {matchLabels: {app: frontend}}\negress:\n- toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n")],
            vec![
                allow("shop/frontend", "shop/backend", Tcp(80)),
                allow("shop/frontend", "world", Tcp(80)),
                deny("shop/frontend", "world", Tcp(443)),
                deny("shop/frontend", "shop/backend", Udp(80)),
            ]),
        case("port ranges (endPort)", format!("{LANGUAGE} (Example Port Ranges)"),
            vec![cnp("shop", "range", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- toPorts: [{ports: [{port: \"8000\", endPort: 8010, protocol: TCP}]}]\n")],
            vec![
                allow("shop/frontend", "shop/backend", Tcp(8000)),
                allow("shop/frontend", "shop/backend", Tcp(8010)),
                deny("shop/frontend", "shop/backend", Tcp(8011)),
                deny("shop/frontend", "shop/backend", Tcp(7999)),
            ]),
        case("a protocol given matches only that protocol", format!("{LANGUAGE} (PortProtocol.Protocol)"),
            vec![cnp("shop", "udp", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- toPorts: [{ports: [{port: \"53\", protocol: UDP}]}]\n")],
            vec![
                allow("shop/frontend", "shop/backend", Udp(53)),
                deny("shop/frontend", "shop/backend", Tcp(53)),
            ]),
        case("no protocol (or ANY) matches every protocol", format!("{LANGUAGE} (PortProtocol: \"If omitted or empty, any protocol matches\")"),
            vec![cnp("shop", "any", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- toPorts: [{ports: [{port: \"53\"}, {port: \"54\", protocol: ANY}]}]\n")],
            vec![
                allow("shop/frontend", "shop/backend", Udp(53)),
                allow("shop/frontend", "shop/backend", Tcp(53)),
                allow("shop/frontend", "shop/backend", Udp(54)),
                deny("shop/frontend", "shop/backend", Tcp(55)),
            ]),
        // ICMP.
        case("ICMP types by number", format!("{LANGUAGE} (Limit ICMP/ICMPv6 types)"),
            vec![cnp("shop", "ping", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- icmps: [{fields: [{type: 8, family: IPv4}]}]\n")],
            vec![
                allow("shop/frontend", "shop/backend", Icmp),
                deny("shop/frontend", "shop/backend", Tcp(80)),
            ]),
        case("ICMP types by Cilium's names (Echo)", format!("{ICMP_GO} (icmpIpv4TypeNameToCode: Echo = 8)"),
            vec![cnp("shop", "ping", "endpointSelector: {matchLabels: {app: frontend}}\negress:\n- icmps: [{fields: [{type: Echo}]}]\n")],
            vec![
                allow("shop/frontend", "shop/backend", Icmp),
                allow("shop/frontend", "world", Icmp),
                deny("shop/frontend", "shop/backend", Udp(53)),
            ]),
        case("an EchoReply rule does not admit echo requests", format!("{ICMP_GO} (EchoReply = 0, Echo = 8)"),
            vec![cnp("shop", "reply-only", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- icmps: [{fields: [{type: EchoReply}]}]\n")],
            vec![deny("shop/frontend", "shop/backend", Icmp)]),
        case("an echo request with a reused identifier is not a reply",
            "GHSA-c66w-hq56-4q97 (Cilium security advisory)",
            vec![cnp("shop", "dd", "endpointSelector: {matchLabels: {app: frontend}}\ningress:\n- {}\n")],
            vec![
                allow("shop/frontend", "shop/backend", IcmpId(666)),
                deny("shop/backend", "shop/frontend", IcmpId(666)),
                deny("shop/backend", "shop/frontend", Icmp),
            ]),
        // Entities.
        case("toEntities host", format!("{LANGUAGE} (Access to/from local host)"),
            vec![cnp("shop", "host", "endpointSelector: {matchLabels: {app: frontend}}\negress:\n- toEntities: [host]\n")],
            vec![
                allow("shop/frontend", "host", Tcp(80)),
                deny("shop/frontend", "shop/backend", Tcp(80)),
            ]),
        case("the host always reaches local pods (allow-localhost)",
            format!("{LANGUAGE} (Access to/from local host: \"Kubernetes will automatically allow all communication from the local host of all local endpoints\")"),
            vec![cnp("shop", "web", backend_from_frontend_80)],
            vec![
                allow("host", "shop/backend", Tcp(8080)),
                allow("host", "shop/backend", Icmp),
                deny("shop/db", "shop/backend", Tcp(8080)),
            ]),
        case("egress to the host is subject to policy", format!("{LANGUAGE} (Access to/from local host)"),
            vec![cnp("shop", "dd", "endpointSelector: {matchLabels: {app: frontend}}\negress:\n- toEndpoints: [{}]\n")],
            vec![deny("shop/frontend", "host", Tcp(80)), allow("shop/frontend", "shop/db", Tcp(80))]),
        case("fromEntities world", format!("{LANGUAGE} (Access to/from outside cluster)"),
            vec![cnp("shop", "public", "endpointSelector: {matchLabels: {app: frontend}}\ningress:\n- fromEntities: [world]\n")],
            vec![
                allow("world", "shop/frontend", Tcp(80)),
                deny("shop/backend", "shop/frontend", Tcp(80)),
            ]),
        case("toEntities cluster: pods of every namespace and the host, not the world",
            format!("{LANGUAGE} (Entities based: cluster)"),
            vec![cnp("shop", "cluster", "endpointSelector: {matchLabels: {app: frontend}}\negress:\n- toEntities: [cluster]\n")],
            vec![
                allow("shop/frontend", "ops/monitor", Tcp(80)),
                allow("shop/frontend", "host", Tcp(80)),
                deny("shop/frontend", "world", Tcp(80)),
            ]),
        case("toEntities all", format!("{LANGUAGE} (Entities based: all)"),
            vec![cnp("shop", "all", "endpointSelector: {matchLabels: {app: frontend}}\negress:\n- toEntities: [all]\n")],
            vec![
                allow("shop/frontend", "world", Tcp(80)),
                allow("shop/frontend", "ops/tool", Udp(53)),
            ]),
        // CIDR.
        case("toCIDR", format!("{LANGUAGE} (Allow to external CIDR block)"),
            vec![cnp("shop", "cidr", "endpointSelector: {matchLabels: {app: frontend}}\negress:\n- toCIDR: [192.0.2.10/32]\n")],
            vec![
                allow("shop/frontend", "world", Tcp(80)),
                deny("shop/frontend", "world2", Tcp(80)),
            ]),
        case("toCIDRSet with except", format!("{LANGUAGE} (Allow to external CIDR block: cidr.yaml's except)"),
            vec![cnp("shop", "cidr", "endpointSelector: {matchLabels: {app: frontend}}\negress:\n- toCIDRSet:\n  - cidr: 192.0.2.0/24\n    except: [192.0.2.20/32]\n")],
            vec![
                allow("shop/frontend", "world", Tcp(80)),
                deny("shop/frontend", "world2", Tcp(80)),
            ]),
        case("fromCIDRSet with except", format!("{LANGUAGE} (IP/CIDR based: fromCIDRSet)"),
            vec![cnp("shop", "cidr", "endpointSelector: {matchLabels: {app: frontend}}\ningress:\n- fromCIDRSet:\n  - cidr: 192.0.2.0/24\n    except: [192.0.2.10/32]\n")],
            vec![deny("world", "shop/frontend", Tcp(80))]),
        case("fromCIDR", format!("{LANGUAGE} (IP/CIDR based: fromCIDR)"),
            vec![cnp("shop", "cidr", "endpointSelector: {matchLabels: {app: frontend}}\ningress:\n- fromCIDR: [192.0.2.0/24]\n")],
            vec![
                allow("world", "shop/frontend", Tcp(80)),
                deny("shop/backend", "shop/frontend", Tcp(80)),
            ]),
        case("CIDR rules do not select pods", format!("{LANGUAGE} (IP/CIDR based: \"CIDR rules do not apply to traffic where both sides of the connection are ... managed by Cilium\")"),
            vec![cnp("shop", "cidr", "endpointSelector: {matchLabels: {app: frontend}}\negress:\n- toCIDR: [10.200.0.0/16]\n")],
            vec![deny("shop/frontend", "shop/backend", Tcp(80))]),
        case("CIDR-dependent L4 rule", format!("{LANGUAGE} (CIDR-dependent Layer 4 Rule)"),
            vec![cnp("shop", "cidr-l4", "endpointSelector: {matchLabels: {app: frontend}}\negress:\n- toCIDR: [192.0.2.0/24]\n  toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n")],
            vec![
                allow("shop/frontend", "world", Tcp(80)),
                deny("shop/frontend", "world", Tcp(443)),
            ]),
        // fromRequires.
        case("fromRequires narrows what other rules allow", format!("{LANGUAGE} (Additional Label Requirements: requires.yaml with endpoints.yaml)"),
            vec![
                cnp("shop", "requires", "endpointSelector: {matchLabels: {env: prod}}\ningress:\n- fromRequires: [{matchLabels: {env: prod}}]\n"),
                cnp("shop", "endpoints", "endpointSelector: {matchLabels: {env: prod}}\ningress:\n- fromEndpoints: [{matchLabels: {role: frontend}}]\n"),
            ],
            vec![
                allow("shop/frontend", "shop/backend", Tcp(80)),
                deny("shop/legacy", "shop/backend", Tcp(80)),
            ]),
        case("fromRequires alone allows nothing", format!("{LANGUAGE} (Additional Label Requirements: \"doesn't allow anything on its own\")"),
            vec![cnp("shop", "requires", "endpointSelector: {matchLabels: {env: prod}}\ningress:\n- fromRequires: [{matchLabels: {env: prod}}]\n")],
            vec![deny("shop/frontend", "shop/backend", Tcp(80))]),
    ];
    // What Cilium refuses is refused, and leaves traffic as it was.
    const VALIDATION: &str = "pkg/policy/api/rule_validation.go";
    out.extend([
        refused("icmps together with toPorts", VALIDATION,
            cnp("shop", "both", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n  icmps: [{fields: [{type: 8}]}]\n"),
            "case.yaml:10: spec.ingress[0].icmps: the icmps block may only be present without toPorts"),
        refused("fromCIDR together with fromCIDRSet", VALIDATION,
            cnp("shop", "cidrs", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- fromCIDR: [192.0.2.0/24]\n  fromCIDRSet: [{cidr: 198.51.100.0/24}]\n"),
            "case.yaml:10: spec.ingress[0].fromCIDRSet: one rule takes one kind of L3 peer"),
        refused("a port rule without a port", VALIDATION,
            cnp("shop", "noport", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- toPorts: [{ports: [{protocol: TCP}]}]\n"),
            "case.yaml:9: spec.ingress[0].toPorts[0].ports[0].port: port must be specified"),
        refused("an ICMP type name of the other family", ICMP_GO,
            cnp("shop", "family", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- icmps: [{fields: [{type: PacketTooBig}]}]\n"),
            "case.yaml:9: spec.ingress[0].icmps[0].fields[0].type: \"PacketTooBig\" is not an ICMP type of IPv4"),
    ]);
    // Deleting the last policy puts the endpoint back into default allow.
    let mut deleted = case(
        "deleting the policy restores default allow",
        INTRO,
        vec![cnp("shop", "dd", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- {}\n")],
        vec![deny("shop/frontend", "shop/backend", Tcp(80))],
    );
    deleted.after_delete =
        vec![allow("shop/frontend", "shop/backend", Tcp(80)), allow("shop/db", "shop/backend", Icmp)];
    out.push(deleted);
    out
}

/// Where a probe goes: (namespace, address).
fn at(
    name: &str,
    pods: &std::collections::BTreeMap<String, PodAt>,
    node: &Node,
    world: &World,
) -> (String, std::net::Ipv4Addr) {
    match name {
        "host" => (node.ns.name().to_string(), node.config.router()),
        "world" => (world.ns.name().to_string(), World::ADDRESSES[0]),
        "world2" => (world.ns.name().to_string(), World::ADDRESSES[1]),
        pod => {
            let p = pods.get(pod).unwrap_or_else(|| panic!("no pod {pod}"));
            (p.netns.clone(), p.ip)
        }
    }
}

#[test]
fn cilium_policy_semantics_hold_with_real_traffic() {
    let Some(_root) = require_kernel() else { return };
    let mut manifests = NAMESPACES.to_string();
    for (ns, name, labels) in PODS {
        manifests +=
            &format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {labels}}}\n");
    }
    let mut node = Node::new("conf", AllowLocalhost::Always, &[("scene.yaml", &manifests)]);
    node.start();
    let pods = node.pods(PODS.len());
    let world = World::attach(&node);
    let conntrack = || Conntrack::open(&node.config.bpffs).expect("conntrack pinned");
    let timeout = Duration::from_millis(600);
    let mut cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    // CONFORMANCE_FILTER=text runs only the cases whose name contains it.
    if let Ok(filter) = std::env::var("CONFORMANCE_FILTER") {
        cases.retain(|c| c.name.contains(&filter));
    }

    let mut failures = Vec::new();
    let run = |case: &Case, expects: &[Expect], phase: &str, failures: &mut Vec<String>| {
        conntrack().clear().expect("clear conntrack");
        for e in expects {
            let (from, _) = at(e.from, &pods, &node, &world);
            let (to_ns, to_ip) = at(e.to, &pods, &node, &world);
            let outcome = probe::run(&from, &to_ns, to_ip, e.probe, timeout);
            let ok = matches!((e.allowed, &outcome), (true, Outcome::Connected) | (false, Outcome::TimedOut));
            if !ok {
                failures.push(format!(
                    "{} [{phase}] ({}): {} -> {} {}: expected {}, got {outcome:?}",
                    case.name,
                    case.source,
                    e.from,
                    e.to,
                    e.probe,
                    if e.allowed { "ALLOW" } else { "DENY (a drop)" }
                ));
            }
        }
    };
    let case_file = node.manifests.join("case.yaml");
    for case in &cases {
        if !case.policies.is_empty() {
            std::fs::write(&case_file, case.policies.join("---\n")).unwrap();
        }
        let status = node.sync();
        let errors: Vec<&str> = status["errors"].as_array().into_iter().flatten().filter_map(|e| e.as_str()).collect();
        if let Some(expected) = case.refused {
            if status["policies"] != 0 || !errors.iter().any(|e| e.contains(expected)) {
                failures.push(format!(
                    "{} ({}): expected refusal {expected:?}, agent status {status}",
                    case.name, case.source
                ));
            }
        } else if status["policies"] != case.policies.len() || !errors.is_empty() {
            failures.push(format!("{} ({}): the agent did not take the policies: {status}", case.name, case.source));
            let _ = std::fs::remove_file(&case_file);
            continue;
        }
        run(case, &case.probes, "in force", &mut failures);
        let _ = std::fs::remove_file(&case_file);
        assert_eq!(node.sync()["policies"], 0);
        run(case, &case.after_delete, "deleted", &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} failed expectations in {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} conformance cases passed", cases.len());
}

/// With `--allow-localhost=policy` the host is a peer like any other (Cilium's `policy` mode).
#[test]
fn the_host_is_subject_to_policy_in_policy_mode() {
    let Some(_root) = require_kernel() else { return };
    let mut manifests = NAMESPACES.to_string();
    for (ns, name, labels) in &PODS[..2] {
        manifests +=
            &format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {labels}}}\n");
    }
    manifests += "---\n";
    manifests += &cnp("shop", "web", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- fromEndpoints: [{matchLabels: {role: frontend}}]\n");
    let mut node = Node::new("lhp", AllowLocalhost::Policy, &[("scene.yaml", &manifests)]);
    node.start();
    let pods = node.pods(2);
    node.wait_policies(1);
    let (host, backend) = (node.ns.name().to_string(), &pods["shop/backend"]);
    let t = Duration::from_millis(600);
    assert_eq!(probe::run(&host, &backend.netns, backend.ip, Tcp(8080), t), Outcome::TimedOut, "host dropped");
    let frontend = &pods["shop/frontend"].netns;
    assert_eq!(probe::run(frontend, &backend.netns, backend.ip, Tcp(8080), t), Outcome::Connected);
    // And an entity rule lets it in again.
    std::fs::write(
        node.manifests.join("host.yaml"),
        cnp("shop", "host", "endpointSelector: {matchLabels: {app: backend}}\ningress:\n- fromEntities: [host]\n"),
    )
    .unwrap();
    node.wait_policies(2);
    assert_eq!(probe::run(&host, &backend.netns, backend.ip, Tcp(8080), t), Outcome::Connected, "fromEntities host");
}
