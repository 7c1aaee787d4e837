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
use crate::observe::metrics::Metrics;
use crate::observe::ring::FlowRing;

/// The running collector; stopped on drop.
#[derive(Debug)]
pub struct FlowCollector {
    ring: Arc<FlowRing>,
    enrichment: Arc<ArcSwap<Enrichment>>,
    received: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
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
    /// Starts reading `bpffs/events` (waiting for it to appear) into `ring`, counting each
    /// flow into `metrics`.
    pub fn start(bpffs: PathBuf, ring: Arc<FlowRing>, enrichment: Enrichment, metrics: Arc<Metrics>) -> FlowCollector {
        let enrichment = Arc::new(ArcSwap::from_pointee(enrichment));
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (ring, enrichment, received, metrics, stop) = (
                Arc::clone(&ring),
                Arc::clone(&enrichment),
                Arc::clone(&received),
                Arc::clone(&metrics),
                Arc::clone(&stop),
            );
            std::thread::Builder::new()
                .name("flows".into())
                .spawn(move || {
                    let mut events = None;
                    let mut lost_counter = None;
                    while !stop.load(Ordering::Relaxed) {
                        let Some(reader) = &mut events else {
                            events = Map::from_pin(bpffs.join("events")).ok().and_then(|map| RingBuf::new(&map).ok());
                            lost_counter = Map::from_pin(bpffs.join("event_lost"))
                                .ok()
                                .and_then(|map| PerCpuArray::<u64>::try_from(map).ok());
                            if events.is_none() {
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            continue;
                        };
                        let read = reader.poll(Duration::from_millis(100), |bytes| {
                            received.fetch_add(1, Ordering::Relaxed);
                            // The snapshot as of this event (a poll can outlast a sync that
                            // adds the pods its events are about).
                            match enrichment.load().decode(bytes) {
                                Ok(flow) => {
                                    metrics.flows.observe(&flow);
                                    ring.push(flow);
                                }
                                Err(_) => {
                                    metrics.lost.undecodable.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        });
                        let lost = &metrics.lost;
                        if let Some(in_datapath) = lost_counter.as_ref().and_then(sum_over_cpus) {
                            lost.bpf_ring.store(in_datapath, Ordering::Relaxed);
                        }
                        lost.flow_ring.store(ring.lost_to_followers(), Ordering::Relaxed);
                        if read.is_err() {
                            // The pin was replaced (the datapath reset): open it again.
                            events = None;
                        }
                    }
                })
                .ok()
        };
        FlowCollector { ring, enrichment, received, metrics, stop, thread }
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
        (self.received.load(Ordering::Relaxed), self.metrics.lost.undecodable.load(Ordering::Relaxed))
    }

    /// Events the datapath could not put into the ring (full), summed over CPUs, as of the
    /// collector's latest poll.
    pub fn lost_in_datapath(&self) -> u64 {
        self.metrics.lost.bpf_ring.load(Ordering::Relaxed)
    }

    /// The metrics the collector counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

fn sum_over_cpus(lost: &PerCpuArray<u64>) -> Option<u64> {
    lost.get(&0).ok().map(|values| values.iter().flat_map(|v| v.iter()).sum())
}

impl Drop for FlowCollector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
