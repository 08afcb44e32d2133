//! SIGTERM and SIGINT into the drain: the first begins it, any later one cuts the grace short.
//!
//! signal-hook's self-pipe writes one byte per signal from the handler (async-signal-safe), and tokio reads the
//! other end of a socket pair like any socket, so no thread sits waiting on signals.

use std::io;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::low_level::pipe;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

use super::state::{Cause, Shared};

/// Registers both signals; must run inside the tokio runtime the drain lives in.
pub(super) fn install(shared: Arc<Shared>) -> io::Result<()> {
    // Shared by both readers: SIGINT after SIGTERM is a second signal too.
    let seen = Arc::new(AtomicU32::new(0));
    for (signal, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
        let (read, write) = StdUnixStream::pair()?;
        pipe::register(signal, write)?;
        read.set_nonblocking(true)?;
        let mut read = UnixStream::from_std(read)?;
        let (shared, seen) = (shared.clone(), seen.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 16];
            while let Ok(n @ 1..) = read.read(&mut buf).await {
                for _ in 0..n {
                    if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                        shared.stop(Cause::Signal(name));
                    } else {
                        shared.stop_now(Cause::Signal(name));
                    }
                }
            }
        });
    }
    Ok(())
}
