//! Kubernetes label selectors (`matchLabels`, `matchExpressions`) as Cilium reads them.

use crate::identity::Labels;

/// A `matchExpressions` operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// The label's value is one of the values.
    In,
    /// The label is absent or its value is none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// One `matchExpressions` element.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    /// The label key (source prefix such as `k8s:` removed).
    pub key: String,
    /// The operator.
    pub operator: Operator,
    /// The values for In and NotIn.
    pub values: Vec<String>,
}

/// A label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    /// `matchLabels` (keys without source prefix).
    pub match_labels: Vec<(String, String)>,
    /// `matchExpressions`.
    pub match_expressions: Vec<Requirement>,
}

/// Label keys may carry a source (`k8s:app`, `any:app`); `reserved:` is a source of its own
/// and stays, since reserved identities carry `reserved:<name>` labels.
pub fn strip_source(key: &str) -> &str {
    for source in ["k8s:", "any:", "container:", "unspec:"] {
        if let Some(rest) = key.strip_prefix(source) {
            return rest;
        }
    }
    key
}

/// The namespace label every pod identity carries.
pub const NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";

/// The prefix of the namespace's own labels in a pod's identity.
pub const NAMESPACE_LABELS_PREFIX: &str = "io.cilium.k8s.namespace.labels.";

impl LabelSelector {
    /// A selector of `matchLabels` only.
    pub fn labels<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> LabelSelector {
        LabelSelector {
            match_labels: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            match_expressions: Vec::new(),
        }
    }

    /// Whether the selector has no requirement at all.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v.as_str()))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator {
                    Operator::In => value.is_some_and(|v| r.values.iter().any(|x| x == v)),
                    Operator::NotIn => value.is_none_or(|v| r.values.iter().all(|x| x != v)),
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                }
            })
    }

    /// Whether any requirement (`matchLabels` or `matchExpressions`) is on `key`.
    pub fn has_key(&self, key: &str) -> bool {
        self.match_labels.iter().any(|(k, _)| k == key) || self.match_expressions.iter().any(|r| r.key == key)
    }

    /// Whether any requirement is on a key starting with `prefix`.
    pub fn has_key_prefix(&self, prefix: &str) -> bool {
        self.match_labels.iter().any(|(k, _)| k.starts_with(prefix))
            || self.match_expressions.iter().any(|r| r.key.starts_with(prefix))
    }

    /// Whether the selector asks for a `reserved:` label (so it may select reserved identities).
    pub fn names_reserved(&self) -> bool {
        self.match_labels.iter().any(|(k, _)| k.starts_with("reserved:"))
            || self
                .match_expressions
                .iter()
                .any(|r| r.key.starts_with("reserved:") && r.operator != Operator::DoesNotExist)
    }

    /// This selector with `key` required to equal `value`, replacing any `matchLabels` entry
    /// for the key (`matchExpressions` on it stay).
    pub fn with_label(&self, key: &str, value: &str) -> LabelSelector {
        let mut out = self.clone();
        out.match_labels.retain(|(k, _)| k != key);
        out.match_labels.push((key.to_string(), value.to_string()));
        out
    }
}

impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for r in &self.match_expressions {
            parts.push(match r.operator {
                Operator::In => format!("{} in ({})", r.key, r.values.join(",")),
                Operator::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                Operator::Exists => r.key.clone(),
                Operator::DoesNotExist => format!("!{}", r.key),
            });
        }
        if parts.is_empty() {
            f.write_str("{}")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_follow_kubernetes_semantics() {
        let labels = Labels::from_pairs([("app", "web"), ("tier", "front")]);
        let expr = |key: &str, operator, values: &[&str]| LabelSelector {
            match_labels: vec![],
            match_expressions: vec![Requirement {
                key: key.into(),
                operator,
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
        };
        assert!(expr("app", Operator::In, &["web", "db"]).matches(&labels));
        assert!(!expr("app", Operator::NotIn, &["web"]).matches(&labels));
        assert!(expr("env", Operator::NotIn, &["prod"]).matches(&labels), "NotIn holds for an absent key");
        assert!(expr("tier", Operator::Exists, &[]).matches(&labels));
        assert!(expr("env", Operator::DoesNotExist, &[]).matches(&labels));
        assert!(LabelSelector::default().matches(&labels));
        assert!(!LabelSelector::labels([("app", "db")]).matches(&labels));
    }
}
