//! `voxpipe serve FILE [--bind ADDR] [--set KEY.PATH=VALUE]...`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use futures_util::FutureExt as _;
use voxpipe::config::Override;
use voxpipe::pipeline::EnvSource;
use voxpipe::server::{Server, ServerError, shutdown};

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The pipeline file; each call is a fresh session of it.
    file: PathBuf,

    /// The address to listen on (use 0.0.0.0:PORT to accept connections
    /// from other machines, e.g. behind a proxy or in a container).
    #[arg(long, env = "VOXPIPE_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,

    /// Override a value of the pipeline file by its dotted path, e.g.
    /// `--set server.max_sessions=50`. Repeatable.
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    overrides: Vec<Override>,
}

pub(crate) fn serve(args: ServeArgs) -> ExitCode {
    let (config, runtime) = match (
        super::setup::load(&args.file, &args.overrides),
        super::setup::runtime(),
    ) {
        (Ok(config), Ok(runtime)) => (config, runtime),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let context = {
        // Redis connections start their tasks on this runtime, as do the
        // MCP servers' connections, so that the first call finds them open
        // (the check at load built the processors in a runtime that ran
        // nothing).
        let _entered = runtime.enter();
        config.warm_up();
        match config.agent_runtime(&EnvSource::Process) {
            Ok(context) => Arc::new(context),
            Err(err) => {
                eprintln!("voxpipe: context store: {err}");
                return ExitCode::from(2);
            }
        }
    };
    if let Err(err) = runtime.block_on(context.store().check_topology()) {
        eprintln!("voxpipe: context store: {err}");
        return ExitCode::from(2);
    }
    // From the signal, the calls drain within this; the last recordings'
    // uploads get what is left of it.
    let shutdown_limit = config.server.shutdown_deadline_secs.duration()
        + config.server.shutdown_grace_secs.duration();
    let server = match Server::builder(config)
        .context(Arc::clone(&context))
        .build()
    {
        Ok(server) => server,
        Err(err) => {
            eprintln!("voxpipe: {err}");
            return ExitCode::from(2);
        }
    };
    let served: Result<(), ServerError> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.bind).await?;
        let stop = shutdown::signal().shared();
        // Evaluations, webhook deliveries and skill refreshes stop taking
        // new work at the signal; what is left waits in the store. The
        // recording uploader stops once the calls have drained (their
        // recordings are finished as they end), after one last scan, and
        // gives up at the end of the shutdown's deadline: on a disk that
        // goes with the container, what is left in the spool is lost.
        let (drained_tx, drained) = tokio::sync::oneshot::channel::<()>();
        // Counted from the signal, whatever the uploader is doing then.
        let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                stop.await;
                tokio::time::sleep(shutdown_limit).await;
                let _ = cancel_tx.send(());
            }
        });
        let uploads_cancel = async move {
            // Dropped unsent (the runtime going away): cancelled either way.
            let _ = cancel_rx.await;
        };
        let background = async {
            let uploads_stop = async {
                // Dropped unsent too (serve failed): stop either way.
                let _ = drained.await;
            };
            if let Err(err) = context
                .run_background_recording(stop.clone(), uploads_stop, uploads_cancel)
                .await
            {
                tracing::error!(error = %err, "background work could not start");
            }
        };
        let serving = async {
            let served = server.serve(listener, stop.clone()).await;
            let _ = drained_tx.send(());
            served
        };
        let (served, ()) = tokio::join!(serving, background);
        served
    });
    match served {
        Ok(()) => {
            tracing::info!("server stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("voxpipe: {err}");
            ExitCode::FAILURE
        }
    }
}
