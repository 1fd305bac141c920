//! [`SessionResources`]: objects the processors of one session share.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

type Slot = Arc<dyn Any + Send + Sync>;

/// Objects shared by the processors of one session, by type and name: the
/// conversation the two context aggregators share, a tool registry the
/// application provides. Cheap to clone; clones are the same set.
///
/// Each session gets its own set, so nothing leaks between sessions. An
/// application can put objects in before the session is built (they are
/// then found by its processors' factories).
#[derive(Clone, Default)]
pub struct SessionResources {
    slots: Arc<Mutex<HashMap<(TypeId, String), Slot>>>,
}

impl fmt::Debug for SessionResources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.slots.lock().map_or(0, |s| s.len());
        f.debug_struct("SessionResources")
            .field("objects", &count)
            .finish()
    }
}

impl SessionResources {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `T` named `name`, made by `init` if there is none yet.
    pub fn get_or_insert_with<T: Any + Send + Sync>(
        &self,
        name: &str,
        init: impl FnOnce() -> T,
    ) -> Arc<T> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let key = (TypeId::of::<T>(), name.to_owned());
        if let Some(found) = slots
            .get(&key)
            .and_then(|s| Arc::clone(s).downcast::<T>().ok())
        {
            return found;
        }
        let value = Arc::new(init());
        slots.insert(key, Arc::clone(&value) as Slot);
        value
    }

    /// Puts `value` in as the `T` named `name`, replacing any earlier one.
    pub fn insert<T: Any + Send + Sync>(&self, name: &str, value: T) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.insert((TypeId::of::<T>(), name.to_owned()), Arc::new(value));
    }

    /// The `T` named `name`, if any.
    pub fn get<T: Any + Send + Sync>(&self, name: &str) -> Option<Arc<T>> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .get(&(TypeId::of::<T>(), name.to_owned()))
            .and_then(|s| Arc::clone(s).downcast::<T>().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_shared_by_type_and_name() {
        let resources = SessionResources::new();
        let a = resources.get_or_insert_with("x", || 1u32);
        let b = resources.clone().get_or_insert_with("x", || 2u32);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(*resources.get_or_insert_with("y", || 3u32), 3);
        assert_eq!(*resources.get_or_insert_with("x", || "text"), "text");
        assert!(resources.get::<u64>("x").is_none());
        resources.insert("x", 7u32);
        assert_eq!(resources.get::<u32>("x").as_deref(), Some(&7));
    }
}
