//! The events of one watch response, shared without copying between the watchers that
//! receive the same change (coalesced watches): one allocation however many watchers get it.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use etcd_proto::mvccpb::Event;

/// The events of a [`WatchResponse`](crate::WatchResponse), in revision order. Reads like a
/// slice (`len`, `iter`, indexing, `for e in &events`); a response delivered to many coalesced
/// watchers holds one shared copy, so cloning is cheap. [`Events::into_vec`] gives an owned
/// vector (copying only when the events are shared).
#[derive(Clone)]
pub struct Events(Repr);

#[derive(Clone)]
enum Repr {
    Owned(Vec<Event>),
    /// `all[start..]`: the part of a shared batch this watcher has not seen yet.
    Shared {
        all: Arc<[Event]>,
        start: usize,
    },
}

impl Events {
    /// No events.
    pub fn new() -> Events {
        Events(Repr::Owned(Vec::new()))
    }

    /// The events from index `start` of a shared batch.
    pub(crate) fn shared(all: Arc<[Event]>, start: usize) -> Events {
        let start = start.min(all.len());
        Events(Repr::Shared { all, start })
    }

    /// The events as a slice.
    pub fn as_slice(&self) -> &[Event] {
        match &self.0 {
            Repr::Owned(v) => v,
            Repr::Shared { all, start } => &all[*start..],
        }
    }

    /// The events for changing in place (copied first when they are shared, like
    /// `Cow::to_mut`).
    pub fn to_mut(&mut self) -> &mut Vec<Event> {
        if let Repr::Shared { all, start } = &self.0 {
            self.0 = Repr::Owned(all[*start..].to_vec());
        }
        match &mut self.0 {
            Repr::Owned(v) => v,
            Repr::Shared { .. } => unreachable!("made owned above"),
        }
    }

    /// The events as an owned vector (a copy when they are shared with other watchers).
    pub fn into_vec(self) -> Vec<Event> {
        match self.0 {
            Repr::Owned(v) => v,
            Repr::Shared { all, start } => all[start..].to_vec(),
        }
    }
}

impl Default for Events {
    fn default() -> Events {
        Events::new()
    }
}

impl Deref for Events {
    type Target = [Event];

    fn deref(&self) -> &[Event] {
        self.as_slice()
    }
}

impl AsRef<[Event]> for Events {
    fn as_ref(&self) -> &[Event] {
        self.as_slice()
    }
}

impl From<Vec<Event>> for Events {
    fn from(events: Vec<Event>) -> Events {
        Events(Repr::Owned(events))
    }
}

impl From<Events> for Vec<Event> {
    fn from(events: Events) -> Vec<Event> {
        events.into_vec()
    }
}

impl FromIterator<Event> for Events {
    fn from_iter<I: IntoIterator<Item = Event>>(iter: I) -> Events {
        Events(Repr::Owned(iter.into_iter().collect()))
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl IntoIterator for Events {
    type Item = Event;
    type IntoIter = std::vec::IntoIter<Event>;

    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl PartialEq for Events {
    fn eq(&self, other: &Events) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl PartialEq<Vec<Event>> for Events {
    fn eq(&self, other: &Vec<Event>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl PartialEq<[Event]> for Events {
    fn eq(&self, other: &[Event]) -> bool {
        self.as_slice() == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_proto::mvccpb::KeyValue;

    fn ev(rev: i64) -> Event {
        Event {
            kv: Some(KeyValue {
                mod_revision: rev,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn shared_suffix_reads_like_a_slice() {
        let all: Arc<[Event]> = vec![ev(1), ev(2), ev(3)].into();
        let tail = Events::shared(all.clone(), 1);
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[0], ev(2));
        assert_eq!(tail, vec![ev(2), ev(3)]);
        assert_eq!((&tail).into_iter().count(), 2);
        assert_eq!(tail.clone().into_vec(), vec![ev(2), ev(3)]);
        // Past the end is empty, not a panic.
        assert!(Events::shared(all, 7).is_empty());
        assert_eq!(Events::from(vec![ev(4)]).into_vec(), vec![ev(4)]);
    }
}
