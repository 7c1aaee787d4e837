//! Hubble-style observability: flows from the datapath's events, `netstack observe`, Hubble's
//! metrics and the service map (the HTTP server that serves the last two is
//! [`crate::agent::http`]).
//!
//! - [`command`]: `netstack observe`'s command line.
//! - [`decode`]: the datapath's flow events into flows, enriched from the agent's state.
//! - [`flow`]: flows as Hubble shows them (flow.proto's field and enum names).
//! - [`filter`]: `hubble observe`'s filter flags into allow and deny filters.
//! - [`metrics`]: Hubble's Prometheus metrics and the agent's health.
//! - [`ring`]: the lock-free ring of recent flows.
//! - [`service_map`]: flows folded into the service map's graph.
//! - [`print`](mod@print): `observe`'s output formats (compact, dict, table, json/jsonpb).
//! - [`time`]: RFC 3339 times, Hubble's timestamps, `--since`/`--until`.

pub mod command;
pub mod decode;
pub mod filter;
pub mod flow;
pub mod metrics;
pub mod print;
pub mod ring;
pub mod service_map;
pub mod time;
