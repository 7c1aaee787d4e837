//! Kernel feature probes: what the running kernel supports, found by asking it.
//!
//! Every answer is [`Support::Yes`], [`Support::No`] or [`Support::Unknown`] with a reason —
//! never a guess from the version number. Probes load tiny programs, create tiny maps and
//! BTF blobs, and try link kinds against throwaway network namespaces; each answer is cached
//! for the life of the process.
//!
//! ```no_run
//! use ebpf_core::features::{self, Support};
//! use ebpf_core::{MapType, ProgramType};
//!
//! if features::program_type(ProgramType::Xdp).is_yes() {
//!     println!("XDP is available");
//! }
//! if let Support::No(why) = features::map_type(MapType::Arena) {
//!     println!("no arenas: {why}");
//! }
//! let report = features::probe_all(); // everything, as ebpftool feature prints it
//! println!("{} helpers callable from XDP", report.helpers[&ProgramType::Xdp].len());
//! ```

mod helpers;
mod links;
mod maps;
mod misc;
mod netns;
mod programs;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::sync::{Mutex, OnceLock};

pub use helpers::{helper, helpers_for};
pub use links::link_type;
pub use maps::map_type;
pub use misc::{misc, MiscFeature};
pub use programs::program_type;

use crate::types::{LinkType, MapType, ProgramType};

/// One probe's answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Support {
    /// The kernel supports it.
    Yes,
    /// The kernel does not; why (what it answered).
    No(String),
    /// The probe could not tell; why.
    Unknown(String),
}

impl Support {
    /// True only for [`Support::Yes`].
    pub fn is_yes(&self) -> bool {
        matches!(self, Support::Yes)
    }

    /// `Some(true/false)` for definite answers, `None` for unknown.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Support::Yes => Some(true),
            Support::No(_) => Some(false),
            Support::Unknown(_) => None,
        }
    }

    /// The reason behind a no or an unknown.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Support::Yes => None,
            Support::No(r) | Support::Unknown(r) => Some(r),
        }
    }
}

impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Support::Yes => f.write_str("yes"),
            Support::No(why) => write!(f, "no ({why})"),
            Support::Unknown(why) => write!(f, "unknown ({why})"),
        }
    }
}

/// A process-wide cache of probe answers keyed by what was probed.
struct Cache<K> {
    map: OnceLock<Mutex<HashMap<K, Support>>>,
}

impl<K: Eq + Hash + Copy> Cache<K> {
    const fn new() -> Cache<K> {
        Cache { map: OnceLock::new() }
    }

    fn get_or_probe(&self, key: K, probe: impl FnOnce() -> Support) -> Support {
        let map = self.map.get_or_init(|| Mutex::new(HashMap::new()));
        if let Some(answer) = map.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return answer.clone();
        }
        // Probe without holding the lock: probes can take a while and may nest.
        let answer = probe();
        map.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_insert(answer).clone()
    }
}

/// The running kernel's release string (`uname -r`).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Every probe's answer, as `ebpftool feature` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureReport {
    /// `uname -r`.
    pub kernel: String,
    /// Per program type.
    pub program_types: BTreeMap<ProgramType, Support>,
    /// Per map type.
    pub map_types: BTreeMap<MapType, Support>,
    /// Per program type whose helpers could be probed: the helpers it may call.
    pub helpers: BTreeMap<ProgramType, Vec<&'static str>>,
    /// Program types whose helpers could not be probed, and why.
    pub helpers_unknown: BTreeMap<ProgramType, String>,
    /// Per link type.
    pub link_types: BTreeMap<LinkType, Support>,
    /// Everything else.
    pub misc: BTreeMap<MiscFeature, Support>,
}

/// Runs (or recalls) every probe.
pub fn probe_all() -> FeatureReport {
    // `Unspec` is a placeholder for a type the caller has yet to set, not a kind of program.
    let kinds = || ProgramType::ALL.iter().copied().filter(|&t| t != ProgramType::Unspec);
    let program_types: BTreeMap<_, _> = kinds().map(|t| (t, program_type(t))).collect();
    let mut helpers = BTreeMap::new();
    let mut helpers_unknown = BTreeMap::new();
    for t in kinds() {
        match helpers_for(t) {
            Ok(list) => {
                helpers.insert(t, list);
            }
            Err(why) => {
                helpers_unknown.insert(t, why);
            }
        }
    }
    FeatureReport {
        kernel: kernel_release(),
        program_types,
        map_types: MapType::ALL.iter().map(|&t| (t, map_type(t))).collect(),
        helpers,
        helpers_unknown,
        link_types: LinkType::ALL.iter().map(|&t| (t, link_type(t))).collect(),
        misc: MiscFeature::ALL.iter().map(|&f| (f, misc(f))).collect(),
    }
}
