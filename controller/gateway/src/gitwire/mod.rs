//! Git and GitHub on the wire: pushes (`git-receive-pack`) judged by their ref updates, with fast-forward
//! worked out from the objects (the pushed pack plus a mirror of the remote), refused in git's own protocol;
//! and the operation of a GraphQL request to the GitHub API.

pub mod ancestry;
pub mod commands;
pub mod git;
pub mod graphql;
pub mod limits;
pub mod mirror;
pub mod pkt;
pub mod receive_pack;
pub mod report;
