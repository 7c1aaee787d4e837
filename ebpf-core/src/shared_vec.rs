//! [`SharedVec`]: a `Vec` shared between copies until one of them is edited.

use std::sync::{Arc, OnceLock};

/// A `Vec<T>` shared between clones until one of them is edited (copy on write): cloning is a
/// reference count, and the first mutable access of a shared one copies it. Reads and edits
/// go through `Deref`/`DerefMut` to the `Vec`, so it reads like one.
///
/// It can carry a value `D` derived from the items, made at most once per version of the items
/// and shared by every clone of that version; an edit drops it (this crate uses it to keep a
/// program's kernel encoding with its instructions: `Instructions::encoded`).
///
/// Specs hold their bulky parts this way ([`Instructions`](crate::program::Instructions), a
/// collection's programs), so a spec copied per load — templating — copies next to nothing,
/// and a program's instructions are encoded for the kernel once, not once per load.
pub struct SharedVec<T, D = ()>(Arc<Versioned<T, D>>);

struct Versioned<T, D> {
    items: Vec<T>,
    derived: OnceLock<D>,
}

impl<T: Clone, D> Clone for Versioned<T, D> {
    /// A new version: the derived value is not carried over.
    fn clone(&self) -> Self {
        Versioned { items: self.items.clone(), derived: OnceLock::new() }
    }
}

impl<T, D> Default for SharedVec<T, D> {
    fn default() -> Self {
        Vec::new().into()
    }
}

impl<T, D> Clone for SharedVec<T, D> {
    fn clone(&self) -> Self {
        SharedVec(Arc::clone(&self.0))
    }
}

impl<T, D> SharedVec<T, D> {
    /// The vector, without a copy when this is its only holder.
    pub fn into_vec(self) -> Vec<T>
    where
        T: Clone,
    {
        Arc::try_unwrap(self.0).map_or_else(|shared| shared.items.clone(), |own| own.items)
    }

    /// The value derived from these items by `derive`, made on the first call for this version
    /// of the items and shared with every clone of it. Crate-private: every caller for one `D`
    /// must derive the same function of the items alone, or a later caller would read another's
    /// value (`Instructions::encoded` relies on it).
    pub(crate) fn derived(&self, derive: impl FnOnce(&[T]) -> D) -> &D {
        self.0.derived.get_or_init(|| derive(&self.0.items))
    }
}

impl<T, D> std::ops::Deref for SharedVec<T, D> {
    type Target = Vec<T>;

    fn deref(&self) -> &Vec<T> {
        &self.0.items
    }
}

impl<T: Clone, D> std::ops::DerefMut for SharedVec<T, D> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        let own = Arc::make_mut(&mut self.0);
        // The items may change from here on.
        own.derived.take();
        &mut own.items
    }
}

impl<T: std::fmt::Debug, D> std::fmt::Debug for SharedVec<T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.items.fmt(f)
    }
}

impl<T: PartialEq, D> PartialEq for SharedVec<T, D> {
    fn eq(&self, other: &Self) -> bool {
        self.0.items == other.0.items
    }
}

impl<T: Eq, D> Eq for SharedVec<T, D> {}

impl<T: std::hash::Hash, D> std::hash::Hash for SharedVec<T, D> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.items.hash(state)
    }
}

impl<T, D> From<Vec<T>> for SharedVec<T, D> {
    fn from(items: Vec<T>) -> SharedVec<T, D> {
        SharedVec(Arc::new(Versioned { items, derived: OnceLock::new() }))
    }
}

impl<T, D> FromIterator<T> for SharedVec<T, D> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> SharedVec<T, D> {
        Vec::from_iter(iter).into()
    }
}

impl<'a, T, D> IntoIterator for &'a SharedVec<T, D> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.items.iter()
    }
}

impl<'a, T: Clone, D> IntoIterator for &'a mut SharedVec<T, D> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        std::ops::DerefMut::deref_mut(self).iter_mut()
    }
}

impl<T: PartialEq, D> PartialEq<Vec<T>> for SharedVec<T, D> {
    fn eq(&self, other: &Vec<T>) -> bool {
        self.0.items == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_until_one_is_edited() {
        let original = SharedVec::<i32>::from(vec![1, 2, 3]);
        let mut copy = original.clone();
        assert!(std::ptr::eq(original.as_ptr(), copy.as_ptr()), "a clone shares the vector");
        copy.push(4);
        assert_eq!((original.len(), copy.len()), (3, 4));
        assert!(!std::ptr::eq(original.as_ptr(), copy.as_ptr()));
        assert_eq!(copy.clone().into_vec(), vec![1, 2, 3, 4]);
        for item in &mut copy {
            *item *= 10;
        }
        assert_eq!(copy, vec![10, 20, 30, 40]);
        assert_eq!(original, vec![1, 2, 3]);
    }

    #[test]
    fn a_derived_value_is_made_once_per_version_and_shared_by_its_clones() {
        let sum = |items: &[u32]| items.iter().sum::<u32>();
        let calls = std::cell::Cell::new(0);
        let counted = |items: &[u32]| {
            calls.set(calls.get() + 1);
            sum(items)
        };
        let original = SharedVec::<u32, u32>::from(vec![1, 2, 3]);
        assert_eq!(*original.derived(counted), 6);
        let mut copy = original.clone();
        assert_eq!(*copy.derived(counted), 6, "a clone shares it");
        assert_eq!(calls.get(), 1);
        copy.push(4);
        assert_eq!(*copy.derived(counted), 10, "an edit makes a new version");
        assert_eq!(*original.derived(counted), 6, "the original keeps its own");
        assert_eq!(calls.get(), 2);

        // An edit of the only holder, in place, drops the derived value too.
        let mut alone = SharedVec::<u32, u32>::from(vec![5]);
        assert_eq!(*alone.derived(sum), 5);
        alone[0] = 7;
        assert_eq!(*alone.derived(sum), 7);
    }
}
