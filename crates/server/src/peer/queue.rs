//! A bounded message queue that drops its oldest message when full.
//!
//! Raft tolerates loss, and of two queued messages to a slow or unreachable peer the newer one is the more
//! useful (a newer heartbeat, a later Append that the follower would ask for anyway), so an overflow evicts
//! the head rather than refusing the new message. Messages wait here while the lane is disconnected.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tally_raft::Message;
use tokio::sync::Notify;

/// The queue between [`super::PeerTransport::send`] and one lane's connection task.
///
/// Invariant: `messages.len() <= capacity`.
#[derive(Debug)]
pub(crate) struct LaneQueue {
    /// Messages not yet taken by the connection task, oldest first.
    messages: Mutex<VecDeque<Message>>,
    /// Wakes the connection task when a message arrives.
    notify: Notify,
    /// The most messages held at once.
    capacity: usize,
    /// Messages evicted by an overflow, shared with the transport's total.
    dropped: Arc<AtomicU64>,
}

impl LaneQueue {
    /// An empty queue of at most `capacity` messages, counting evictions into `dropped`.
    pub(crate) fn new(capacity: usize, dropped: Arc<AtomicU64>) -> LaneQueue {
        assert!(capacity > 0, "a lane queue must hold at least one message");
        LaneQueue { messages: Mutex::new(VecDeque::new()), notify: Notify::new(), capacity, dropped }
    }

    /// Appends `message`, evicting (and counting) the oldest one if the queue is full. Never blocks.
    pub(crate) fn push(&self, message: Message) {
        let mut messages = self.messages.lock().unwrap_or_else(PoisonError::into_inner);
        if messages.len() == self.capacity {
            messages.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        messages.push_back(message);
        assert!(messages.len() <= self.capacity, "queue {} > capacity {}", messages.len(), self.capacity);
        drop(messages);
        self.notify.notify_one();
    }

    /// Takes the oldest message, if any.
    pub(crate) fn try_pop(&self) -> Option<Message> {
        self.messages.lock().unwrap_or_else(PoisonError::into_inner).pop_front()
    }

    /// Waits until the queue holds a message, without taking it.
    pub(crate) async fn wait_nonempty(&self) {
        while self.is_empty() {
            self.notify.notified().await;
        }
    }

    /// Whether no message is queued.
    fn is_empty(&self) -> bool {
        self.messages.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    /// Waits for a message and takes it. Cancel-safe: a message is only removed when this returns it.
    pub(crate) async fn pop(&self) -> Message {
        loop {
            if let Some(message) = self.try_pop() {
                return message;
            }
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use tally_raft::{LogIndex, MessageBody, NodeId, Term};

    use super::*;

    fn heartbeat(read_seq: u64) -> Message {
        let body = MessageBody::Heartbeat { commit: LogIndex(0), read_seq };
        Message { from: NodeId(1), to: NodeId(2), term: Term(1), body }
    }

    #[test]
    fn a_full_queue_evicts_its_oldest_message_and_counts_it() {
        let dropped = Arc::new(AtomicU64::new(0));
        let queue = LaneQueue::new(2, Arc::clone(&dropped));
        for seq in 0..5 {
            queue.push(heartbeat(seq));
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
        assert_eq!(queue.try_pop(), Some(heartbeat(3)));
        assert_eq!(queue.try_pop(), Some(heartbeat(4)));
        assert_eq!(queue.try_pop(), None);
    }
}
