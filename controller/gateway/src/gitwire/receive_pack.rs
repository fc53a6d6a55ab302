//! A push through the broker (`POST …/git-receive-pack`): the body is spooled (bounded by
//! `egress.maxPushBytes` and a deadline), its command list read, and the push decided as one `git_push`
//! event in two steps. First on its most lenient reading (every update taken as a fast-forward): a push
//! refused even so is answered without touching a mirror, so refused pushes cannot make the gateway fetch
//! repositories. Then, with each update's fast-forward worked out from the objects (a mirror of the remote
//! plus the pushed pack), for real. Allowed: the original request (the same bytes) goes upstream and the
//! upstream's answer comes back. Refused, or anything that cannot be read: nothing goes upstream and git
//! gets its answer in its own protocol (`ng <ref> <reason>`), so the agent sees why. A session has at most
//! `PushLimits::per_session` pushes in progress.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use paddock_api::{Phase, Verdict};
use paddock_policy::{Event, RefUpdate};
use tokio::io::AsyncReadExt;

use super::ancestry::{self, Pack};
use super::commands::{self, Commands};
use super::mirror::{Mirrors, Remote};
use super::report::{self, Answer, RefStatus};
use crate::broker::upstream::{BoxError, ProxyBody};
use crate::gateway::{Early, Gateway, Ruling, Session};

/// The most of a body's head read to find its commands (a push of thousands of refs fits).
const HEAD_MAX: usize = 8 << 20;
/// How long the client may pause while sending its body.
const IDLE: Duration = Duration::from_secs(120);
/// How long a refused body is drained, so that the client reads the answer instead of a broken pipe.
const DRAIN: Duration = Duration::from_secs(60);
/// The most of the head of a push refused before it is read kept: its first command line (one pkt-line,
/// at most 65520 bytes) says how to answer, and a small push's whole command list fits.
const REFUSED_HEAD_MAX: usize = 64 << 10;
/// How the record of a push refused on its lenient reading says so: its event lists every update that is
/// neither a creation nor a deletion as a fast-forward, which was assumed, not shown.
const LENIENT_READING: &str = "decided before the remote's history was read, every update that is neither a creation \
                               nor a deletion taken as a fast-forward";

/// Where the push goes: the brokered host as the tunnel reaches it.
#[derive(Clone)]
pub struct Destination {
    /// `https` (`http` in tests).
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// The session's credential for the host (header name, value): the mirror fetches with it.
    pub credential: Option<(String, String)>,
}

/// Whether a request is a push: `POST` to a path ending in `/git-receive-pack` (any spelling: the caller
/// routes it here, and a spelling the host would not serve is refused here).
pub fn is_push(method: &hyper::Method, route: &str) -> bool {
    method == hyper::Method::POST && route.to_ascii_lowercase().trim_end_matches('/').ends_with("/git-receive-pack")
}

/// Judges and answers one push. `forward` sends a request to the host and gives its answer (the caller's
/// upstream; it adds the credential); it is called at most once, with the original request, only when every
/// update is allowed.
pub async fn handle<B, F, Fut>(
    gw: &Arc<Gateway>,
    s: &Arc<Session>,
    mirrors: &Mirrors,
    to: &Destination,
    req: Request<B>,
    forward: F,
) -> Response<ProxyBody>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    F: FnOnce(Request<ProxyBody>) -> Fut,
    Fut: std::future::Future<Output = Response<ProxyBody>>,
{
    let (parts, body) = req.into_parts();
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.trim().eq_ignore_ascii_case("application/x-git-receive-pack-request") {
        return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, "a push is `application/x-git-receive-pack-request`");
    }
    let limits = mirrors.push_limits().clone();
    // Held until the answer is made: the spooled body, the mirror's refresh and the decision.
    let Some(_slot) = mirrors.begin_push(&s.id) else {
        return over_limit(gw, s, parts, body, limits.per_session, forward).await;
    };
    let max = gw.broker.config().max_push_bytes;
    let spooled = match spool(body, &mirrors.scratch(), max, limits.arrival).await {
        Ok(s) => s,
        Err(Unread { why, head }) => return refusal(&head, None, &format!("cannot read the push: {why}")),
    };
    let gzip = match encoding(&parts.headers) {
        Ok(g) => g,
        Err(why) => return refusal(&spooled.head, None, &why),
    };
    if spooled.too_large {
        let why = format!("the push is larger than egress.maxPushBytes ({max} bytes)");
        return refusal(&spooled.head, None, &why);
    }
    let decoded = match gzip {
        false => Decoded { file: spooled.file.reopen(), len: spooled.len, head: spooled.head.clone() },
        true => match gunzip(&spooled.file, &mirrors.scratch(), max).await {
            Ok(d) => d,
            Err(why) => return refusal(&[], None, &why),
        },
    };
    let (file, len, head) = match decoded {
        Decoded { file: Ok(f), len, head } => (f, len, head),
        Decoded { file: Err(e), .. } => return text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    // Before a large (chunked) push, git probes with an empty command list: it updates nothing, and the
    // host's answer tells git it may send the rest.
    if len == 4 && head == crate::gitwire::pkt::FLUSH {
        return forward_spooled(parts, spooled, forward).await;
    }
    let commands = match commands::parse(&head, len) {
        Ok(c) => c,
        Err(e) => return refusal(&head, None, &e.to_string()),
    };
    if !commands.wants_report() {
        return text(StatusCode::FORBIDDEN, "a push through the gateway must ask for report-status");
    }
    let (path, repo) = match repository(parts.uri.path(), parts.uri.query()) {
        Ok(r) => r,
        Err(why) => return refusal(&head, Some(&commands), &why),
    };
    let remote = Remote {
        scheme: to.scheme.clone(),
        host: to.host.to_ascii_lowercase(),
        port: to.port,
        path,
        repo: repo.clone(),
        credential: to.credential.clone(),
    };
    // The most lenient reading first: a push refused even with every update a fast-forward is refused
    // whatever its ancestry, so no mirror is fetched for it. Only a deny of this reading is recorded;
    // anything else passes without a record and is decided below, once, on the real reading.
    let lenient = Event {
        phase: Phase::GitPush,
        host: Some(remote.host.clone()),
        port: Some(remote.port),
        repo: Some(repo),
        updates: commands.updates.iter().map(|u| RefUpdate { fast_forward: !u.is_delete(), ..u.clone() }).collect(),
        ..Event::default()
    };
    match gw.deny_early(s, lenient.clone(), LENIENT_READING).await {
        // An ask is the real event's to raise, once its ancestry is known.
        Ok(Early::Passes | Early::WouldAsk) => {}
        Ok(Early::Denied(ruling)) => {
            crate::egress::count(gw, Phase::GitPush, "", "deny");
            tracing::info!(session = %s.id, remote = ?remote, "push refused before its mirror was read");
            return refused(gw, s, &commands, &lenient, &ruling).await;
        }
        Err(e) => {
            crate::egress::count(gw, Phase::GitPush, "", "error");
            return refusal(&head, Some(&commands), &format!("refused: {e}"));
        }
    }
    let mut updates = commands.updates.clone();
    let pack = commands.pack_offset.map(|offset| Pack { file, offset: offset as u64 });
    judge(mirrors, &remote, pack, &mut updates).await;
    let event = Event { updates: updates.clone(), ..lenient };
    let ruling = match crate::egress::decide(gw, s, event.clone()).await {
        Ok(r) => r,
        Err(e) => return refusal(&head, Some(&commands), &format!("refused: {e}")),
    };
    if ruling.allowed() {
        tracing::info!(session = %s.id, remote = ?remote, updates = updates.len(), "push allowed; forwarding");
        return forward_spooled(parts, spooled, forward).await;
    }
    refused(gw, s, &commands, &event, &ruling).await
}

/// The answer to a push the policy refused: `ng` for each of its refs, with the reasons of those refused.
async fn refused(
    gw: &Gateway,
    s: &Session,
    commands: &Commands,
    event: &Event,
    ruling: &Ruling,
) -> Response<ProxyBody> {
    let refused = culprits(gw, s, event, ruling).await;
    let statuses = event
        .updates
        .iter()
        .map(|u| RefStatus {
            git_ref: u.git_ref.clone(),
            refused: Some(match refused.iter().find(|(r, _)| r == &u.git_ref) {
                Some((_, reason)) => reason.clone(),
                None => format!("not pushed: {} was refused", refused.first().map(|(r, _)| r.as_str()).unwrap_or("")),
            }),
        })
        .collect::<Vec<_>>();
    let message = format!("paddock: push refused{}: {}", by(ruling), ruling.reason.trim_end());
    answer(report::report(commands.answer(), "ok", &statuses, Some(&message)))
}

/// A push beyond the session's limit of pushes in progress: refused in git's protocol, from the head of its
/// body (the rest is read and dropped for a while, so that git reads the answer). Nothing is kept on disk
/// and no mirror is touched. The probe git sends before a large push (an empty command list) updates
/// nothing and goes through, so that git goes on to send the push itself and shows its refusal.
async fn over_limit<B, F, Fut>(
    gw: &Arc<Gateway>,
    s: &Arc<Session>,
    parts: hyper::http::request::Parts,
    body: B,
    limit: usize,
    forward: F,
) -> Response<ProxyBody>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    F: FnOnce(Request<ProxyBody>) -> Fut,
    Fut: std::future::Future<Output = Response<ProxyBody>>,
{
    let (head, len) = head_and_drain(body, REFUSED_HEAD_MAX).await;
    if len == Some(4) && head == crate::gitwire::pkt::FLUSH {
        return forward_bytes(parts, head, forward).await;
    }
    let why = format!(
        "this session's pushes in progress are at the gateway's limit ({limit} at once); push again when one \
         has finished"
    );
    crate::egress::count(gw, Phase::GitPush, "", "refused");
    if let Err(e) = gw.refuse(s, Phase::GitPush, "paddock/git-push-limit", &why).await {
        tracing::warn!(session = %s.id, error = %e, "cannot record a push refused for the session's limit");
    }
    refusal(&head, None, &why)
}

/// Sends the original request with `body` as its body.
async fn forward_bytes<F, Fut>(mut parts: hyper::http::request::Parts, body: Vec<u8>, forward: F) -> Response<ProxyBody>
where
    F: FnOnce(Request<ProxyBody>) -> Fut,
    Fut: std::future::Future<Output = Response<ProxyBody>>,
{
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    forward(Request::from_parts(parts, full(body))).await
}

/// Sends the original request, its body the spooled bytes as they came (still compressed if they were).
async fn forward_spooled<F, Fut>(
    mut parts: hyper::http::request::Parts,
    spooled: Spooled,
    forward: F,
) -> Response<ProxyBody>
where
    F: FnOnce(Request<ProxyBody>) -> Fut,
    Fut: std::future::Future<Output = Response<ProxyBody>>,
{
    let body = match stream_file(&spooled.file) {
        Ok(b) => b,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(spooled.len));
    drop(spooled);
    forward(Request::from_parts(parts, body)).await
}

/// Fast-forward of each update, from the mirror (refreshed now) and the pushed pack; what cannot be worked
/// out stays `false` (a creation is `true`).
async fn judge(mirrors: &Mirrors, remote: &Remote, pack: Option<Pack>, updates: &mut [RefUpdate]) {
    for u in updates.iter_mut() {
        u.fast_forward = u.is_create();
    }
    let mirror = match mirrors.refresh(remote).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(remote = ?remote, error = %e, "no mirror; no update of this push is fast-forward");
            return;
        }
    };
    if let Err(e) = ancestry::judge(mirrors.git(), &mirror, pack, &mirrors.scratch(), updates).await {
        tracing::warn!(remote = ?remote, error = %e, "cannot check ancestry; no update of this push is fast-forward");
        for u in updates.iter_mut() {
            u.fast_forward = u.is_create();
        }
    }
}

/// The refs the refusal is about, with their reasons: when the push updates several refs, each is decided
/// alone (a dry run, recorded nowhere) to tell which ones the policy refuses; when none is refused alone (the
/// policy refuses the combination), all are, with the push's reason.
async fn culprits(gw: &Gateway, s: &Session, event: &Event, ruling: &Ruling) -> Vec<(String, String)> {
    let whole = || event.updates.iter().map(|u| (u.git_ref.clone(), reason(ruling))).collect();
    if event.updates.len() < 2 {
        return whole();
    }
    let set = gw.policies();
    let Some(agent) = set.agent(&s.namespace, &s.agent) else { return whole() };
    let Ok((state, _)) = gw.spend_of(s).await else { return whole() };
    let alone: Vec<(String, String)> = event
        .updates
        .iter()
        .filter_map(|u| {
            let one = Event { updates: vec![u.clone()], ..event.clone() };
            let d = paddock_policy::evaluate(&one, &state, s.levels(agent));
            (d.verdict != Verdict::Allow).then(|| {
                let who = d.policy.map(|p| format!("{p}: ")).unwrap_or_default();
                (u.git_ref.clone(), format!("{who}{}", d.reason.trim_end()))
            })
        })
        .collect();
    if alone.is_empty() { whole() } else { alone }
}

fn reason(ruling: &Ruling) -> String {
    let who = ruling.policy.as_deref().map(|p| format!("{p}: ")).unwrap_or_default();
    format!("{who}{}", ruling.reason.trim_end())
}

fn by(ruling: &Ruling) -> String {
    match (&ruling.policy, &ruling.rule) {
        (Some(p), Some(r)) => format!(" by policy {p} (rule {r})"),
        (Some(p), None) => format!(" by policy {p}"),
        _ => String::new(),
    }
}

/// The repository of a push path: what precedes `/git-receive-pack` (the path the mirror fetches from) and
/// its last two components as `owner/name` (`.git` removed). Only the characters GitHub allows in names, so
/// that what the decision sees is what the host serves.
pub fn repository(path: &str, query: Option<&str>) -> Result<(String, String), String> {
    let bad = || format!("`{path}` is not a repository's git-receive-pack path");
    if query.is_some() {
        return Err(bad());
    }
    let prefix = path.strip_suffix("/git-receive-pack").ok_or_else(bad)?;
    let parts: Vec<&str> = prefix.split('/').skip(1).collect();
    let safe = |c: &str| {
        !c.is_empty() && c != "." && c != ".." && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if !prefix.starts_with('/') || parts.len() < 2 || !parts.iter().all(|c| safe(c)) {
        return Err(bad());
    }
    let owner = parts[parts.len() - 2];
    let name = parts[parts.len() - 1];
    let name = name.strip_suffix(".git").unwrap_or(name);
    if !safe(name) {
        return Err(bad());
    }
    Ok((prefix.to_owned(), format!("{owner}/{name}")))
}

/// Whether the body is gzip (git compresses large requests); another encoding is refused.
fn encoding(headers: &hyper::HeaderMap) -> Result<bool, String> {
    let mut gzip = false;
    for v in headers.get_all(header::CONTENT_ENCODING) {
        for e in v.to_str().map_err(|_| "unreadable Content-Encoding".to_owned())?.split(',') {
            match e.trim().to_ascii_lowercase().as_str() {
                "" | "identity" => {}
                "gzip" | "x-gzip" if !gzip => gzip = true,
                other => return Err(format!("the push's Content-Encoding `{other}` is not supported")),
            }
        }
    }
    Ok(gzip)
}

/// A body on disk.
struct Spooled {
    file: tempfile::NamedTempFile,
    len: u64,
    /// Its first bytes (up to `HEAD_MAX`).
    head: Vec<u8>,
    /// It went past the limit; the rest was drained, not kept.
    too_large: bool,
}

/// A body that could not be read whole: why, and as much of its head as arrived (to answer in git's
/// protocol when its first command line is there).
struct Unread {
    why: String,
    head: Vec<u8>,
}

/// Why the next piece of a body did not come.
enum Stalled {
    /// The client paused longer than `IDLE`.
    Idle,
    /// The deadline passed.
    Deadline,
    /// The connection failed.
    Broken(String),
}

/// The next data of a body (`None` at its end), waiting no longer than `IDLE` and not past `deadline`.
async fn next_data<B>(body: &mut B, deadline: tokio::time::Instant) -> Result<Option<Bytes>, Stalled>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    loop {
        let idle_until = tokio::time::Instant::now() + IDLE;
        let frame = match tokio::time::timeout_at(idle_until.min(deadline), body.frame()).await {
            Err(_) if idle_until < deadline => return Err(Stalled::Idle),
            Err(_) => return Err(Stalled::Deadline),
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => return Err(Stalled::Broken(e.into().to_string())),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
}

/// Writes the body to a file under `dir`, up to `max` bytes; past that it is drained for a while and dropped.
/// The whole body must arrive within `arrival`, however steadily it comes: a client trickling bytes would
/// otherwise hold its push (and the session's share of pushes in progress) forever.
async fn spool<B>(mut body: B, dir: &std::path::Path, max: u64, arrival: Duration) -> Result<Spooled, Unread>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let failed = |why: String| Unread { why, head: Vec::new() };
    std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
    let mut file = tempfile::Builder::new().prefix("push-body-").tempfile_in(dir).map_err(|e| failed(e.to_string()))?;
    let (mut len, mut head, mut too_large) = (0u64, Vec::new(), false);
    let started = tokio::time::Instant::now();
    let deadline = started + arrival;
    loop {
        // Past the limit the body is only drained, and for no longer than `DRAIN`; however it ends, the
        // answer is the refusal for its size.
        let until = if too_large { deadline.min(started + DRAIN) } else { deadline };
        let data = match next_data(&mut body, until).await {
            Ok(Some(data)) => data,
            Ok(None) => break,
            Err(_) if too_large => break,
            Err(Stalled::Idle) => {
                return Err(Unread { why: format!("the client sent nothing for {} s", IDLE.as_secs()), head });
            }
            Err(Stalled::Deadline) => {
                let why = format!("the push did not arrive within {} s", arrival.as_secs());
                return Err(Unread { why, head });
            }
            Err(Stalled::Broken(e)) => return Err(Unread { why: e, head }),
        };
        if too_large {
            continue;
        }
        // The head is kept even past the limit: its first command says how to answer.
        if head.len() < HEAD_MAX {
            head.extend_from_slice(&data[..data.len().min(HEAD_MAX - head.len())]);
        }
        len += data.len() as u64;
        if len > max {
            too_large = true;
            continue;
        }
        file.write_all(&data).map_err(|e| failed(e.to_string()))?;
    }
    file.flush().map_err(|e| failed(e.to_string()))?;
    Ok(Spooled { file, len, head, too_large })
}

/// The first `keep` bytes of a body the gateway does not take, the rest read and dropped for up to `DRAIN`;
/// and the body's length when it ended within that time.
async fn head_and_drain<B>(mut body: B, keep: usize) -> (Vec<u8>, Option<u64>)
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let deadline = tokio::time::Instant::now() + DRAIN;
    let (mut head, mut len) = (Vec::new(), 0u64);
    loop {
        match next_data(&mut body, deadline).await {
            Ok(Some(data)) => {
                head.extend_from_slice(&data[..data.len().min(keep - head.len())]);
                len += data.len() as u64;
            }
            Ok(None) => return (head, Some(len)),
            Err(_) => return (head, None),
        }
    }
}

struct Decoded {
    file: std::io::Result<std::fs::File>,
    len: u64,
    head: Vec<u8>,
}

/// The gzip body decoded into a file of its own, up to `max` bytes.
async fn gunzip(raw: &tempfile::NamedTempFile, dir: &std::path::Path, max: u64) -> Result<Decoded, String> {
    let input = raw.reopen().map_err(|e| e.to_string())?;
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut out = tempfile::Builder::new().prefix("push-plain-").tempfile_in(&dir).map_err(|e| e.to_string())?;
        let mut decoder = flate2::bufread::GzDecoder::new(std::io::BufReader::new(input)).take(max + 1);
        let len = std::io::copy(&mut decoder, &mut out).map_err(|e| format!("the push's gzip does not decode: {e}"))?;
        if len > max {
            return Err(format!("the push is larger than egress.maxPushBytes ({max} bytes) once decompressed"));
        }
        // Decoders differ on what follows the first gzip member (some read on, some stop): nothing may.
        let mut rest = decoder.into_inner().into_inner();
        if !std::io::BufRead::fill_buf(&mut rest).map_err(|e| e.to_string())?.is_empty() {
            return Err("the push's gzip body has data after its end".into());
        }
        let mut head = Vec::new();
        out.reopen()
            .map_err(|e| e.to_string())?
            .take(HEAD_MAX as u64)
            .read_to_end(&mut head)
            .map_err(|e| e.to_string())?;
        // The open handle outlives the file's name.
        Ok(Decoded { file: out.reopen(), len, head })
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The spooled body as a stream (the file's name may go; the open handle reads on).
fn stream_file(spooled: &tempfile::NamedTempFile) -> std::io::Result<ProxyBody> {
    let file = tokio::fs::File::from_std(spooled.reopen()?);
    let chunks = futures_util::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 64 << 10];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, BoxError>(Frame::data(Bytes::from(buf))), f))
            }
            Err(e) => Some((Err(Box::new(e) as BoxError), f)),
        }
    });
    Ok(StreamBody::new(chunks).boxed_unsync())
}

/// A refusal of the whole push before it could be judged: every ref of the command list (when it reads)
/// refused with `why`, or `unpack <why>` when even the refs are unknown.
fn refusal(head: &[u8], parsed: Option<&Commands>, why: &str) -> Response<ProxyBody> {
    let answer_kind = match parsed {
        Some(c) => c.answer(),
        None => match commands::first_capabilities(head) {
            Some(caps) => Answer {
                side_band_64k: caps.iter().any(|c| c == "side-band-64k"),
                side_band: caps.iter().any(|c| c == "side-band"),
            },
            None => return text(StatusCode::FORBIDDEN, &format!("push refused: {why}")),
        },
    };
    let refs = parsed.cloned().or_else(|| commands::parse(head, u64::MAX).ok()).map(|c| c.updates).unwrap_or_default();
    let message = format!("paddock: push refused: {why}");
    let statuses: Vec<RefStatus> =
        refs.iter().map(|u| RefStatus { git_ref: u.git_ref.clone(), refused: Some(why.to_owned()) }).collect();
    let unpack = if statuses.is_empty() { why } else { "ok" };
    answer(report::report(answer_kind, unpack, &statuses, Some(&message)))
}

fn answer(body: Vec<u8>) -> Response<ProxyBody> {
    let mut resp = Response::new(full(body));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-git-receive-pack-result"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn text(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(full(format!("paddock: {text}\n").into_bytes()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

fn full(bytes: Vec<u8>) -> ProxyBody {
    http_body_util::Full::new(Bytes::from(bytes)).map_err(|never| match never {}).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_from_the_path() {
        let ok = |p: &str| repository(p, None).unwrap();
        assert_eq!(ok("/acme/app.git/git-receive-pack"), ("/acme/app.git".into(), "acme/app".into()));
        assert_eq!(ok("/acme/app/git-receive-pack"), ("/acme/app".into(), "acme/app".into()));
        assert_eq!(ok("/acme/.github.git/git-receive-pack").1, "acme/.github");
        assert_eq!(ok("/prefix/acme/app.git/git-receive-pack").1, "acme/app");
        for bad in [
            "/app.git/git-receive-pack",
            "/acme/app.git/Git-Receive-Pack",
            "/acme/../app.git/git-receive-pack",
            "/acme/a%2Fb.git/git-receive-pack",
            "/acme//app.git/git-receive-pack",
            "/acme/.git/git-receive-pack",
            "/acme/app.git/git-receive-pack/",
        ] {
            assert!(repository(bad, None).is_err(), "{bad}");
        }
        assert!(repository("/acme/app.git/git-receive-pack", Some("x=1")).is_err());
    }

    #[test]
    fn encodings() {
        let mut h = hyper::HeaderMap::new();
        assert_eq!(encoding(&h), Ok(false));
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(encoding(&h), Ok(true));
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip, gzip"));
        assert!(encoding(&h).is_err());
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert!(encoding(&h).is_err());
    }
}
