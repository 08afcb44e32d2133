//! A TCP proxy a test can switch off and on, to take a shared peer away from one agent without stopping it for
//! every other test that uses it.
//!
//! "Down" closes every live connection at once and closes each new one as soon as it is accepted, as a broker that
//! crashed and is being restarted looks to a client; the listening port stays bound throughout, so nothing else can
//! take it and "up" needs no rebind.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A proxy from a free port on 127.0.0.1 to one target. Dropping it stops it and closes its connections.
pub struct TcpProxy {
    pub port: u16,
    up: watch::Sender<bool>,
    acceptor: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding a free port to `target`, up.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (up, watching) = watch::channel(true);
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *watching.borrow() {
                    tokio::spawn(forward(client, target, watching.clone()));
                }
                // Down: `client` is dropped here, which closes the connection just accepted.
            }
        });
        TcpProxy { port, up, acceptor }
    }

    /// Closes every live connection and every new one until [`TcpProxy::up`].
    pub fn down(&self) {
        self.up.send_replace(false);
    }

    /// Forwards new connections again.
    pub fn up(&self) {
        self.up.send_replace(true);
    }
}

/// Copies both ways until either side closes or the proxy goes down; dropping both streams then closes them.
async fn forward(mut client: TcpStream, target: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = up.wait_for(|up| !*up) => {}
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.down();
        self.acceptor.abort();
    }
}
