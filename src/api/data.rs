//! Per-connection data: a value of any type a program attaches to a connection, handed
//! to every later callback through [`Context`](crate::Context) and dropped when the
//! connection ends. A program that attaches nothing pays nothing per connection.

use crate::server::connection::ConnId;
use std::any::Any;
use std::collections::HashMap;

/// The values attached to connections.
#[derive(Default)]
pub(crate) struct Data {
    values: HashMap<ConnId, Box<dyn Any + Send>>,
}

impl Data {
    /// Attaches `value` to `id`, replacing what was there.
    pub fn set<T: Send + 'static>(&mut self, id: ConnId, value: T) {
        self.values.insert(id, Box::new(value));
    }

    /// The value of type `T` attached to `id`.
    pub fn get<T: Send + 'static>(&self, id: ConnId) -> Option<&T> {
        self.values.get(&id)?.downcast_ref()
    }

    /// The value of type `T` attached to `id`, to change.
    pub fn get_mut<T: Send + 'static>(&mut self, id: ConnId) -> Option<&mut T> {
        self.values.get_mut(&id)?.downcast_mut()
    }

    /// Detaches and returns the value of type `T` attached to `id`.
    pub fn take<T: Send + 'static>(&mut self, id: ConnId) -> Option<T> {
        match self.values.remove(&id)?.downcast() {
            Ok(value) => Some(*value),
            Err(other) => {
                self.values.insert(id, other);
                None
            }
        }
    }

    /// Drops what is attached to `id` (its connection ended).
    pub fn forget(&mut self, id: ConnId) {
        self.values.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_typed_and_dropped_on_forget() {
        let mut data = Data::default();
        let (a, b) = (ConnId::from_u64(1), ConnId::from_u64(2));
        data.set(a, String::from("alice"));
        data.set(b, 7u32);
        assert_eq!(data.get::<String>(a).map(String::as_str), Some("alice"));
        assert_eq!(data.get::<u32>(a), None, "another type is not there");
        *data.get_mut::<u32>(b).unwrap() += 1;
        assert_eq!(
            data.take::<String>(b),
            None,
            "a wrong take leaves the value"
        );
        assert_eq!(data.take::<u32>(b), Some(8));
        data.forget(a);
        assert_eq!(data.get::<String>(a), None);
    }
}
