//! The console's page frame and small pieces of HTML shared by its pages. `maud` escapes every value
//! interpolated with `(…)`; nothing here uses `PreEscaped` on anything but constant text.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::Viewer;

/// A whole page: navigation, who is signed in, the CSRF token for scripts, and `body`.
pub fn page(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    page_at(title, viewer, None, body)
}

/// [`page`], answering a form's `POST` at another address: the browser shows `canonical` instead (so that a
/// reload reads the page rather than sending the form again).
pub fn page_at(title: &str, viewer: Option<&Viewer>, canonical: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(v) = viewer {
                    meta name="csrf-token" content=(v.csrf);
                }
                @if let Some(c) = canonical {
                    meta name="canonical-path" content=(c);
                }
                title { (title) " · Paddock" }
                link rel="stylesheet" href="/ui/assets/console.css";
                script src="/ui/assets/console.js" defer {}
            }
            body {
                header {
                    nav aria-label="Console" {
                        a.brand href="/ui/sessions" { "Paddock" }
                        @if let Some(v) = viewer {
                            a href="/ui/sessions" { "Sessions" }
                            a href="/ui/approvals" { "Approvals" }
                            a href="/ui/audit" { "Audit" }
                            a href="/ui/policies" { "Policies" }
                            span.who { "Signed in as " strong id="who" { (v.name) } " (" (v.role_name()) ")" }
                            form.inline method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(v.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

pub fn html_response(status: StatusCode, m: Markup) -> Response {
    (status, [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], m.into_string()).into_response()
}

/// A page that says what went wrong.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    html_response(
        status,
        page(status.canonical_reason().unwrap_or("Error"), None, html! { p.error role="alert" { (message) } }),
    )
}

pub fn login_form(status: StatusCode, message: Option<&str>, next: &str) -> Response {
    let body = html! {
        @if let Some(m) = message { p.error role="alert" { (m) } }
        form method="post" action="/ui/login" {
            input type="hidden" name="next" value=(next);
            label for="token" { "Token (the admin token, or your own)" }
            input #token type="password" name="token" autocomplete="current-password" required autofocus;
            button #sign-in type="submit" { "Sign in" }
        }
        p.hint { "Running locally? " code { "paddock up" } " prints a one-time sign-in link." }
    };
    html_response(status, page("Sign in", None, body))
}

/// A dollar amount as the console shows it.
pub fn usd(v: f64) -> String {
    if v == 0.0 {
        "$0".into()
    } else if v < 0.01 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}

/// Percent-encodes a query value.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A verdict as a badge class (`allow`, `deny`, `ask`, `other`).
pub fn verdict_class(v: &str) -> &'static str {
    match v {
        "allow" | "approved" | "created" => "allow",
        "deny" | "denied" | "expired" | "revoked" => "deny",
        "ask" | "pending" => "ask",
        _ => "other",
    }
}
