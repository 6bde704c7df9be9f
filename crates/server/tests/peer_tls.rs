//! Mutual TLS between peers: certificates made in memory with rcgen (a cluster CA, node certificates naming
//! their id in the Common Name), rustls configs built directly. A correct peer is served; a peer with a
//! certificate from another CA, an expired one, a valid one of another node than its hello claims, and a
//! plain-TCP peer are each refused; a dialler refuses a server whose certificate names another node. Every test
//! is bounded in time.

mod peer_common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use peer_common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tally_raft::{Message, NodeId};
use tally_server::peer::{PeerTls, PeerTransport};
use tokio::net::TcpListener;
use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio::time::timeout;

/// A certificate authority of these tests.
struct Ca {
    /// Signs node certificates.
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    /// A new self-signed CA.
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        Ca { issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA") }
    }

    /// The CA's certificate, to trust.
    fn certificate(&self) -> CertificateDer<'static> {
        self.issuer.as_ref().der().clone()
    }

    /// A node certificate by the team's convention: the id as Common Name, loopback names as SANs, both
    /// serverAuth and clientAuth; `expired` makes it valid only in 2020.
    fn node(&self, id: NodeId, expired: bool) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let name = format!("n{}", id.0);
        let sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned(), name.clone()];
        let mut params = CertificateParams::new(sans).expect("node params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let key = KeyPair::generate().expect("node key");
        let certificate = params.signed_by(&key, &self.issuer).expect("signed node certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (certificate.der().clone(), key)
    }
}

/// The rustls configs of a node presenting `certificate` and trusting `trusted` (the cluster CA).
#[allow(deprecated)] // ring's provider, called explicitly, is the team's choice of crypto (no aws-lc)
fn peer_tls(
    trusted: &CertificateDer<'static>,
    certificate: (CertificateDer<'static>, PrivateKeyDer<'static>),
) -> PeerTls {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).expect("a valid CA certificate");
    let roots = Arc::new(roots);
    let (chain, key) = (vec![certificate.0], certificate.1);
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
            .build()
            .expect("client verifier");
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .expect("server config");
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client config");
    PeerTls { server: Arc::new(server), client: Arc::new(client) }
}

/// A transport for `id` on a fresh loopback port with `tls`.
async fn start_tls(id: NodeId, tls: Option<PeerTls>) -> (PeerTransport, mpsc::Receiver<Message>, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (transport, inbox) = PeerTransport::start(id, identity(id, None), listener, test_config(), tls);
    (transport, inbox, addr)
}

/// One of a transport's counters.
type Counter = fn(&PeerTransport) -> u64;

/// Waits until `count(transport)` reaches `at_least`.
async fn wait_for(transport: &PeerTransport, count: Counter, at_least: u64) {
    let counted = async {
        while count(transport) < at_least {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(RECEIVE_TIMEOUT, counted).await.expect("counted in time");
}

#[tokio::test]
async fn peers_with_certificates_of_the_cluster_ca_exchange_messages() {
    timeout(TEST_TIMEOUT, async {
        let ca = Ca::new("cluster CA");
        let (a, mut a_inbox, a_addr) = start_tls(A, Some(peer_tls(&ca.certificate(), ca.node(A, false)))).await;
        let (b, mut b_inbox, b_addr) = start_tls(B, Some(peer_tls(&ca.certificate(), ca.node(B, false)))).await;
        // By IP address one way, by host name the other: the certificates list both.
        a.set_peer(B, format!("https://localhost:{}", b_addr.port())).expect("a valid peer URL");
        set_peer(&b, A, a_addr);
        exchange(&a, A, B, &mut b_inbox).await;
        exchange(&b, B, A, &mut a_inbox).await;
        // The bulk lane is TLS too.
        a.send(snapshot_chunk(A, B, 256 * 1024));
        assert_eq!(receive(&mut b_inbox).await, snapshot_chunk(A, B, 256 * 1024));
        assert_eq!(b.client_url(A), Some(client_url(A)));
        for transport in [&a, &b] {
            assert_eq!((transport.rejected_connections(), transport.identity_mismatches()), (0, 0));
        }
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn peers_without_a_valid_certificate_of_their_own_id_are_refused() {
    timeout(TEST_TIMEOUT, async {
        let ca = Ca::new("cluster CA");
        let (b, mut b_inbox, b_addr) = start_tls(B, Some(peer_tls(&ca.certificate(), ca.node(B, false)))).await;

        // Each impostor dials B as A and tries to send it a heartbeat; B counts it and serves nothing.
        let other_ca = Ca::new("another CA");
        let impostors: [(&str, Option<PeerTls>, Counter); 4] = [
            // A certificate signed by another CA (it trusts B's CA, so only B can refuse it).
            (
                "another CA",
                Some(peer_tls(&ca.certificate(), other_ca.node(A, false))),
                PeerTransport::rejected_connections,
            ),
            ("expired", Some(peer_tls(&ca.certificate(), ca.node(A, true))), PeerTransport::rejected_connections),
            // A valid certificate of n3, with a hello claiming n1.
            (
                "another node's",
                Some(peer_tls(&ca.certificate(), ca.node(NodeId(3), false))),
                PeerTransport::identity_mismatches,
            ),
            ("plain TCP", None, PeerTransport::rejected_connections),
        ];
        for (what, tls, counter) in impostors {
            let before = counter(&b);
            let (impostor, _inbox, _) = start_tls(A, tls).await;
            set_peer(&impostor, B, b_addr);
            impostor.send(heartbeat(A, B, 1));
            wait_for(&b, counter, before + 1).await;
            impostor.shutdown().await;
            assert!(matches!(b_inbox.try_recv(), Err(TryRecvError::Empty)), "{what}: a message was delivered");
            assert_eq!(b.client_url(A), None, "{what}: a hello was recorded");
        }

        // The real A is served.
        let (a, _a_inbox, _) = start_tls(A, Some(peer_tls(&ca.certificate(), ca.node(A, false)))).await;
        set_peer(&a, B, b_addr);
        a.send(heartbeat(A, B, 2));
        assert_eq!(receive(&mut b_inbox).await, heartbeat(A, B, 2));
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}

#[tokio::test]
async fn a_dialler_refuses_a_server_whose_certificate_names_another_node() {
    timeout(TEST_TIMEOUT, async {
        let ca = Ca::new("cluster CA");
        // Listening where A believes B is: a member of the cluster, n3, with its own valid certificate.
        let (n3, mut n3_inbox, n3_addr) =
            start_tls(NodeId(3), Some(peer_tls(&ca.certificate(), ca.node(NodeId(3), false)))).await;
        let (a, _a_inbox, _) = start_tls(A, Some(peer_tls(&ca.certificate(), ca.node(A, false)))).await;
        set_peer(&a, B, n3_addr);
        for seq in 0..5 {
            a.send(heartbeat(A, B, seq));
        }
        // A never sends its hello or messages: n3 sees at most connections that end after the handshake.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(matches!(n3_inbox.try_recv(), Err(TryRecvError::Empty)), "A talked to the wrong node");
        assert_eq!(n3.client_url(A), None, "A sent its hello to the wrong node");
        a.shutdown().await;
        n3.shutdown().await;
    })
    .await
    .expect("test within its time bound");
}
