//! [`SharedStr`]: an immutable string shared between copies.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// An immutable string shared between copies: cloning it is a reference count. Names in
/// specs are `SharedStr`s, so a spec copied per load, and the handles loaded from it, share
/// their names instead of copying them. It reads and compares like a `&str`.
///
/// ```
/// use ebpf_core::SharedStr;
///
/// let name = SharedStr::from("xdp_main");
/// let copy = name.clone();
/// assert_eq!(copy, "xdp_main");
/// assert_eq!(String::from("xdp_main"), copy);
/// assert!(copy.starts_with("xdp"));
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SharedStr(Arc<str>);

impl SharedStr {
    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SharedStr {
    fn default() -> Self {
        SharedStr::from("")
    }
}

impl Deref for SharedStr {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl From<&str> for SharedStr {
    fn from(text: &str) -> SharedStr {
        SharedStr(text.into())
    }
}

impl From<String> for SharedStr {
    fn from(text: String) -> SharedStr {
        SharedStr(text.into())
    }
}

impl From<&String> for SharedStr {
    fn from(text: &String) -> SharedStr {
        SharedStr(text.as_str().into())
    }
}

impl From<Arc<str>> for SharedStr {
    fn from(text: Arc<str>) -> SharedStr {
        SharedStr(text)
    }
}

impl From<SharedStr> for String {
    fn from(text: SharedStr) -> String {
        text.0.to_string()
    }
}

/// Comparisons with the other string types, both ways round.
macro_rules! compare_with {
    ($($other:ty),*) => {$(
        impl PartialEq<$other> for SharedStr {
            fn eq(&self, other: &$other) -> bool {
                *self.0 == **other
            }
        }

        impl PartialEq<SharedStr> for $other {
            fn eq(&self, other: &SharedStr) -> bool {
                **self == *other.0
            }
        }
    )*};
}

compare_with!(&str, String);

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<SharedStr> for str {
    fn eq(&self, other: &SharedStr) -> bool {
        *self == *other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_compares_like_a_str_and_clones_share() {
        let name = SharedStr::from(String::from("sock_ops"));
        let copy = name.clone();
        assert!(std::ptr::eq(name.as_ptr(), copy.as_ptr()), "a clone shares the text");
        assert_eq!(copy, "sock_ops");
        assert_eq!("sock_ops", copy);
        assert_eq!(*"sock_ops", copy);
        assert_eq!(copy, String::from("sock_ops"));
        assert_eq!(String::from("sock_ops"), copy);
        assert_ne!(copy, "sock_op");
        assert_eq!(format!("{copy} {copy:?}"), "sock_ops \"sock_ops\"");
        assert_eq!(String::from(copy), "sock_ops");
        let names: std::collections::HashSet<SharedStr> = [name].into();
        assert!(names.contains("sock_ops"), "looked up by &str");
        assert_eq!(SharedStr::default(), "");
    }
}
