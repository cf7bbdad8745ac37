//! One core's accept loop: a task per connection, within the core's share
//! of `--max-connections`, until a drain stops accepting. Owns the
//! connection budget; it never reads a request (what a connection does is
//! `http`'s) and never spins on an accept error.

use std::rc::Rc;
use std::sync::Arc;

use crate::resolve::live::View;
use std::time::Duration;

use crate::edge::Service;
use crate::http::{HttpLimits, Shutdown};
use crate::metrics::CoreMetrics;

/// How a listener's connections are carried.
pub enum Transport {
    Plain,
    /// TLS with the certificate configuration of the moment.
    Tls(View<Arc<rustls::ServerConfig>>),
}

/// A connection's place in its core's budget: counted open and holding
/// one of the core's slots until its task ends.
struct OpenConnection {
    metrics: &'static CoreMetrics,
    _slot: glommio::sync::StaticPermit,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.connections_open.sub(1);
    }
}

/// What every connection of every core is served with.
#[derive(Clone)]
pub struct Connections {
    /// Leaked once at start-up (like the drain flag): a connection holds a
    /// pointer, not its own copy.
    pub limits: &'static HttpLimits,
    /// Most open connections on one core.
    pub max: u64,
    pub shutdown: Shutdown,
}

impl Connections {
    pub async fn accept<H: Service + 'static>(
        &self,
        listener: glommio::net::TcpListener,
        transport: Transport,
        handler: Rc<H>,
        metrics: &'static CoreMetrics,
    ) {
        // At the limit we stop accepting and let the kernel backlog (and
        // the balancer) hold new connections.
        let slots = Rc::new(glommio::sync::Semaphore::new(self.max));
        loop {
            let Ok(slot) = slots.clone().acquire_static_permit(1).await else { return };
            match listener.accept().await {
                Ok(stream) => {
                    metrics.connections_accepted.bump();
                    metrics.connections_open.bump();
                    let open = OpenConnection { metrics, _slot: slot };
                    let (handler, limits, shutdown) = (handler.clone(), self.limits, self.shutdown);
                    // Each transport its own task type: the connection's
                    // future is the task, so a plain connection holds none of
                    // a TLS one's state (rustls's, the handshake's) and
                    // nothing twice.
                    match &transport {
                        Transport::Plain => {
                            let task = crate::http::serve_connection(stream, handler, limits, metrics, shutdown, open);
                            glommio::spawn_local(task).detach();
                        }
                        Transport::Tls(view) => {
                            // The configuration of the moment: a certificate
                            // swapped later reaches new connections only.
                            let acceptor = futures_rustls::TlsAcceptor::from(Arc::clone(&*view.get()));
                            glommio::spawn_local(async move {
                                // The handshake gets the time a request head gets.
                                let _ = stream.set_read_timeout(Some(limits.header_timeout));
                                if let Ok(tls) = acceptor.accept(stream).await {
                                    crate::http::serve_connection(tls, handler, limits, metrics, shutdown, open).await;
                                }
                            })
                            .detach();
                        }
                    }
                }
                Err(_) if self.shutdown.is_draining() => {
                    // Keep the executor (and so its connections) alive until they
                    // finish; the drain thread enforces the grace period.
                    while metrics.connections_open.get() > 0 {
                        glommio::timer::sleep(Duration::from_millis(20)).await;
                    }
                    return;
                }
                Err(e) => {
                    let e = std::io::Error::from(e);
                    log::warn!("accept: {e}");
                    if crate::http::is_resource_exhaustion(&e) {
                        glommio::timer::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }
}
