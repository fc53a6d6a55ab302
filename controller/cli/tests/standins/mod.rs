//! Stand-ins for the outside world of the egress tests, on 127.0.0.1 (the gateway's `egress.resolve` maps
//! their names there): GitHub over HTTPS (real `git http-backend` and a small REST API) with a test CA, and
//! an npm registry over plain HTTP.

#![allow(dead_code)]

pub mod github;
pub mod http;
pub mod registry;
pub mod tls;
