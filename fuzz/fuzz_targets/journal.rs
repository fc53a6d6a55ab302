//! The gateway's log on a damaged disk. One record's contents, framed with a valid length and checksum so
//! that the damage is inside what the checksum covers; and up to three segment files of such records, then
//! cut short or with a byte flipped, recovered from a directory as the gateway does at start. Neither may
//! panic or allocate without bound.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory")).path()
}

/// Each payload (cut at 0xfe) with its length and checksum, as the log writes records.
fn segment(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for payload in bytes.split(|b| *b == 0xfe) {
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        out.extend_from_slice(payload);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut c = paddock_fuzz::Choices(data);
    let mode = c.byte();
    let at = usize::from(c.byte());
    if mode & 1 == 0 {
        let _ = paddock_gateway::fuzz_journal_record(c.rest());
        return;
    }
    let dir = dir();
    for entry in std::fs::read_dir(dir).expect("the directory").flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
    let mut segments: Vec<Vec<u8>> = paddock_fuzz::pieces(c.rest(), 3).into_iter().map(segment).collect();
    let last = segments.len() - 1;
    match mode >> 1 & 3 {
        // A torn write: the newest segment cut short.
        1 => {
            let len = segments[last].len();
            segments[last].truncate(len.saturating_sub(at));
        }
        // A flipped bit anywhere in the oldest.
        2 if !segments[0].is_empty() => {
            let i = at % segments[0].len();
            segments[0][i] ^= 1 << (mode >> 3 & 7);
        }
        _ => {}
    }
    for (i, s) in segments.iter().enumerate() {
        std::fs::write(dir.join(format!("{:020}.log", i + 1)), s).expect("a segment");
    }
    let _ = paddock_gateway::fuzz_journal_recover(dir);
});
