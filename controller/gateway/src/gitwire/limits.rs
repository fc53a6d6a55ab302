//! What one session may push at once, and how long a push may take to arrive: a push spools its body to
//! disk and may fetch a whole repository into a mirror, so a session that starts many (or sends one slowly
//! forever) would hold the gateway's disk and connections for every other session.

use std::time::Duration;

/// The limits on pushes through the broker.
#[derive(Clone, Debug)]
pub struct PushLimits {
    /// Pushes of one session in progress at once; one more is refused in git's protocol.
    pub per_session: usize,
    /// How long a push's body may take to arrive, from its first byte to its last, however steadily the
    /// client sends.
    pub arrival: Duration,
}

impl Default for PushLimits {
    fn default() -> PushLimits {
        PushLimits { per_session: 4, arrival: Duration::from_secs(600) }
    }
}
