//! The checks of a callback URL: its syntax, the allow-predicate, and every
//! address its host resolves to (SSRF).

use std::net::{IpAddr, SocketAddr};

use http::Uri;

use super::address::forbidden;
use super::config::Callbacks;
use super::refused::{CallbackRefused, RefusalKind};

/// The longest callback URL accepted, in bytes: ample for a receiver's URL
/// with a token in it, small enough to store with every job.
pub(crate) const MAX_URL_LEN: usize = 2048;

/// A URL that passed every check, and the addresses it may be sent to: the
/// ones its host resolved to when it was checked. Connecting to these and
/// no others is what keeps a second resolution (DNS rebinding) from
/// steering the request elsewhere.
#[derive(Debug, Clone)]
pub(crate) struct CallbackTarget {
    pub(crate) uri: Uri,
    pub(crate) addrs: Vec<SocketAddr>,
}

impl Callbacks {
    /// Checks `url` for a callback: an absolute `http` URL (or `https`, with
    /// the feature `callbacks-tls`) of at most 2 KiB
    /// without user information, accepted by the allow-predicate, whose
    /// host is (or resolves, within the per-request timeout, to) only
    /// addresses that are ordinary or explicitly allowed.
    pub(crate) async fn check(&self, url: &str) -> Result<CallbackTarget, CallbackRefused> {
        let uri = parse(url)?;
        if !self.url_allowed(&uri) {
            return Err(CallbackRefused::new(RefusalKind::NotAllowed));
        }
        let addrs = self.resolve(&uri).await?;
        // Every address, not only the first: the connection may try any,
        // and a name that mixes a public and a private address is an attack.
        if addrs
            .iter()
            .any(|addr| forbidden(addr.ip()).is_some() && !self.address_allowed(addr.ip().to_canonical()))
        {
            return Err(CallbackRefused::new(RefusalKind::ForbiddenAddress));
        }
        Ok(CallbackTarget { uri, addrs })
    }

    async fn resolve(&self, uri: &Uri) -> Result<Vec<SocketAddr>, CallbackRefused> {
        let unresolvable = || CallbackRefused::new(RefusalKind::Unresolvable);
        let host = uri.host().ok_or_else(unresolvable)?;
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
        // An IP literal (`[::1]` is bracketed in a URI) needs no resolver.
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        // Every other host goes to the resolver, `localhost` and numeric
        // forms such as `2130706433` included: its answer is what is judged.
        let lookup = tokio::net::lookup_host((host, port));
        let addrs: Vec<SocketAddr> = tokio::time::timeout(self.per_request(), lookup)
            .await
            .map_err(|_| unresolvable())?
            .map_err(|_| unresolvable())?
            .collect();
        if addrs.is_empty() {
            return Err(unresolvable());
        }
        Ok(addrs)
    }
}

/// The syntax checks, before anything else looks at the URL.
fn parse(url: &str) -> Result<Uri, CallbackRefused> {
    let malformed = || CallbackRefused::new(RefusalKind::Malformed);
    if url.len() > MAX_URL_LEN {
        return Err(malformed());
    }
    let uri: Uri = url.parse().map_err(|_| malformed())?;
    let authority = uri.authority().ok_or_else(malformed)?;
    match uri.scheme_str() {
        Some("http") => {}
        // Without a TLS client, accepting `https` would mean deliveries
        // that can never succeed.
        Some("https") if cfg!(feature = "callbacks-tls") => {}
        Some(_) => return Err(CallbackRefused::new(RefusalKind::Scheme)),
        None => return Err(malformed()),
    }
    if authority.as_str().contains('@') {
        return Err(CallbackRefused::new(RefusalKind::UserInfo));
    }
    if authority.host().is_empty() {
        return Err(malformed());
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callback::WebhookSecret;

    fn kind(url: &str) -> Option<RefusalKind> {
        parse(url).err().map(|refused| refused.kind())
    }

    #[test]
    fn urls_are_refused_by_their_syntax() {
        assert_eq!(kind("http://hooks.example.com/done?job=1"), None);
        assert_eq!(kind("http://hooks.example.com:8080/"), None);
        assert_eq!(kind("http://[2001:db8::1]/"), None);
        assert_eq!(kind("/relative/path"), Some(RefusalKind::Malformed));
        assert_eq!(kind("hooks.example.com/path"), Some(RefusalKind::Malformed));
        assert_eq!(kind(""), Some(RefusalKind::Malformed));
        assert_eq!(kind("http://"), Some(RefusalKind::Malformed));
        assert_eq!(kind("http://:80/"), Some(RefusalKind::Malformed));
        assert_eq!(kind("http://exa mple.com/"), Some(RefusalKind::Malformed));
        assert_eq!(kind("ftp://hooks.example.com/"), Some(RefusalKind::Scheme));
        assert_eq!(kind("file:///etc/passwd"), Some(RefusalKind::Malformed));
        assert_eq!(kind("gopher://hooks.example.com/"), Some(RefusalKind::Scheme));
        let https = (!cfg!(feature = "callbacks-tls")).then_some(RefusalKind::Scheme);
        assert_eq!(kind("https://hooks.example.com/"), https);
        assert_eq!(kind("http://user:pw@hooks.example.com/"), Some(RefusalKind::UserInfo));
        assert_eq!(kind("http://hooks.example.com@127.0.0.1/"), Some(RefusalKind::UserInfo));
        let long = format!("http://hooks.example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(kind(&long), Some(RefusalKind::Malformed));
        let longest = format!(
            "http://h.example/{}",
            "a".repeat(MAX_URL_LEN - "http://h.example/".len())
        );
        assert_eq!(kind(&longest), None);
    }

    #[cfg(not(feature = "callbacks-tls"))]
    #[test]
    fn https_without_tls_names_the_feature() {
        let refused = parse("https://hooks.example.com/").unwrap_err();
        assert_eq!(refused.kind(), RefusalKind::Scheme);
        assert!(refused.to_string().contains("callbacks-tls"), "{refused}");
    }

    #[tokio::test]
    async fn the_default_allows_no_url() {
        let callbacks = Callbacks::new(WebhookSecret::random());
        let refused = callbacks.check("http://93.184.216.34/").await.unwrap_err();
        assert_eq!(refused.kind(), RefusalKind::NotAllowed);
    }

    #[tokio::test]
    async fn ip_literals_are_judged_without_a_resolver() {
        let callbacks = Callbacks::new(WebhookSecret::random()).allow(|_| true);
        for url in [
            "http://127.0.0.1/",
            "http://[::1]:8080/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://10.0.0.7/",
            "http://0.0.0.0:80/",
        ] {
            let refused = callbacks.check(url).await.unwrap_err();
            assert_eq!(refused.kind(), RefusalKind::ForbiddenAddress, "{url}");
        }
        let target = callbacks.check("http://93.184.216.34:8080/hook").await.unwrap();
        assert_eq!(target.addrs, ["93.184.216.34:8080".parse::<SocketAddr>().unwrap()]);
        let target = callbacks.check("http://93.184.216.34/hook").await.unwrap();
        assert_eq!(target.addrs, ["93.184.216.34:80".parse::<SocketAddr>().unwrap()]);
    }

    #[cfg(feature = "callbacks-tls")]
    #[tokio::test]
    async fn https_defaults_to_port_443() {
        let callbacks = Callbacks::new(WebhookSecret::random()).allow(|_| true);
        let target = callbacks.check("https://93.184.216.34/hook").await.unwrap();
        assert_eq!(target.addrs, ["93.184.216.34:443".parse::<SocketAddr>().unwrap()]);
        let target = callbacks.check("https://[2606:2800::1]:8443/").await.unwrap();
        assert_eq!(target.addrs, ["[2606:2800::1]:8443".parse::<SocketAddr>().unwrap()]);
    }

    #[tokio::test]
    async fn allowed_addresses_pass() {
        let callbacks = Callbacks::new(WebhookSecret::random())
            .allow(|_| true)
            .allow_addresses(|ip| ip.is_loopback());
        assert!(callbacks.check("http://127.0.0.1:9/").await.is_ok());
        // The predicate sees a mapped address as its IPv4 address.
        assert!(callbacks.check("http://[::ffff:127.0.0.1]:9/").await.is_ok());
        // Only what the predicate names: other private ranges stay refused.
        let refused = callbacks.check("http://192.168.0.1/").await.unwrap_err();
        assert_eq!(refused.kind(), RefusalKind::ForbiddenAddress);
    }
}
