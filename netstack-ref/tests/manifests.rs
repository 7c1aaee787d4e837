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
        let resources = manifest::read(&file).unwrap_or_else(|e| panic!("{e}"));
        assert!(!resources.is_empty(), "{}", file.display());
    }
}

#[test]
fn examples_decode_to_what_they_say() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policies");
    let resources = manifest::read(&dir.join("egress-cidr-except.yaml")).unwrap();
    let Resource::Policy(p) = &resources[0] else { panic!("a policy") };
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
    let err = check(&file).unwrap_err();
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
        "policy broken.yaml:12: spec.ingress[0].toPorts[0].ports[0].protocol: \"TPC\" is not one of TCP, UDP, SCTP, ICMP, ICMPv6, ANY"
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
    let text = format!("{HEAD}spec:\n  endpointSelector: {{}}\n---\n{HEAD}spec:\n  endpointSelector: 7\n");
    assert_eq!(refused(&text), "policy broken.yaml:15: spec.endpointSelector: expected a mapping, found an integer");
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
