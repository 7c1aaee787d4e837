//! Manifests: every example validates; broken YAML is refused with file, line and field.

use std::path::{Path, PathBuf};

use netstack_ref::agent::sources::check;
use netstack_ref::manifest::{self, Resource};
use netstack_ref::policy::api::{Entity, Peers, Protocol};
use proptest::prelude::*;

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
    out
}

#[test]
fn every_example_validates() {
    let files = yaml_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"));
    assert!(files.len() >= 8, "examples found: {files:?}");
    for file in files {
        let parsed = manifest::read(&file, false).unwrap_or_else(|e| panic!("{e}"));
        assert!(!parsed.resources.is_empty(), "{}", file.display());
        if !file.ends_with("clusterwide-policy-example.yaml") {
            assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        }
    }
}

/// The Cilium 1.7 announcement's CCNP example carries a top-level `description`, which the API
/// server prunes: one warning naming file, line and field; `--strict` refuses it. An unknown
/// field inside a rule stays an error either way.
#[test]
fn fields_the_api_server_prunes_are_warnings_unless_strict() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies/clusterwide-policy-example.yaml");
    let parsed = manifest::read(&file, false).unwrap();
    let warnings: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].ends_with("clusterwide-policy-example.yaml:6: description: unknown field, which the Kubernetes API server prunes; ignored"), "{}", warnings[0]);
    let Resource::Policy(p) = &parsed.resources[0] else { panic!("a policy") };
    assert_eq!(p.key(), "clusterwide-policy-example");
    let strict = manifest::read(&file, true).unwrap_err().to_string();
    assert!(
        strict
            .contains(":6: description: unknown field, which the Kubernetes API server prunes; refused with --strict"),
        "{strict}"
    );

    let metadata = HEAD.replace("  namespace: shop\n", "  namespace: shop\n  finalizers: [x]\n");
    let text = format!("{metadata}spec:\n  endpointSelector: {{}}\n  ingress: [{{}}]\n");
    let parsed = manifest::parse_file(Path::new("m.yaml"), &text, false).unwrap();
    assert!(
        parsed.warnings[0].to_string().contains("m.yaml:6: metadata.finalizers: unknown field"),
        "{:?}",
        parsed.warnings
    );
    let in_rule = format!("{HEAD}spec:\n  endpointSelector: {{}}\n  ingress:\n  - fromEndpoint: [{{}}]\n");
    assert!(manifest::parse_file(Path::new("r.yaml"), &in_rule, false).is_err(), "a typo in a rule is an error");
}

/// `netstack policy validate` prints the warning and succeeds; with `--strict` it fails.
#[test]
fn policy_validate_warns_and_strict_refuses() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies/clusterwide-policy-example.yaml");
    let run = |strict: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_netstack"));
        cmd.args(["policy", "validate"]).arg(&file);
        if strict {
            cmd.arg("--strict");
        }
        cmd.output().unwrap()
    };
    let out = run(false);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("warning: policy ") && stderr.contains(":6: description:"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid (1 resources)"));
    let out = run(true);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused with --strict"));
}

#[test]
fn examples_decode_to_what_they_say() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies");
    let parsed = manifest::read(&dir.join("egress-cidr-except.yaml"), true).unwrap();
    let Resource::Policy(p) = &parsed.resources[0] else { panic!("a policy") };
    assert_eq!(p.key(), "shop/crawler-egress");
    let rule = &p.rules[0];
    let Peers::Cidrs(cidrs) = &rule.egress[0].peers else { panic!("CIDR peers") };
    assert_eq!(cidrs[0].except.len(), 2);
    assert_eq!(rule.egress[0].to_ports[0].ports[1].end_port, Some(8099));
    assert_eq!(rule.egress[1].peers, Peers::Entities(vec![Entity::World]));
    assert_eq!(rule.egress[1].to_ports[0].ports[0].protocol, Protocol::Any);
}

#[test]
fn unenforced_fields_are_refused_on_apply_naming_the_field() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies/l7-and-fqdn.yaml");
    let err = check(&file).unwrap_err().to_string();
    assert!(err.contains("l7-and-fqdn.yaml:17: specs[0].ingress[0].toPorts[0]: L7 rules"), "{err}");
    assert!(err.contains("not enforced yet"), "{err}");
}

fn refused(text: &str) -> String {
    match manifest::parse(Path::new("broken.yaml"), text) {
        Ok(r) => panic!("accepted: {r:?}"),
        Err(e) => e.to_string(),
    }
}

const HEAD: &str = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p\n  namespace: shop\n";

#[test]
fn a_misspelt_protocol_names_file_line_and_field() {
    let text = format!(
        "{HEAD}spec:\n  endpointSelector: {{}}\n  ingress:\n  - toPorts:\n    - ports:\n      - port: \"80\"\n        protocol: TPC\n"
    );
    assert_eq!(
        refused(&text),
        "policy broken.yaml:12: spec.ingress[0].toPorts[0].ports[0].protocol: \"TPC\" is not one of TCP, UDP, SCTP, ICMP, ICMPv6, VRRP, IGMP, ANY"
    );
}

#[test]
fn bad_indentation_is_a_syntax_error_at_its_line() {
    let text = format!("{HEAD}spec:\n  endpointSelector: {{}}\n   ingress:\n  - {{}}\n");
    let err = refused(&text);
    assert!(err.starts_with("manifest broken.yaml:8: YAML syntax"), "{err}");
}

#[test]
fn wrong_types_are_named() {
    let text = format!("{HEAD}spec:\n  endpointSelector: {{}}\n  ingress: yes\n");
    assert_eq!(refused(&text), "policy broken.yaml:8: spec.ingress: expected a list, found a string");
    let text = format!("{HEAD}spec:\n  endpointSelector:\n    matchLabels: [a]\n");
    assert_eq!(
        refused(&text),
        "policy broken.yaml:8: spec.endpointSelector.matchLabels: expected a mapping, found a list"
    );
    let text = format!(
        "{HEAD}spec:\n  endpointSelector: {{}}\n  egress:\n  - toPorts:\n    - ports:\n      - port: \"99999\"\n"
    );
    assert!(refused(&text).contains("broken.yaml:11: spec.egress[0].toPorts[0].ports[0].port: 99999 is not a port"));
}

#[test]
fn unknown_fields_are_refused_with_the_ones_allowed() {
    let text = format!("{HEAD}spec:\n  endpointSelector: {{}}\n  ingress:\n  - fromEndpoint:\n    - {{}}\n");
    let err = refused(&text);
    assert!(
        err.starts_with(
            "policy broken.yaml:9: spec.ingress[0].fromEndpoint: unknown field; expected one of fromEndpoints"
        ),
        "{err}"
    );
    let text = format!("{HEAD}spec:\n  endpointSelector: {{}}\n  ingres:\n  - {{}}\n");
    assert!(refused(&text).starts_with("policy broken.yaml:8: spec.ingres: unknown field"));
}

#[test]
fn invalid_combinations_are_refused() {
    let two_peers = format!(
        "{HEAD}spec:\n  endpointSelector: {{}}\n  ingress:\n  - fromEndpoints: [{{}}]\n    fromCIDR: [10.0.0.0/8]\n"
    );
    let err = refused(&two_peers);
    assert!(err.contains("broken.yaml:10: spec.ingress[0].fromCIDR: one rule takes one kind of L3 peer"), "{err}");
    let l7_deny = format!(
        "{HEAD}spec:\n  endpointSelector: {{}}\n  ingressDeny:\n  - toPorts:\n    - ports: [{{port: \"80\", protocol: TCP}}]\n      rules:\n        http: [{{method: GET}}]\n"
    );
    assert!(
        refused(&l7_deny).contains("spec.ingressDeny[0].toPorts[0].rules: L7 rules are not allowed in a deny section")
    );
    let services_ports = format!(
        "{HEAD}spec:\n  endpointSelector: {{}}\n  egress:\n  - toServices:\n    - k8sService: {{serviceName: api}}\n    toPorts:\n    - ports: [{{port: \"80\"}}]\n"
    );
    assert!(refused(&services_ports).contains("spec.egress[0].toPorts: toServices cannot be combined with toPorts"));
    let fqdn_deny =
        format!("{HEAD}spec:\n  endpointSelector: {{}}\n  egressDeny:\n  - toFQDNs: [{{matchName: a.b}}]\n");
    assert!(refused(&fqdn_deny).contains("spec.egressDeny[0].toFQDNs: toFQDNs is not allowed in egressDeny"));
    let named =
        format!("{HEAD}spec:\n  endpointSelector: {{}}\n  ingress:\n  - toPorts:\n    - ports: [{{port: http}}]\n");
    assert!(refused(&named).contains("named port \"http\" cannot be resolved"));
    let except_outside = format!(
        "{HEAD}spec:\n  endpointSelector: {{}}\n  egress:\n  - toCIDRSet:\n    - cidr: 10.0.0.0/8\n      except: [11.0.0.0/8]\n"
    );
    assert!(refused(&except_outside).contains("11.0.0.0/8 is not inside 10.0.0.0/8"));
    let host_cnp = format!("{HEAD}spec:\n  nodeSelector: {{}}\n");
    assert!(refused(&host_cnp).contains("exist only in CiliumClusterwideNetworkPolicy"));
}

#[test]
fn a_bad_document_fails_its_whole_file_and_names_its_own_line() {
    let text =
        format!("{HEAD}spec:\n  endpointSelector: {{}}\n  ingress: [{{}}]\n---\n{HEAD}spec:\n  endpointSelector: 7\n");
    assert_eq!(refused(&text), "policy broken.yaml:16: spec.endpointSelector: expected a mapping, found an integer");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    /// The decoder never panics, whatever bytes it is given.
    #[test]
    fn decoding_never_panics(text in "\\PC{0,200}") {
        let _ = manifest::parse(Path::new("fuzz.yaml"), &text);
    }

    /// Nor on valid policies with one character changed.
    #[test]
    fn decoding_mutated_examples_never_panics(index in 0usize..2000, replacement in any::<char>()) {
        let text = include_str!("../examples/demo/20-ccnp-monitoring.yaml");
        let mut chars: Vec<char> = text.chars().collect();
        let i = index % chars.len();
        chars[i] = replacement;
        let mutated: String = chars.into_iter().collect();
        let _ = manifest::parse(Path::new("mutated.yaml"), &mutated);
    }
}

/// What pkg/policy/api/rule_validation.go (Rule.Validate and what it calls) refuses is refused
/// here too, at its file, line and field.
#[test]
fn what_cilium_refuses_is_refused() {
    let spec = |body: &str| format!("{HEAD}spec:\n  endpointSelector: {{}}\n{body}");
    let cases: &[(&str, &str)] = &[
        // "The ICMPs block may only be present without ToPorts."
        (
            "  ingress:\n  - toPorts:\n    - ports: [{port: \"80\", protocol: TCP}]\n    icmps:\n    - fields: [{type: 8}]\n",
            "broken.yaml:11: spec.ingress[0].icmps: the icmps block may only be present without toPorts",
        ),
        (
            "  egressDeny:\n  - toPorts:\n    - ports: [{port: \"80\", protocol: TCP}]\n    icmps:\n    - fields: [{type: 8}]\n",
            "spec.egressDeny[0].icmps: the icmps block may only be present without toPorts",
        ),
        // "rule must have at least one of Ingress, IngressDeny, Egress, EgressDeny"
        ("", "broken.yaml:7: spec: a rule needs at least one of ingress"),
        // "combining FromCIDR and FromCIDRSet is not supported yet"
        (
            "  ingress:\n  - fromCIDR: [10.0.0.0/8]\n    fromCIDRSet: [{cidr: 11.0.0.0/8}]\n",
            "spec.ingress[0].fromCIDRSet: one rule takes one kind of L3 peer, found fromCIDR and fromCIDRSet",
        ),
        // PortProtocol.Validate: "port must be specified"
        ("  egress:\n  - toPorts:\n    - ports: [{protocol: TCP}]\n", "spec.egress[0].toPorts[0].ports[0].port: port must be specified"),
        // PortRule.Validate: "too many ports, the max is 40"
        (
            &format!(
                "  egress:\n  - toPorts:\n    - ports: [{}]\n",
                (1..=41).map(|p| format!("{{port: \"{p}\"}}")).collect::<Vec<_>>().join(", ")
            ),
            "spec.egress[0].toPorts[0].ports: too many ports, the max is 40",
        ),
        // ICMPRule.Validate: "too many types, the max is 40"
        (
            &format!(
                "  egress:\n  - icmps:\n    - fields: [{}]\n",
                (1..=41).map(|t| format!("{{type: {t}}}")).collect::<Vec<_>>().join(", ")
            ),
            "spec.egress[0].icmps[0].fields: too many types, the max is 40",
        ),
        // icmp.go: names are per family.
        ("  egress:\n  - icmps:\n    - fields: [{type: PacketTooBig}]\n", "\"PacketTooBig\" is not an ICMP type of IPv4"),
        // PortRule.Validate: "DNS rules are not allowed on ingress"
        (
            "  ingress:\n  - toPorts:\n    - ports: [{port: \"53\", protocol: UDP}]\n      rules:\n        dns: [{matchName: a.b}]\n",
            "spec.ingress[0].toPorts[0].rules: DNS rules are not allowed on ingress",
        ),
        // L7Rules.Validate: "port 53 must be specified for DNS rules"
        (
            "  egress:\n  - toPorts:\n    - rules:\n        dns: [{matchName: a.b}]\n",
            "rules: port 53 must be specified for DNS rules",
        ),
        // L7Rules.Validate: "multiple L7 protocol rule types specified in single rule"
        (
            "  egress:\n  - toPorts:\n    - ports: [{port: \"53\", protocol: TCP}]\n      rules:\n        dns: [{matchName: a.b}]\n        http: [{method: GET}]\n",
            "multiple L7 protocol rule types specified in single rule",
        ),
        // PortRule.Validate: "L7 rules can only apply to TCP (not UDP) except for DNS rules"
        (
            "  egress:\n  - toPorts:\n    - ports: [{port: \"80\", protocol: UDP}]\n      rules:\n        http: [{method: GET}]\n",
            "L7 rules can only apply to TCP (not UDP) except for DNS rules",
        ),
        // PortRule.Validate: "L7 rules can not be used when a port is 0"
        (
            "  egress:\n  - toPorts:\n    - ports: [{port: \"0\", protocol: TCP}]\n      rules:\n        http: [{method: GET}]\n",
            "L7 rules can not be used when a port is 0",
        ),
        // PortProtocol.Validate: "DNS rules do not support port ranges"
        (
            "  egress:\n  - toPorts:\n    - ports: [{port: \"53\", endPort: 54, protocol: UDP}]\n      rules:\n        dns: [{matchName: a.b}]\n",
            "DNS rules do not support port ranges",
        ),
        // CIDRRule.Validate: only address/prefix notation in a CIDR set.
        ("  egress:\n  - toCIDRSet: [{cidr: 10.1.2.3}]\n", "spec.egress[0].toCIDRSet[0].cidr: \"10.1.2.3\" is not a prefix"),
        // EndpointSelector.Validate: Kubernetes label syntax.
        (
            "  ingress:\n  - fromEndpoints: [{matchLabels: {\"app\": \"-bad-\"}}]\n",
            "spec.ingress[0].fromEndpoints[0].matchLabels.app: \"-bad-\" is not a valid label value",
        ),
        (
            "  ingress:\n  - fromEndpoints: [{matchExpressions: [{key: \"Bad Key\", operator: Exists}]}]\n",
            "\"Bad Key\" is not a valid label key",
        ),
    ];
    for (body, expected) in cases {
        let err = refused(&spec(body));
        assert!(err.contains(expected), "expected {expected:?}, got {err:?} for\n{body}");
    }
    // Host policies: "L7 policy is not supported on host ingress yet".
    let host = "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: h}\nspec:\n  nodeSelector: {}\n  \
        ingress:\n  - toPorts:\n    - ports: [{port: \"80\", protocol: TCP}]\n      rules:\n        http: [{method: GET}]\n";
    assert!(refused(host).contains("L7 protocol HTTP is not supported on host ingress yet"), "{}", refused(host));
}

/// Cilium accepts what its parser accepts: every ICMP type name of its table for both families,
/// and protocols in any capitalisation (ParseL4Proto upper-cases).
#[test]
fn what_cilium_accepts_is_accepted() {
    let ok = |body: &str| {
        let text = format!("{HEAD}spec:\n  endpointSelector: {{}}\n{body}");
        manifest::parse(Path::new("ok.yaml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    };
    for name in [
        "Echo",
        "EchoRequest",
        "EchoReply",
        "Timestamp",
        "TimestampReply",
        "RouterSelection",
        "Photuris",
        "ExtendedEchoRequest",
        "ExtendedEchoReply",
        "Redirect",
        "DestinationUnreachable",
        "TimeExceeded",
        "ParameterProblem",
        "RouterAdvertisement",
    ] {
        ok(&format!("  ingress:\n  - icmps:\n    - fields: [{{type: {name}}}]\n"));
    }
    for name in [
        "PacketTooBig",
        "RedirectMessage",
        "EchoRequest",
        "EchoReply",
        "MulticastListenerQuery",
        "NeighborSolicitation",
        "ICMPNodeInformationQuery",
        "HomeAgentAddressDiscoveryReply",
        "DuplicateAddressConfirmationCodeSuffix",
        "ExtendedEchoReply",
    ] {
        ok(&format!("  ingress:\n  - icmps:\n    - fields: [{{type: {name}, family: IPv6}}]\n"));
    }
    let parsed = ok("  ingress:\n  - icmps:\n    - fields: [{type: Echo}, {type: PacketTooBig, family: IPv6}]\n");
    let Resource::Policy(p) = &parsed[0] else { panic!("a policy") };
    let types: Vec<(bool, u8)> = p.rules[0].ingress[0].icmps.iter().map(|i| (i.ipv6, i.icmp_type)).collect();
    assert_eq!(types, [(false, 8), (true, 2)]);
    ok("  egress:\n  - toPorts:\n    - ports: [{port: \"80\", protocol: tcp}, {port: \"0\", protocol: IcmpV6}]\n");
    // Extended protocols (Cilium >= 1.17): no port, or port 0; never another.
    let parsed = ok("  ingress:\n  - toPorts:\n    - ports: [{protocol: VRRP}, {port: \"0\", protocol: IGMP}]\n");
    let Resource::Policy(p) = &parsed[0] else { panic!("a policy") };
    let protocols: Vec<Protocol> = p.rules[0].ingress[0].to_ports[0].ports.iter().map(|p| p.protocol).collect();
    assert_eq!(protocols, [Protocol::Vrrp, Protocol::Igmp]);
    let text = format!("{HEAD}spec:\n  endpointSelector: {{}}\n  ingress:\n  - toPorts:\n    - ports: [{{port: \"80\", protocol: VRRP}}]\n");
    assert!(refused(&text).contains("port must be empty or 0 for VRRP"));
    // An empty toServices entry selects no service: valid, and applied (it allows nothing).
    let parsed = ok("  egress:\n  - toServices: [{}]\n");
    let Resource::Policy(p) = &parsed[0] else { panic!("a policy") };
    assert_eq!(p.rules[0].egress[0].peers, Peers::Services(vec![]));
    assert!(p.unenforced().is_empty());
}
