//! [`SharedVec`]: a `Vec` shared between copies until one of them is edited.

use std::sync::Arc;

/// A `Vec<T>` shared between clones until one of them is edited (copy on write): cloning is a
/// reference count, and the first mutable access of a shared one copies it. Reads and edits
/// go through `Deref`/`DerefMut` to the `Vec`, so it reads like one.
///
/// Specs hold their bulky parts this way ([`Instructions`](crate::program::Instructions), a
/// collection's programs), so a spec copied per load — templating — copies next to nothing.
#[derive(PartialEq, Eq, Hash)]
pub struct SharedVec<T>(Arc<Vec<T>>);

impl<T> Default for SharedVec<T> {
    fn default() -> Self {
        SharedVec(Arc::default())
    }
}

impl<T> Clone for SharedVec<T> {
    fn clone(&self) -> Self {
        SharedVec(Arc::clone(&self.0))
    }
}

impl<T> SharedVec<T> {
    /// The vector, without a copy when this is its only holder.
    pub fn into_vec(self) -> Vec<T>
    where
        T: Clone,
    {
        Arc::try_unwrap(self.0).unwrap_or_else(|shared| (*shared).clone())
    }
}

impl<T> std::ops::Deref for SharedVec<T> {
    type Target = Vec<T>;

    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Clone> std::ops::DerefMut for SharedVec<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        Arc::make_mut(&mut self.0)
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for SharedVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<T> From<Vec<T>> for SharedVec<T> {
    fn from(items: Vec<T>) -> SharedVec<T> {
        SharedVec(Arc::new(items))
    }
}

impl<T> FromIterator<T> for SharedVec<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> SharedVec<T> {
        Vec::from_iter(iter).into()
    }
}

impl<'a, T> IntoIterator for &'a SharedVec<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'a, T: Clone> IntoIterator for &'a mut SharedVec<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        Arc::make_mut(&mut self.0).iter_mut()
    }
}

impl<T: PartialEq> PartialEq<Vec<T>> for SharedVec<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        *self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_until_one_is_edited() {
        let original = SharedVec::from(vec![1, 2, 3]);
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
}
