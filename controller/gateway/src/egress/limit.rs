//! How many of something each session holds at once: connections out (`egress.maxConnectionsPerSession`:
//! end-to-end tunnels, brokered tunnels and plain-HTTP requests in flight, each holding file descriptors every
//! session shares) and git pushes in progress (`egress.maxPushesPerSession`, each spooling to disk). One
//! sandbox must be refused before it exhausts them for the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What every session holds, each at most `max`.
#[derive(Debug)]
pub struct PerSession {
    max: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One thing held, counted until dropped.
#[derive(Debug)]
pub struct Slot {
    session: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl PerSession {
    pub fn new(max: usize) -> PerSession {
        PerSession { max, open: Arc::default() }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Counts one more of `session`'s, or `None` when the session holds `max` already.
    pub fn acquire(&self, session: &str) -> Option<Slot> {
        let mut open = self.open.lock().expect("per-session counts");
        let n = open.entry(session.to_owned()).or_default();
        if *n >= self.max {
            if *n == 0 {
                open.remove(session);
            }
            return None;
        }
        *n += 1;
        Some(Slot { session: session.to_owned(), open: self.open.clone() })
    }

    /// How many `session` holds now.
    pub fn open(&self, session: &str) -> usize {
        self.open.lock().expect("per-session counts").get(session).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("per-session counts");
        if let Some(n) = open.get_mut(&self.session) {
            *n -= 1;
            if *n == 0 {
                // Ended sessions leave nothing behind.
                open.remove(&self.session);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_session_holds_at_most_max_and_a_dropped_slot_frees_its_place() {
        let limits = PerSession::new(2);
        let a1 = limits.acquire("a").unwrap();
        let _a2 = limits.acquire("a").unwrap();
        assert!(limits.acquire("a").is_none());
        let _b = limits.acquire("b").expect("another session has its own allowance");
        drop(a1);
        let _a3 = limits.acquire("a").unwrap();
        assert_eq!(limits.open("a"), 2);
        drop(_b);
        assert_eq!(limits.open("b"), 0);
        assert!(limits.open.lock().unwrap().get("b").is_none());
        let none = PerSession::new(0);
        assert!(none.acquire("c").is_none() && none.open.lock().unwrap().is_empty(), "a refusal leaves nothing");
    }
}
