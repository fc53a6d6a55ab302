//! A small HTTP/1.1 server (TLS optional) whose handler is a plain function run on a blocking thread, with
//! a runtime of its own: it stops when dropped. Every request it received is recorded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The `Host` header without its port, lowercase.
    pub host: String,
    pub path: String,
    pub query: String,
    /// Header names lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response { status, headers: vec![("content-type".into(), content_type.into())], body: body.into() }
    }
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        Response::new(status, "application/json", v.to_string())
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

pub struct Server {
    pub port: u16,
    /// Every request received, in order.
    pub seen: Arc<Mutex<Vec<Request>>>,
    _rt: tokio::runtime::Runtime,
}

impl Server {
    /// Serves `handler` on 127.0.0.1 at a port the kernel picks; over TLS when `tls` is given.
    pub fn start(tls: Option<Arc<rustls::ServerConfig>>, handler: Handler) -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
        let log = seen.clone();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
            loop {
                let Ok((tcp, peer)) = listener.accept().await else { continue };
                let (handler, log, acceptor) = (handler.clone(), log.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Some(a) => {
                            if let Ok(stream) = a.accept(tcp).await {
                                serve_connection(stream, peer, handler, log).await;
                            }
                        }
                        None => serve_connection(tcp, peer, handler, log).await,
                    }
                });
            }
        });
        Server { port, seen, _rt: rt }
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve_connection<S>(stream: S, _peer: SocketAddr, handler: Handler, log: Arc<Mutex<Vec<Request>>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let (handler, log) = (handler.clone(), log.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
            let host = parts
                .headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .or_else(|| parts.uri.host())
                .unwrap_or_default();
            let host = host.rsplit_once(':').map_or(host, |(h, _)| h).to_ascii_lowercase();
            let request = Request {
                method: parts.method.to_string(),
                host,
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or_default().to_owned(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect(),
                body,
            };
            log.lock().unwrap().push(request.clone());
            let answer = tokio::task::spawn_blocking(move || handler(&request)).await.unwrap();
            let mut resp = hyper::Response::builder().status(answer.status);
            for (n, v) in &answer.headers {
                resp = resp.header(n, v);
            }
            Ok::<_, std::convert::Infallible>(resp.body(Full::new(Bytes::from(answer.body))).unwrap())
        }
    });
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
}
