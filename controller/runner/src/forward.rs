//! Inside a local sandbox the only way out is the gateway's Unix socket. The harnesses (and their SDKs) speak
//! HTTP over TCP, so the runner listens on the sandbox's own loopback and relays each connection to the
//! socket.

use std::path::PathBuf;

use tokio::net::{TcpListener, UnixStream};

/// Starts the relay; returns the `http://127.0.0.1:PORT` base URL that reaches the gateway.
pub async fn relay_to_socket(socket: PathBuf) -> std::io::Result<String> {
    // Fail now, with the path in the message, rather than on the first request.
    UnixStream::connect(&socket)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot reach the gateway at {}: {e}", socket.display())))?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else { continue };
            let socket = socket.clone();
            tokio::spawn(async move {
                match UnixStream::connect(&socket).await {
                    Ok(mut unix) => {
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "gateway socket unreachable"),
                }
            });
        }
    });
    Ok(url)
}
