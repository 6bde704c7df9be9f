//! What the peer transport tests share: transports on fresh loopback ports with short timings, sample
//! messages, and raw-socket helpers.
#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::time::Duration;

use tally_raft::{
    Entry, EntryPayload, LogIndex, Membership, Message, MessageBody, NodeId, SnapshotChunk, SnapshotMeta, Term,
};
use tally_server::frame;
use tally_server::peer::{PeerConfig, PeerIdentity, PeerTransport};
use tally_server::wire::{self, Hello, PeerFrame};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// The bound on every test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound on waiting for one message.
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);

pub const A: NodeId = NodeId(1);
pub const B: NodeId = NodeId(2);

/// The cluster token of the protected transports in these tests.
pub const TOKEN: &str = "correct horse battery staple";

/// A transport for `id` without a cluster token on a fresh loopback port, with short backoffs so tests
/// reconnect quickly.
pub async fn start(id: NodeId) -> (PeerTransport, mpsc::Receiver<Message>, SocketAddr) {
    start_with_token(id, None).await
}

/// Like [`start`], with `token` as the cluster token.
pub async fn start_with_token(id: NodeId, token: Option<&str>) -> (PeerTransport, mpsc::Receiver<Message>, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (transport, inbox) = PeerTransport::start(id, identity(id, token), listener, test_config(), None);
    (transport, inbox, addr)
}

/// What node `id` of these tests tells its peers.
pub fn identity(id: NodeId, token: Option<&str>) -> PeerIdentity {
    PeerIdentity { client_url: client_url(id), peer_url: peer_url(id), token: token.map(str::to_owned) }
}

/// The client URL node `id` advertises in these tests (never dialled: only carried in hellos).
pub fn client_url(id: NodeId) -> String {
    format!("http://node-{}.tally.test:7001", id.0)
}

/// The peer URL node `id` advertises in these tests (never dialled: only carried in hellos).
pub fn peer_url(id: NodeId) -> String {
    format!("http://node-{}.tally.test:7101", id.0)
}

/// Tells `transport` that node `id` listens on `addr`.
pub fn set_peer(transport: &PeerTransport, id: NodeId, addr: SocketAddr) {
    transport.set_peer(id, format!("http://{addr}")).expect("a valid peer URL");
}

pub fn test_config() -> PeerConfig {
    PeerConfig {
        reconnect_backoff_min: Duration::from_millis(10),
        reconnect_backoff_max: Duration::from_millis(100),
        admission_timeout: Duration::from_millis(300),
        ..PeerConfig::default()
    }
}

pub fn heartbeat(from: NodeId, to: NodeId, read_seq: u64) -> Message {
    Message { from, to, term: Term(3), body: MessageBody::Heartbeat { commit: LogIndex(7), read_seq } }
}

pub fn append(from: NodeId, to: NodeId) -> Message {
    let entries =
        vec![Entry { term: Term(3), index: LogIndex(8), payload: EntryPayload::Command(b"put k v".to_vec()) }];
    let body = MessageBody::Append {
        prev_log_index: LogIndex(7),
        prev_log_term: Term(3),
        entries,
        leader_commit: LogIndex(7),
    };
    Message { from, to, term: Term(3), body }
}

pub fn snapshot_chunk(from: NodeId, to: NodeId, data_bytes: usize) -> Message {
    let chunk = SnapshotChunk {
        meta: SnapshotMeta { index: LogIndex(100), term: Term(3), membership: Membership::with_voters([A, B]) },
        offset: 0,
        data: vec![0xab; data_bytes],
        total_len: data_bytes as u64,
        checksum: 0x1234_5678,
        done: true,
    };
    Message { from, to, term: Term(3), body: MessageBody::InstallSnapshot(chunk) }
}

pub async fn receive(inbox: &mut mpsc::Receiver<Message>) -> Message {
    timeout(RECEIVE_TIMEOUT, inbox.recv()).await.expect("message in time").expect("inbox open")
}

/// Sends 100 heartbeats and an Append from `from` to `to`, and checks they arrive in order.
pub async fn exchange(sender: &PeerTransport, from: NodeId, to: NodeId, inbox: &mut mpsc::Receiver<Message>) {
    let sent: Vec<Message> = (0..100).map(|seq| heartbeat(from, to, seq)).chain([append(from, to)]).collect();
    for message in &sent {
        sender.send(message.clone());
    }
    for expected in &sent {
        assert_eq!(&receive(inbox).await, expected);
    }
}

/// Whether the transport closes `stream`: a read ends (end of stream or reset) instead of timing out.
pub async fn closed_by_transport(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 16];
    matches!(timeout(RECEIVE_TIMEOUT, stream.read(&mut buffer)).await, Ok(Ok(0) | Err(_)))
}

/// Reads exactly one frame from a raw connection (nothing past it) and decodes it.
pub async fn read_frame(stream: &mut TcpStream) -> PeerFrame {
    let mut header = [0u8; frame::HEADER_BYTES];
    stream.read_exact(&mut header).await.expect("frame header");
    let length = u32::from_le_bytes(header[5..9].try_into().expect("4 bytes")) as usize;
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await.expect("frame payload");
    let mut decoder = frame::FrameDecoder::new(PeerConfig::default().max_frame_bytes);
    decoder.push(&header);
    decoder.push(&payload);
    let payload = decoder.next_frame().expect("valid frame").expect("whole frame");
    wire::decode_frame(&payload).expect("valid payload")
}

/// The hello that node `id` of these tests opens its connections with, when its cluster token is `token`.
pub fn hello(id: NodeId, token: Option<&str>) -> Hello {
    let PeerIdentity { client_url, peer_url, token } = identity(id, token);
    Hello { from: id, client_url, peer_url, token }
}

/// Waits until `transport` has refused at least `count` connections in all.
pub async fn wait_for_rejections(transport: &PeerTransport, count: u64) {
    let counted = async {
        while transport.rejected_connections() < count {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(RECEIVE_TIMEOUT, counted).await.expect("connections refused in time");
}
