//! The answer to a refused push, in git's protocol (report-status, and report-status-v2 which reads the
//! same lines), so that `git push` prints `! [remote rejected] <ref> (<reason>)`. Pure.

use super::pkt;

/// What the client asked for in its first command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// `side-band-64k` (or `side-band`): the report travels in band 1, messages in band 2.
    pub side_band_64k: bool,
    pub side_band: bool,
}

/// One line of the report: `ok <ref>` or `ng <ref> <reason>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefStatus {
    pub git_ref: String,
    /// `None`: updated; `Some(reason)`: refused.
    pub refused: Option<String>,
}

/// The body of a `git-receive-pack` answer: `unpack <unpack>`, one status line per ref, a flush; wrapped in
/// band 1 when the client asked for a side band, with `message` (if any) shown first as `remote: …` lines.
pub fn report(answer: Answer, unpack: &str, refs: &[RefStatus], message: Option<&str>) -> Vec<u8> {
    let mut status = Vec::new();
    pkt::write(&mut status, format!("unpack {}\n", one_line(unpack)).as_bytes());
    for r in refs {
        let line = match &r.refused {
            None => format!("ok {}\n", r.git_ref),
            Some(reason) => format!("ng {} {}\n", r.git_ref, one_line(reason)),
        };
        pkt::write(&mut status, clip(&line).as_bytes());
    }
    status.extend_from_slice(pkt::FLUSH);
    if !(answer.side_band || answer.side_band_64k) {
        return status;
    }
    // `side-band` carries at most 1000 bytes a packet, `side-band-64k` up to a full pkt-line.
    let chunk = if answer.side_band_64k { pkt::MAX_PKT_DATA - 1 } else { 999 };
    let mut out = Vec::new();
    if let Some(m) = message {
        let mut text = String::new();
        for line in m.lines() {
            text.push_str(&one_line(line));
            text.push('\n');
        }
        band(&mut out, 2, text.as_bytes(), chunk);
    }
    band(&mut out, 1, &status, chunk);
    out.extend_from_slice(pkt::FLUSH);
    out
}

fn band(out: &mut Vec<u8>, number: u8, data: &[u8], chunk: usize) {
    for piece in data.chunks(chunk) {
        let mut payload = Vec::with_capacity(piece.len() + 1);
        payload.push(number);
        payload.extend_from_slice(piece);
        pkt::write(out, &payload);
    }
}

/// A reason fit for one status line: control characters (a newline would end the line and let a reason
/// forge another ref's status) become spaces.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// A status line cut to fit one pkt-line (at a character boundary).
fn clip(line: &str) -> String {
    const ROOM: usize = 1000;
    if line.len() <= ROOM {
        return line.to_owned();
    }
    let mut end = ROOM - 4;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...\n", &line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs() -> Vec<RefStatus> {
        vec![
            RefStatus { git_ref: "refs/heads/main".into(), refused: Some("force push\nok refs/heads/x".into()) },
            RefStatus { git_ref: "refs/heads/x".into(), refused: Some("not pushed".into()) },
        ]
    }

    #[test]
    fn plain_report_is_pkt_lines_and_a_flush() {
        let body = report(Answer::default(), "ok", &refs(), Some("ignored without a side band"));
        let text = String::from_utf8(body).unwrap();
        assert_eq!(
            text,
            "000eunpack ok\n0032ng refs/heads/main force push ok refs/heads/x\n001fng refs/heads/x not pushed\n0000"
        );
    }

    #[test]
    fn side_band_wraps_the_report_in_band_one_after_the_message() {
        let answer = Answer { side_band_64k: true, side_band: false };
        let body = report(answer, "ok", &refs(), Some("refused by policy"));
        let (first, used) = pkt::read(&body).unwrap().unwrap();
        assert_eq!(first, pkt::Pkt::Data(b"\x02refused by policy\n"));
        let (second, _) = pkt::read(&body[used..]).unwrap().unwrap();
        let pkt::Pkt::Data(inner) = second else { panic!("data") };
        assert_eq!(inner[0], 1);
        assert_eq!(&inner[1..], &report(Answer::default(), "ok", &refs(), None)[..]);
        assert!(body.ends_with(b"0000"));
    }

    #[test]
    fn long_reasons_are_clipped_to_one_line() {
        let long = vec![RefStatus { git_ref: "refs/heads/a".into(), refused: Some("é".repeat(2000)) }];
        let body = report(Answer::default(), "ok", &long, None);
        let (p, _) = pkt::read(&body[14..]).unwrap().unwrap();
        let pkt::Pkt::Data(line) = p else { panic!("data") };
        assert!(line.len() <= 1000 && line.ends_with(b"...\n"));
    }
}
