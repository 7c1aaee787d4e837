//! [`Collection`]: the live maps and programs of a loaded [`CollectionSpec`].

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use ebpf_btf::BtfSupport;

use super::data::KCONFIG_MAP;
use super::error::ObjectError;
use super::kconfig::kconfig_image;
use super::spec::CollectionSpec;
use super::variable::{VariableSpec, VariableValue};
use crate::error::{Error, Result};
use crate::features::{misc, MiscFeature};
use crate::link::StructOps;
use crate::map::{Map, MapContents, MapFlags, MapSpec, Pinning, UpdateFlags};
use crate::program::{BtfPolicy, BtfSource, LoadOptions, Program, ReadyProgram};
use crate::struct_ops::KernelLayout;
use crate::sys::{self, Errno, MmapRegion};
use crate::types::{MapType, ProgramType};

/// Maps and programs loaded from one [`CollectionSpec`]. Dropping it closes every fd it holds;
/// objects something else still holds (a link, a pin) live on in the kernel.
#[derive(Debug)]
pub struct Collection {
    maps: Vec<Map>,
    programs: Vec<Program>,
    variables: crate::SharedVec<VariableSpec>,
    /// Data sections mapped into this process, by index in `maps`.
    regions: Vec<(usize, MmapRegion)>,
    /// Arenas mapped into this process, by index in `maps`.
    arenas: Vec<(usize, MmapRegion)>,
    /// Kernel images of struct_ops values registered by a map update (`.struct_ops`), by
    /// index in `maps`: writing one registers it, so that waits for
    /// [`Collection::register_struct_ops`].
    struct_ops: Vec<(usize, Vec<u8>)>,
    _btf: Option<OwnedFd>,
}

/// Removes the pins a failed load made.
struct PinGuard(Vec<PathBuf>);

impl Drop for PinGuard {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn object_error(error: ObjectError) -> Error {
    Error::Object(error)
}

fn btf_support() -> BtfSupport {
    let yes = |f| misc(f).as_bool().unwrap_or(true);
    BtfSupport {
        func: yes(MiscFeature::BtfFunc),
        func_global: yes(MiscFeature::BtfFuncGlobal),
        datasec: yes(MiscFeature::BtfDatasec),
        float: yes(MiscFeature::BtfFloat),
        decl_tag: yes(MiscFeature::BtfDeclTag),
        type_tag: yes(MiscFeature::BtfTypeTag),
        enum64: yes(MiscFeature::BtfEnum64),
    }
}

/// Loads the object's BTF as it is; only when the kernel refuses it are features probed and
/// the blob sanitised (a modern kernel pays one `bpf()` call).
fn load_btf(blob: &[u8]) -> Result<OwnedFd> {
    match sys::btf_load(blob) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            let support = btf_support();
            if support.is_complete() {
                return Err(first.into());
            }
            let btf = ebpf_btf::Btf::parse(blob.to_vec())
                .map_err(|e| Error::InvalidSpec { object: "object BTF".to_owned(), reason: e.to_string() })?;
            Ok(sys::btf_load(&ebpf_btf::sanitize(&btf, support))?)
        }
    }
}

fn create_map(spec: &MapSpec, btf: Option<std::os::fd::BorrowedFd<'_>>) -> Result<Map> {
    let first = match Map::create_with_btf(spec, btf) {
        Ok(map) => return Ok(map),
        Err(e) => e,
    };
    // Older kernels: no mmapable arrays, or no BTF for this kind of map. Retry without what
    // the kernel may lack, as libbpf does.
    let mut fallback = spec.clone();
    if spec.flags.contains(MapFlags::MMAPABLE) && misc(MiscFeature::MmapableMaps).as_bool() == Some(false) {
        fallback.flags.remove(MapFlags::MMAPABLE);
    }
    if fallback == *spec && (btf.is_none() || spec.btf_types.is_none()) {
        return Err(first);
    }
    Map::create_with_btf(&fallback, None).map_err(|_| first)
}

/// Creates a struct_ops map for the running kernel's struct: its value is the kernel's
/// `bpf_struct_ops_<type>`, which the object's members are matched into.
fn create_struct_ops(
    spec: &MapSpec,
    value: &crate::struct_ops::StructOpsValue,
    btf: Option<std::os::fd::BorrowedFd<'_>>,
    options: &LoadOptions,
) -> Result<(Map, KernelLayout)> {
    let btf = btf.ok_or_else(|| Error::InvalidSpec {
        object: format!("struct_ops map \"{}\"", spec.name),
        reason: "the kernel creates struct_ops maps only with the object's BTF (BtfPolicy::Never)".to_owned(),
    })?;
    let kernel = crate::program::kernel_btf_for(options.kernel_btf.as_ref().map(|k| &k.0))?;
    let layout = KernelLayout::resolve(value, &kernel)?;
    let map = Map::create_struct_ops(spec, btf, layout.value_type_id, layout.value_size)?;
    Ok((map, layout))
}

/// Kernel-managed fields a map value can hold: the kernel must see the value's BTF.
const SPECIAL_FIELDS: &[&str] = &[
    "bpf_spin_lock",
    "bpf_res_spin_lock",
    "bpf_timer",
    "bpf_wq",
    "bpf_list_head",
    "bpf_rb_root",
    "bpf_refcount",
    "bpf_task_work",
];

/// Whether the kernel needs the object's BTF to load `spec` (see [`BtfPolicy::Auto`]).
fn needs_btf(spec: &CollectionSpec) -> bool {
    let subprograms = spec.programs.iter().filter(|p| p.autoload).any(|p| {
        matches!(p.program_type, ProgramType::StructOps | ProgramType::Ext)
            || p.btf.as_ref().is_some_and(|b| b.func_info.len() > b.func_info_rec_size as usize)
    });
    // Local storage maps take their value layout from BTF only; struct_ops maps are created
    // with the object's BTF as the kernel insists.
    let btf_only_maps = spec.maps.iter().any(|m| {
        matches!(
            m.map_type,
            MapType::SkStorage
                | MapType::InodeStorage
                | MapType::TaskStorage
                | MapType::CgrpStorage
                | MapType::StructOps
        )
    });
    if subprograms || btf_only_maps {
        return true;
    }
    let mut typed = spec.maps.iter().filter_map(|m| m.btf_types.map(|t| t.value)).filter(|&v| v != 0).peekable();
    if typed.peek().is_none() {
        return false;
    }
    let Some(btf) = spec.btf.as_ref().and_then(|b| ebpf_btf::Btf::parse(b.clone()).ok()) else { return false };
    typed.any(|value| {
        let mut special = false;
        btf.walk(value, |ty| {
            let name = ty.name();
            special |= SPECIAL_FIELDS.contains(&name) || (ty.is(ebpf_btf::BtfKind::TypeTag) && name.contains("kptr"));
        });
        special
    })
}

/// Field-by-field differences between a pinned map and the definition that wants to reuse it.
fn pin_mismatches(pinned: &Map, spec: &MapSpec) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |field: &str, pinned: String, wanted: String| {
        if pinned != wanted {
            out.push(format!("{field} {pinned} (pinned) vs {wanted} (object)"));
        }
    };
    check("type", pinned.map_type().map_or("unknown".into(), |t| t.to_string()), spec.map_type.to_string());
    check("key_size", pinned.key_size().to_string(), spec.key_size.to_string());
    check("value_size", pinned.value_size().to_string(), spec.value_size.to_string());
    check("max_entries", pinned.max_entries().to_string(), spec.max_entries.to_string());
    let flags = |f: MapFlags| format!("{:#x}", f.bits());
    check("map_flags", flags(pinned.flags()), flags(spec.flags));
    out
}

impl Collection {
    /// Creates the maps (reusing compatible pins), loads the BTF once, loads every program,
    /// fills prog arrays and maps of maps from their static values, and pins what is pinned
    /// by name. All or nothing: on any failure everything made so far is released, pins
    /// included, and the error names the map or program (with the whole verifier log).
    pub fn load(spec: CollectionSpec, options: &LoadOptions) -> Result<Collection> {
        let wanted = match options.btf {
            BtfPolicy::Always => true,
            BtfPolicy::Never => false,
            BtfPolicy::Auto => !options.log_level.is_empty() || needs_btf(&spec),
        };
        let mut btf = match &spec.btf {
            Some(blob) if wanted => Some(load_btf(blob)?),
            _ => None,
        };

        let mut maps = Vec::with_capacity(spec.maps.len());
        let mut to_pin = Vec::new();
        let mut layouts = Vec::new();
        let mut arenas = Vec::new();
        for map_spec in &spec.maps {
            if let MapContents::StructOps(value) = &map_spec.contents {
                let (map, layout) = create_struct_ops(map_spec, value, btf.as_ref().map(|fd| fd.as_fd()), options)?;
                layouts.push((maps.len(), layout));
                maps.push(map);
                continue;
            }
            let pin_path = match map_spec.pinning {
                Pinning::None => None,
                Pinning::ByName => {
                    let dir = options.pin_dir.as_deref().ok_or_else(|| Error::InvalidSpec {
                        object: format!("map \"{}\"", map_spec.name),
                        reason: "it is pinned by name, and the load options give no pin_dir".to_owned(),
                    })?;
                    Some(dir.join(pin_name(&map_spec.name)))
                }
            };
            if let Some(path) = pin_path.as_ref().filter(|p| p.exists()) {
                let pinned = Map::from_pin(path)?;
                let mismatches = pin_mismatches(&pinned, map_spec);
                if !mismatches.is_empty() {
                    return Err(Error::InvalidSpec {
                        object: format!("pinned map \"{}\" at {}", map_spec.name, path.display()),
                        reason: format!("incompatible with the object's definition: {}", mismatches.join(", ")),
                    });
                }
                maps.push(pinned.named(&map_spec.name));
                continue;
            }
            let map = create_map(map_spec, btf.as_ref().map(|fd| fd.as_fd()))?;
            write_initial_data(&map, map_spec, &spec)?;
            if map_spec.map_type == MapType::Arena {
                // Mapped before any program loads, at the address the programs were built for
                // (map_extra) when the object gives one, as libbpf maps arenas.
                let len = (map_spec.max_entries as usize).saturating_mul(sys::page_size());
                let address = (map_spec.map_extra != 0).then_some(map_spec.map_extra);
                let region = MmapRegion::map_at(map.as_fd(), len, address)
                    .map_err(|e| Error::syscall(format!("map arena \"{}\" into this process", map_spec.name), e))?;
                arenas.push((maps.len(), region));
            }
            if let Some(path) = pin_path {
                to_pin.push((maps.len(), path));
            }
            maps.push(map);
        }
        // Most objects define a handful of maps, where a scan beats building a hash index.
        let by_name: Option<std::collections::HashMap<&str, usize>> =
            (spec.maps.len() > 16).then(|| spec.maps.iter().enumerate().map(|(i, m)| (m.name.as_str(), i)).collect());
        let index = |name: &str| match &by_name {
            Some(by_name) => by_name.get(name).copied(),
            None => spec.maps.iter().position(|m| m.name == name),
        };

        // Every program readied first (so one that cannot be readied fails before any program
        // is loaded), then loaded back to back (see ReadyProgram).
        let map_fd = |name: &str| index(name).map(|i| maps[i].as_fd().as_raw_fd());
        let mut raw = Vec::new();
        let mut ready = Vec::with_capacity(spec.programs.len());
        for program in spec.programs.iter().filter(|p| p.autoload) {
            ready.push(ReadyProgram::new(program, &map_fd, &mut raw, options)?);
        }
        let mut programs = Vec::with_capacity(ready.len());
        for program in &ready {
            let source = match &btf {
                Some(fd) => BtfSource::Shared(fd.as_fd()),
                None => BtfSource::Without,
            };
            let (fd, log) = match program.load(&raw, options, source) {
                // Rejected without BTF: load it again with BTF, so the log shows source lines.
                Err(Error::Verifier(_)) if btf.is_none() && options.btf == BtfPolicy::Auto && spec.btf.is_some() => {
                    let fd = load_btf(spec.btf.as_ref().expect("checked"))?;
                    let retried = program.load(&raw, options, BtfSource::Shared(fd.as_fd()));
                    btf = Some(fd);
                    retried?
                }
                outcome => outcome?,
            };
            programs.push(program.loaded(fd, log, options));
        }
        drop(ready);

        for (map_spec, map) in spec.maps.iter().zip(&maps) {
            let slots: Vec<(u32, std::os::fd::BorrowedFd<'_>)> = match &map_spec.contents {
                MapContents::Programs(slots) => slots
                    .iter()
                    // A slot naming a program the caller left out stays empty.
                    .filter(|(_, name)| !spec.programs.iter().any(|p| p.name == name.as_str() && !p.autoload))
                    .map(|(slot, name)| {
                        let at = programs.iter().position(|p| p.name() == name).ok_or_else(|| {
                            object_error(ObjectError::Map {
                                map: map_spec.name.clone(),
                                reason: format!("slot {slot} names program {name}, which the object does not load"),
                            })
                        })?;
                        Ok((*slot, programs[at].as_fd()))
                    })
                    .collect::<Result<_>>()?,
                MapContents::Maps(slots) => slots
                    .iter()
                    .map(|(slot, name)| {
                        let at = index(name.as_str()).ok_or_else(|| {
                            object_error(ObjectError::Map {
                                map: map_spec.name.clone(),
                                reason: format!("slot {slot} names map {name}, which the object does not define"),
                            })
                        })?;
                        Ok((*slot, maps[at].as_fd()))
                    })
                    .collect::<Result<_>>()?,
                _ => continue,
            };
            for (slot, fd) in slots {
                let value = (std::os::fd::AsRawFd::as_raw_fd(&fd) as u32).to_ne_bytes();
                map.update(&slot.to_ne_bytes(), &value, UpdateFlags::ANY)
                    .map_err(|e| prog_array_hint(e, &map_spec.name, slot))?;
            }
        }

        let mut struct_ops = Vec::new();
        for (at, layout) in layouts {
            let (map_spec, map) = (&spec.maps[at], &maps[at]);
            let MapContents::StructOps(value) = &map_spec.contents else { continue };
            let program_fd = |name: &str| programs.iter().find(|p| p.name() == name).map(|p| p.as_fd().as_raw_fd());
            let image = layout.image(value, &program_fd)?;
            // A link-registered value is only checked and stored by the update; the link
            // registers it. Any other is registered by the update itself.
            if map_spec.flags.contains(MapFlags::LINK) {
                map.update(&0u32.to_ne_bytes(), &image, UpdateFlags::ANY)?;
            } else {
                struct_ops.push((at, image));
            }
        }

        let mut pins = PinGuard(Vec::new());
        for (at, path) in to_pin {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                    operation: "create pin directory",
                    path: dir.to_owned(),
                    source,
                })?;
            }
            maps[at].pin(&path)?;
            pins.0.push(path);
        }
        pins.0.clear();

        let mut regions = Vec::new();
        for (at, (map_spec, map)) in spec.maps.iter().zip(&maps).enumerate() {
            let holds_variables = spec.variables.iter().any(|v| v.section == map_spec.name);
            if holds_variables && map.flags().contains(MapFlags::MMAPABLE) {
                let writable = !map_spec.flags.contains(MapFlags::RDONLY_PROG);
                let len = (map_spec.value_size as usize).next_multiple_of(sys::page_size());
                if let Ok(region) = MmapRegion::map(map.as_fd(), len, 0, writable) {
                    regions.push((at, region));
                }
            }
        }
        Ok(Collection { maps, programs, variables: spec.variables, regions, arenas, struct_ops, _btf: btf })
    }

    /// The program called `name`.
    pub fn program(&self, name: &str) -> Result<&Program> {
        self.programs
            .iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| object_error(ObjectError::NotFound { kind: "program", name: name.to_owned() }))
    }

    /// The map called `name`.
    pub fn map(&self, name: &str) -> Result<&Map> {
        self.maps
            .iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| object_error(ObjectError::NotFound { kind: "map", name: name.to_owned() }))
    }

    /// The arena map `name` as this process sees it: memory shared with the programs, mapped
    /// at load at the address the object gives (`map_extra`), else where the kernel chose.
    pub fn arena(&self, name: &str) -> Result<&MmapRegion> {
        let at = self
            .maps
            .iter()
            .position(|m| m.name() == name)
            .ok_or_else(|| object_error(ObjectError::NotFound { kind: "map", name: name.to_owned() }))?;
        self.arenas.iter().find(|(i, _)| *i == at).map(|(_, region)| region).ok_or_else(|| Error::InvalidSpec {
            object: format!("map \"{name}\""),
            reason: "it is not an arena".to_owned(),
        })
    }

    /// Registers the struct_ops map `name` with the kernel (a TCP congestion control becomes
    /// selectable, …): a `.struct_ops.link` map through a new `bpf_link`, a `.struct_ops` map
    /// by writing its value. Dropping the handle unregisters it.
    pub fn register_struct_ops(&self, name: &str) -> Result<StructOps> {
        let at = self
            .maps
            .iter()
            .position(|m| m.name() == name)
            .ok_or_else(|| object_error(ObjectError::NotFound { kind: "map", name: name.to_owned() }))?;
        let map = &self.maps[at];
        match self.struct_ops.iter().find(|(i, _)| *i == at) {
            Some((_, image)) => StructOps::register_value(map, image),
            None => StructOps::attach(map),
        }
    }

    /// Every program, in the spec's order.
    pub fn programs(&self) -> impl Iterator<Item = &Program> {
        self.programs.iter()
    }

    /// Every map, in the spec's order.
    pub fn maps(&self) -> impl Iterator<Item = &Map> {
        self.maps.iter()
    }

    /// The live global variable called `name`: reads and writes go through shared memory, no
    /// `bpf()` call, when the kernel maps data sections (else through the map).
    pub fn variable(&self, name: &str) -> Result<Variable<'_>> {
        let spec = self
            .variables
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| object_error(ObjectError::NotFound { kind: "variable", name: name.to_owned() }))?;
        let at = self
            .maps
            .iter()
            .position(|m| m.name() == spec.section)
            .ok_or_else(|| object_error(ObjectError::NotFound { kind: "map", name: spec.section.clone() }))?;
        let region = self.regions.iter().find(|(i, _)| *i == at).map(|(_, r)| r);
        Ok(Variable { spec, map: &self.maps[at], region })
    }

    /// Pins every map under `dir` by name (maps pinned by their spec included); returns the
    /// paths. All or nothing: on failure the pins made here are removed.
    pub fn pin_maps(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        self.pin_each(dir, self.maps.iter().map(|m| (m.name(), |p: &Path| m.pin(p))))
    }

    /// Pins every program under `dir` by name (as `bpftool prog loadall` does); returns the
    /// paths. All or nothing.
    pub fn pin_programs(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        self.pin_each(dir, self.programs.iter().map(|p| (p.name(), |path: &Path| p.pin(path))))
    }

    fn pin_each<'a, F: Fn(&Path) -> Result<()>>(
        &self,
        dir: &Path,
        items: impl Iterator<Item = (&'a str, F)>,
    ) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            operation: "create pin directory",
            path: dir.to_owned(),
            source,
        })?;
        let mut pins = PinGuard(Vec::new());
        for (name, pin) in items {
            let path = dir.join(pin_name(name));
            pin(&path)?;
            pins.0.push(path);
        }
        Ok(std::mem::take(&mut pins.0))
    }

    /// Points slot `slot` of prog array `map` at `program`, atomically: a tail call running
    /// concurrently jumps to the old or the new program, never to nothing (the kernel
    /// re-patches direct jumps of constant-index tail calls). The collection keeps the prog
    /// array open for as long as it lives — the kernel empties a prog array when its last
    /// user-space reference closes.
    pub fn replace_tail_call(&self, map: &str, slot: u32, program: &Program) -> Result<()> {
        let array = self.map(map)?;
        if array.map_type() != Some(MapType::ProgArray) {
            return Err(Error::InvalidSpec {
                object: array.describe(),
                reason: "tail calls go through a prog_array map".to_owned(),
            });
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(&program.as_fd()) as u32;
        array
            .update(&slot.to_ne_bytes(), &fd.to_ne_bytes(), UpdateFlags::ANY)
            .map_err(|e| prog_array_hint(e, map, slot))
    }
}

/// The file name a map or program is pinned under: bpffs refuses names with a '.', so
/// `.rodata` pins as `_rodata` (libbpf does the same).
pub fn pin_name(name: &str) -> String {
    name.replace('.', "_")
}

/// Names the kernel's prog array rules when it refuses a program.
fn prog_array_hint(error: Error, map: &str, slot: u32) -> Error {
    match error.errno() {
        Some(Errno::EINVAL) => Error::InvalidSpec {
            object: format!("prog array \"{map}\" slot {slot}"),
            reason: "the kernel refused the program: every program of one prog array must share the program \
                     type, the attach type (checked since Linux 6.18), JIT state and XDP frags flag with the \
                     programs that call into it"
                .to_owned(),
        },
        Some(Errno::E2BIG) => Error::InvalidSpec {
            object: format!("prog array \"{map}\""),
            reason: format!("slot {slot} is past max_entries"),
        },
        _ => error,
    }
}

/// Writes a data map's initial image: the section bytes with each variable's value on top.
fn write_initial_data(map: &Map, map_spec: &MapSpec, spec: &CollectionSpec) -> Result<()> {
    let variables: Vec<&VariableSpec> = spec.variables.iter().filter(|v| v.section == map_spec.name).collect();
    let mut image = match &map_spec.contents {
        MapContents::Data(bytes) => bytes.clone(),
        _ if map_spec.name == KCONFIG_MAP => {
            kconfig_image(&spec.kconfig, map_spec.value_size as usize).map_err(object_error)?
        }
        _ if variables.is_empty() => return Ok(()),
        _ => Vec::new(),
    };
    image.resize(map_spec.value_size as usize, 0);
    for var in variables {
        let start = var.offset as usize;
        match image.get_mut(start..start + var.value.len()) {
            Some(slot) => slot.copy_from_slice(&var.value),
            None => {
                return Err(object_error(ObjectError::VariableType {
                    name: var.name.clone(),
                    given: format!("{} bytes", var.value.len()),
                    expected: format!("room in {} ({} bytes)", map_spec.name, map_spec.value_size),
                    section: var.section.clone(),
                    offset: var.offset,
                }))
            }
        }
    }
    let fresh_zeroes = image.iter().all(|&b| b == 0) && !map_spec.flags.contains(MapFlags::RDONLY_PROG);
    if !fresh_zeroes {
        map.update(&0u32.to_ne_bytes(), &image, UpdateFlags::ANY)?;
    }
    if map_spec.flags.contains(MapFlags::RDONLY_PROG) {
        map.freeze()?;
    }
    Ok(())
}

/// A global variable of a loaded collection.
#[derive(Debug)]
pub struct Variable<'c> {
    spec: &'c VariableSpec,
    map: &'c Map,
    region: Option<&'c MmapRegion>,
}

impl Variable<'_> {
    /// Its description (name, section, offset, type).
    pub fn spec(&self) -> &VariableSpec {
        self.spec
    }

    /// The current value's bytes, as the programs see them.
    pub fn get_bytes(&self) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.spec.value.len()];
        if let Some(region) = self.region {
            if region.read_value(self.spec.offset as usize, &mut out) {
                return Ok(out);
            }
        }
        let value = self.map.get(&0u32.to_ne_bytes())?.unwrap_or_default();
        let start = self.spec.offset as usize;
        if let Some(bytes) = value.get(start..start + out.len()) {
            out.copy_from_slice(bytes);
        }
        Ok(out)
    }

    /// The current value, as the programs see it.
    pub fn get<T: VariableValue>(&self) -> Result<T> {
        self.spec.decode(&self.get_bytes()?).map_err(object_error)
    }

    /// Writes a new value (type-checked like [`VariableSpec::set`]); constants cannot change
    /// after load (their map is frozen and the verifier has used their value).
    pub fn set<T: VariableValue>(&self, value: T) -> Result<()> {
        self.writable()?;
        let bytes = self.spec.encode(value).map_err(object_error)?;
        self.write(&bytes)
    }

    /// Writes raw bytes (only the size is checked, as [`VariableSpec::set_bytes`] does).
    pub fn set_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.writable()?;
        if bytes.len() as u32 != self.spec.size() {
            return Err(Error::InvalidSpec {
                object: format!("variable \"{}\"", self.spec.name),
                reason: format!("{} bytes given for {} ({} bytes)", bytes.len(), self.spec.ty, self.spec.size()),
            });
        }
        self.write(bytes)
    }

    fn writable(&self) -> Result<()> {
        if self.spec.constant {
            return Err(Error::InvalidSpec {
                object: format!("variable \"{}\"", self.spec.name),
                reason: format!("it is a constant in {}, frozen at load", self.spec.section),
            });
        }
        Ok(())
    }

    fn write(&self, bytes: &[u8]) -> Result<()> {
        if let Some(region) = self.region {
            if region.write_value(self.spec.offset as usize, bytes) {
                return Ok(());
            }
        }
        let key = 0u32.to_ne_bytes();
        let mut image = self.map.get(&key)?.unwrap_or_else(|| vec![0; self.map.value_size()]);
        let start = self.spec.offset as usize;
        image[start..start + bytes.len()].copy_from_slice(bytes);
        self.map.update(&key, &image, UpdateFlags::ANY)
    }
}
