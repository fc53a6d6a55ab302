//! Git's pkt-line framing: four hex digits of length (the four included), then the payload; `0000` is a
//! flush. Pure: reads from and writes to byte buffers.

/// The largest pkt-line git writes or accepts, length prefix included.
pub const MAX_PKT_LEN: usize = 65520;
/// The largest payload of one pkt-line.
pub const MAX_PKT_DATA: usize = MAX_PKT_LEN - 4;
/// A flush packet.
pub const FLUSH: &[u8] = b"0000";

/// One packet read from a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pkt<'a> {
    Flush,
    /// `0001` (protocol v2's delimiter) or `0002` (its response end): not part of a push request.
    Special(u8),
    Data(&'a [u8]),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PktError {
    #[error("a pkt-line length is not four hex digits")]
    BadLength,
    #[error("a pkt-line is longer than {MAX_PKT_LEN} bytes")]
    TooLong,
}

/// Reads one packet at the start of `buf`: the packet and how many bytes it took, or `None` when `buf`
/// does not hold a whole packet yet.
pub fn read(buf: &[u8]) -> Result<Option<(Pkt<'_>, usize)>, PktError> {
    let Some(prefix) = buf.get(..4) else { return Ok(None) };
    let mut len = 0usize;
    for &b in prefix {
        // Git writes lowercase; it reads either case. Nothing else (no sign, no space) is a length.
        let digit = (b as char).to_digit(16).ok_or(PktError::BadLength)?;
        len = len * 16 + digit as usize;
    }
    match len {
        0 => Ok(Some((Pkt::Flush, 4))),
        1..=3 => Ok(Some((Pkt::Special(len as u8), 4))),
        _ if len > MAX_PKT_LEN => Err(PktError::TooLong),
        _ => Ok(buf.get(4..len).map(|data| (Pkt::Data(data), len))),
    }
}

/// Appends `data` as one pkt-line. Callers keep payloads within [`MAX_PKT_DATA`].
pub fn write(out: &mut Vec<u8>, data: &[u8]) {
    debug_assert!(data.len() <= MAX_PKT_DATA);
    out.extend_from_slice(format!("{:04x}", data.len() + 4).as_bytes());
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_data_flush_and_partial() {
        let mut buf = Vec::new();
        write(&mut buf, b"hello\n");
        buf.extend_from_slice(FLUSH);
        assert_eq!(read(&buf), Ok(Some((Pkt::Data(b"hello\n"), 10))));
        assert_eq!(read(&buf[10..]), Ok(Some((Pkt::Flush, 4))));
        assert_eq!(read(&buf[..7]), Ok(None));
        assert_eq!(read(b"00"), Ok(None));
        assert_eq!(read(b"0001"), Ok(Some((Pkt::Special(1), 4))));
    }

    #[test]
    fn refuses_what_git_would_not_write() {
        assert_eq!(read(b"+00a"), Err(PktError::BadLength));
        assert_eq!(read(b" 00a"), Err(PktError::BadLength));
        assert_eq!(read(b"fff1"), Err(PktError::TooLong));
        assert_eq!(read(b"000Axxxxxx"), Ok(Some((Pkt::Data(b"xxxxxx"), 10))));
    }
}
