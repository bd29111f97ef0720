//! SIGTERM/SIGINT stop accepting and drain in-flight requests; SIGHUP reloads the pool.

use actix::Addr;
use actix_rt::signal::unix::{signal, SignalKind};
use actix_web::dev::ServerHandle;
use log::info;

use crate::pool::messages::Reload;
use crate::pool::Pool;

pub fn install(server: ServerHandle, pool: Addr<Pool>) -> std::io::Result<()> {
    for kind in [SignalKind::terminate(), SignalKind::interrupt()] {
        let mut stream = signal(kind)?;
        let server = server.clone();
        actix_rt::spawn(async move {
            if stream.recv().await.is_some() {
                info!("shutting down: draining in-flight requests");
                server.stop(true).await;
            }
        });
    }
    let mut hangup = signal(SignalKind::hangup())?;
    actix_rt::spawn(async move {
        while hangup.recv().await.is_some() {
            pool.do_send(Reload);
        }
    });
    Ok(())
}
