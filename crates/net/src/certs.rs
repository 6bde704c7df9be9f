//! Certificates for a cluster, made with rcgen: a CA, a certificate per node and per user, following the
//! team's convention (see [`crate::identity`]).
//!
//! ```text
//!  init(dir, plan) ──ca.pem exists? ──no / --force──▶ Authority::generate ──▶ ca.pem, ca-key.pem
//!                                    └─yes──▶ Authority::load (reuse: nodes already issued keep trusting it)
//!                 ──for each node──▶ issue_node(nN, hosts) ──▶ nN.pem, nN-key.pem (skipped if present)
//!                 ──for each user──▶ issue_user(NAME)      ──▶ NAME.pem, NAME-key.pem (skipped if present)
//! ```
//!
//! - A node's certificate: Common Name = the node id; Subject Alternative Names = `localhost`, `127.0.0.1`,
//!   `::1`, the node id as a DNS name, and the extra hosts; extended key usages serverAuth and clientAuth, so
//!   one certificate serves its client port, its peer port and its outbound calls.
//! - A user's certificate: Common Name = the user name; clientAuth only.
//! - Keys are ECDSA P-256; key files are written with mode 0600, certificates 0644.
//! - Validity: the CA for [`CA_VALIDITY_DAYS`], the others for [`LEAF_VALIDITY_DAYS`], from one hour ago (a
//!   little clock skew between hosts must not make a fresh certificate "not yet valid").

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// How long a generated CA is valid: ten years.
pub const CA_VALIDITY_DAYS: u64 = 3650;
/// How long a generated node or user certificate is valid: about two years.
pub const LEAF_VALIDITY_DAYS: u64 = 825;
/// How far before now a certificate's validity starts, for clock skew between hosts.
const BACKDATE: Duration = Duration::from_secs(3600);

/// The CA certificate file in a certificate directory.
pub const CA_FILE: &str = "ca.pem";
/// The CA key file in a certificate directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertsError {
    /// rcgen refused the parameters (a name that cannot be a DNS name, say).
    #[error("cannot make the certificate for {name}: {detail}")]
    Generate {
        /// The certificate's Common Name.
        name: String,
        /// What rcgen said.
        detail: String,
    },
    /// A name is not usable as a node id, user name or host.
    #[error("bad {what} {name:?}: {reason}")]
    BadName {
        /// `node id`, `user name` or `host`.
        what: &'static str,
        /// The name as given.
        name: String,
        /// Why.
        reason: String,
    },
    /// The existing CA files cannot be read or used.
    #[error("cannot use the existing CA in {dir}: {detail} (pass --force to make a new CA)")]
    ExistingCa {
        /// The certificate directory.
        dir: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub certificate_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    /// Never shows the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("certificate_pem", &self.certificate_pem).field("key_pem", &"<secret>").finish()
    }
}

/// What a leaf certificate says: its name, where it may be dialled, what it may do and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafSpec {
    /// The Subject Common Name: a node id or a user name.
    pub common_name: String,
    /// Subject Alternative Names: DNS names or IP addresses.
    pub alt_names: Vec<String>,
    /// May serve TLS (serverAuth).
    pub server_auth: bool,
    /// May authenticate as a client (clientAuth).
    pub client_auth: bool,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

impl LeafSpec {
    /// A node's certificate (module doc): valid from an hour ago for [`LEAF_VALIDITY_DAYS`].
    pub fn node(node_id: &str, extra_hosts: &[String]) -> LeafSpec {
        let mut alt_names: Vec<String> = ["localhost", "127.0.0.1", "::1", node_id].map(String::from).to_vec();
        for host in extra_hosts {
            if !alt_names.contains(host) {
                alt_names.push(host.clone());
            }
        }
        let (not_before, not_after) = validity(LEAF_VALIDITY_DAYS);
        LeafSpec {
            common_name: node_id.to_string(),
            alt_names,
            server_auth: true,
            client_auth: true,
            not_before,
            not_after,
        }
    }

    /// A user's client certificate: Common Name = `user`, clientAuth only.
    pub fn user(user: &str) -> LeafSpec {
        let (not_before, not_after) = validity(LEAF_VALIDITY_DAYS);
        LeafSpec {
            common_name: user.to_string(),
            alt_names: Vec::new(),
            server_auth: false,
            client_auth: true,
            not_before,
            not_after,
        }
    }
}

/// From an hour ago to `days` from now.
fn validity(days: u64) -> (SystemTime, SystemTime) {
    let now = SystemTime::now();
    (now - BACKDATE, now + Duration::from_secs(days * 24 * 3600))
}

/// A certificate authority that can issue node and user certificates.
pub struct Authority {
    /// The issuer (its name, key identifier and key).
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, PEM.
    certificate_pem: String,
}

impl std::fmt::Debug for Authority {
    /// Never shows the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").field("certificate_pem", &self.certificate_pem).finish_non_exhaustive()
    }
}

impl Authority {
    /// A new self-signed CA named `common_name`, valid for [`CA_VALIDITY_DAYS`].
    ///
    /// # Errors
    /// [`CertsError::Generate`].
    pub fn generate(common_name: &str) -> Result<Authority, CertsError> {
        let fail = |e: rcgen::Error| CertsError::Generate { name: common_name.to_string(), detail: e.to_string() };
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let (not_before, not_after) = validity(CA_VALIDITY_DAYS);
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let key = KeyPair::generate().map_err(fail)?;
        let certificate = params.self_signed(&key).map_err(fail)?;
        Ok(Authority { issuer: Issuer::new(params, key), certificate_pem: certificate.pem() })
    }

    /// The CA whose certificate and key are `certificate_pem` and `key_pem`.
    ///
    /// # Errors
    /// [`CertsError::Generate`] if either does not parse.
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<Authority, CertsError> {
        let fail = |e: rcgen::Error| CertsError::Generate { name: "the CA".to_string(), detail: e.to_string() };
        let key = KeyPair::from_pem(key_pem).map_err(fail)?;
        let issuer = Issuer::from_ca_cert_pem(certificate_pem, key).map_err(fail)?;
        Ok(Authority { issuer, certificate_pem: certificate_pem.to_string() })
    }

    /// The CA's certificate, PEM: what clients and peers trust (`--cacert`, `--tls-ca`).
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The CA's private key, PEM: keep it secret, and away from the nodes.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A node's certificate (see [`LeafSpec::node`]).
    ///
    /// # Errors
    /// [`CertsError::BadName`] for an id or host that is not a DNS name or address; [`CertsError::Generate`].
    pub fn issue_node(&self, node_id: &str, extra_hosts: &[String]) -> Result<Issued, CertsError> {
        check_name("node id", node_id)?;
        for host in extra_hosts {
            check_host(host)?;
        }
        self.issue(&LeafSpec::node(node_id, extra_hosts))
    }

    /// A user's client certificate (see [`LeafSpec::user`]).
    ///
    /// # Errors
    /// [`CertsError::BadName`]; [`CertsError::Generate`].
    pub fn issue_user(&self, user: &str) -> Result<Issued, CertsError> {
        check_name("user name", user)?;
        if is_node_id(user) {
            return Err(CertsError::BadName {
                what: "user name",
                name: user.to_string(),
                reason: "it has the form of a node id (n1, 2, ...), which only node certificates may carry".to_string(),
            });
        }
        self.issue(&LeafSpec::user(user))
    }

    /// Any leaf certificate, with a fresh key: for tests that need an expired one, or odd names.
    ///
    /// # Errors
    /// [`CertsError::Generate`].
    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued, CertsError> {
        let fail = |e: rcgen::Error| CertsError::Generate { name: spec.common_name.clone(), detail: e.to_string() };
        let mut params = CertificateParams::new(spec.alt_names.clone()).map_err(fail)?;
        params.distinguished_name = name(&spec.common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        if spec.server_auth {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if spec.client_auth {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        params.not_before = spec.not_before.into();
        params.not_after = spec.not_after.into();
        let key = KeyPair::generate().map_err(fail)?;
        let certificate = params.signed_by(&key, &self.issuer).map_err(fail)?;
        Ok(Issued { certificate_pem: certificate.pem(), key_pem: key.serialize_pem() })
    }
}

/// A distinguished name holding only a Common Name.
fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// A node id or user name: 1-64 of `[A-Za-z0-9_-]` (it becomes a file name and, for nodes, a DNS name).
fn check_name(what: &'static str, name: &str) -> Result<(), CertsError> {
    let bad = |reason: &str| CertsError::BadName { what, name: name.to_string(), reason: reason.to_string() };
    if name.is_empty() || name.len() > 64 {
        return Err(bad("it must be 1 to 64 characters"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(bad("only letters, digits, '-' and '_' are allowed"));
    }
    Ok(())
}

/// Whether `name` has the form of a node id: `n` and digits, or digits.
fn is_node_id(name: &str) -> bool {
    let digits = name.strip_prefix('n').unwrap_or(name);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// An extra host: an IP address or a DNS name.
fn check_host(host: &str) -> Result<(), CertsError> {
    let bad = |reason: &str| CertsError::BadName { what: "host", name: host.to_string(), reason: reason.to_string() };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(bad("expected a DNS name (e.g. db1.example.com) or an IP address"));
    }
    Ok(())
}

/// What `tally certs init` makes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitPlan {
    /// Node ids to issue certificates for (`n1`, `n2`, ...).
    pub nodes: Vec<String>,
    /// Extra host names or addresses every node certificate is valid for.
    pub hosts: Vec<String>,
    /// User names to issue client certificates for.
    pub users: Vec<String>,
    /// Make a new CA even if one exists, and reissue every named certificate.
    pub force: bool,
}

/// What [`init`] did with one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Written now.
    Written(PathBuf),
    /// Already there and left alone.
    Kept(PathBuf),
}

/// Makes (or completes) a certificate directory: the CA, then a certificate per node and per user.
///
/// An existing CA is reused, never overwritten, unless `plan.force`; so is an existing node or user
/// certificate. Returns what was written and what was kept, in order.
///
/// # Errors
/// See [`CertsError`]; names are checked before anything is written.
pub fn init(dir: &Path, plan: &InitPlan) -> Result<Vec<Outcome>, CertsError> {
    for node in &plan.nodes {
        check_name("node id", node)?;
    }
    for user in &plan.users {
        check_name("user name", user)?;
    }
    for host in &plan.hosts {
        check_host(host)?;
    }
    std::fs::create_dir_all(dir).map_err(|source| CertsError::Write { path: dir.to_path_buf(), source })?;
    let (ca_path, ca_key_path) = (dir.join(CA_FILE), dir.join(CA_KEY_FILE));
    let mut outcomes = Vec::new();
    let authority = if ca_path.exists() && !plan.force {
        let existing = |e: String| CertsError::ExistingCa { dir: dir.to_path_buf(), detail: e };
        let certificate = std::fs::read_to_string(&ca_path).map_err(|e| existing(format!("{CA_FILE}: {e}")))?;
        let key = std::fs::read_to_string(&ca_key_path).map_err(|e| existing(format!("{CA_KEY_FILE}: {e}")))?;
        let authority = Authority::from_pem(&certificate, &key).map_err(|e| existing(e.to_string()))?;
        outcomes.extend([Outcome::Kept(ca_path), Outcome::Kept(ca_key_path)]);
        authority
    } else {
        let authority = Authority::generate("Tally CA")?;
        write_file(&ca_key_path, &authority.key_pem(), true)?;
        write_file(&ca_path, authority.certificate_pem(), false)?;
        outcomes.extend([Outcome::Written(ca_path), Outcome::Written(ca_key_path)]);
        authority
    };
    let leaves = plan.nodes.iter().map(|n| (n, true)).chain(plan.users.iter().map(|u| (u, false)));
    for (name, is_node) in leaves {
        let (certificate_path, key_path) = leaf_paths(dir, name);
        if certificate_path.exists() && key_path.exists() && !plan.force {
            outcomes.extend([Outcome::Kept(certificate_path), Outcome::Kept(key_path)]);
            continue;
        }
        let issued = if is_node { authority.issue_node(name, &plan.hosts)? } else { authority.issue_user(name)? };
        write_file(&key_path, &issued.key_pem, true)?;
        write_file(&certificate_path, &issued.certificate_pem, false)?;
        outcomes.extend([Outcome::Written(certificate_path), Outcome::Written(key_path)]);
    }
    Ok(outcomes)
}

/// `DIR/NAME.pem` and `DIR/NAME-key.pem`.
pub fn leaf_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{name}.pem")), dir.join(format!("{name}-key.pem")))
}

/// Writes a file, replacing it; a secret gets mode 0600 from its creation on (never readable by others).
fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), CertsError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |source: std::io::Error| CertsError::Write { path: path.to_path_buf(), source };
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(if secret { 0o600 } else { 0o644 });
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(contents.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certificates_follow_the_convention() {
        let authority = Authority::generate("test CA").expect("CA");
        let issued = authority.issue_node("n2", &["db2.example.com".into(), "10.0.0.2".into()]).expect("node");
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(issued.certificate_pem.as_bytes());
        let der: rustls::pki_types::CertificateDer<'_> = der.expect("PEM");
        assert_eq!(crate::identity::common_name(&der).as_deref(), Some("n2"));
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("X.509");
        let names = parsed.subject_alternative_name().expect("valid").expect("present").value.general_names.len();
        assert_eq!(names, 6, "localhost, 127.0.0.1, ::1, n2 and the two extra hosts");
        let usage = parsed.extended_key_usage().expect("valid").expect("present").value;
        assert!(usage.server_auth && usage.client_auth, "a node certificate serves and calls");
        let user = authority.issue_user("alice").expect("user");
        let der: rustls::pki_types::CertificateDer<'_> =
            rustls::pki_types::pem::PemObject::from_pem_slice(user.certificate_pem.as_bytes()).expect("PEM");
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("X.509");
        let usage = parsed.extended_key_usage().expect("valid").expect("present").value;
        assert!(usage.client_auth && !usage.server_auth, "a user certificate only calls");
    }

    #[test]
    fn bad_names_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = InitPlan { nodes: vec!["n1".into(), "../evil".into()], ..InitPlan::default() };
        let error = init(dir.path(), &plan).expect_err("a path in a node id");
        assert!(error.to_string().contains("../evil"), "{error}");
        assert!(!dir.path().join(CA_FILE).exists(), "nothing written");
        let plan = InitPlan { hosts: vec!["bad host".into()], ..InitPlan::default() };
        assert!(init(dir.path(), &plan).is_err());
    }

    #[test]
    fn an_existing_ca_is_reused_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = InitPlan { nodes: vec!["n1".into()], ..InitPlan::default() };
        let first = init(dir.path(), &plan).expect("first");
        assert!(first.iter().all(|o| matches!(o, Outcome::Written(_))), "{first:?}");
        let ca = std::fs::read(dir.path().join(CA_FILE)).expect("ca");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("n1-key.pem")).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "keys are private");
        }
        let plan = InitPlan { nodes: vec!["n1".into(), "n2".into()], users: vec!["alice".into()], ..plan };
        let second = init(dir.path(), &plan).expect("second");
        assert!(second.contains(&Outcome::Kept(dir.path().join(CA_FILE))), "{second:?}");
        assert!(second.contains(&Outcome::Kept(dir.path().join("n1.pem"))), "{second:?}");
        assert!(second.contains(&Outcome::Written(dir.path().join("n2.pem"))), "{second:?}");
        assert!(second.contains(&Outcome::Written(dir.path().join("alice-key.pem"))), "{second:?}");
        assert_eq!(std::fs::read(dir.path().join(CA_FILE)).expect("ca"), ca, "the CA is untouched");
        let forced = init(dir.path(), &InitPlan { force: true, ..plan }).expect("forced");
        assert!(forced.contains(&Outcome::Written(dir.path().join(CA_FILE))), "{forced:?}");
        assert_ne!(std::fs::read(dir.path().join(CA_FILE)).expect("ca"), ca, "--force makes a new CA");
    }
}
