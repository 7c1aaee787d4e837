//! Global variables as templating sees them: where each lives, what type it has, and the
//! value the next load will give it.

use std::fmt;

use ebpf_btf::{Btf, BtfKind};

use super::error::ObjectError;

/// A variable's type, reduced to what a value written into it is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VariableType {
    /// An integer of `size` bytes.
    Int {
        /// Bytes.
        size: u32,
        /// Signed.
        signed: bool,
    },
    /// `bool` (`_Bool`).
    Bool,
    /// A C enum of `size` bytes.
    Enum {
        /// Its name (empty for an anonymous enum).
        name: String,
        /// Bytes.
        size: u32,
    },
    /// Anything else (struct, array, pointer, float): raw bytes only.
    Other {
        /// The C spelling (`struct endpoint`, `char[16]`).
        name: String,
        /// Bytes.
        size: u32,
    },
    /// No BTF described the variable: only its size is known.
    Unknown {
        /// Bytes.
        size: u32,
    },
}

impl VariableType {
    /// Describes BTF type `id`.
    pub(super) fn from_btf(btf: &Btf, id: u32) -> VariableType {
        let size = btf.resolve_size(id).unwrap_or(0);
        let Some(ty) = btf.skip_mods_and_typedefs(id) else { return VariableType::Unknown { size } };
        match ty.kind() {
            Some(BtfKind::Int) => match ty.int() {
                Some(int) if int.bool => VariableType::Bool,
                Some(int) => VariableType::Int { size, signed: int.signed },
                None => VariableType::Unknown { size },
            },
            Some(BtfKind::Enum | BtfKind::Enum64) => VariableType::Enum { name: ty.name().to_owned(), size },
            Some(BtfKind::Struct) => VariableType::Other { name: format!("struct {}", ty.name()), size },
            Some(BtfKind::Union) => VariableType::Other { name: format!("union {}", ty.name()), size },
            Some(BtfKind::Array) => {
                let array = ty.array().expect("an array has array info");
                let elem = btf.skip_mods_and_typedefs(array.elem).map_or("?", |t| t.name());
                VariableType::Other { name: format!("{elem}[{}]", array.nelems), size }
            }
            Some(BtfKind::Ptr) => VariableType::Other { name: "pointer".to_owned(), size },
            Some(BtfKind::Float) => VariableType::Other { name: ty.name().to_owned(), size },
            _ => VariableType::Unknown { size },
        }
    }

    /// Bytes.
    pub fn size(&self) -> u32 {
        match self {
            VariableType::Bool => 1,
            VariableType::Int { size, .. }
            | VariableType::Enum { size, .. }
            | VariableType::Other { size, .. }
            | VariableType::Unknown { size } => *size,
        }
    }
}

impl fmt::Display for VariableType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VariableType::Int { size, signed } => {
                write!(f, "{}{}", if *signed { "i" } else { "u" }, u64::from(*size) * 8)
            }
            VariableType::Bool => f.write_str("bool"),
            VariableType::Enum { name, .. } if name.is_empty() => f.write_str("enum"),
            VariableType::Enum { name, .. } => write!(f, "enum {name}"),
            VariableType::Other { name, .. } => f.write_str(name),
            VariableType::Unknown { size } => write!(f, "{size} bytes"),
        }
    }
}

/// What kind of Rust value is written, for the type check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// An integer (fits integers and enums of the same size).
    Int,
    /// `bool` (fits `bool` and 1-byte integers).
    Bool,
    /// Raw bytes (fit any type of the same size).
    Bytes,
}

/// A Rust value that can be written into a variable.
pub trait VariableValue: Sized {
    /// How the value is checked against the variable's type.
    const KIND: ValueKind;
    /// The Rust spelling, for errors (`u32`).
    fn type_name() -> String;
    /// The value's bytes, in the machine's order (the BPF program runs on this machine).
    fn to_bytes(&self) -> Vec<u8>;
    /// The value read back from bytes of exactly its size.
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl VariableValue for $t {
            const KIND: ValueKind = ValueKind::Int;
            fn type_name() -> String {
                stringify!($t).to_owned()
            }
            fn to_bytes(&self) -> Vec<u8> {
                self.to_ne_bytes().to_vec()
            }
            fn from_bytes(bytes: &[u8]) -> Option<Self> {
                Some(<$t>::from_ne_bytes(bytes.try_into().ok()?))
            }
        }
    )*};
}
int_value!(u8, u16, u32, u64, i8, i16, i32, i64);

impl VariableValue for bool {
    const KIND: ValueKind = ValueKind::Bool;
    fn type_name() -> String {
        "bool".to_owned()
    }
    fn to_bytes(&self) -> Vec<u8> {
        vec![u8::from(*self)]
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [b] => Some(*b != 0),
            _ => None,
        }
    }
}

/// Arrays of wider integers (`__u64 counters[4]`), checked by size like byte arrays.
macro_rules! int_array_value {
    ($($t:ty),*) => {$(
        impl<const N: usize> VariableValue for [$t; N] {
            const KIND: ValueKind = ValueKind::Bytes;
            fn type_name() -> String {
                format!("[{}; {N}]", stringify!($t))
            }
            fn to_bytes(&self) -> Vec<u8> {
                self.iter().flat_map(|v| v.to_ne_bytes()).collect()
            }
            fn from_bytes(bytes: &[u8]) -> Option<Self> {
                let width = std::mem::size_of::<$t>();
                if bytes.len() != N * width {
                    return None;
                }
                Some(std::array::from_fn(|i| <$t>::from_ne_bytes(bytes[i * width..(i + 1) * width].try_into().expect("width"))))
            }
        }
    )*};
}

int_array_value!(u16, i16, u32, i32, u64, i64);

impl<const N: usize> VariableValue for [u8; N] {
    const KIND: ValueKind = ValueKind::Bytes;
    fn type_name() -> String {
        format!("[u8; {N}]")
    }
    fn to_bytes(&self) -> Vec<u8> {
        self.to_vec()
    }
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok()
    }
}

/// A global variable of an object: plain data, edited before load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariableSpec {
    /// Name.
    pub name: String,
    /// Data section (`.rodata`, `.data`, `.bss`, `.data.custom`…); the map of that name holds it.
    pub section: String,
    /// Byte offset in the section.
    pub offset: u32,
    /// Its type.
    pub ty: VariableType,
    /// True in a read-only section: the program sees the value as a constant, and the verifier
    /// prunes branches on it.
    pub constant: bool,
    /// The value the next load writes (the object's initial value until set).
    pub value: Vec<u8>,
}

impl VariableSpec {
    /// Size in bytes.
    pub fn size(&self) -> u32 {
        self.ty.size()
    }

    fn mismatch(&self, given: String) -> ObjectError {
        ObjectError::VariableType {
            name: self.name.clone(),
            given,
            expected: self.ty.to_string(),
            section: self.section.clone(),
            offset: self.offset,
        }
    }

    fn fits<T: VariableValue>(&self, len: usize) -> bool {
        len as u32 == self.size()
            && matches!(
                (T::KIND, &self.ty),
                (ValueKind::Bytes, _)
                    | (_, VariableType::Unknown { .. })
                    | (ValueKind::Int, VariableType::Int { .. } | VariableType::Enum { .. })
                    | (ValueKind::Bool, VariableType::Bool | VariableType::Int { size: 1, .. })
            )
    }

    /// `value`'s bytes, once checked against the variable's type (see [`VariableSpec::set`]).
    pub fn encode<T: VariableValue>(&self, value: T) -> Result<Vec<u8>, ObjectError> {
        let bytes = value.to_bytes();
        if !self.fits::<T>(bytes.len()) {
            return Err(self.mismatch(T::type_name()));
        }
        Ok(bytes)
    }

    /// `bytes` (a value of this variable, wherever it was read) as `T`, checked like
    /// [`VariableSpec::set`].
    pub fn decode<T: VariableValue>(&self, bytes: &[u8]) -> Result<T, ObjectError> {
        if !self.fits::<T>(bytes.len()) {
            return Err(self.mismatch(T::type_name()));
        }
        T::from_bytes(bytes).ok_or_else(|| self.mismatch(T::type_name()))
    }

    /// Sets the value, checked against the variable's type: an integer fits an integer or
    /// enum of its size, a `bool` a `bool` or 1-byte integer, `[u8; N]` anything of N bytes.
    pub fn set<T: VariableValue>(&mut self, value: T) -> Result<(), ObjectError> {
        self.value = self.encode(value)?;
        Ok(())
    }

    /// Sets raw bytes; only the size is checked.
    pub fn set_bytes(&mut self, bytes: &[u8]) -> Result<(), ObjectError> {
        if bytes.len() as u32 != self.size() {
            return Err(self.mismatch(format!("{} bytes", bytes.len())));
        }
        self.value = bytes.to_vec();
        Ok(())
    }

    /// Sets the value from text, as a command line or configuration file gives it: an integer
    /// (decimal, or hex with `0x`) for integer and enum variables, checked against the size
    /// and signedness; `true`/`false` (or 1/0) for `bool`; hex bytes (`0x0a0b…`) of exactly
    /// the variable's size for anything.
    pub fn set_text(&mut self, text: &str) -> Result<(), ObjectError> {
        let size = self.size() as usize;
        let refuse = |what: &str| self.mismatch(format!("{what} {text:?}"));
        if let (Some(hex), VariableType::Other { .. } | VariableType::Unknown { .. }) =
            (text.strip_prefix("0x"), &self.ty)
        {
            if hex.len() != size * 2 {
                return Err(refuse("hex bytes"));
            }
            let bytes: Option<Vec<u8>> =
                (0..size).map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect();
            return self.set_bytes(&bytes.ok_or_else(|| refuse("hex bytes"))?);
        }
        match &self.ty {
            VariableType::Bool => match text {
                "true" | "1" => self.set(true),
                "false" | "0" => self.set(false),
                _ => Err(refuse("text")),
            },
            VariableType::Int { .. } | VariableType::Enum { .. } | VariableType::Unknown { .. } => {
                let signed = matches!(self.ty, VariableType::Int { signed: true, .. });
                let value: i128 = match text.strip_prefix("0x") {
                    Some(hex) => i128::from_str_radix(hex, 16),
                    None => text.parse::<i128>(),
                }
                .map_err(|_| refuse("text"))?;
                let bits = size as u32 * 8;
                let (min, max) =
                    if signed { (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1) } else { (0, (1i128 << bits) - 1) };
                if bits == 0 || bits > 64 || value < min || value > max {
                    return Err(refuse("out-of-range integer"));
                }
                self.set_bytes(&(value as i64).to_ne_bytes()[..size])
            }
            VariableType::Other { .. } => Err(refuse("text (give hex bytes, 0x...)")),
        }
    }

    /// The value the next load writes, as `T` (checked like [`VariableSpec::set`]).
    pub fn get<T: VariableValue>(&self) -> Result<T, ObjectError> {
        self.decode(&self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port() -> VariableSpec {
        VariableSpec {
            name: "ENDPOINT_ID".into(),
            section: ".rodata".into(),
            offset: 8,
            ty: VariableType::Int { size: 2, signed: false },
            constant: true,
            value: vec![0, 0],
        }
    }

    #[test]
    fn a_value_of_the_wrong_size_is_refused_naming_both_types() {
        let mut v = port();
        let err = v.set(7u32).unwrap_err();
        assert_eq!(err.to_string(), "variable \"ENDPOINT_ID\": u32 does not fit u16 (.rodata+8)");
        assert_eq!(v.value, [0, 0], "a refused value changes nothing");
        v.set(7u16).unwrap();
        assert_eq!(v.get::<u16>().unwrap(), 7);
        assert!(v.set(true).is_err());
        v.set_bytes(&[1, 2]).unwrap();
        assert!(v.set_bytes(&[1]).is_err());
        v.set_text("0x1234").unwrap();
        assert_eq!(v.get::<u16>().unwrap(), 0x1234);
        v.set_text("65535").unwrap();
        assert_eq!(
            v.set_text("65536").unwrap_err().to_string(),
            "variable \"ENDPOINT_ID\": out-of-range integer \"65536\" does not fit u16 (.rodata+8)"
        );
        assert!(v.set_text("-1").is_err());
        assert!(v.set_text("seven").is_err());
    }
}
