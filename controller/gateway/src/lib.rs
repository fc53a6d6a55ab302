//! Paddock's gateway: the one choke point between runners and model providers. An axum server with an
//! Anthropic- and OpenAI-compatible LLM proxy (streaming and not), the admission API for harness hooks and
//! runners, approvals, session tokens, a durable cost ledger and audit log (SQLite or PostgreSQL), and
//! Prometheus metrics. It is also the sandboxes' egress proxy (CONNECT and plain HTTP, decided per
//! connection) and credential broker. Provider and brokered keys live here only. In a cluster it serves TLS
//! ([`tls`]).

pub mod api;
mod applier;
pub mod broker;
pub mod config;
pub mod console;
pub mod egress;
pub mod gateway;
pub mod gitwire;
mod journal;
pub mod mcp;
pub mod metrics;
pub mod policies;
pub mod proxy;
pub mod scripted;
pub mod server;
pub mod shared;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod wire;

pub use config::GatewayConfig;
pub use gateway::{Gateway, NewSession, Ruling};
pub use journal::JournalError;
/// The log's reader, for the fuzz targets (`fuzz/`) only: the log itself is private.
#[doc(hidden)]
pub use journal::{decode_framed as fuzz_journal_record, recover_count as fuzz_journal_recover};
