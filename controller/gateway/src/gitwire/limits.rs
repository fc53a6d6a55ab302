//! What one session may push at once, and how long a push may take to arrive: a push spools its body to
//! disk and may fetch a whole repository into a mirror, so a session that starts many (or sends one slowly
//! forever) would hold the gateway's disk and connections for every other session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

/// Pushes in progress, counted per session.
#[derive(Debug, Default)]
pub struct InFlight {
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

/// One push in progress; it ends when dropped.
#[derive(Debug)]
pub struct Slot {
    session: String,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

impl InFlight {
    /// A slot for one more push of `session`, or `None` when `limit` are in progress.
    pub fn begin(&self, session: &str, limit: usize) -> Option<Slot> {
        let mut counts = self.counts.lock().expect("pushes in flight");
        let n = counts.entry(session.to_owned()).or_default();
        if *n >= limit {
            if *n == 0 {
                counts.remove(session);
            }
            return None;
        }
        *n += 1;
        Some(Slot { session: session.to_owned(), counts: self.counts.clone() })
    }

    /// Pushes of `session` in progress.
    pub fn count(&self, session: &str) -> usize {
        self.counts.lock().expect("pushes in flight").get(session).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("pushes in flight");
        if let Some(n) = counts.get_mut(&self.session) {
            *n -= 1;
            // A session's entry goes with its last push, so ended sessions leave nothing behind.
            if *n == 0 {
                counts.remove(&self.session);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_session_has_its_own_count_and_a_slot_ends_when_dropped() {
        let f = InFlight::default();
        let a1 = f.begin("a", 2).unwrap();
        let a2 = f.begin("a", 2).unwrap();
        assert!(f.begin("a", 2).is_none());
        let b = f.begin("b", 2).unwrap();
        assert_eq!((f.count("a"), f.count("b")), (2, 1));
        drop(a1);
        let a3 = f.begin("a", 2).unwrap();
        drop((a2, a3, b));
        assert!(f.counts.lock().unwrap().is_empty());
        assert!(f.begin("c", 0).is_none());
        assert!(f.counts.lock().unwrap().is_empty());
    }
}
