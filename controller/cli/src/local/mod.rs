//! Local mode: `paddock up` and the commands that talk to it.

pub mod apply;
pub mod cgroup;
pub mod client;
pub mod commands;
pub mod demo;
pub mod launch;
pub mod repo;
pub mod run_as;
pub mod supervisor;
pub mod up;
pub mod workspace;
