//! The server name a TLS client asks for, read from its ClientHello (RFC 8446 §4.1.2, RFC 6066 §3). Pure:
//! the proxy feeds it the bytes it has read so far and reads more while the answer is [`Hello::Incomplete`].
//!
//! A ClientHello may arrive in several TCP segments and, rarely, in several TLS records (a handshake message
//! may be fragmented across records); both are put back together here. Anything that is not a well-formed
//! ClientHello is [`Hello::NotTls`] or [`Hello::Malformed`], and the proxy cuts such a tunnel to a name. So is a
//! ClientHello offering Encrypted Client Hello: its outer SNI may be any name the address serves, and the name
//! the server answers for is encrypted.

/// What the bytes read so far say.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// A prefix of a ClientHello: read more.
    Incomplete,
    /// The first byte is not a TLS handshake record: another protocol.
    NotTls,
    /// A TLS record stream that does not hold a well-formed ClientHello.
    Malformed(&'static str),
    /// A complete ClientHello and the host name it carries (`None`: no `server_name` extension).
    ClientHello { server_name: Option<String> },
}

const RECORD_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
/// Encrypted Client Hello (draft-ietf-tls-esni; `encrypted_client_hello`, 0xfe0d) and its withdrawn predecessor, encrypted
/// SNI (draft `encrypted_server_name`, 0xffce): both carry the server's real name where the proxy cannot read
/// it, behind an outer SNI that may be any name the address serves.
const EXTENSION_ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
const EXTENSION_ENCRYPTED_SERVER_NAME: u16 = 0xffce;
const NAME_TYPE_HOST_NAME: u8 = 0;
/// The largest record fragment TLS allows (2^14), plus the expansion TLS 1.2 allows for compressed
/// records; a ClientHello is never compressed, so a larger one is garbage.
const MAX_FRAGMENT: usize = (1 << 14) + 1024;

/// Reads the ClientHello at the start of `buf` (the first bytes a client sent into a tunnel).
pub fn parse(buf: &[u8]) -> Hello {
    match buf.first() {
        None => return Hello::Incomplete,
        Some(&RECORD_HANDSHAKE) => {}
        Some(_) => return Hello::NotTls,
    }
    let message = match handshake_message(buf) {
        Ok(Some(m)) => m,
        Ok(None) => return Hello::Incomplete,
        Err(e) => return Hello::Malformed(e),
    };
    match client_hello_server_name(&message) {
        Ok(server_name) => Hello::ClientHello { server_name },
        Err(e) => Hello::Malformed(e),
    }
}

/// Joins the handshake records at the start of `buf` until they hold the first handshake message; returns
/// that message's body (without its 4-byte header), or `None` when more bytes are needed.
fn handshake_message(buf: &[u8]) -> Result<Option<Vec<u8>>, &'static str> {
    let mut joined = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            return Ok(None);
        }
        if rest[0] != RECORD_HANDSHAKE {
            return Err("a record other than a handshake arrived before the ClientHello was complete");
        }
        if rest[1] != 3 {
            return Err("the record's protocol version is not TLS");
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > MAX_FRAGMENT {
            return Err("the record's length is out of bounds");
        }
        if rest.len() < 5 + len {
            return Ok(None);
        }
        joined.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if joined.len() >= 4 {
            if joined[0] != HANDSHAKE_CLIENT_HELLO {
                return Err("the first handshake message is not a ClientHello");
            }
            let body_len = usize::from(joined[1]) << 16 | usize::from(joined[2]) << 8 | usize::from(joined[3]);
            if joined.len() >= 4 + body_len {
                if joined.len() > 4 + body_len {
                    // TLS 1.3 forbids another handshake message in the ClientHello's records; no client sends one.
                    return Err("the ClientHello's records carry more than the ClientHello");
                }
                joined.drain(..4);
                return Ok(Some(joined));
            }
        }
    }
}

/// A cursor over a ClientHello's fields; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.buf.len() < n {
            return Err("the ClientHello is truncated");
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, &'static str> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    /// A field prefixed by its length in one byte.
    fn vec8(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    /// A field prefixed by its length in two bytes.
    fn vec16(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

fn client_hello_server_name(body: &[u8]) -> Result<Option<String>, &'static str> {
    let mut r = Reader { buf: body };
    let _legacy_version = r.u16()?;
    let _random = r.take(32)?;
    if r.vec8()?.len() > 32 {
        return Err("the session id is longer than 32 bytes");
    }
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err("the cipher suite list is malformed");
    }
    if r.vec8()?.is_empty() {
        return Err("the compression method list is empty");
    }
    if r.buf.is_empty() {
        // An SSL 3 style ClientHello without extensions: no name.
        return Ok(None);
    }
    let mut extensions = Reader { buf: r.vec16()? };
    if !r.buf.is_empty() {
        return Err("bytes follow the ClientHello's extensions");
    }
    let mut server_name = None;
    let mut seen = std::collections::HashSet::new();
    while !extensions.buf.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec16()?;
        if !seen.insert(kind) {
            // RFC 8446 §4.2: at most one extension of each type; a second one could mean something else
            // to the server than to the proxy.
            return Err("an extension appears twice");
        }
        if kind == EXTENSION_SERVER_NAME {
            server_name = Some(host_name(data)?);
        }
        if kind == EXTENSION_ENCRYPTED_CLIENT_HELLO || kind == EXTENSION_ENCRYPTED_SERVER_NAME {
            // GREASE (a decoy some browsers send) cannot be told from the real thing: both are cut.
            return Err("it offers Encrypted Client Hello, which would hide from the proxy the server it asks for");
        }
    }
    Ok(server_name)
}

/// The one `host_name` of a `server_name` extension. RFC 6066 allows one name per type; two are refused
/// rather than choosing one, since the proxy and the server might choose differently.
fn host_name(data: &[u8]) -> Result<String, &'static str> {
    let mut ext = Reader { buf: data };
    let mut list = Reader { buf: ext.vec16()? };
    if !ext.buf.is_empty() {
        return Err("bytes follow the server name list");
    }
    let mut name = None;
    while !list.buf.is_empty() {
        let kind = list.u8()?;
        let value = list.vec16()?;
        if kind != NAME_TYPE_HOST_NAME {
            return Err("the server name list holds a name of an unknown type");
        }
        if name.is_some() {
            return Err("the server name list holds two host names");
        }
        if value.is_empty() || !value.iter().all(|b| b.is_ascii_graphic()) {
            return Err("the server name is empty or not printable ASCII");
        }
        name = Some(String::from_utf8(value.to_vec()).expect("ASCII"));
    }
    name.ok_or("the server name list is empty")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello body (without record or handshake headers) with the given extensions.
    fn hello_body(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend([7u8; 32]);
        b.push(0); // session id
        b.extend([0, 2, 0x13, 0x01]); // one cipher suite
        b.extend([1, 0]); // null compression
        let mut ext = Vec::new();
        for (kind, data) in extensions {
            ext.extend(kind.to_be_bytes());
            ext.extend((data.len() as u16).to_be_bytes());
            ext.extend(data);
        }
        b.extend((ext.len() as u16).to_be_bytes());
        b.extend(ext);
        b
    }

    fn sni(names: &[&str]) -> Vec<u8> {
        let mut list = Vec::new();
        for n in names {
            list.push(0);
            list.extend((n.len() as u16).to_be_bytes());
            list.extend(n.as_bytes());
        }
        let mut d = (list.len() as u16).to_be_bytes().to_vec();
        d.extend(list);
        d
    }

    /// The handshake message (header + body) in records of at most `chunk` bytes.
    fn records(body: &[u8], chunk: usize) -> Vec<u8> {
        let mut msg = vec![HANDSHAKE_CLIENT_HELLO];
        msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend(body);
        let mut out = Vec::new();
        for piece in msg.chunks(chunk) {
            out.extend([RECORD_HANDSHAKE, 3, 1]);
            out.extend((piece.len() as u16).to_be_bytes());
            out.extend(piece);
        }
        out
    }

    fn named(n: &str) -> Hello {
        Hello::ClientHello { server_name: Some(n.into()) }
    }

    #[test]
    fn reads_the_server_name() {
        let wire = records(&hello_body(&[(10, vec![0, 2, 0, 29]), (0, sni(&["Registry.Test"]))]), 1 << 14);
        assert_eq!(parse(&wire), named("Registry.Test"));
    }

    #[test]
    fn asks_for_more_on_every_prefix_and_reads_segments_and_fragmented_records() {
        let body = hello_body(&[(0, sni(&["a.example"]))]);
        for chunk in [1 << 14, 7, 1] {
            let wire = records(&body, chunk);
            for cut in 0..wire.len() {
                assert_eq!(parse(&wire[..cut]), Hello::Incomplete, "chunk {chunk} cut {cut}");
            }
            assert_eq!(parse(&wire), named("a.example"), "chunk {chunk}");
        }
    }

    #[test]
    fn a_hello_without_the_extension_has_no_name() {
        assert_eq!(
            parse(&records(&hello_body(&[(10, vec![0, 0])]), 1 << 14)),
            Hello::ClientHello { server_name: None }
        );
        // No extensions block at all.
        let mut body = hello_body(&[]);
        body.truncate(body.len() - 2);
        assert_eq!(parse(&records(&body, 1 << 14)), Hello::ClientHello { server_name: None });
    }

    #[test]
    fn two_names_or_two_name_extensions_are_malformed() {
        let two = records(&hello_body(&[(0, sni(&["a.example", "b.example"]))]), 1 << 14);
        assert!(matches!(parse(&two), Hello::Malformed(_)));
        let twice = records(&hello_body(&[(0, sni(&["a.example"])), (0, sni(&["b.example"]))]), 1 << 14);
        assert!(matches!(parse(&twice), Hello::Malformed(_)));
        let empty = records(&hello_body(&[(0, sni(&[]))]), 1 << 14);
        assert!(matches!(parse(&empty), Hello::Malformed(_)));
        let nul = records(&hello_body(&[(0, sni(&["a.example\0.evil"]))]), 1 << 14);
        assert!(matches!(parse(&nul), Hello::Malformed(_)));
    }

    #[test]
    fn other_protocols_and_garbage() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(parse(b"SSH-2.0-OpenSSH\r\n"), Hello::NotTls);
        // A handshake record that holds no ClientHello (a ServerHello, type 2).
        assert!(matches!(parse(&[22, 3, 1, 0, 4, 2, 0, 0, 0]), Hello::Malformed(_)));
        // A record length beyond what TLS allows.
        assert!(matches!(parse(&[22, 3, 1, 0xff, 0xff]), Hello::Malformed(_)));
        // Not TLS's version byte.
        assert!(matches!(parse(&[22, 9, 1, 0, 4]), Hello::Malformed(_)));
        // An alert record in the middle of a fragmented ClientHello.
        let mut wire = records(&hello_body(&[(0, sni(&["a.example"]))]), 10);
        wire.truncate(15);
        wire.extend([21, 3, 1, 0, 2, 2, 40]);
        assert!(matches!(parse(&wire), Hello::Malformed(_)));
        // Lengths that point past the message.
        let mut body = hello_body(&[(0, sni(&["a.example"]))]);
        let n = body.len();
        body[n - 14] = 0xff;
        assert!(matches!(parse(&records(&body, 1 << 14)), Hello::Malformed(_)));
        // Trailing bytes after the ClientHello in its record.
        let mut wire = records(&hello_body(&[(0, sni(&["a.example"]))]), 1 << 14);
        wire[4] += 1;
        wire.push(0);
        assert!(matches!(parse(&wire), Hello::Malformed(_)));
    }

    #[test]
    fn never_panics_on_any_prefix_or_byte_flip() {
        let wire = records(&hello_body(&[(10, vec![0, 2, 0, 29]), (0, sni(&["a.example"]))]), 50);
        for i in 0..wire.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut w = wire.clone();
                w[i] = v;
                let _ = parse(&w);
                let _ = parse(&w[..i]);
            }
        }
    }

    #[test]
    fn a_real_client_hello_from_rustls() {
        use std::sync::Arc;
        let roots = rustls::RootCertStore::empty();
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("registry.test").unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
        let mut wire = Vec::new();
        conn.write_tls(&mut wire).unwrap();
        assert_eq!(parse(&wire), named("registry.test"));
    }

    /// A real ClientHello from rustls for `name`, with `(kind, data)` added after its extensions.
    fn rustls_hello_with(name: &str, kind: u16, data: &[u8]) -> Vec<u8> {
        use std::sync::Arc;
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
        let mut wire = Vec::new();
        conn.write_tls(&mut wire).unwrap();
        assert_eq!((wire[0], wire[5]), (RECORD_HANDSHAKE, HANDSHAKE_CLIENT_HELLO), "one record, the ClientHello");
        let mut body = wire[9..].to_vec();
        let mut at = 2 + 32;
        at += 1 + usize::from(body[at]);
        at += 2 + usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
        at += 1 + usize::from(body[at]);
        let len = usize::from(u16::from_be_bytes([body[at], body[at + 1]])) + 4 + data.len();
        body[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
        body.extend(kind.to_be_bytes());
        body.extend((data.len() as u16).to_be_bytes());
        body.extend(data);
        records(&body, 1 << 14)
    }

    #[test]
    fn a_real_client_hello_offering_encrypted_client_hello_is_malformed() {
        // An outer ECH extension: type outer, HKDF-SHA256/AES-128-GCM, config 0x42, a key share, a sealed inner
        // hello (which may name any site the address serves).
        let mut ech = vec![0, 0, 1, 0, 1, 0x42, 0, 32];
        ech.extend([7u8; 32]);
        ech.extend(64u16.to_be_bytes());
        ech.extend([9u8; 64]);
        assert_eq!(parse(&rustls_hello_with("registry.test", 0x1234, &ech)), named("registry.test"));
        for kind in [EXTENSION_ENCRYPTED_CLIENT_HELLO, EXTENSION_ENCRYPTED_SERVER_NAME] {
            let wire = rustls_hello_with("registry.test", kind, &ech);
            match parse(&wire) {
                Hello::Malformed(why) => assert!(why.contains("Encrypted Client Hello"), "{why}"),
                other => panic!("{kind:#x}: {other:?}"),
            }
            // Also when it is the only extension besides the name, and split across records.
            let body = hello_body(&[(0, sni(&["registry.test"])), (kind, ech.clone())]);
            assert!(matches!(parse(&records(&body, 7)), Hello::Malformed(_)), "{kind:#x}");
        }
    }
}
