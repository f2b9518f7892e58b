//! Bounded subscriptions and the per-key broadcast channels both buses
//! deliver through.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

/// What a subscriber gets next.
#[derive(Debug, Clone, PartialEq)]
pub enum Received<T> {
    Message(T),
    /// The subscriber fell behind and this many messages were skipped; it
    /// should catch up from the store. Memory stays bounded either way.
    Gap(u64),
    /// The bus is gone.
    Closed,
}

/// A live feed of messages. Buffers are bounded: a slow subscriber misses
/// messages (and is told so) rather than growing memory or slowing others.
pub struct Subscription<T> {
    receiver: broadcast::Receiver<T>,
    /// Keeps per-key bookkeeping alive; dropped after `receiver`.
    _cleanup: Option<Box<dyn Send + Sync>>,
}

impl<T: Clone> Subscription<T> {
    pub fn new(receiver: broadcast::Receiver<T>) -> Self {
        Self {
            receiver,
            _cleanup: None,
        }
    }

    /// A message already waiting, without waiting for one.
    pub fn try_recv(&mut self) -> Option<Received<T>> {
        match self.receiver.try_recv() {
            Ok(message) => Some(Received::Message(message)),
            Err(broadcast::error::TryRecvError::Lagged(skipped)) => Some(Received::Gap(skipped)),
            Err(broadcast::error::TryRecvError::Closed) => Some(Received::Closed),
            Err(broadcast::error::TryRecvError::Empty) => None,
        }
    }

    pub async fn recv(&mut self) -> Received<T> {
        match self.receiver.recv().await {
            Ok(message) => Received::Message(message),
            Err(broadcast::error::RecvError::Lagged(skipped)) => Received::Gap(skipped),
            Err(broadcast::error::RecvError::Closed) => Received::Closed,
        }
    }
}

/// Broadcast channels keyed by job, made on first subscribe and removed
/// when the last subscriber leaves, so idle jobs cost nothing.
pub(crate) struct Fanout<K, T> {
    channels: Arc<Mutex<HashMap<K, broadcast::Sender<T>>>>,
    capacity: usize,
}

impl<K, T> Fanout<K, T>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    T: Clone + Send + 'static,
{
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            channels: Arc::default(),
            capacity,
        }
    }

    fn lock(
        channels: &Mutex<HashMap<K, broadcast::Sender<T>>>,
    ) -> MutexGuard<'_, HashMap<K, broadcast::Sender<T>>> {
        // A panic while holding this lock leaves the map consistent (every
        // operation is a single insert, get or remove), so poison is moot.
        channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn subscribe(&self, key: K) -> Subscription<T> {
        let receiver = Self::lock(&self.channels)
            .entry(key.clone())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe();
        Subscription {
            receiver,
            _cleanup: Some(Box::new(Unsubscribe {
                channels: self.channels.clone(),
                key,
            })),
        }
    }

    /// Delivers to the key's subscribers, if it has any.
    pub(crate) fn send(&self, key: &K, message: T) {
        if let Some(sender) = Self::lock(&self.channels).get(key) {
            // No receivers is fine: nobody is watching.
            let _ = sender.send(message);
        }
    }

    /// Delivers a message made for each key to that key's subscribers.
    pub(crate) fn send_each(&self, message: impl Fn(&K) -> T) {
        for (key, sender) in Self::lock(&self.channels).iter() {
            let _ = sender.send(message(key));
        }
    }

    #[cfg(test)]
    pub(crate) fn keys(&self) -> usize {
        Self::lock(&self.channels).len()
    }
}

struct Unsubscribe<K: Eq + Hash, T> {
    channels: Arc<Mutex<HashMap<K, broadcast::Sender<T>>>>,
    key: K,
}

impl<K: Eq + Hash, T> Drop for Unsubscribe<K, T> {
    fn drop(&mut self) {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The subscription's receiver was dropped just before this guard.
        if channels
            .get(&self.key)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn channels_go_away_with_their_last_subscriber() {
        let fanout: Fanout<u32, &str> = Fanout::new(4);
        let mut a = fanout.subscribe(1);
        let b = fanout.subscribe(1);
        assert_eq!(fanout.keys(), 1);
        fanout.send(&1, "hello");
        fanout.send(&2, "nobody listens");
        assert_eq!(a.recv().await, Received::Message("hello"));
        drop(b);
        assert_eq!(fanout.keys(), 1);
        drop(a);
        assert_eq!(fanout.keys(), 0);
    }

    #[tokio::test]
    async fn slow_subscribers_are_told_of_the_gap() {
        let fanout: Fanout<u32, u32> = Fanout::new(2);
        let mut slow = fanout.subscribe(1);
        for n in 0..5 {
            fanout.send(&1, n);
        }
        assert_eq!(slow.recv().await, Received::Gap(3));
        assert_eq!(slow.recv().await, Received::Message(3));
    }
}
