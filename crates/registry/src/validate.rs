//! Validation of what nodes send: node ids, cluster ids and `http://host:port` URLs.

use std::fmt;

use crate::Error;

/// Longest node id accepted.
pub const NODE_ID_LEN_MAX: usize = 64;

/// Longest cluster id accepted; the registry's own are 16 hex digits.
pub const CLUSTER_ID_LEN_MAX: usize = 64;

/// Longest URL accepted; a real `http://host:port` is far shorter.
pub const URL_LEN_MAX: usize = 256;

/// Longest host name accepted (DNS limit).
const HOST_LEN_MAX: usize = 253;

/// How much of a rejected input is echoed back in an error message.
const ECHO_LEN_MAX: usize = 80;

/// A validated node id such as `n1`.
///
/// Invariant: 1 to [`NODE_ID_LEN_MAX`] characters, each of `[A-Za-z0-9_-]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(String);

impl NodeId {
    /// Parses and validates a node id.
    ///
    /// # Errors
    /// [`Error::InvalidNodeId`] when it is empty, too long, or has a character outside `[A-Za-z0-9_-]`.
    pub fn parse(id: &str) -> Result<NodeId, Error> {
        check_name(id, NODE_ID_LEN_MAX).map_err(|reason| Error::InvalidNodeId { id: echo(id), reason })?;
        Ok(NodeId(id.to_string()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated cluster id: the one the registry hands out with a bootstrap claim, or the one a node says it
/// belongs to when it registers.
///
/// Invariant: 1 to [`CLUSTER_ID_LEN_MAX`] characters, each of `[A-Za-z0-9_-]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(String);

impl ClusterId {
    /// Parses and validates a cluster id.
    ///
    /// # Errors
    /// [`Error::InvalidClusterId`] when it is empty, too long, or has a character outside `[A-Za-z0-9_-]`.
    pub fn parse(id: &str) -> Result<ClusterId, Error> {
        check_name(id, CLUSTER_ID_LEN_MAX).map_err(|reason| Error::InvalidClusterId { id: echo(id), reason })?;
        Ok(ClusterId(id.to_string()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The reason `name` (a node or cluster id) is not 1 to `len_max` characters of `[A-Za-z0-9_-]`.
fn check_name(name: &str, len_max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".to_string());
    }
    if name.len() > len_max {
        return Err(format!("it is {} bytes long, the limit is {len_max}", name.len()));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return Err(format!("{bad:?} is not allowed; use only letters, digits, '_' and '-'"));
    }
    Ok(())
}

/// Checks that `url` is exactly `http://host:port` or `https://host:port`: a host name, IPv4 address or bracketed
/// IPv6 address, a port in 1..=65535, and nothing else (no user info, path, query or trailing slash).
/// `field` names the field in the error.
///
/// # Errors
/// [`Error::InvalidUrl`] saying what is wrong.
pub fn validate_url(field: &'static str, url: &str) -> Result<(), Error> {
    check_url(url).map_err(|reason| Error::InvalidUrl { field, url: echo(url), reason })
}

/// [`validate_url`] without the field name: the reason `url` is invalid.
fn check_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("it is empty".to_string());
    }
    if url.len() > URL_LEN_MAX {
        return Err(format!("it is {} bytes long, the limit is {URL_LEN_MAX}", url.len()));
    }
    let Some(authority) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return Err("it must start with http:// or https://".to_string());
    };
    if let Some(extra) = authority.find(['/', '?', '#']) {
        return Err(format!("nothing may follow the port, found {:?}", &authority[extra..]));
    }
    if authority.contains('@') {
        return Err("user info (user@) is not allowed".to_string());
    }
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err("the port is missing".to_string());
    };
    check_host(host)?;
    check_port(port)
}

/// The reason `host` is not a host name, IPv4 address or bracketed IPv6 address.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is missing".to_string());
    }
    if let Some(inner) = host.strip_prefix('[') {
        let Some(address) = inner.strip_suffix(']') else {
            return Err("an IPv6 address must be closed with ']'".to_string());
        };
        return match address.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("{address:?} is not an IPv6 address")),
        };
    }
    if host.len() > HOST_LEN_MAX {
        return Err(format!("the host is over {HOST_LEN_MAX} bytes"));
    }
    let labels_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    if !labels_ok {
        return Err(format!("{host:?} is not a valid host name or IPv4 address"));
    }
    let looks_numeric = host.chars().all(|c| c.is_ascii_digit() || c == '.');
    if looks_numeric && host.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(format!("{host:?} is not a valid IPv4 address"));
    }
    Ok(())
}

/// The reason `port` is not a decimal port in 1..=65535.
fn check_port(port: &str) -> Result<(), String> {
    if port.is_empty() {
        return Err("the port is missing".to_string());
    }
    if !port.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("the port {port:?} is not a number"));
    }
    match port.parse::<u16>() {
        Ok(0) => Err("the port must be 1..=65535, not 0".to_string()),
        Ok(_) => Ok(()),
        Err(_) => Err(format!("the port {port} is out of range 1..=65535")),
    }
}

/// `input` cut to at most [`ECHO_LEN_MAX`] characters, for error messages.
fn echo(input: &str) -> String {
    if input.chars().count() <= ECHO_LEN_MAX {
        input.to_string()
    } else {
        let mut cut: String = input.chars().take(ECHO_LEN_MAX).collect();
        cut.push_str("...");
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_validated() {
        for good in ["n1", "N_1-a", "0", &"a".repeat(NODE_ID_LEN_MAX)] {
            assert_eq!(NodeId::parse(good).map(|id| id.to_string()).ok().as_deref(), Some(good));
        }
        for bad in ["", "n 1", "n/1", "n.1", "ü", &"a".repeat(NODE_ID_LEN_MAX + 1)] {
            assert!(matches!(NodeId::parse(bad), Err(Error::InvalidNodeId { .. })), "{bad:?} accepted");
        }
    }

    #[test]
    fn cluster_ids_are_validated() {
        for good in ["0123456789abcdef", "prod_east-1", "c", &"a".repeat(CLUSTER_ID_LEN_MAX)] {
            assert_eq!(ClusterId::parse(good).map(|id| id.to_string()).ok().as_deref(), Some(good));
        }
        let bad = [
            ("", "empty"),
            ("a b", "' ' is not allowed"),
            ("a/b", "'/' is not allowed"),
            ("ü", "'ü' is not allowed"),
            (&"a".repeat(CLUSTER_ID_LEN_MAX + 1), "limit is 64"),
        ];
        for (id, why) in bad {
            let message = ClusterId::parse(id).map(|_| String::new()).unwrap_or_else(|e| e.to_string());
            assert!(message.contains("invalid cluster id"), "{id:?}: {message:?}");
            assert!(message.contains(why), "{id:?}: {message:?} should mention {why:?}");
        }
    }

    #[test]
    fn urls_are_validated_strictly() {
        for good in ["http://127.0.0.1:7001", "http://node-1.example.com:80", "http://[::1]:65535", "https://h:1"] {
            assert!(validate_url("peer_url", good).is_ok(), "{good:?} refused");
        }
        let bad = [
            ("", "empty"),
            ("127.0.0.1:7001", "http://"),
            ("ftp://h:1", "http://"),
            ("http://h", "port is missing"),
            ("http://h:", "port is missing"),
            ("http://:80", "host is missing"),
            ("http://h:0", "not 0"),
            ("http://h:65536", "out of range"),
            ("http://h:8x", "not a number"),
            ("http://h:80/", "nothing may follow"),
            ("http://h:80/x?y", "nothing may follow"),
            ("http://u@h:80", "user info"),
            ("http://999.1.1.1:80", "IPv4"),
            ("http://h_1:80", "host name"),
            ("http://-h:80", "host name"),
            ("http://[::1:80", "closed"),
            ("http://[zz]:80", "IPv6"),
        ];
        for (url, why) in bad {
            let message = validate_url("client_url", url).map(|()| String::new()).unwrap_or_else(|e| e.to_string());
            assert!(message.contains(why), "{url:?}: {message:?} should mention {why:?}");
            assert!(message.contains("client_url"), "{message:?} names the field");
        }
        let long = format!("http://{}:80", "a".repeat(URL_LEN_MAX));
        assert!(validate_url("client_url", &long).is_err());
    }
}
