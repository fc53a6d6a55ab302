//! What a sandbox's connection through the egress proxy carries: the CONNECT authority, the TLS
//! ClientHello it reads the server name from, a request body the decision reads as JSON (under the headers
//! the request came with), and the gateway's own configuration file.
#![no_main]

use hyper::HeaderMap;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use libfuzzer_sys::fuzz_target;
use paddock_gateway::config::GatewayConfig;
use paddock_gateway::egress::{inspect, sni, target};

fuzz_target!(|data: &[u8]| {
    let mut c = paddock_fuzz::Choices(data);
    match c.byte() % 4 {
        0 => {
            if let Ok(text) = std::str::from_utf8(c.rest()) {
                let _ = target::parse(text, Some(443));
                let _ = target::parse(text, None);
            }
        }
        1 => {
            let _ = sni::parse(c.rest());
        }
        2 => {
            let mut headers = HeaderMap::new();
            let labels =
                ["application/json", "application/x-www-form-urlencoded", "text/plain", "application/octet-stream"];
            let n = c.byte();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(labels[n as usize % labels.len()]));
            if n & 4 != 0 {
                headers.append(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            let _ = inspect::json_of(&headers, c.rest());
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(c.rest())
                && let Ok(cfg) = GatewayConfig::parse(text, "gateway.yaml")
            {
                let _ = cfg.check();
            }
        }
    }
});
