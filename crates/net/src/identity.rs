//! Who a certificate names.
//!
//! Convention: a node's certificate carries its node id (`n1`, `n2`, ...) as the Subject Common Name, and a
//! user's client certificate carries the user name there. Its Subject Alternative Names list the host names
//! and addresses it is reached at, which is what TLS verifies against the URL dialled; the Common Name is
//! what binds a verified connection to one node or user.

/// The Subject Common Name of a DER-encoded X.509 certificate; `None` if it does not parse, or has no
/// Common Name, or it is not UTF-8, or it has more than one.
pub fn common_name(certificate_der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(certificate_der).ok()?;
    let mut names = certificate.subject().iter_common_name();
    let name = names.next()?.as_str().ok()?.to_owned();
    if names.next().is_some() {
        return None;
    }
    Some(name)
}
