//! The command list at the head of a `git-receive-pack` request (protocol v0/v1, which pushes use):
//! `shallow` lines, then `old new ref` lines (capabilities after a NUL on the first), a flush, push options
//! if negotiated, then the pack. Pure; anything git would not send is an error, so nothing unread is
//! forwarded.

use std::collections::HashSet;

use paddock_policy::RefUpdate;

use super::pkt::{self, Pkt};
use super::report::Answer;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the push request is cut short")]
    Incomplete,
    #[error("the push request is not git's protocol: {0}")]
    Framing(#[from] pkt::PktError),
    #[error("signed pushes (push certificates) are not supported through the gateway")]
    PushCert,
    #[error("the push request has no ref update")]
    Empty,
    #[error("the push request has a malformed command: {0}")]
    BadCommand(String),
    #[error("the ref `{0}` is not a valid ref name")]
    BadRef(String),
    #[error("the ref `{0}` is updated twice in one push")]
    Duplicate(String),
    #[error("the push request carries no pack where one is due")]
    NoPack,
    #[error("the push request carries data after its commands where no pack is due")]
    Trailing,
}

/// What a push asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commands {
    /// Every ref update, in order; `fast_forward` not worked out yet.
    pub updates: Vec<RefUpdate>,
    pub capabilities: Vec<String>,
    /// Where the pack starts, when one is due (any update that is not a deletion).
    pub pack_offset: Option<usize>,
}

impl Commands {
    pub fn has(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }

    /// How the client reads the answer.
    pub fn answer(&self) -> Answer {
        Answer { side_band_64k: self.has("side-band-64k"), side_band: self.has("side-band") }
    }

    /// Whether the client reads a report at all (without one it takes any 200 for success).
    pub fn wants_report(&self) -> bool {
        self.has("report-status") || self.has("report-status-v2")
    }
}

/// The capabilities of a request's first command, read from as much of its head as has arrived: enough to
/// answer in git's protocol even when the rest is refused. `None` when the first line is not there.
pub fn first_capabilities(head: &[u8]) -> Option<Vec<String>> {
    let mut at = 0;
    loop {
        let (p, used) = pkt::read(&head[at..]).ok()??;
        at += used;
        let Pkt::Data(line) = p else { return None };
        if line.starts_with(b"shallow ") {
            continue;
        }
        let nul = line.iter().position(|&b| b == 0)?;
        return Some(capabilities(&line[nul + 1..]));
    }
}

fn capabilities(raw: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(raw).split_ascii_whitespace().map(str::to_owned).collect()
}

/// Parses the head of a request body (decoded; `total` bytes long, of which `body` holds the first): its
/// commands, and checks that a pack follows when one is due and nothing does otherwise.
pub fn parse(body: &[u8], total: u64) -> Result<Commands, CommandError> {
    let mut at = 0;
    let next = |at: &mut usize| -> Result<Pkt<'_>, CommandError> {
        let (p, used) = pkt::read(&body[*at..])?.ok_or(CommandError::Incomplete)?;
        *at += used;
        Ok(p)
    };
    let mut updates = Vec::new();
    let mut caps = Vec::new();
    let mut seen = HashSet::new();
    loop {
        let line = match next(&mut at)? {
            Pkt::Flush => break,
            Pkt::Special(n) => return Err(CommandError::BadCommand(format!("unexpected pkt-line 000{n}"))),
            Pkt::Data(d) => d,
        };
        if updates.is_empty() && line.starts_with(b"shallow ") {
            continue;
        }
        if updates.is_empty() && line.starts_with(b"push-cert") {
            return Err(CommandError::PushCert);
        }
        let line = match line.iter().position(|&b| b == 0) {
            Some(nul) if updates.is_empty() => {
                caps = capabilities(&line[nul + 1..]);
                &line[..nul]
            }
            Some(_) => return Err(CommandError::BadCommand("capabilities after the first command".into())),
            None => line,
        };
        let update = command(line)?;
        if !seen.insert(update.git_ref.clone()) {
            return Err(CommandError::Duplicate(update.git_ref));
        }
        updates.push(update);
    }
    if updates.is_empty() {
        return Err(CommandError::Empty);
    }
    if caps.iter().any(|c| c.starts_with("push-cert")) {
        return Err(CommandError::PushCert);
    }
    if caps.iter().any(|c| c == "push-options") {
        loop {
            match next(&mut at)? {
                Pkt::Flush => break,
                Pkt::Data(_) => {}
                Pkt::Special(n) => return Err(CommandError::BadCommand(format!("unexpected pkt-line 000{n}"))),
            }
        }
    }
    let rest = &body[at..];
    let pack_offset = if updates.iter().all(RefUpdate::is_delete) {
        if total != at as u64 {
            return Err(CommandError::Trailing);
        }
        None
    } else {
        if !rest.starts_with(b"PACK") {
            return Err(CommandError::NoPack);
        }
        Some(at)
    };
    Ok(Commands { updates, capabilities: caps, pack_offset })
}

/// `old new ref` (a trailing newline allowed).
fn command(line: &[u8]) -> Result<RefUpdate, CommandError> {
    let text = std::str::from_utf8(line).map_err(|_| CommandError::BadCommand("not UTF-8".into()))?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut parts = text.splitn(3, ' ');
    let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(CommandError::BadCommand(text.chars().take(200).collect()));
    };
    if !is_oid(old) || !is_oid(new) || (old == paddock_policy::ZERO_OID && new == paddock_policy::ZERO_OID) {
        return Err(CommandError::BadCommand(text.chars().take(200).collect()));
    }
    if !is_valid_ref(name) {
        return Err(CommandError::BadRef(name.chars().take(200).collect()));
    }
    Ok(RefUpdate { git_ref: name.to_owned(), old: old.to_owned(), new: new.to_owned(), fast_forward: false })
}

/// 40 lowercase hex digits (SHA-1; GitHub has no SHA-256 repositories).
pub fn is_oid(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A full ref name git accepts (`git check-ref-format`'s rules), under `refs/`: what the decision sees is
/// the name the remote stores.
pub fn is_valid_ref(name: &str) -> bool {
    name.starts_with("refs/")
        && name.len() <= 1024
        && !name.ends_with('/')
        && !name.ends_with('.')
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && name.bytes().all(|b| b > 0x20 && b != 0x7f && !b"~^:?*[\\".contains(&b))
        && name.split('/').all(|c| !c.is_empty() && !c.starts_with('.') && !c.ends_with(".lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const Z: &str = paddock_policy::ZERO_OID;

    fn request(lines: &[String], tail: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            pkt::write(&mut out, l.as_bytes());
        }
        out.extend_from_slice(pkt::FLUSH);
        out.extend_from_slice(tail);
        out
    }

    #[test]
    fn reads_updates_capabilities_and_the_pack() {
        let body = request(
            &[
                format!("{A} {B} refs/heads/main\0 report-status side-band-64k agent=git/2.47\n"),
                format!("{Z} {B} refs/tags/v1\n"),
                format!("{A} {Z} refs/heads/old\n"),
            ],
            b"PACKxyz",
        );
        let c = parse(&body, body.len() as u64).unwrap();
        assert_eq!(c.updates.len(), 3);
        assert_eq!(c.updates[1].git_ref, "refs/tags/v1");
        assert!(c.updates[1].is_create() && c.updates[2].is_delete());
        assert!(c.wants_report() && c.answer().side_band_64k);
        assert_eq!(&body[c.pack_offset.unwrap()..], b"PACKxyz");
        assert_eq!(first_capabilities(&body[..60]), None);
        assert_eq!(first_capabilities(&body).unwrap()[0], "report-status");
    }

    #[test]
    fn deletions_alone_carry_no_pack() {
        let body = request(&[format!("{A} {Z} refs/heads/x\0report-status\n")], b"");
        assert_eq!(parse(&body, body.len() as u64).unwrap().pack_offset, None);
        let trailing = request(&[format!("{A} {Z} refs/heads/x\0report-status\n")], b"PACK");
        assert_eq!(parse(&trailing, trailing.len() as u64), Err(CommandError::Trailing));
    }

    #[test]
    fn push_options_are_skipped_before_the_pack() {
        let mut body = request(&[format!("{A} {B} refs/heads/main\0report-status push-options\n")], b"");
        pkt::write(&mut body, b"ci.skip");
        body.extend_from_slice(b"0000PACK");
        assert_eq!(&body[parse(&body, body.len() as u64).unwrap().pack_offset.unwrap()..], b"PACK");
    }

    #[test]
    fn what_git_would_not_send_is_refused() {
        let cases: Vec<(Vec<u8>, CommandError)> = vec![
            (request(&["push-cert\0report-status\n".to_string()], b""), CommandError::PushCert),
            (
                request(&[format!("{A} {B} refs/heads/main\0report-status push-cert=abc\n")], b"PACK"),
                CommandError::PushCert,
            ),
            (request(&[], b""), CommandError::Empty),
            (
                request(&[format!("{A} {B} refs/heads/main\0x\n"), format!("{A} {B} refs/heads/main\n")], b"PACK"),
                CommandError::Duplicate("refs/heads/main".into()),
            ),
            (
                request(&[format!("{A} {B} refs/heads/../main\0x\n")], b"PACK"),
                CommandError::BadRef("refs/heads/../main".into()),
            ),
            (request(&[format!("{A} {B} main\0x\n")], b"PACK"), CommandError::BadRef("main".into())),
            (request(&[format!("{A} {B} refs/heads/main\0x\n")], b"NOTAPACK"), CommandError::NoPack),
            (
                request(&[format!("{} {B} refs/heads/main\0x\n", "A".repeat(40))], b"PACK"),
                CommandError::BadCommand(format!("{} {B} refs/heads/main", "A".repeat(40))),
            ),
            (
                request(&[format!("{A} {B} refs/heads/a\0x\n"), format!("{A} {B} refs/heads/b\0y\n")], b"PACK"),
                CommandError::BadCommand("capabilities after the first command".into()),
            ),
            (format!("0060{A} {B}").into_bytes(), CommandError::Incomplete),
        ];
        for (body, want) in cases {
            assert_eq!(parse(&body, body.len() as u64), Err(want));
        }
    }

    #[test]
    fn ref_names_follow_git() {
        for good in ["refs/heads/main", "refs/heads/feature/x-1", "refs/tags/v1.0", "refs/notes/commits"] {
            assert!(is_valid_ref(good), "{good}");
        }
        for bad in [
            "refs/heads/a..b",
            "refs/heads/x.lock",
            "refs/heads/.x",
            "refs/heads/x/",
            "refs/heads/a b",
            "refs/heads/a~1",
            "refs/heads/a^",
            "refs/heads/a:b",
            "refs/heads/@{u}",
            "refs//heads",
            "HEAD",
            "refs/heads/a\\b",
            "refs/heads/x.",
        ] {
            assert!(!is_valid_ref(bad), "{bad}");
        }
    }
}
