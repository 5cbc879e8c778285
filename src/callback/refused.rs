//! Why a callback URL was refused.

use std::fmt;

/// Why a callback URL was refused: see [`CallbackRefused::kind`].
///
/// ```
/// use tower_accepted::callback::RefusalKind;
///
/// // Refusals a client can fix by sending another URL, as opposed to
/// // policy refusals it should report to the operator.
/// fn fixable(kind: RefusalKind) -> bool {
///     matches!(kind, RefusalKind::Malformed | RefusalKind::Scheme | RefusalKind::UserInfo)
/// }
/// assert!(!fixable(RefusalKind::ForbiddenAddress));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalKind {
    /// Not an absolute URL, or longer than the bound (2 KiB).
    Malformed,
    /// A scheme other than `http` and `https` (`https` needs the feature
    /// `callbacks-tls`).
    Scheme,
    /// User information (`user:password@`) in the authority: credentials
    /// have no place in a URL the service stores and logs.
    UserInfo,
    /// The configured allow-predicate ([`Callbacks::allow`](super::Callbacks::allow))
    /// said no (the default says no to every URL).
    NotAllowed,
    /// The host resolves (or is) an address of a kind refused unless
    /// [`Callbacks::allow_addresses`](super::Callbacks::allow_addresses)
    /// accepts it: loopback, private, link-local, metadata, …
    ForbiddenAddress,
    /// The host name did not resolve (in time).
    Unresolvable,
}

impl RefusalKind {
    /// The kind's word, as the log says it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Scheme => "scheme",
            Self::UserInfo => "user_info",
            Self::NotAllowed => "not_allowed",
            Self::ForbiddenAddress => "forbidden_address",
            Self::Unresolvable => "unresolvable",
        }
    }
}

/// A callback URL that is refused: [`kind`](Self::kind) says why.
///
/// Its `Display` is fit for a client (the `detail` of a `400` problem
/// document): it names the reason but no resolved address, so that probing
/// the service's DNS view through refusals learns nothing more than "not
/// allowed".
///
/// ```
/// use tower_accepted::callback::{CallbackRefused, RefusalKind};
///
/// fn detail(refused: &CallbackRefused) -> String {
///     match refused.kind() {
///         RefusalKind::NotAllowed => "ask the operator to allow your receiver".to_owned(),
///         _ => refused.to_string(),
///     }
/// }
/// # let _ = detail;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRefused {
    kind: RefusalKind,
}

impl CallbackRefused {
    pub(crate) fn new(kind: RefusalKind) -> Self {
        Self { kind }
    }

    /// Why the URL was refused.
    pub fn kind(&self) -> RefusalKind {
        self.kind
    }
}

impl fmt::Display for CallbackRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            RefusalKind::Malformed => "the callback URL is not an absolute URL of at most 2048 bytes",
            RefusalKind::Scheme if cfg!(feature = "callbacks-tls") => {
                "the callback URL's scheme is not supported (use http or https)"
            }
            // The operator reads it too: the feature is what would add https.
            RefusalKind::Scheme => {
                "the callback URL's scheme is not supported (use http; https needs the server's callbacks-tls feature)"
            }
            RefusalKind::UserInfo => "the callback URL must not carry user information",
            RefusalKind::NotAllowed => "the callback URL is not allowed",
            RefusalKind::ForbiddenAddress => "the callback URL's host is an address that is not allowed",
            RefusalKind::Unresolvable => "the callback URL's host could not be resolved",
        })
    }
}

impl std::error::Error for CallbackRefused {}
