use ebpf_btf::BtfError;

/// Why an ELF object could not be read into a [`CollectionSpec`](super::CollectionSpec), or a
/// spec could not be edited as asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// Not an ELF file the `object` crate can read.
    #[error("not a readable ELF object: {0}")]
    Elf(String),
    /// An ELF file, but not one for BPF (wrong machine, class or byte order).
    #[error("not a BPF object: {0}")]
    NotBpf(String),
    /// A section whose contents make no sense.
    #[error("section {section}: {reason}")]
    Section {
        /// The section name.
        section: String,
        /// What is wrong.
        reason: String,
    },
    /// A symbol that is missing or points somewhere impossible.
    #[error("symbol {symbol}: {reason}")]
    Symbol {
        /// The symbol (name or index).
        symbol: String,
        /// What is wrong.
        reason: String,
    },
    /// A relocation that cannot be applied.
    #[error("relocation in {section} at byte {offset}: {reason}")]
    Relocation {
        /// The section being relocated.
        section: String,
        /// Byte offset of the relocated instruction or value.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A map definition that cannot be read.
    #[error("map \"{map}\": {reason}")]
    Map {
        /// The map.
        map: String,
        /// What is wrong.
        reason: String,
    },
    /// A map type this library does not know.
    #[error("map \"{map}\": unknown map type {raw}")]
    UnknownMapType {
        /// The map.
        map: String,
        /// The number given.
        raw: u32,
    },
    /// The object's BTF or BTF.ext does not parse.
    #[error("{section}: {error}")]
    Btf {
        /// `.BTF` or `.BTF.ext`.
        section: &'static str,
        /// The parse error.
        error: BtfError,
    },
    /// No item of that name.
    #[error("no {kind} named \"{name}\" in the object")]
    NotFound {
        /// `program`, `map` or `variable`.
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// A value that does not fit a variable's type.
    #[error("variable \"{name}\": {given} does not fit {expected} ({section}+{offset})")]
    VariableType {
        /// The variable.
        name: String,
        /// The type of the value given.
        given: String,
        /// The variable's type.
        expected: String,
        /// Its section.
        section: String,
        /// Its offset in the section.
        offset: u32,
    },
    /// An extern the loader cannot satisfy.
    #[error("extern \"{name}\": {reason}")]
    Extern {
        /// The extern symbol.
        name: String,
        /// Why.
        reason: String,
    },
    /// A generated skeleton opened on an object that is not the one it was generated from.
    #[error("stale skeleton for {object}: {what}; regenerate it from this object")]
    StaleSkeleton {
        /// The object the skeleton was generated from.
        object: String,
        /// What differs.
        what: String,
    },
}
