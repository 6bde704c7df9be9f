//! How a node's messages leave it, and how time reaches it.

use tally_raft::Message;

/// Delivers messages to other nodes, best effort: a message may be lost, delayed, duplicated or reordered,
/// and the protocol tolerates all of it. `send` must not block on the network.
pub trait Transport {
    /// Queues `message` for delivery to `message.to`.
    fn send(&mut self, message: Message);
}

/// A transport that collects messages for the caller to deliver (the simulator, tests).
#[derive(Debug, Default)]
pub struct Outbox {
    /// Messages sent and not yet taken.
    pub messages: Vec<Message>,
}

impl Transport for Outbox {
    fn send(&mut self, message: Message) {
        self.messages.push(message);
    }
}

/// A source of time in milliseconds. Only its differences matter; it never goes back.
pub trait Clock {
    /// Milliseconds since some fixed origin.
    fn now_ms(&self) -> u64;
}

/// A clock the caller moves by hand (the simulator, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct ManualClock {
    /// The current time.
    pub now_ms: u64,
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms
    }
}
