//! The gateway's own write-ahead log for a SQLite database: a group of writes is durable once it is appended
//! here, and the database is brought up to date behind it. An append is one `write` (plus `fdatasync` when
//! asked), so a caller never waits on SQLite's transaction or checkpoint work — which is what made SQLite's
//! tail latency.
//!
//! The log is a directory of segment files named by their first record's sequence number. A record is
//! `[u32 length][u32 crc32][payload]`, little-endian; the payload is the record's sequence number and its SQL
//! statements with their values. The checksum is crc32fast's, not a byte-at-a-time table: it runs over every
//! record on the request path, and a table lookup per byte was 2 % of a proxied request's CPU
//! (`docs/performance.md`). The database keeps the last applied sequence number in the same
//! transaction as the rows (`journal_applied`), so a replay after a crash applies each record exactly once.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write as _};
use std::path::{Path, PathBuf};

use crate::store::{Param, Stmt};

/// A segment is closed and a new one begun once it is this large; closed segments are deleted once the
/// database has applied them.
const SEGMENT_BYTES: u64 = 8 << 20;
/// A record larger than this is corruption, not data (a batch is at most a few MiB).
const MAX_RECORD_BYTES: u32 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: record at byte {offset} is damaged ({what}); the records after it cannot be trusted")]
    Damaged { path: PathBuf, offset: u64, what: String },
    #[error("another paddock gateway is using `{0}` (its lock is held)")]
    Locked(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io { path: path.to_owned(), source }
}

/// One group commit.
#[derive(Debug, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub stmts: Vec<Stmt>,
}

/// The open log: appends go to the newest segment.
pub struct Journal {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    len: u64,
    /// Closed segments and the last sequence number each holds.
    closed: Vec<(PathBuf, u64)>,
    last_seq: u64,
    fsync: bool,
    /// Held for as long as the log is open: one gateway per database.
    _lock: std::sync::Arc<File>,
}

impl Journal {
    /// Locks the directory (creating it) and reads every record in it, oldest first. A record cut short at
    /// the very end of the newest segment is a write the crash interrupted — never acknowledged — and is
    /// dropped; damage anywhere else is an error, since records after it were acknowledged.
    pub fn recover(dir: &Path, wait: std::time::Duration) -> Result<(File, Vec<Record>), JournalError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join("lock");
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err(&lock_path))?;
        // A gateway that is stopping may still be applying its last records: give it `wait`.
        let deadline = std::time::Instant::now() + wait;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(std::fs::TryLockError::WouldBlock) => return Err(JournalError::Locked(dir.to_owned())),
                Err(std::fs::TryLockError::Error(e)) => return Err(JournalError::Io { path: lock_path, source: e }),
            }
        }
        let segments = segments(dir)?;
        let mut records = Vec::new();
        for (i, path) in segments.iter().enumerate() {
            let newest = i + 1 == segments.len();
            let mut bytes = Vec::new();
            File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io_err(path))?;
            let mut at = 0usize;
            while at < bytes.len() {
                match decode_record(&bytes[at..]) {
                    Ok((rec, used)) => {
                        records.push(rec);
                        at += used;
                    }
                    Err(Decode::Short) if newest => {
                        tracing::warn!(path = %path.display(), offset = at, "dropping a record cut short by a crash (never acknowledged)");
                        break;
                    }
                    Err(e) => {
                        return Err(JournalError::Damaged {
                            path: path.clone(),
                            offset: at as u64,
                            what: e.to_string(),
                        });
                    }
                }
            }
        }
        Ok((lock, records))
    }

    /// Deletes every segment (their records are in the database) and starts an empty one after `last_seq`.
    pub fn start(dir: &Path, lock: std::sync::Arc<File>, last_seq: u64, fsync: bool) -> Result<Journal, JournalError> {
        for path in segments(dir)? {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
        let (file, path) = new_segment(dir, last_seq + 1, fsync)?;
        Ok(Journal { dir: dir.to_owned(), file, path, len: 0, closed: Vec::new(), last_seq, fsync, _lock: lock })
    }

    /// Appends the next record; returns its sequence number once it is durable. A failed append leaves the
    /// log as it was.
    pub fn append(&mut self, stmts: &[Stmt]) -> Result<u64, JournalError> {
        let seq = self.last_seq + 1;
        let bytes = encode_record(seq, stmts);
        let written =
            self.file.write_all(&bytes).and_then(|()| if self.fsync { self.file.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            // Cut off whatever part was written, so that the next record follows a whole one.
            if let Err(e2) = self.file.set_len(self.len) {
                tracing::error!(path = %self.path.display(), error = %e2, "cannot cut a failed append off the log");
            }
            return Err(JournalError::Io { path: self.path.clone(), source: e });
        }
        self.len += bytes.len() as u64;
        self.last_seq = seq;
        if self.len >= SEGMENT_BYTES
            && let Err(e) = self.rotate()
        {
            // The record is written: that is what the caller asked. The segment grows until a rotation works.
            tracing::warn!(error = %e, "cannot start a new log segment; the current one keeps growing");
        }
        Ok(seq)
    }

    fn rotate(&mut self) -> Result<(), JournalError> {
        let (file, path) = new_segment(&self.dir, self.last_seq + 1, self.fsync)?;
        let old = std::mem::replace(&mut self.path, path);
        self.file = file;
        self.len = 0;
        self.closed.push((old, self.last_seq));
        Ok(())
    }

    /// The closed segments whose records the database has applied, given up for [`delete_segment`]: not
    /// deleted here, because this runs on the thread that answers requests and deleting an 8 MiB file frees
    /// its cached pages (about a millisecond, every half second under load; `docs/performance.md`).
    pub fn retire(&mut self, applied: u64) -> Vec<PathBuf> {
        // Called after every append: nothing is allocated unless a segment is given up.
        self.closed.extract_if(.., |(_, last)| *last <= applied).map(|(path, _)| path).collect()
    }
}

/// Deletes a segment [`Journal::retire`] gave up. One left behind (a crash first) holds only applied records:
/// the next start skips them and deletes it.
pub fn delete_segment(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot delete an applied log segment");
    }
}

/// The log's segment files in `dir`, in log order.
pub(crate) fn segments(dir: &Path) -> Result<Vec<PathBuf>, JournalError> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    // Names are zero-padded sequence numbers, so the names sort in log order.
    out.sort();
    Ok(out)
}

fn new_segment(dir: &Path, first_seq: u64, fsync: bool) -> Result<(File, PathBuf), JournalError> {
    let path = dir.join(format!("{first_seq:020}.log"));
    let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
    if fsync {
        // The new file's directory entry must survive a power loss too.
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    }
    Ok((file, path))
}

// ---- encoding ----

fn encode_record(seq: u64, stmts: &[Stmt]) -> Vec<u8> {
    let mut out = vec![0u8; 8];
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(stmts.len() as u32).to_le_bytes());
    for st in stmts {
        put_str(&mut out, &st.sql);
        out.extend_from_slice(&(st.params.len() as u32).to_le_bytes());
        for p in &st.params {
            match p {
                Param::Text(None) => out.push(0),
                Param::Text(Some(s)) => {
                    out.push(1);
                    put_str(&mut out, s);
                }
                Param::Int(v) => {
                    out.push(2);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                Param::Float(None) => out.push(3),
                Param::Float(Some(v)) => {
                    out.push(4);
                    out.extend_from_slice(&v.to_bits().to_le_bytes());
                }
            }
        }
    }
    let len = (out.len() - 8) as u32;
    let crc = crc32fast::hash(&out[8..]);
    out[0..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

#[derive(Debug, thiserror::Error, PartialEq)]
enum Decode {
    #[error("cut short")]
    Short,
    #[error("checksum mismatch")]
    Checksum,
    #[error("{0}")]
    Bad(&'static str),
}

/// Decodes the record at the start of `bytes`; returns it and the bytes it took.
fn decode_record(bytes: &[u8]) -> Result<(Record, usize), Decode> {
    if bytes.len() < 8 {
        return Err(Decode::Short);
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    if len > MAX_RECORD_BYTES {
        return Err(Decode::Bad("impossible length"));
    }
    let end = 8 + len as usize;
    if bytes.len() < end {
        return Err(Decode::Short);
    }
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let payload = &bytes[8..end];
    if crc32fast::hash(payload) != crc {
        return Err(Decode::Checksum);
    }
    let mut r = Reader(payload);
    let seq = r.u64()?;
    let n = r.u32()?;
    let mut stmts = Vec::with_capacity(n.min(4096) as usize);
    for _ in 0..n {
        let sql = r.str()?;
        let np = r.u32()?;
        let mut params = Vec::with_capacity(np.min(65_536) as usize);
        for _ in 0..np {
            params.push(match r.u8()? {
                0 => Param::Text(None),
                1 => Param::Text(Some(r.str()?)),
                2 => Param::Int(r.u64()? as i64),
                3 => Param::Float(None),
                4 => Param::Float(Some(f64::from_bits(r.u64()?))),
                _ => return Err(Decode::Bad("unknown value tag")),
            });
        }
        stmts.push(Stmt { sql, params });
    }
    if !r.0.is_empty() {
        return Err(Decode::Bad("trailing bytes"));
    }
    Ok((Record { seq, stmts }, end))
}

/// For the fuzz targets (`fuzz/`): `payload` framed as a record, with its length and checksum, then
/// decoded. Raw bytes would rarely get past the checksum, so damage inside a record is reached this way.
#[doc(hidden)]
pub fn decode_framed(payload: &[u8]) -> Result<usize, String> {
    let mut framed = Vec::with_capacity(payload.len() + 8);
    framed.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    framed.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    framed.extend_from_slice(payload);
    decode_record(&framed).map(|(r, taken)| r.stmts.len() + taken).map_err(|e| e.to_string())
}

/// For the fuzz targets: recovers the log in `dir` (see [`Journal::recover`]) and counts its records.
#[doc(hidden)]
pub fn recover_count(dir: &Path) -> Result<usize, JournalError> {
    Journal::recover(dir, std::time::Duration::ZERO).map(|(_, records)| records.len())
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Decode> {
        if self.0.len() < n {
            return Err(Decode::Bad("record shorter than its contents"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Decode> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, Decode> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, Decode> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn str(&mut self) -> Result<String, Decode> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Decode::Bad("text is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: std::time::Duration = std::time::Duration::from_millis(200);

    fn stmts(n: i64) -> Vec<Stmt> {
        vec![
            Stmt {
                sql: "INSERT INTO t (a, b, c) VALUES (?, ?, ?)".into(),
                params: vec![
                    Param::Text(Some(format!("row {n} ü"))),
                    Param::Int(n),
                    Param::Float(Some(0.1 + n as f64)),
                ],
            },
            Stmt { sql: "UPDATE t SET a = ? WHERE c = ?".into(), params: vec![Param::Text(None), Param::Float(None)] },
        ]
    }

    #[test]
    fn the_checksum_is_the_standard_crc32() {
        // The log's format says CRC-32 (IEEE); a log written by one build is read by the next.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn records_round_trip_exactly() {
        let bytes = encode_record(7, &stmts(3));
        let (rec, used) = decode_record(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(rec, Record { seq: 7, stmts: stmts(3) });
    }

    #[test]
    fn appended_records_are_recovered_after_a_reopen_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, recs) = Journal::recover(dir.path(), WAIT).unwrap();
        assert!(recs.is_empty());
        let mut j = Journal::start(dir.path(), lock.into(), 0, false).unwrap();
        for n in 0..3 {
            j.append(&stmts(n)).unwrap();
        }
        let seg = j.path.clone();
        drop(j);
        // A crash in the middle of the fourth append.
        let torn = encode_record(4, &stmts(3));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&torn[..torn.len() / 2]).unwrap();
        let (_lock, recs) = Journal::recover(dir.path(), WAIT).unwrap();
        assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(recs[2].stmts, stmts(2));
    }

    #[test]
    fn damage_before_the_end_is_an_error_that_names_the_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, _) = Journal::recover(dir.path(), WAIT).unwrap();
        let mut j = Journal::start(dir.path(), lock.into(), 0, false).unwrap();
        j.append(&stmts(1)).unwrap();
        j.append(&stmts(2)).unwrap();
        let seg = j.path.clone();
        drop(j);
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[20] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();
        let err = Journal::recover(dir.path(), WAIT).unwrap_err().to_string();
        assert!(
            err.contains(&seg.display().to_string()) && err.contains("byte 0") && err.contains("checksum"),
            "{err}"
        );
    }

    #[test]
    fn a_second_gateway_on_the_same_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_held, _) = Journal::recover(dir.path(), WAIT).unwrap();
        let t = std::time::Instant::now();
        let err = Journal::recover(dir.path(), WAIT).unwrap_err();
        assert!(matches!(err, JournalError::Locked(_)), "{err}");
        assert!(t.elapsed() >= WAIT, "it waits for the other one to stop first");
    }

    #[test]
    fn full_segments_rotate_and_applied_ones_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, _) = Journal::recover(dir.path(), WAIT).unwrap();
        let mut j = Journal::start(dir.path(), lock.into(), 0, false).unwrap();
        let big = vec![Stmt { sql: "x".repeat(1 << 20), params: vec![] }];
        for _ in 0..20 {
            j.append(&big).unwrap();
        }
        assert_eq!(segments(dir.path()).unwrap().len(), 3, "8 records per segment");
        assert!(j.retire(7).is_empty(), "the first segment ends at 8");
        let retired = j.retire(16);
        assert_eq!(retired, segments(dir.path()).unwrap()[..2], "the two full segments, the third still open");
        assert!(j.retire(16).is_empty(), "each is given up once");
        retired.iter().for_each(|p| delete_segment(p));
        assert_eq!(segments(dir.path()).unwrap().len(), 1);
        drop(j);
        let (_lock, recs) = Journal::recover(dir.path(), WAIT).unwrap();
        assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), (17..=20).collect::<Vec<_>>());
    }
}
