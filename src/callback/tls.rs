//! `https` callbacks (feature `callbacks-tls`): the trusted roots, the
//! client configuration made from them, and the handshake over a connection
//! already opened to a checked address.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::Uri;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::BoxError;

/// A certificate given to
/// [`Callbacks::add_root_certificate`](super::Callbacks::add_root_certificate)
/// that is no X.509 certificate in DER, or none that can be a trust anchor.
///
/// ```
/// use tower_accepted::callback::{Callbacks, InvalidCertificate, WebhookSecret};
///
/// let added = Callbacks::new(WebhookSecret::random()).add_root_certificate(b"not DER".to_vec());
/// let _: InvalidCertificate = added.unwrap_err();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidCertificate(());

impl fmt::Display for InvalidCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a DER-encoded X.509 certificate usable as a trust anchor")
    }
}

impl std::error::Error for InvalidCertificate {}

/// The roots callbacks trust, and the client configuration made from them:
/// made again when a root is added (configuration time), never per attempt.
#[derive(Clone)]
pub(super) struct Tls {
    roots: RootCertStore,
    added: usize,
    config: Option<Arc<ClientConfig>>,
}

impl Tls {
    /// The Mozilla roots of `webpki-roots`.
    pub(super) fn new() -> Self {
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let config = client_config(roots.clone());
        Self {
            roots,
            added: 0,
            config,
        }
    }

    /// Trusts `der` too.
    pub(super) fn add(&mut self, der: Vec<u8>) -> Result<(), InvalidCertificate> {
        self.roots
            .add(CertificateDer::from(der))
            .map_err(|_| InvalidCertificate(()))?;
        self.added += 1;
        self.config = client_config(self.roots.clone());
        Ok(())
    }

    /// How many roots were added to the default ones.
    pub(super) fn added(&self) -> usize {
        self.added
    }

    pub(super) fn config(&self) -> Option<Arc<ClientConfig>> {
        self.config.clone()
    }
}

/// A client configuration with `ring` named explicitly, not the process'
/// default provider: nothing to install first, and no panic when another
/// crate in the build enables a second provider. `None` only if `ring` did
/// not support the default protocol versions (it does): then every `https`
/// attempt fails rather than the configuration.
fn client_config(roots: RootCertStore) -> Option<Arc<ClientConfig>> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // The connection speaks HTTP/1.1 only: say so, so that a receiver that
    // offers h2 does not pick it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(Arc::new(config))
}

/// The TLS handshake over `stream`, a connection to an address the checks
/// accepted, verifying the receiver's certificate for the URL's host: its
/// name (sent as SNI), or its address for an IP literal.
pub(super) async fn handshake(
    config: Option<Arc<ClientConfig>>,
    uri: &Uri,
    stream: TcpStream,
) -> Result<TlsStream<TcpStream>, BoxError> {
    let config = config.ok_or("no TLS configuration")?;
    let host = uri.host().ok_or("the callback URL has no host")?;
    let name = match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_owned())?,
    };
    Ok(TlsConnector::from(config).connect(name, stream).await?)
}
