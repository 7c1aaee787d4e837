//! Hubble-style observability: flows as Hubble shows them ([`flow`]) and `hubble observe`'s
//! filters over them ([`filter`]).

pub mod filter;
pub mod flow;
