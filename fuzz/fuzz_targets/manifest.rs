#![no_main]
//! Decoding manifests (YAML → Namespace/Pod/policies) never panics, and a decoded policy
//! resolves without panicking too.

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use netstack_ref::identity::Labels;
use netstack_ref::manifest::{self, Resource};
use netstack_ref::policy::{resolve, Universe};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(resources) = manifest::parse(Path::new("fuzz.yaml"), text) else { return };
    let policies: Vec<_> = resources
        .into_iter()
        .filter_map(|r| match r {
            Resource::Policy(p) => Some(p),
            _ => None,
        })
        .collect();
    let endpoint = Labels::from_pairs([("app", "web"), ("io.kubernetes.pod.namespace", "default")]);
    let universe = Universe::new(Labels::default(), [(256, endpoint.clone())], []);
    let _ = resolve(&policies, &endpoint, &universe);
});
