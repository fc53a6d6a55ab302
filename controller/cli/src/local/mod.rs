//! Local mode: `paddock up` and the commands that talk to it.

pub mod apply;
pub mod client;
pub mod commands;
pub mod demo;
pub mod repo;
pub mod supervisor;
pub mod up;
pub mod workspace;
