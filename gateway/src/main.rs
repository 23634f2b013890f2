//! The `authgate` command line: `run`, `check`, and the `echo` development upstream.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use authgate::logging::{self, LogFormat};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// authgate: a multi-tenant authentication gateway.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "AUTHGATE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with the given configuration (reloaded on change and on SIGHUP).
    Run {
        /// The main configuration file.
        #[arg(short, long, env = "AUTHGATE_CONFIG", default_value = "config/gateway.yaml")]
        config: PathBuf,
    },
    /// Check the whole configuration, like `nginx -t`: exit 0, or exit 1 listing every error.
    Check {
        /// The main configuration file.
        #[arg(short, long, env = "AUTHGATE_CONFIG", default_value = "config/gateway.yaml")]
        config: PathBuf,
    },
    /// Run development upstreams that echo each request back as JSON.
    Echo {
        /// Address to listen on; repeat for several upstreams.
        #[arg(short, long, required = true)]
        listen: Vec<std::net::SocketAddr>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Run { config } => match authgate::server::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("authgate: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Check { config } => match authgate::server::check(&config) {
            Ok(snapshot) => {
                println!(
                    "{}: configuration OK ({} apps, {} certificates)",
                    config.display(),
                    snapshot.routes.len(),
                    snapshot.certs.iter().count()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Echo { listen } => echo(listen),
    }
}

fn echo(addrs: Vec<std::net::SocketAddr>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("authgate echo: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut tasks = Vec::new();
        for addr in addrs {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    tracing::info!(%addr, "echo upstream listening");
                    tasks.push(tokio::spawn(
                        authgate::echo::Echo::new(addr.to_string()).serve(listener),
                    ));
                }
                Err(e) => {
                    eprintln!("authgate echo: cannot listen on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        futures::future::join_all(tasks).await;
        ExitCode::SUCCESS
    })
}
