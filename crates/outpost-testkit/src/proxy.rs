//! A TCP proxy between a node and PostgreSQL that a test can cut and
//! restore, as a network would, or stall: bytes are read and held, not
//! forwarded and not refused, as a path that silently stopped forwarding
//! (Wi-Fi that lost its uplink, a NAT that dropped its mapping).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Which connections hold their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Hold {
    /// Every connection, open or new.
    all: bool,
    /// Connections numbered below this hold their bytes for good (the ones
    /// open when [`Proxy::flow_new`] was called).
    before: u64,
}

impl Hold {
    fn holds(&self, id: u64) -> bool {
        self.all || id < self.before
    }
}

/// A proxy listening on a loopback port, forwarding to `target`.
pub struct Proxy {
    /// The address to connect to instead of the server.
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
    hold: watch::Sender<Hold>,
    next_id: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// Copies `from` to `to`, holding each chunk while the connection is held.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    id: u64,
    mut hold: watch::Receiver<Hold>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if hold.wait_for(|h| !h.holds(id)).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    /// Starts a proxy to `target` on the current runtime.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let (hold, _) = watch::channel(Hold::default());
        let next_id = Arc::new(AtomicU64::new(0));
        let (flag, cut_tx, hold_tx, ids) =
            (up.clone(), cuts.clone(), hold.clone(), next_id.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    drop(client); // refused while cut
                    continue;
                }
                let mut cut = cut_tx.subscribe();
                let id = ids.fetch_add(1, Ordering::SeqCst);
                let (up_hold, down_hold) = (hold_tx.subscribe(), hold_tx.subscribe());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        _ = pump(cr, sw, id, up_hold) => {}
                        _ = pump(sr, cw, id, down_hold) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Ok(Proxy {
            addr,
            up,
            cuts,
            hold,
            next_id,
            task,
        })
    }

    /// Cuts every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Whether connections go through.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Stalls the path: every connection, open or new, is accepted and its
    /// bytes are read and held, neither forwarded nor refused.
    pub fn stall(&self) {
        self.hold.send_modify(|h| h.all = true);
    }

    /// Ends a stall: held bytes go through and every connection flows.
    pub fn flow(&self) {
        self.hold.send_replace(Hold::default());
    }

    /// Ends a stall for new connections only: the ones open now keep
    /// holding their bytes for good (a NAT that lost their mappings).
    pub fn flow_new(&self) {
        let before = self.next_id.load(Ordering::SeqCst);
        self.hold.send_replace(Hold { all: false, before });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
