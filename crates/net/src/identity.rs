//! Who a certificate names.
//!
//! Convention: a node's certificate carries its node id (`n1`, `n2`, ...) as the Subject Common Name, and a
//! user's client certificate carries the user name there. Its Subject Alternative Names list the host names
//! and addresses it is reached at, which is what TLS verifies against the URL dialled; the Common Name is
//! what binds a verified connection to one node or user. Only a node's certificate has the serverAuth extended
//! key usage (a user's has clientAuth alone), so [`node_name`] tells a node from a user whose name happens to
//! look like a node id.

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

/// The Common Name of a DER-encoded node certificate: as [`common_name`], but `None` unless the certificate
/// carries the serverAuth extended key usage, which node certificates have and user certificates do not (a user
/// named `n2` must not pass for node n2).
pub fn node_name(certificate_der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(certificate_der).ok()?;
    let usage = certificate.extended_key_usage().ok()??;
    if !usage.value.server_auth {
        return None;
    }
    common_name(certificate_der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::Authority;

    #[test]
    fn a_user_certificate_never_names_a_node() {
        let authority = Authority::generate("Tally test CA").expect("CA");
        let node = authority.issue_node("n2", &[]).expect("node");
        let user = authority.issue(&crate::certs::LeafSpec::user("n2")).expect("user named like a node");
        let der = |pem: &str| {
            use rustls::pki_types::pem::PemObject;
            rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem").to_vec()
        };
        assert_eq!(node_name(&der(&node.certificate_pem)).as_deref(), Some("n2"));
        assert_eq!(common_name(&der(&user.certificate_pem)).as_deref(), Some("n2"));
        assert_eq!(node_name(&der(&user.certificate_pem)), None);
    }
}
