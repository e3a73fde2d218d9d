//! Upstreams the gateway refuses unless told otherwise: link-local and cloud metadata addresses.
//!
//! A provider's upstream (`upstream.base_url` of its spec, or an override) decides where the
//! gateway sends every request it is given. One at a cloud metadata service (169.254.169.254 and
//! its relatives) would let anyone who can reach the gateway, or write a spec, read the host's
//! instance credentials. The check is on the URL as written: IPv4 in any form the system
//! resolver accepts (`169.254.169.254`, `2852039166`, `0xa9fea9fe`, ...), IPv6 (also with an
//! embedded IPv4 address) and the metadata host names. A host name that merely resolves to such
//! an address is not detected.
//!
//! ```
//! use specter::unstable::gateway::upstream_check::metadata_reason;
//! assert!(metadata_reason("http://169.254.169.254/latest/meta-data").is_some());
//! assert!(metadata_reason("https://api.openai.com").is_none());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::compile::rules::Provider;
use crate::compile::Source;
use crate::{Catalog, Diagnostic};

/// Host names of cloud metadata services.
const METADATA_HOSTS: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
];

/// The AWS metadata service's IPv6 address.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// The Alibaba Cloud metadata service's address (outside the link-local range).
const ALIBABA_METADATA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);

/// Why `url` points at a link-local or cloud metadata address, or `None` when it does not.
pub fn metadata_reason(url: &str) -> Option<String> {
    let host = host_of(url)?;
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let address = inner.split('%').next().unwrap_or(inner);
        return address.parse::<Ipv6Addr>().ok().and_then(v6_reason);
    }
    if let Some(v4) = parse_ipv4(&host) {
        return v4_reason(v4);
    }
    let name = host.trim_end_matches('.');
    METADATA_HOSTS
        .contains(&name)
        .then(|| format!("{name} is the host name of a cloud metadata service"))
}

/// The lower-cased host of an `http(s)://` URL (IPv6 in brackets), without user or port.
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = if host_port.starts_with('[') {
        host_port
            .find(']')
            .and_then(|end| host_port.get(..=end))
            .unwrap_or(host_port)
    } else {
        host_port.split(':').next().unwrap_or(host_port)
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// An IPv4 address in any form `inet_aton` accepts: one to four parts, each decimal, `0x` hex or
/// `0` octal, the last part filling the remaining bytes.
fn parse_ipv4(host: &str) -> Option<Ipv4Addr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<u64> = host
        .split('.')
        .map(parse_ipv4_part)
        .collect::<Option<_>>()?;
    let (last, leading) = parts.split_last()?;
    if leading.len() > 3 || leading.iter().any(|&p| p > 255) {
        return None;
    }
    let room = 8 * (4 - leading.len() as u32);
    if room < 64 && *last >= (1u64 << room) {
        return None;
    }
    let mut value: u64 = 0;
    for (i, part) in leading.iter().enumerate() {
        value |= part << (24 - 8 * i as u32);
    }
    u32::try_from(value | last).ok().map(Ipv4Addr::from)
}

fn parse_ipv4_part(part: &str) -> Option<u64> {
    if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok();
    }
    if part.len() > 1 && part.starts_with('0') {
        return u64::from_str_radix(part.get(1..)?, 8).ok();
    }
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

fn v4_reason(address: Ipv4Addr) -> Option<String> {
    if address.is_link_local() {
        return Some(format!(
            "{address} is link-local (169.254.0.0/16), where cloud metadata services answer"
        ));
    }
    (address == ALIBABA_METADATA)
        .then(|| format!("{address} is the Alibaba Cloud metadata address"))
}

fn v6_reason(address: Ipv6Addr) -> Option<String> {
    if address == AWS_METADATA_V6 {
        return Some(format!("{address} is the AWS IPv6 metadata address"));
    }
    let [first, second, ..] = address.segments();
    if first & 0xffc0 == 0xfe80 {
        return Some(format!("{address} is IPv6 link-local (fe80::/10)"));
    }
    // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) addresses reach the IPv4 one.
    let embedded = address.to_ipv4_mapped().or_else(|| {
        let [.., high, low] = address.segments();
        (first == 0x64 && second == 0xff9b)
            .then(|| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)))
    });
    embedded.and_then(v4_reason)
}

/// A provider whose upstream is at a metadata address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataUpstream {
    /// The provider id.
    pub provider: String,
    /// The upstream URL.
    pub url: String,
    /// Where the URL comes from: the spec file, or the `upstreams` overrides.
    pub origin: String,
    /// Why it is refused.
    pub reason: String,
}

impl fmt::Display for MetadataUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "provider `{}` ({}) has the upstream `{}`: {}, so requests through the gateway could \
             read the host's cloud credentials",
            self.provider, self.origin, self.url, self.reason
        )
    }
}

/// The providers of a load whose upstreams are at metadata addresses, refused together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MetadataUpstreams(pub Vec<MetadataUpstream>);

impl fmt::Display for MetadataUpstreams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for found in &self.0 {
            writeln!(f, "{found}")?;
        }
        write!(
            f,
            "  help: if this upstream is intended, pass --allow-metadata-upstream to `specter \
             serve` or set `allow_metadata_upstreams: true` in its configuration file"
        )
    }
}

/// The providers of `catalog` whose upstream (the override of `overrides`, else the spec's) is
/// at a metadata address.
pub fn metadata_upstreams(
    catalog: &Catalog,
    overrides: &BTreeMap<String, String>,
) -> Vec<MetadataUpstream> {
    let mut found = Vec::new();
    for provider in catalog.providers() {
        let id = provider.id.to_string();
        let (url, origin) = match overrides.get(&id) {
            Some(url) => (url.clone(), "set by --upstream or `upstreams`".to_string()),
            None => match &provider.base_url {
                Some(url) => (url.clone(), provider.file.clone()),
                None => continue,
            },
        };
        if let Some(reason) = metadata_reason(&url) {
            found.push(MetadataUpstream {
                provider: id,
                url,
                origin,
                reason,
            });
        }
    }
    found
}

/// Checks `catalog` against `overrides`: an error listing every provider whose upstream is at a
/// metadata address, unless `allowed`.
pub fn refuse_metadata_upstreams(
    catalog: &Catalog,
    overrides: &BTreeMap<String, String>,
    allowed: bool,
) -> Result<(), MetadataUpstreams> {
    if allowed {
        return Ok(());
    }
    let found = metadata_upstreams(catalog, overrides);
    if found.is_empty() {
        Ok(())
    } else {
        Err(MetadataUpstreams(found))
    }
}

/// A warning for each compiled provider whose spec's upstream is at a metadata address, located
/// at the `upstream.base_url` that sets it (in the provider's file or the one it extends).
pub fn metadata_warnings(providers: &[Provider], sources: &[Source]) -> Vec<Diagnostic> {
    let mut warnings = Vec::new();
    for provider in providers {
        let Some(url) = &provider.base_url else {
            continue;
        };
        let Some(reason) = metadata_reason(url) else {
            continue;
        };
        let (file, pos) = base_url_position(provider, providers, sources);
        warnings.push(Diagnostic {
            file,
            line: pos.line,
            col: pos.col,
            location: "upstream.base_url".into(),
            message: format!(
                "`{url}` of provider `{}`: {reason}; `specter serve` refuses to start with it",
                provider.id
            ),
            help: Some(
                "if this upstream is intended, pass --allow-metadata-upstream to `specter serve` \
                 or set `allow_metadata_upstreams: true` in its configuration file"
                    .into(),
            ),
        });
    }
    warnings
}

/// The file and position of the `upstream.base_url` a provider has, following `extends`.
fn base_url_position(
    provider: &Provider,
    providers: &[Provider],
    sources: &[Source],
) -> (String, crate::yaml::Pos) {
    let mut current = provider;
    for _ in 0..providers.len() {
        let doc = sources
            .iter()
            .find(|s| s.name == current.file)
            .and_then(|s| crate::yaml::parse(&s.text).ok());
        if let Some(pos) = doc.and_then(|d| d.exact_position("/upstream/base_url")) {
            return (current.file.clone(), pos);
        }
        let parent = current
            .extends
            .as_ref()
            .and_then(|id| providers.iter().find(|p| &*p.id == id.as_str()));
        match parent {
            Some(parent) => current = parent,
            None => break,
        }
    }
    (provider.file.clone(), crate::yaml::Pos { line: 1, col: 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_link_local_addresses_in_every_spelling() {
        for url in [
            "http://169.254.169.254",
            "http://169.254.169.254/latest/meta-data/",
            "http://user:pw@169.254.169.254:80/x",
            "http://169.254.170.2/v2/credentials",
            "http://2852039166/",
            "http://0xa9fea9fe",
            "http://0251.0376.0251.0376",
            "http://169.254.43518",
            "http://[fd00:ec2::254]/latest",
            "http://[FE80::1%25eth0]:8080",
            "http://[::ffff:169.254.169.254]",
            "http://[64:ff9b::a9fe:a9fe]",
            "http://100.100.100.200/latest",
            "http://metadata.google.internal/computeMetadata/v1",
            "http://METADATA.google.internal./",
            "http://metadata/computeMetadata/v1",
        ] {
            assert!(metadata_reason(url).is_some(), "{url}");
        }
        assert_eq!(
            metadata_reason("http://169.254.169.254/latest").unwrap(),
            "169.254.169.254 is link-local (169.254.0.0/16), where cloud metadata services answer"
        );
        assert_eq!(
            metadata_reason("http://[fd00:ec2::254]").unwrap(),
            "fd00:ec2::254 is the AWS IPv6 metadata address"
        );
    }

    #[test]
    fn ordinary_upstreams_pass() {
        for url in [
            "https://api.openai.com",
            "http://127.0.0.1:9000",
            "http://10.0.0.5:8000/v1",
            "http://[::1]:11434",
            "http://[fd00::1]",
            "http://169.253.1.1",
            "http://169.255.0.1",
            "https://metadata.example.com",
            "http://1.2.3.4.5",
            "http://256.1.1.1",
        ] {
            assert_eq!(metadata_reason(url), None, "{url}");
        }
    }
}
