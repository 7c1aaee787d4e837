//! How a policy's namespace scopes its selectors, as Cilium's parser does it
//! (`pkg/k8s/apis/cilium.io/utils/utils.go`: `ParseToCiliumRule`, `getEndpointSelector`).
//!
//! - A CiliumNetworkPolicy's `endpointSelector` always selects pods of the policy's own
//!   namespace: a namespace given in its `matchLabels` is replaced by the policy's, so one
//!   tenant's policy can never select another tenant's pods. (`matchExpressions` on the
//!   namespace stay and are ANDed, so at worst they select nothing.)
//! - `fromEndpoints`/`toEndpoints` of a CiliumNetworkPolicy that name neither a namespace nor a
//!   namespace label (`io.cilium.k8s.namespace.labels.*`) mean the policy's namespace; a
//!   selector naming a `reserved:` label is left alone.
//! - In a CiliumClusterwideNetworkPolicy, peers that name no namespace match pods of every
//!   namespace — and only pods: Cilium adds "has a namespace label", which reserved identities
//!   (host, world, …) lack.
//! - `fromRequires`/`toRequires` are scoped like peers, without the `reserved:` exception.

use super::api::Policy;
use super::selector::{LabelSelector, Operator, Requirement, NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX};

/// The selector of the endpoints `policy`'s rule applies to, given its `endpointSelector`.
pub fn subject(policy: &Policy, selector: &LabelSelector) -> LabelSelector {
    match &policy.namespace {
        Some(ns) => selector.with_label(NAMESPACE_LABEL, ns),
        None => selector.clone(),
    }
}

/// A `from/toEndpoints` selector of `policy`, scoped.
pub fn peer(policy: &Policy, selector: &LabelSelector) -> LabelSelector {
    if selector.names_reserved() {
        return selector.clone();
    }
    requirement(policy, selector)
}

/// A `from/toRequires` selector of `policy`, scoped.
pub fn requirement(policy: &Policy, selector: &LabelSelector) -> LabelSelector {
    if selector.has_key(NAMESPACE_LABEL) {
        return selector.clone();
    }
    match &policy.namespace {
        Some(_) if selector.has_key_prefix(NAMESPACE_LABELS_PREFIX) => selector.clone(),
        Some(ns) => selector.with_label(NAMESPACE_LABEL, ns),
        None => {
            let mut out = selector.clone();
            out.match_expressions.push(Requirement {
                key: NAMESPACE_LABEL.to_string(),
                operator: Operator::Exists,
                values: Vec::new(),
            });
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Labels;

    fn policy(namespace: Option<&str>) -> Policy {
        Policy { name: "p".into(), namespace: namespace.map(str::to_string), rules: Vec::new() }
    }

    fn pod(ns: &str, app: &str) -> Labels {
        Labels::from_pairs([(NAMESPACE_LABEL, ns), ("app", app), ("io.cilium.k8s.namespace.labels.team", "blue")])
    }

    #[test]
    fn a_namespaced_subject_never_leaves_its_namespace() {
        let cnp = policy(Some("shop"));
        let naming_ops = LabelSelector::labels([(NAMESPACE_LABEL, "ops"), ("app", "web")]);
        let s = subject(&cnp, &naming_ops);
        assert!(s.matches(&pod("shop", "web")) && !s.matches(&pod("ops", "web")));
        let ccnp = policy(None);
        assert!(subject(&ccnp, &naming_ops).matches(&pod("ops", "web")));
    }

    #[test]
    fn peers_default_to_the_policy_namespace_unless_they_name_one() {
        let cnp = policy(Some("shop"));
        let any = LabelSelector::default();
        assert!(peer(&cnp, &any).matches(&pod("shop", "x")) && !peer(&cnp, &any).matches(&pod("ops", "x")));
        let ops = LabelSelector::labels([(NAMESPACE_LABEL, "ops")]);
        assert!(peer(&cnp, &ops).matches(&pod("ops", "x")));
        let team = LabelSelector::labels([("io.cilium.k8s.namespace.labels.team", "blue")]);
        assert!(peer(&cnp, &team).matches(&pod("ops", "x")), "a namespace label selects across namespaces");
        let host = LabelSelector::labels([("reserved:host", "")]);
        assert_eq!(peer(&cnp, &host), host);
        assert_ne!(requirement(&cnp, &host), host, "requirements get the namespace even when reserved");
        let ccnp = policy(None);
        let all = peer(&ccnp, &any);
        assert!(all.matches(&pod("ops", "x")) && !all.matches(&Labels::from_pairs([("reserved:host", "")])));
    }
}
