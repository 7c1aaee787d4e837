//! The agent's flow collector: a thread that reads the node's `events` ring buffer (pinned by
//! name in the node's bpffs directory, made by the first datapath object that loads), decodes
//! each event into a flow with the latest [`Enrichment`] and keeps it in the [`FlowRing`].
//! Lost events are counted where they are lost: in the BPF ring (`event_lost`, read by the
//! agent), by the decoder (events it cannot read), and in the flow ring (overwritten before a
//! follower read them, counted by the follower).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use ebpf_core::Map;
use ebpf_maps::PerCpuArray;
use ebpf_ringbuf::RingBuf;

use crate::observe::decode::Enrichment;
use crate::observe::ring::FlowRing;

/// The collector's counters.
#[derive(Debug, Default)]
pub struct FlowCounters {
    /// Events read from the BPF ring.
    pub received: AtomicU64,
    /// Events the decoder could not read.
    pub undecodable: AtomicU64,
}

/// The running collector; stopped on drop.
#[derive(Debug)]
pub struct FlowCollector {
    ring: Arc<FlowRing>,
    enrichment: Arc<ArcSwap<Enrichment>>,
    counters: Arc<FlowCounters>,
    bpffs: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Wall-clock nanoseconds minus boot-clock nanoseconds now (events carry the boot clock).
pub fn boot_to_wall() -> i128 {
    let read = |clock| {
        nix::time::clock_gettime(clock).map_or(0, |t| i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec()))
    };
    read(nix::time::ClockId::CLOCK_REALTIME) - read(nix::time::ClockId::CLOCK_BOOTTIME)
}

impl FlowCollector {
    /// Starts reading `bpffs/events` (waiting for it to appear) into `ring`.
    pub fn start(bpffs: PathBuf, ring: Arc<FlowRing>, enrichment: Enrichment) -> FlowCollector {
        let enrichment = Arc::new(ArcSwap::from_pointee(enrichment));
        let counters = Arc::new(FlowCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (ring, enrichment, counters, stop, pin) = (
                Arc::clone(&ring),
                Arc::clone(&enrichment),
                Arc::clone(&counters),
                Arc::clone(&stop),
                bpffs.join("events"),
            );
            std::thread::Builder::new()
                .name("flows".into())
                .spawn(move || {
                    let mut events = None;
                    while !stop.load(Ordering::Relaxed) {
                        let Some(reader) = &mut events else {
                            events = Map::from_pin(&pin).ok().and_then(|map| RingBuf::new(&map).ok());
                            if events.is_none() {
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            continue;
                        };
                        let read = reader.poll(Duration::from_millis(100), |bytes| {
                            counters.received.fetch_add(1, Ordering::Relaxed);
                            // The snapshot as of this event (a poll can outlast a sync that
                            // adds the pods its events are about).
                            match enrichment.load().decode(bytes) {
                                Ok(flow) => {
                                    ring.push(flow);
                                }
                                Err(_) => {
                                    counters.undecodable.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        });
                        if read.is_err() {
                            // The pin was replaced (the datapath reset): open it again.
                            events = None;
                        }
                    }
                })
                .ok()
        };
        FlowCollector { ring, enrichment, counters, bpffs, stop, thread }
    }

    /// Replaces what flows are enriched with.
    pub fn enrich_with(&self, enrichment: Enrichment) {
        self.enrichment.store(Arc::new(enrichment));
    }

    /// The ring of flows.
    pub fn ring(&self) -> &Arc<FlowRing> {
        &self.ring
    }

    /// Events read and events that could not be decoded.
    pub fn counters(&self) -> (u64, u64) {
        (self.counters.received.load(Ordering::Relaxed), self.counters.undecodable.load(Ordering::Relaxed))
    }

    /// Events the datapath could not put into the ring (full), summed over CPUs.
    pub fn lost_in_datapath(&self) -> u64 {
        let Ok(map) = Map::from_pin(self.bpffs.join("event_lost")) else { return 0 };
        let Ok(lost) = PerCpuArray::<u64>::try_from(map) else { return 0 };
        lost.get(&0).map(|values| values.iter().flat_map(|v| v.iter()).sum()).unwrap_or(0)
    }
}

impl Drop for FlowCollector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
