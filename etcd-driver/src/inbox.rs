//! The channel from the driver to a watcher or a watch set: unbounded (the core bounds what a
//! watcher may hold), woken once per batch rather than once per item, and emptied by the
//! receiver with one lock per batch. A fan-out of one change to a thousand watchers of one
//! set is a thousand pushes and a single wake-up.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

struct Shared<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    queue: VecDeque<T>,
    /// The receiver waiting for an item; taken by the first push that follows.
    waker: Option<Waker>,
    senders: usize,
    receiver_gone: bool,
}

fn lock<T>(shared: &Shared<T>) -> MutexGuard<'_, State<T>> {
    // No code panics while holding the lock; a poisoned lock still holds a valid queue.
    shared.state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The sending half (the driver keeps one per watcher).
pub(crate) struct Sender<T>(Arc<Shared<T>>);

/// The receiving half.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// What the last lock took out of the shared queue.
    local: VecDeque<T>,
}

pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            waker: None,
            senders: 1,
            receiver_gone: false,
        }),
    });
    (
        Sender(shared.clone()),
        Receiver {
            shared,
            local: VecDeque::new(),
        },
    )
}

impl<T> Sender<T> {
    /// Queues `item`, or gives it back when the receiver is gone.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        let waker = {
            let mut state = lock(&self.0);
            if state.receiver_gone {
                return Err(item);
            }
            state.queue.push_back(item);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Sender<T> {
    /// Queues every item of `items` (emptying it) with one lock and at most one wake-up;
    /// when the receiver is gone they stay in `items`.
    pub(crate) fn send_all(&self, items: &mut Vec<T>) -> Result<(), ()> {
        let waker = {
            let mut state = lock(&self.0);
            if state.receiver_gone {
                return Err(());
            }
            state.queue.extend(items.drain(..));
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Identifies the channel: equal for senders of the same receiver.
    pub(crate) fn channel_id(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        lock(&self.0).senders += 1;
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = lock(&self.0);
            state.senders -= 1;
            if state.senders == 0 {
                state.waker.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item; `None` once every sender is gone and the queue is empty.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(item) = self.local.pop_front() {
            return Poll::Ready(Some(item));
        }
        let mut state = lock(&self.shared);
        if !state.queue.is_empty() {
            // Take the whole batch; the shared queue keeps the emptied buffer's capacity.
            std::mem::swap(&mut state.queue, &mut self.local);
            drop(state);
            return Poll::Ready(self.local.pop_front());
        }
        if state.senders == 0 {
            return Poll::Ready(None);
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let queued = {
            let mut state = lock(&self.shared);
            state.receiver_gone = true;
            state.waker = None;
            std::mem::take(&mut state.queue)
        };
        // Dropped outside the lock: an item's drop may do anything.
        drop(queued);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_batch_wakes_once_and_arrives_in_order() {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = channel();
        assert!(rx.poll_recv(&mut cx).is_pending());
        for i in 0..100 {
            tx.send(i).expect("receiver alive");
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        for i in 0..100 {
            assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(i)));
        }
        assert!(rx.poll_recv(&mut cx).is_pending());
        let tx2 = tx.clone();
        drop(tx);
        assert!(rx.poll_recv(&mut cx).is_pending(), "a sender is left");
        tx2.send(7).expect("receiver alive");
        drop(tx2);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(7)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn sending_to_a_dropped_receiver_gives_the_item_back() {
        let (tx, rx) = channel();
        tx.send(1).expect("receiver alive");
        assert_eq!(tx.channel_id(), tx.clone().channel_id());
        drop(rx);
        assert_eq!(tx.send(2), Err(2));
        let mut items = vec![3, 4];
        assert!(tx.send_all(&mut items).is_err());
        assert_eq!(items, vec![3, 4]);
    }

    #[test]
    fn send_all_keeps_order_after_single_sends() {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let (tx, mut rx) = channel();
        tx.send(1).expect("receiver alive");
        let mut items = vec![2, 3];
        tx.send_all(&mut items).expect("receiver alive");
        assert!(items.is_empty());
        for i in 1..=3 {
            assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(i)));
        }
    }
}
