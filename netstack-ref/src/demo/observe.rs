//! What the demo shows of its own traffic as flows: a short `observe` excerpt (policy
//! verdicts, drops, socket translations), where each node's service map and metrics are
//! served, and, with `--hold`, the scene kept up until Ctrl-C so the page can be looked at.

use std::path::Path;

use crate::agent::api::{call, FlowsReply, Request};
use crate::agent::api_types::Status;
use crate::observe::flow::Flow;
use crate::observe::print::{render, Format};

/// How many flows the excerpt shows.
const EXCERPT: usize = 14;

/// The kinds the excerpt shows: what decided each connection.
fn decides(flow: &Flow) -> bool {
    matches!(flow.event_type.kind, 1 | 5 | 7) && flow.is_reply != Some(true)
}

/// Prints the latest deciding flows of the agent at `socket`, as `netstack observe` would.
pub fn print_excerpt(state_dir: &Path) {
    let socket = state_dir.join("agent.sock");
    let reply = call(&socket, &Request::Flows { number: Some(4095), first: false, since: None })
        .ok()
        .and_then(|v| serde_json::from_value::<FlowsReply>(v).ok());
    let Some(reply) = reply else {
        println!("\n(no flows: the agent did not answer)");
        return;
    };
    let deciding: Vec<&Flow> = reply.flows.iter().filter(|f| decides(f)).collect();
    let shown = deciding.len().min(EXCERPT);
    println!(
        "\nflows, as `netstack observe --state-dir {} -t policy-verdict -t drop -t trace-sock` shows them \
         (the last {shown} of {}):",
        state_dir.display(),
        deciding.len()
    );
    for flow in &deciding[deciding.len() - shown..] {
        println!("  {}", render(flow, Format::Compact));
    }
}

/// Where the agent at `state_dir` serves HTTP, if it does.
pub fn http_address(state_dir: &Path) -> Option<String> {
    let status = call(&state_dir.join("agent.sock"), &Request::Status).ok()?;
    serde_json::from_value::<Status>(status).ok()?.http
}

/// Prints where `node`'s service map and metrics are.
pub fn print_pages(node: &str, state_dir: &Path, hold: bool) {
    match http_address(state_dir) {
        Some(address) => println!(
            "service map of {node}: http://{address}/   metrics: http://{address}/metrics{}",
            if hold { "" } else { "   (up while the demo runs; `--hold` keeps them until Ctrl-C)" }
        ),
        None => println!("service map of {node}: the agent serves no HTTP"),
    }
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM, so what the demo made stays up until then.
pub fn hold() {
    use nix::sys::signal::{SigSet, Signal};
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    // Blocked, then waited for: the signal ends the wait instead of the process, and the scene
    // is removed as usual.
    if signals.thread_block().is_ok() {
        println!("\nholding the scene; Ctrl-C removes it");
        let _ = signals.wait();
    }
}
