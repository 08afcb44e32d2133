//! A TCP proxy a test can switch off and on, to take a shared peer away from one agent without stopping it for
//! every other test that uses it.
//!
//! "Down" closes every live connection at once and closes each new one as soon as it is accepted, as a broker that
//! crashed and is being restarted looks to a client; the listening port stays bound throughout, so nothing else can
//! take it and "up" needs no rebind. "Stalled" keeps every connection open and forwards nothing, as a broker that
//! stopped answering looks: writes land in socket buffers and seem sent, reads never come back.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A proxy from a free port on 127.0.0.1 to one target. Dropping it stops it and closes its connections.
pub struct TcpProxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    acceptor: JoinHandle<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    Down,
    Stalled,
}

impl TcpProxy {
    /// Starts forwarding a free port to `target`, up.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (mode, watching) = watch::channel(Mode::Up);
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                match *watching.borrow() {
                    Mode::Up => drop(tokio::spawn(forward(client, target, watching.clone()))),
                    Mode::Stalled => drop(tokio::spawn(hold(client, watching.clone()))),
                    // `client` is dropped here, which closes the connection just accepted.
                    Mode::Down => {}
                }
            }
        });
        TcpProxy { port, mode, acceptor }
    }

    /// Closes every live connection and every new one until [`TcpProxy::up`].
    pub fn down(&self) {
        self.mode.send_replace(Mode::Down);
    }

    /// Forwards new connections again.
    pub fn up(&self) {
        self.mode.send_replace(Mode::Up);
    }

    /// Stops forwarding on every connection, live or new, and keeps them all open until [`TcpProxy::down`].
    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stalled);
    }
}

/// Copies both ways until either side closes or the proxy goes down or stalls; dropping both streams then closes
/// them (a stall holds them first).
async fn forward(mut client: TcpStream, target: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
        _ = mode.wait_for(|m| *m != Mode::Up) => {}
    }
    if *mode.borrow() == Mode::Stalled {
        hold((client, server), mode).await;
    }
}

/// Keeps `sockets` open, reading and writing nothing, until the proxy goes down.
async fn hold<T>(sockets: T, mut mode: watch::Receiver<Mode>) {
    let _ = mode.wait_for(|m| *m == Mode::Down).await;
    drop(sockets);
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.down();
        self.acceptor.abort();
    }
}
