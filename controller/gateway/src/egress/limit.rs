//! How many connections out each session holds open at once (`egress.maxConnectionsPerSession`): end-to-end
//! tunnels, brokered tunnels and plain-HTTP requests in flight. Each holds file descriptors of the gateway's
//! (the sandbox's side and the host's), which every session shares: one sandbox opening thousands must be
//! refused before it exhausts them for the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The open connections of every session.
#[derive(Debug)]
pub struct ConnectionLimits {
    max: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// A session already holds as many connections as it may.
#[derive(Debug, thiserror::Error)]
#[error(
    "session {session} already holds {max} open connections through the egress proxy, the most \
     egress.maxConnectionsPerSession allows; close one and retry (or raise the setting)"
)]
pub struct LimitReached {
    pub session: String,
    pub max: usize,
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    session: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl ConnectionLimits {
    pub fn new(max: usize) -> ConnectionLimits {
        ConnectionLimits { max, open: Arc::default() }
    }

    /// Counts one more connection of `session`, or refuses it when the session is at its limit.
    pub fn acquire(&self, session: &str) -> Result<ConnectionSlot, LimitReached> {
        let mut open = self.open.lock().expect("connection counts");
        let n = open.entry(session.to_owned()).or_default();
        if *n >= self.max {
            return Err(LimitReached { session: session.to_owned(), max: self.max });
        }
        *n += 1;
        Ok(ConnectionSlot { session: session.to_owned(), open: self.open.clone() })
    }

    /// How many connections `session` holds now.
    pub fn open(&self, session: &str) -> usize {
        self.open.lock().expect("connection counts").get(session).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("connection counts");
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
        let limits = ConnectionLimits::new(2);
        let a1 = limits.acquire("a").unwrap();
        let _a2 = limits.acquire("a").unwrap();
        let full = limits.acquire("a").unwrap_err();
        assert!(full.to_string().contains("egress.maxConnectionsPerSession") && full.to_string().contains(" 2 "));
        let _b = limits.acquire("b").expect("another session has its own allowance");
        drop(a1);
        let _a3 = limits.acquire("a").unwrap();
        assert_eq!(limits.open("a"), 2);
        drop(_b);
        assert_eq!(limits.open("b"), 0);
        assert!(limits.open.lock().unwrap().get("b").is_none());
    }
}
