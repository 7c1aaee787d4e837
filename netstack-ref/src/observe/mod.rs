//! Hubble-style observability: flows as Hubble shows them ([`flow`]) and `hubble observe`'s
//! filters over them ([`filter`]), the ring of recent flows ([`ring`]).

pub mod filter;
pub mod flow;
pub mod ring;
