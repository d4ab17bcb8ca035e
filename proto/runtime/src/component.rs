//! A component's main loop: its HTTP server and its background tasks, ended together.

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::serve;

/// Serves `router` on `listener` until `shutdown` while `tasks` run: a component's main
/// loop. The first task that fails cancels `cancel` (the tasks' token) and its error is
/// returned; every task is awaited before returning, so nothing runs on afterwards.
pub async fn serve_with_tasks<E>(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    cancel: CancellationToken,
    mut tasks: tokio::task::JoinSet<Result<(), E>>,
) -> Result<(), E>
where
    E: From<std::io::Error> + Send + 'static,
{
    let server = serve(listener, router, shutdown);
    let mut server = std::pin::pin!(server);
    let result = loop {
        tokio::select! {
            r = &mut server => break r.map_err(E::from),
            Some(done) = tasks.join_next() => {
                if let Ok(Err(e)) = done {
                    cancel.cancel();
                    break Err(e);
                }
            }
        }
    };
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    result
}
