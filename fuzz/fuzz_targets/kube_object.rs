#![no_main]
//! What the Kubernetes source makes of an API server's object (any JSON, as every watched
//! kind) never panics.

use libfuzzer_sys::fuzz_target;
use netstack_ref::agent::sources::kube_objects::{object_key, project, WATCHED};

fuzz_target!(|data: &[u8]| {
    let Ok(object) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let _ = object_key(&object);
    for kind in &WATCHED {
        let _ = project(kind, &object);
    }
});
